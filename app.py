"""The dashboard's router: page config, the list of pages, run.

Start it with ``streamlit run app.py``. Pages live in ``pages/``; their shared helpers
(cached loaders, widgets, state keys) in ``pages/_ui/``.
"""

import streamlit as st

from pages._ui.state import mark_routed

st.set_page_config(page_title="FM-G-CAM explainer", page_icon=":material/insights:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page(
        "pages/classification.py", title="Classification", icon=":material/image_search:", url_path="classification"
    ),
    st.Page("pages/xray.py", title="Chest X-ray", icon=":material/radiology:", url_path="xray"),
    st.Page("pages/comparison.py", title="Method comparison", icon=":material/compare:", url_path="comparison"),
    st.Page("pages/side_by_side.py", title="Side by side", icon=":material/splitscreen:", url_path="side_by_side"),
    st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:", url_path="gallery"),
]
# Less space above the title, so that the fused map fits above the fold on a 1366x768 laptop.
st.markdown("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>", unsafe_allow_html=True)
mark_routed()
st.navigation(pages).run()

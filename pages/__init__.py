"""Dashboard pages (listed explicitly by ``app.py``) and their Streamlit helpers in ``_ui``."""

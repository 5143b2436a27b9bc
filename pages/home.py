"""Home page: what the tool does, the methods and their papers, a sample gallery."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui.compute import thumbnail
from pages._ui.state import PAGE_FILES, PENDING_SAMPLE, SAMPLES, ensure_routed
from pages._ui.widgets import sample_files

ensure_routed()

st.title("Explaining CNN image classifiers")
st.markdown(
    "This tool shows **where** a convolutional network looked when it classified an image. Its centre is "
    "**FM-G-CAM**: instead of one saliency map for the top class, it explains the top *K* classes together, "
    "colouring each region by the class whose evidence dominates there, beside each class's own map. "
    "**FG-CAM** brings those maps down to the pixels. It works on ImageNet classifiers and on chest X-ray "
    "models, compares the methods side by side and measures how faithful each map is."
)

cols = st.columns(3)
cols[0].page_link(
    PAGE_FILES["classification"], label="Classification: FM-G-CAM and FG-CAM", icon=":material/image_search:"
)
cols[1].page_link(PAGE_FILES["xray"], label="Chest X-ray: pathologies explained", icon=":material/radiology:")
cols[2].page_link(PAGE_FILES["comparison"], label="Method comparison and faithfulness", icon=":material/compare:")

st.header("Start from a sample")


def _open(family: str, name: str) -> None:
    st.session_state[PENDING_SAMPLE] = {"family": family, "name": name}


for family, page, caption in [
    ("imagenet", "classification", "ImageNet images open on the classification page"),
    ("xray", "xray", "Chest X-rays open on the chest X-ray page"),
]:
    names = [n for n in sample_files(family) if not n.lower().endswith(".dcm")]
    if not names:
        continue
    st.caption(caption)
    per_row = 8
    for start in range(0, len(names), per_row):
        row = st.columns(per_row)
        for col, name in zip(row, names[start : start + per_row]):
            col.image(
                thumbnail(str(SAMPLES / family / name)),
                caption=name.rsplit(".", 1)[0].replace("ILSVRC2012_", ""),
                width="stretch",
            )
            if col.button("Open", key=f"home.open.{family}.{name}", help=name, width="stretch"):
                _open(family, name)
                st.switch_page(PAGE_FILES[page])

st.header("The methods")
st.markdown(
    "**FM-G-CAM** (Fused Multi-class Gradient-weighted CAM). Rammuni Silva & Bird, *FM-G-CAM: A Holistic "
    "Approach for Explainable AI in Computer Vision*, 2023. Computes the base method's map for each of the "
    "top K classes, "
    "keeps at each position only the class with the strongest map, normalises and fuses them into one picture "
    "with a colour per class."
)
st.markdown(
    "**FG-CAM** (Fine-Grained CAM). Qiu et al., *Empowering CAM-Based Methods with Capability to Generate "
    "Fine-Grained and High-Faithfulness Explanations*, AAAI 2024. Splits a CAM into its per-channel components "
    "and propagates them "
    "down the network with relevance rules, giving maps at the resolution of a shallower layer or the input "
    "with the same class evidence."
)
for spec in xc.list_explainers():
    slow = " *Slow.*" if spec.slow else ""
    st.markdown(f"**{spec.label}**. {spec.paper}. {spec.summary}{slow}")

st.divider()
st.caption(
    f"xai_core {xc.__version__}. A research and teaching tool: its maps show what a model used, not whether "
    "the model is right, and it is not a diagnostic device."
)

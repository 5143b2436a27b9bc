"""Chest X-ray page: every pathology output, and FM-G-CAM across the top pathologies."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures, views
from pages._ui.state import ensure_routed, key
from pages._ui.widgets import (
    attempt,
    explain_top_classes,
    explanation_sidebar,
    image_source,
)

ensure_routed()

PAGE = "xray"

st.title("Chest X-ray: which regions drove each finding?")
st.warning(
    "**Research tool, not a diagnostic device.** The outputs and maps show what a research model responds "
    "to; they are not a diagnosis and must not be used for patient care.",
    icon=":material/warning:",
)

image = image_source(PAGE, "xray", default_sample="nih_00000001_000.png")

setup = explanation_sidebar(PAGE, "xray")
if setup is None:
    st.stop()
choice, model, layer, method, params, display, k_max = setup

if image is None:
    st.info("Upload a chest X-ray or choose a sample to start.")
    st.stop()

xray = attempt(compute.read_xray, image.digest, image.name, image.data)
if xray is None:
    st.stop()
with st.expander(
    f"How the file was read: {xray.source_format}, {xray.width}x{xray.height}, {xray.bits}-bit",
    expanded=bool(xray.notes),
):
    for note in xray.notes or ("read as is",):
        st.markdown(f"- {note}")

exp = explain_top_classes(PAGE, setup, image.digest, xray.pixels, "pathologies")
spec = xc.get_method(method)
if exp is None:
    st.stop()

flagged = model.above_threshold(exp.all_probs)
chart_col, image_col = st.columns([3, 2])
with chart_col:
    st.plotly_chart(figures.xray_outputs_chart(model, exp.all_probs, flagged), key=key(PAGE, "outputs"))
with image_col:
    st.image(xray.pixels, caption=f"{image.name} as read (bright = dense)", width="stretch", clamp=True)
    above = [name for name, f in zip(model.labels, flagged) if name and f]
    if all(f is None for f in flagged):
        st.caption("This model publishes no operating thresholds: outputs are shown without flags.")
    elif above:
        st.markdown("**Above the model's operating threshold:** " + ", ".join(above))
    else:
        st.markdown("No output is above the model's operating threshold.")
    st.caption("Outputs are independent (sigmoid) scores per pathology, not probabilities that sum to one.")

st.subheader("FM-G-CAM across the top pathologies")
view = views.fused_view(PAGE, exp, display, what="pathology", whats="pathologies")
settings = views.settings_dict(exp, display, model, image.name)
settings["above_threshold"] = [name for name, f in zip(model.labels, flagged) if name and f]

st.subheader("Downloads")
views.downloads(PAGE, exp, view, settings, title=f"{image.name}: {model.spec.label} (research use only)")

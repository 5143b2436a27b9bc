"""Chest X-ray page: every pathology output, and FM-G-CAM across the top pathologies."""

from __future__ import annotations

import streamlit as st

from pages._ui import compute, figures, presenter, url_state, views
from pages._ui.notices import reading_record, reading_warnings
from pages._ui.orchestration import explain_classes
from pages._ui.report import report_pdf
from pages._ui.running import attempt
from pages._ui.state import ensure_routed, key
from pages._ui.widgets import explanation_sidebar, image_source
from xai_core.report import weights_status

ensure_routed()

PAGE = "xray"
url_state.follow(PAGE)  # choices from / into the address (a reload or a link restores them)

RESEARCH_ONLY = (
    "**Research tool, not a diagnostic device.** Its outputs and maps are not a diagnosis; never use them for "
    "patient care."
)
SAMPLE = "nih_00000001_000.png"

presenting = presenter.present_mode(PAGE)
if presenting:
    setup = presenter.sidebar_setup(PAGE, "xray", what="pathologies")
    if setup is None:
        st.stop()
    unavailable = compute.unavailable_methods(setup.model, setup.layer)
    image = presenter.control_row(PAGE, "xray", setup.k_max, unavailable, default_sample=SAMPLE)
else:
    st.title("Chest X-ray: what drove each finding?")
    st.warning(RESEARCH_ONLY, icon=":material/warning:")
    image = image_source(PAGE, "xray", default_sample=SAMPLE)
xray = attempt(compute.read_xray, image.digest, image.name, image.data) if image is not None else None

if xray is not None and not presenting:
    reading_warnings(xray)

if not presenting:
    # Random or unknown weights are said once, beside the result (weights_status below), not twice.
    setup = explanation_sidebar(PAGE, "xray", what="pathologies", say_random=False)
if setup is None or xray is None:
    if xray is not None:  # no usable weights: the image and how it was read still show
        reading_record(xray, image.name)
    elif image is None:
        st.info("Upload a chest X-ray or choose a sample to start.")
    st.stop()
model, display = setup.model, setup.display

explained = explain_classes(PAGE, setup, image.digest, xray.pixels, "pathologies")
if explained is None:
    st.stop()
full, shown, _ = explained
status = weights_status(model.weights_source)
if presenting:
    notes = ["**Research tool, not a diagnostic device.**", *presenter.notes(model)]
    presenter.fused_block(shown, display, original=xray.pixels, whats="pathologies", notes=notes)
    st.stop()
if not status.is_result:  # on the page, beside the figure: these outputs are not a finding
    st.warning(f"**{status.banner.capitalize()}.** {status.explanation}", icon=":material/block:")

# No heading here: with the research notice and the weights warning above it, a heading pushed
# the fused map below the fold at 1366x768 (issue 23, item 15); its caption names it.
view = views.fused_view(PAGE, shown, display, what="pathology", whats="pathologies", original=xray.pixels)
settings = views.settings_dict(shown, display, model, image.name)

flagged = model.above_threshold(full.all_probs) if status.flags_allowed else [None] * len(model.labels)
st.plotly_chart(
    figures.xray_outputs_chart(model, full.all_probs, flagged, watermark=status.banner), key=key(PAGE, "outputs")
)
above = [name for name, f in zip(model.labels, flagged) if name and f]
if not status.flags_allowed:
    st.caption(f"No output is flagged: {status.explanation}")
elif all(f is None for f in flagged):
    st.caption("This model publishes no operating thresholds: outputs are shown without flags.")
elif above:
    st.markdown("**Above the model's operating threshold:** " + ", ".join(above))
else:
    st.markdown("No output is above the model's operating threshold.")
st.caption("Outputs are independent (sigmoid) scores per pathology, not probabilities that sum to one.")
settings["above_threshold"] = above
settings["weights_status"] = status.kind
reading_record(xray, image.name, compact=True)

st.subheader("Downloads")
views.downloads(
    PAGE,
    shown,
    view,
    settings,
    title=f"{image.name}: {model.spec.label} (research use only)",
    watermark=status.banner,
)
st.download_button(
    "Clinician's report (PDF)",
    # Built on click: the image, how it was read, findings with thresholds, the maps with scales, every setting.
    lambda: report_pdf(
        title=image.name,
        xray=xray,
        model=model,
        probs=full.all_probs.tolist(),
        exp=shown,
        view=view,
        display=display,
        settings=settings,
        status=status,
    ),
    file_name=f"{views.download_stem(settings)}_report.pdf",
    mime="application/pdf",
    key=key(PAGE, "dl_pdf"),
    on_click="ignore",
    icon=":material/picture_as_pdf:",
    help="A PDF for the record: research tool, not a diagnostic device. "
    + ("Watermarked: " + status.banner.lower() + "." if status.banner else ""),
)

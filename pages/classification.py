"""Classification page: FM-G-CAM and FG-CAM on an ImageNet model."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures, presenter, url_state, views
from pages._ui.estimates import slow_estimate
from pages._ui.legend import image_grid, show_legend
from pages._ui.notices import size_warning
from pages._ui.orchestration import explain_classes
from pages._ui.running import MISSING, Work, asked, attempt, obtain, request
from pages._ui.state import ensure_routed, key, remember, seed
from pages._ui.widgets import explanation_sidebar, image_source
from xai_core.render import FINE_FLOOR
from xai_core.select import join, rows_of, subset

ensure_routed()

PAGE = "cls"
url_state.follow(PAGE)  # choices from / into the address (a reload or a link restores them)

presenting = presenter.present_mode(PAGE)
if not presenting:
    st.title("Classification: why did the model say that?")
    st.caption(
        "The model's top classes explained together: the **FM-G-CAM** fused map colours each region by the class "
        "whose evidence dominates there, beside each class's own map. Search any class in the sidebar to explain it."
    )
    image = image_source(PAGE, "imagenet", default_sample="cat_dog.png")

setup = presenter.sidebar_setup(PAGE, "imagenet") if presenting else explanation_sidebar(PAGE, "imagenet")
if setup is None:
    st.stop()
model, layer, display = setup.model, setup.layer, setup.display
if presenting:
    unavailable = compute.unavailable_methods(model, layer)
    image = presenter.control_row(PAGE, "imagenet", setup.k_max, unavailable, default_sample="cat_dog.png")

if image is None:
    st.info("Upload an image or choose a sample to start.")
    st.stop()

picture = attempt(compute.read_image, image.digest, image.data, _name=image.name)
if picture is None:
    st.stop()
size_warning(picture.size, model)

explained = explain_classes(PAGE, setup, image.digest, picture, "classes")
if explained is None:
    st.stop()
full, shown, chart = explained
if presenting:
    presenter.fused_block(shown, display, original=picture, notes=presenter.notes(model))
    st.stop()
spec = xc.get_explainer(setup.method)

view = views.fused_view(PAGE, shown, display, original=picture)
settings = views.settings_dict(shown, display, model, image.name)

chart_col, info_col = st.columns([3, 2])
with chart_col:
    st.plotly_chart(
        figures.predictions_chart(chart, shown.k_max, title="Top predictions (coloured: in the fused map)"),
        key=key(PAGE, "predictions"),
    )
with info_col:
    top = full.predictions[0]
    st.markdown(f"### Top class: {top[1]}\n**{100 * top[2]:.1f}%** probability")
    st.caption(
        f"{model.spec.label} · weights: {model.weights_source} · {spec.label} at `{layer}` · "
        f"{full.k_max} classes computed in one pass in {full.seconds:.2f} s (moving K, colours or activation "
        "reuses them)."
    )

# ----------------------------------------------------------------------------- FG-CAM
st.subheader("Fine-grained: FG-CAM")
st.markdown(
    "FG-CAM (Qiu et al., *Empowering CAM-Based Methods with Capability to Generate Fine-Grained and "
    "High-Faithfulness Explanations*, AAAI 2024) brings each class's CAM components down through the "
    "network with relevance rules, to a shallower layer or the input pixels: same class evidence, much finer "
    "detail. It is computed for the classes on screen only, and for more when K grows."
)
targets = attempt(compute.fgcam_layers, setup.choice.model_id, layer, _model=model)
fine = None
if targets:
    names = [t[0] for t in targets]
    labels = dict(targets)
    bases = compute.fgcam_bases()
    c1, c2, c3 = st.columns([2, 1, 1])
    target_widget = key(PAGE, f"fg_target.{setup.choice.key}.{layer}")
    seed(target_widget, f"fg_target.{setup.choice.key}.{layer}", names[-1], valid=lambda v: v in names)
    target = c1.selectbox(
        "FG-CAM target layer",
        names,
        format_func=labels.get,
        key=target_widget,
        on_change=remember,
        args=(target_widget, f"fg_target.{setup.choice.key}.{layer}"),
        help="Where the relevance is brought to: 'input' gives pixel-level maps.",
    )
    seed(key(PAGE, "fg_base"), "fg_base", bases[0], valid=lambda v: v in bases)
    base = c2.selectbox(
        "FG-CAM base",
        bases,
        format_func=lambda b: xc.get_explainer(b).label + (" (slow)" if xc.get_explainer(b).slow else ""),
        key=key(PAGE, "fg_base"),
        on_change=remember,
        args=(key(PAGE, "fg_base"), "fg_base"),
    )
    seed(key(PAGE, "fg_denoise"), "fg_denoise", False)
    denoise = c3.toggle(
        "Denoise (FG-CAM_D)",
        key=key(PAGE, "fg_denoise"),
        on_change=remember,
        args=(key(PAGE, "fg_denoise"), "fg_denoise"),
    )
    model_id = setup.choice.model_id
    config = ("fgcam-config", image.digest, model_id, layer, target, base, denoise)
    classes = shown.class_idx
    parts = {c: compute.fgcam_key(image.digest, model_id, layer, target, base, denoise, c) for c in classes}
    from pages._ui.jobs import STORE

    missing = [c for c in classes if STORE.get(parts[c]) is MISSING]
    slow_base = xc.get_explainer(base).slow
    result = None
    if missing:
        pending = subset(full, rows_of(full, missing))
        estimate, how = (None, "")
        if slow_base:
            pred = attempt(compute.predictions, image.digest, model_id, _image=picture, _model=model)
            estimate, how = slow_estimate(model_id, model, layer, pred) if pred else (None, "")
        work = Work(
            ("fgcam-run", image.digest, model_id, layer, target, base, denoise, tuple(missing)),
            compute.fgcam_work(model, pending, image.digest, model_id, target, base, denoise),
            f"FG-CAM of {len(missing)} {'class' if len(missing) == 1 else 'classes'} to {labels.get(target, target)}",
            slow=True,
            unit="masks" if slow_base else "",
            estimate=estimate,
            how=how,
            rate_key=(model_id, "masks") if slow_base else None,
        )
        note = st.empty()  # what the button will do, until it has done it
        if asked(config):
            request(work.key)  # FG-CAM was asked for here: extend it to the new classes at once
        elif not slow_base:
            note.caption(f"Computes FG-CAM for the {len(missing)} classes on screen (about 5-60 s on a CPU).")
        result = attempt(obtain, work, button="Compute FG-CAM")
        if result is not None and result is not MISSING:
            note.empty()
            request(config)
    if result is not MISSING and all(STORE.get(parts[c]) is not MISSING for c in classes):
        request(config)
        fine = attempt(join, [STORE.get(parts[c]) for c in classes])

if fine is not None:
    k = fine.k_max
    # Relevance at input resolution is sparse: the CAM's per-column normalisation would lift the
    # background as high as the object, so the classes share one percentile-clipped scale instead.
    fine_fused = fine.fused(
        k,
        normalise="off",
        activation=display.activation,
        brightness=display.brightness,
        clip_percentile=views.RELEVANCE_PERCENTILE,
    )
    fine_img = views.on_image(
        fine, xc.render_fused_relevance(fine, fine_fused, percentile=views.RELEVANCE_PERCENTILE), picture, display
    )
    a, b, c = st.columns(3)
    a.image(view["fused"], caption=f"FM-G-CAM ({spec.label} at {layer})", width="stretch")
    b.image(fine_img, caption=f"FG-CAM fused, top {k}, at {fine.layer} ({fine.seconds:.1f} s)", width="stretch")
    with c:
        show_legend(xc.legend(fine, k))
        st.caption(
            "Fine-grained fused map: each class's positive relevance, lightly smoothed, on a scale of its own "
            f"(its {views.RELEVANCE_PERCENTILE:g}th percentile), so a weaker class still shows where it is strongest; "
            "each pixel in the colour of the class highest on its own scale there, over the photo in grey; "
            f"the photo shows untinted below {FINE_FLOOR:.0%} of the scale."
        )
    # Relevance as the LRP community shows it: one symmetric scale for the K classes, clipped
    # at a high percentile of |R| (a few extreme edge pixels would otherwise wash it out).
    fine_maps = views.relevance_maps(fine)
    fine_caps = [f"FG-CAM {i + 1}. {r['label']}" for i, r in enumerate(xc.legend(fine, k))]
    image_grid(fine_maps, fine_caps, columns=5)
    st.caption(f"Per-class FG-CAM maps: {views.relevance_caption(fine)}.")
    view["panels"] += [(fine_img, f"FG-CAM fused at {fine.layer}"), *zip(fine_maps, fine_caps)]
    settings["fg_cam"] = {"target_layer": fine.layer, "base": base, "denoise": denoise}

st.subheader("Downloads")
views.downloads(PAGE, shown, view, settings, title=f"{image.name}: {model.spec.label}, {spec.label} at {layer}")

"""Classification page: FM-G-CAM and FG-CAM on an ImageNet model."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures, views
from pages._ui.state import ensure_routed, key
from pages._ui.widgets import (
    attempt,
    explain_top_classes,
    explanation_sidebar,
    image_grid,
    image_source,
    progress_callback,
    show_legend,
)

ensure_routed()

PAGE = "cls"

st.title("Classification: why did the model say that?")
st.markdown(
    "Upload an image or pick a sample. The model's top classes are explained together: the **FM-G-CAM** "
    "fused map colours each region by the class whose evidence dominates there, beside each class's own map."
)

image = image_source(PAGE, "imagenet", default_sample="cat_dog.png")

setup = explanation_sidebar(PAGE, "imagenet")
if setup is None:
    st.stop()
choice, model, layer, method, params, display, k_max = setup

if image is None:
    st.info("Upload an image or choose a sample to start.")
    st.stop()

picture = attempt(compute.read_image, image.digest, image.data, _name=image.name)
if picture is None:
    st.stop()

exp = explain_top_classes(PAGE, setup, image.digest, picture, "classes")
spec = xc.get_method(method)
requested = st.session_state.setdefault(key(PAGE, "requested"), set())
if exp is None:
    st.stop()

k = min(display.k, exp.k_max)
chart_col, info_col = st.columns([3, 2])
with chart_col:
    st.plotly_chart(figures.predictions_chart(exp, k), key=key(PAGE, "predictions"))
with info_col:
    top = exp.predictions[0]
    st.markdown(f"### Top class: {top[1]}\n**{100 * top[2]:.1f}%** probability")
    st.caption(
        f"{model.spec.label} · weights: {model.weights_source} · {spec.label} at `{layer}` · "
        f"{exp.k_max} classes computed in {exp.seconds:.2f} s (moving K, colours or activation reuses them)."
    )

st.subheader("FM-G-CAM: the top classes in one map")
view = views.fused_view(PAGE, exp, display)
settings = views.settings_dict(exp, display, model, image.name)

# ----------------------------------------------------------------------------- FG-CAM
st.subheader("Fine-grained: FG-CAM")
st.markdown(
    "FG-CAM (Qiu et al., *Empowering CAM-Based Methods with Capability to Generate Fine-Grained and "
    "High-Faithfulness Explanations*, AAAI 2024) brings each class's Grad-CAM components down through the "
    "network with relevance rules, to a "
    "shallower layer or the input pixels: same class evidence, much finer detail. The FG-CAM maps of the "
    "top classes are then fused with FM-G-CAM."
)
targets = attempt(compute.fgcam_layers, choice.model_id, layer, _model=model)
fine = None
if targets:
    names = [t[0] for t in targets]
    labels = dict(targets)
    c1, c2, c3 = st.columns([2, 1, 1])
    target = c1.selectbox(
        "FG-CAM target layer",
        names,
        index=len(names) - 1,
        format_func=labels.get,
        key=key(PAGE, f"fg_target.{choice.key}.{layer}"),
        help="Where the relevance is brought to: 'input' gives pixel-level maps.",
    )
    base = c2.selectbox(
        "FG-CAM base",
        ["grad_cam", "score_cam"],
        format_func={"grad_cam": "Grad-CAM", "score_cam": "Score-CAM (slow)"}.get,
        key=key(PAGE, "fg_base"),
    )
    denoise = c3.toggle("Denoise (FG-CAM_D)", key=key(PAGE, "fg_denoise"))
    fg_request = (image.digest, choice.model_id, layer, target, exp.class_idx, base, denoise)
    if fg_request not in requested:
        st.caption(f"Computes FG-CAM for the {exp.k_max} classes above (about 10-60 s on a CPU).")
        if st.button("Compute FG-CAM", key=key(PAGE, "run_fg")):
            requested.add(fg_request)
            st.rerun()
    if fg_request in requested:
        fg_bar = st.progress(0.0, text="FG-CAM...") if base == "score_cam" else None
        with st.spinner(f"FG-CAM of {exp.k_max} classes down to {target}..."):
            result = attempt(
                compute.compute_fgcam,
                image.digest,
                choice.model_id,
                layer,
                target,
                exp.class_idx,
                base,
                denoise,
                _exp=exp,
                _model=model,
                _progress=progress_callback(fg_bar) if fg_bar else None,
            )
        if fg_bar is not None:
            fg_bar.empty()
        if result is not None:
            fine = result

if fine is not None:
    fine_fused = fine.fused(k, normalise=display.normalise, activation=display.activation)
    fine_img = xc.render_fused(fine, fine_fused, alpha=max(display.alpha, 0.05), colormap=display.colormap)
    a, b, c = st.columns(3)
    a.image(view["fused"], caption=f"FM-G-CAM ({spec.label} at {layer})", width="stretch")
    b.image(fine_img, caption=f"FG-CAM fused, top {k}, at {fine.layer} ({fine.seconds:.1f} s)", width="stretch")
    with c:
        show_legend(xc.legend(fine, k))
    fine_maps = [
        xc.render_map(fine, i, colormap=display.colormap, alpha=display.alpha, signed=display.signed) for i in range(k)
    ]
    fine_caps = [f"FG-CAM {i + 1}. {r['label']}" for i, r in enumerate(xc.legend(fine, k))]
    image_grid(fine_maps, fine_caps, columns=5)
    view["panels"] += [(fine_img, f"FG-CAM fused at {fine.layer}"), *zip(fine_maps, fine_caps)]
    settings["fg_cam"] = {"target_layer": fine.layer, "base": base, "denoise": denoise}

st.subheader("Downloads")
views.downloads(PAGE, exp, view, settings, title=f"{image.name}: {model.spec.label}, {spec.label} at {layer}")

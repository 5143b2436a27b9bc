"""The FM-G-CAM view shared by the classification and chest X-ray pages (model-free)."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

import xai_core as xc
from pages._ui import figures
from pages._ui.legend import image_grid, show_legend
from pages._ui.state import key
from pages._ui.widgets import ACTIVATION_LABELS, NORMALISATION_LABELS, Display
from xai_core.render.relevance import DEFAULT_PERCENTILE

#: Largest change (on the fused map's 0-1 scale) that an activation may make and still look like ReLU.
VISIBLE_CHANGE = 0.02


def activation_change(exp: xc.Explanation, k: int, normalise: str, activation: str) -> float:
    """How much ``activation`` changes the K-class fused map compared with ReLU (0-1 scale, model-free).

    ReLU, ELU and GELU differ only where negative evidence survives the fusion's filter
    (a position whose strongest class is negative), and GELU also bends small positive values.
    """
    relu = exp.fused(k, normalise=normalise, activation="relu").maps
    other = exp.fused(k, normalise=normalise, activation=activation).maps
    return float((other - relu).abs().max())


def full_image(original) -> np.ndarray:
    """The uploaded image as ``uint8 [H, W, 3]`` (a PIL image, or an X-ray's ``[H, W]`` values in [0, 1])."""
    from PIL import Image

    from xai_core.images import to_rgb

    if not isinstance(original, Image.Image):  # an X-ray as read: grey values in [0, 1]
        original = Image.fromarray((np.clip(np.asarray(original, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(to_rgb(original))


def horizontal(bar: np.ndarray) -> np.ndarray:
    """A vertical colour bar (high values at the top) turned to run left (low) to right (high)."""
    return np.ascontiguousarray(np.rot90(bar, k=-1))


def map_scale(display: Display) -> None:
    """The colour scale of the single-class maps shown above it."""
    kind = "signed" if display.signed else "single"
    scale = xc.colour_scale(kind, colormap_name=None if display.signed else display.colormap, length=320, width=14)
    ticks = "  ·  ".join(text for _, text in scale.ticks)
    st.image(horizontal(scale.image), caption=f"Colour scale: {scale.title} ({ticks})", width=320)


#: Where relevance maps (FG-CAM) are clipped for display, per-class and fused alike.
RELEVANCE_PERCENTILE = DEFAULT_PERCENTILE


def relevance_maps(fine: xc.Explanation) -> list[np.ndarray]:
    """FG-CAM maps of every class, signed, on one percentile-clipped symmetric scale (legible relevance)."""
    from xai_core.render.relevance import relevance_limit, render_relevance

    stack = np.asarray(fine.cams.detach().cpu())
    limit = relevance_limit(stack, percentile=RELEVANCE_PERCENTILE)
    return [render_relevance(stack[i], limit=limit) for i in range(len(stack))]


def relevance_caption(fine: xc.Explanation | None = None) -> str:
    """The per-class relevance maps' caption; with ``fine``, it says how much negative (blue) evidence they hold."""
    from xai_core.render.relevance import negative_share, scale_label

    negative = None if fine is None else negative_share(np.asarray(fine.cams.detach().cpu()))
    return scale_label(percentile=RELEVANCE_PERCENTILE, negative=negative)


def on_image(exp: xc.Explanation, picture, original, display: Display):
    """``picture`` (drawn on the model's view) placed on the full uploaded image when asked."""
    if display.on_original and original is not None:
        return xc.render_on_original(exp, Image.fromarray(full_image(original)), picture, alpha=1.0)
    return picture


def fused_picture(exp: xc.Explanation, fused: xc.FusedMap, display: Display) -> np.ndarray:
    """The fused map drawn with the fused map's own opacity, over the photo in grey when asked.

    A grey photo keeps each class's colour readable on an object of a similar hue.
    """
    from dataclasses import replace

    if display.grey_photo and exp.prepared.view is not None:
        grey = exp.prepared.view.astype(np.float32).mean(axis=2, keepdims=True)
        view = np.repeat(grey + 0.5, 3, axis=2).astype(np.uint8)
        exp = replace(exp, prepared=replace(exp.prepared, view=view))
    return xc.render_fused(exp, fused, alpha=max(display.fused_alpha, 0.05), colormap=display.colormap)


def fused_view(
    page: str,
    exp: xc.Explanation,
    display: Display,
    *,
    what: str = "class",
    whats: str = "classes",
    original=None,
) -> dict:
    """The fused map beside each shown class's own map (FM-G-CAM paper, Figures 6 and 7).

    ``exp`` holds exactly the classes to show (the top K and/or the chosen ones); ``original``
    is the uploaded image, for "Show maps on the full image". Returns the rendered
    panels and legend rows, for the PNG download.
    """
    k = exp.k_max
    method = xc.get_explainer(exp.method).label if exp.method in xc.EXPLAINERS else exp.method
    fused = exp.fused(k, normalise=display.normalise, activation=display.activation, brightness=display.brightness)
    fused_img = on_image(exp, fused_picture(exp, fused, display), original, display)
    rows = xc.legend(exp, k)
    spec = xc.EXPLAINERS.get(exp.method)

    where = "the whole image" if display.on_original and original is not None else "what the model saw"
    left, middle, right = st.columns([1, 1, 1])
    with left:
        full = display.on_original and original is not None
        view = full_image(original) if full else exp.prepared.view
        st.image(
            view,
            caption=f"What the model saw ({'full image' if full else 'resized, centre-cropped'})",
            width="stretch",
        )
    with middle:
        st.image(fused_img, caption=f"FM-G-CAM fused map, top {k} ({method} at {exp.layer})", width="stretch")
    with right:
        st.markdown(f"**Fused {whats}**")
        show_legend(rows)
        scale = xc.colour_scale("fused", colours=xc.class_colours(k), labels=list(exp.labels))
        # The caption below the narrow scale image (not its own caption), so it wraps at the column's width.
        st.image(horizontal(scale.image), width=min(36 * k, 220))
        st.caption(f"Colour scale: {scale.title}")
        st.caption(
            xc.brightness_caption(display.brightness, normalise=display.normalise, probs=exp.probs, labels=exp.labels)
            + f" Maps drawn on {where}. End activation: {ACTIVATION_LABELS[display.activation]}; "
            + f"L2 normalisation: {NORMALISATION_LABELS[display.normalise]}."
        )
        if spec is not None and not spec.class_specific and k > 1:
            st.info(f"{method} gives the same map for every {what}: the fused map cannot separate them.")
        if display.activation != "relu" and activation_change(exp, k, display.normalise, display.activation) < (
            VISIBLE_CHANGE
        ):
            st.caption(
                ":material/info: "
                + f"{ACTIVATION_LABELS[display.activation]} draws what ReLU draws here: almost no negative evidence "
                f"survives the fusion at `{exp.layer}` (nearly every position's strongest {what} is positive), "
                "so there is nothing for the end activation to keep. Shallower layers show the difference.",
            )

    st.markdown(f"#### Each {what}'s own {method} map")
    maps = [
        on_image(
            exp,
            xc.render_map(exp, i, colormap=display.colormap, alpha=display.alpha, signed=display.signed),
            original,
            display,
        )
        for i in range(k)
    ]
    captions = [f"{i + 1}. {r['label']} ({100 * r['probability']:.1f}%)" for i, r in enumerate(rows)]
    image_grid(maps, captions, columns=5)
    map_scale(display)

    with st.expander("Interactive fused map (hover to see the dominant class)", expanded=False):
        plain = fused_picture(exp, fused, display)
        st.plotly_chart(figures.fused_hover_figure(exp, fused, plain, k), key=key(page, "hover"))

    panels = [(view, "input"), (fused_img, f"FM-G-CAM, K={k}"), *zip(maps, captions)]
    return {"panels": panels, "legend": rows, "fused": fused_img, "k": k}


def settings_dict(exp: xc.Explanation, display: Display, model: xc.LoadedModel, image_name: str) -> dict:
    """Everything needed to reproduce the figure, for the JSON/CSV downloads."""
    return {
        "image": image_name,
        "model": model.key,
        "weights": model.weights_source,
        "layer": exp.layer,
        "method": exp.method,
        "method_params": exp.params,
        "k": exp.k_max,
        "classes": [{"class_idx": c, "label": n} for c, n in zip(exp.class_idx, exp.labels)],
        "activation": display.activation,
        "normalisation": display.normalise,
        "colormap": display.colormap,
        "opacity": display.alpha,
        "signed": display.signed,
        "on_full_image": display.on_original,
        "xai_core": xc.__version__,
    }


def download_stem(settings: dict) -> str:
    """File name stem of the downloads: image, method, layer, K (``dogs_grad_cam_k3``)."""
    from pages._ui.compute import _safe_file_name

    image = _safe_file_name(str(settings.get("image", "")).rsplit(".", 1)[0], "image")
    method = settings.get("method", "")
    if "fg_cam" in settings:
        method = f"{method}+fg_cam_{settings['fg_cam']['target_layer']}"
    return _safe_file_name(f"{image}_{method}_k{settings['k']}", "explanation")


def downloads(page: str, exp: xc.Explanation, view: dict, settings: dict, title: str, watermark: str = "") -> None:
    """Download buttons: the figure as PNG, predictions with settings as JSON and CSV.

    ``watermark``: the banner of weights that give no result (random, unknown), written on the figure.
    """
    stem = download_stem(settings)
    a, b, c = st.columns(3)
    a.download_button(
        "Figure (PNG)",
        figures.figure_png(view["panels"], title, view["legend"], watermark=watermark),
        file_name=f"{stem}.png",
        mime="image/png",
        key=key(page, "dl_png"),
        on_click="ignore",
        width="stretch",
    )
    b.download_button(
        "Predictions + settings (JSON)",
        figures.predictions_json(exp, settings),
        file_name=f"{stem}.json",
        mime="application/json",
        key=key(page, "dl_json"),
        on_click="ignore",
        width="stretch",
    )
    c.download_button(
        "Predictions + settings (CSV)",
        figures.predictions_csv(exp, settings),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key=key(page, "dl_csv"),
        on_click="ignore",
        width="stretch",
    )

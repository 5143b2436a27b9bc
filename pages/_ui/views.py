"""The FM-G-CAM view shared by the classification and chest X-ray pages (model-free)."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import figures
from pages._ui.state import key
from pages._ui.widgets import Display, image_grid, show_legend


def fused_view(
    page: str, exp: xc.Explanation, display: Display, *, what: str = "class", whats: str = "classes"
) -> dict:
    """The fused map beside each top class's own map (FM-G-CAM paper, Figures 6 and 7).

    Returns the rendered panels and legend rows, for the PNG download.
    """
    k = min(display.k, exp.k_max)
    method = xc.get_method(exp.method).label if exp.method in xc.METHODS else exp.method
    fused = exp.fused(k, normalise=display.normalise, activation=display.activation)
    fused_img = xc.render_fused(exp, fused, alpha=max(display.alpha, 0.05), colormap=display.colormap)
    rows = xc.legend(exp, k)
    spec = xc.METHODS.get(exp.method)
    if spec is not None and not spec.class_specific and k > 1:
        st.info(f"{method} gives the same map for every {what}: the fused map cannot separate them.")

    left, middle, right = st.columns([1, 1, 1])
    with left:
        st.image(exp.prepared.view, caption="What the model saw (resized and centre-cropped)", width="stretch")
    with middle:
        st.image(fused_img, caption=f"FM-G-CAM fused map, top {k} ({method} at {exp.layer})", width="stretch")
    with right:
        st.markdown(f"**Fused {whats}**")
        show_legend(rows)
        st.caption(
            f"Each position is coloured by the {what} with the strongest {method} evidence there; brightness "
            f"is its strength. Activation: {display.activation}, normalisation: {display.normalise}."
        )

    st.markdown(f"#### Each {what}'s own {method} map")
    maps = [
        xc.render_map(exp, i, colormap=display.colormap, alpha=display.alpha, signed=display.signed) for i in range(k)
    ]
    captions = [f"{i + 1}. {r['label']} ({100 * r['probability']:.1f}%)" for i, r in enumerate(rows)]
    image_grid(maps, captions, columns=5)

    with st.expander("Interactive fused map (hover to see the dominant class)", expanded=False):
        st.plotly_chart(figures.fused_hover_figure(exp, fused, fused_img, k), key=key(page, "hover"))

    panels = [(exp.prepared.view, "input"), (fused_img, f"FM-G-CAM, K={k}"), *zip(maps, captions)]
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
        "k": min(display.k, exp.k_max),
        "k_computed": exp.k_max,
        "activation": display.activation,
        "normalisation": display.normalise,
        "colormap": display.colormap,
        "opacity": display.alpha,
        "signed": display.signed,
        "xai_core": xc.__version__,
    }


def downloads(page: str, exp: xc.Explanation, view: dict, settings: dict, title: str) -> None:
    """Download buttons: the figure as PNG, predictions with settings as JSON and CSV."""
    stem = f"{settings['model']}_{settings['method']}_k{settings['k']}"
    a, b, c = st.columns(3)
    a.download_button(
        "Figure (PNG)",
        figures.figure_png(view["panels"], title, view["legend"]),
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

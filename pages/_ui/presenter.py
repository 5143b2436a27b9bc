"""Presenter mode: large type, one row of controls, the fused map and its legend above the fold.

Switched on by the sidebar toggle "Presenter mode" or by opening a page with ``?present=1``
(a link to hand out or bookmark); the choice is the session's, shared by the pages that
offer it, and kept in the address bar so that a reload stays in it. It only resizes
(injected CSS in ``rem`` and viewport units, no colours, no web fonts), so the light and
dark themes, chosen in the app menu's Settings, apply unchanged.
"""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import views
from pages._ui.legend import image_grid, show_legend
from pages._ui.state import K_MAX, SAMPLES, key, remember, seed, set_shared, shared
from pages._ui.widgets import ImageFile, cam_methods, explanation_sidebar, sample_files
from xai_core.images import image_digest

QUERY = "present"
STATE = "presenter"
#: Vertical room kept for Streamlit's header (64 px), the control row, the caption and the gaps
#: (12 rem): the fused map gets the rest of the window's height, so it and its caption end above
#: the fold on a laptop or a projector alike.
RESERVED = "64px - 12rem"

CSS = f"""
<style>
html {{ font-size: clamp(20px, 1.5vw, 30px); }}
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"] {{ display: none !important; }}
[data-testid="stMainBlockContainer"] {{ padding-top: 3.2rem; padding-left: 2rem; padding-right: 2rem; }}
.st-key-presenter_fused {{ align-items: center; }}
.st-key-presenter_fused img {{ height: calc(100vh - {RESERVED}) !important; width: auto !important;
  max-width: 100%; object-fit: contain; display: block; margin: 0 auto; }}
.st-key-presenter_legend .fmgcam-legend div {{ font-size: 1.35rem !important; }}
.st-key-presenter_legend h3 {{ font-size: 1.6rem; padding-top: 0; }}
</style>
"""


def _on(value: object) -> bool:
    return str(value).lower() in {"1", "true", "on", "yes"}


def _switch(widget: str) -> None:
    """Toggle/exit callback: store the choice and mirror it in the address bar."""
    on = bool(st.session_state.get(widget, False))
    set_shared(STATE, on)
    if on:
        st.query_params[QUERY] = "1"
    elif QUERY in st.query_params:
        del st.query_params[QUERY]


def _exit() -> None:
    set_shared(STATE, False)
    if QUERY in st.query_params:
        del st.query_params[QUERY]


def present_mode(page: str) -> bool:
    """The sidebar toggle (top of the sidebar); ``?present=1`` in the address switches it on. Whether on."""
    if QUERY in st.query_params:
        set_shared(STATE, _on(st.query_params[QUERY]))
    widget = key(page, "presenter")
    seed(widget, STATE, False, valid=lambda v: isinstance(v, bool))
    with st.sidebar:
        st.toggle(
            "Presenter mode",
            key=widget,
            on_change=_switch,
            args=(widget,),
            help="Large type, one row of controls, the fused map and legend filling the screen (for a projector). "
            "Also opened with ?present=1 in the address.",
        )
    on = bool(shared(STATE, False))
    if on:
        st.markdown(CSS, unsafe_allow_html=True)
    return on


def control_row(
    page: str, family: str, k_max: int, unavailable: dict[str, str] | None = None, default_sample: str | None = None
) -> ImageFile | None:
    """Image, K and method in one row, and the way out; returns the image to explain.

    Each control writes the session's shared choice (the hidden sidebar's widgets follow it on
    the next run). An image uploaded earlier in the session stays until a sample is chosen here.
    """
    names = sample_files(family)
    methods = [m for m in cam_methods() if m.key not in (unavailable or {})]
    labels = {m.key: m.label + (" (slow)" if m.slow else "") for m in methods}
    image_col, k_col, method_col, exit_col = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
    if names:
        widget = key(page, "present_sample")
        fallback = default_sample if default_sample in names else names[0]
        seed(widget, f"sample.{family}", fallback, valid=lambda v: v in names)
        image_col.selectbox("Image", names, key=widget, on_change=_sample, args=(widget, family))
    k_max = max(1, min(K_MAX, k_max))
    widget = key(page, "present_k")
    want = shared("k", 3)
    value = min(want, k_max) if isinstance(want, int) else min(3, k_max)
    if st.session_state.get(widget) != value:
        st.session_state[widget] = value
    if k_max > 1:
        k_col.slider("K: classes fused", 1, k_max, key=widget, on_change=remember, args=(widget, "k"))
    widget = key(page, "present_method")
    keys = list(labels)
    seed(widget, "method", keys[0], valid=lambda v: v in keys)
    method_col.selectbox(
        "Method", keys, format_func=labels.get, key=widget, on_change=remember, args=(widget, "method")
    )
    exit_button(page, exit_col)
    uploaded = shared(f"image.{family}")
    if uploaded is not None:
        return uploaded
    sample = st.session_state.get(key(page, "present_sample"))
    if sample in names:
        data = (SAMPLES / family / sample).read_bytes()
        return ImageFile(sample, data, image_digest(data), True)
    return None


def _sample(widget: str, family: str) -> None:
    remember(widget, f"sample.{family}")
    set_shared(f"image.{family}", None)  # a chosen sample replaces an upload, as on the normal page


def sidebar_setup(page: str, family: str, what: str = "classes"):
    """The page's sidebar choices (``explanation_sidebar``); None when no model is usable.

    Every message it writes stays in the hidden sidebar: the ones that must stay on screen are
    shown by :func:`fused_block` instead (:func:`notes`), and a missing model is said in the page.
    """
    with st.sidebar:
        setup = explanation_sidebar(page, family, what)
    if setup is None:
        st.error("No usable model: exit presenter mode to choose one and its weights.")
        exit_button(page)
    return setup


def notes(model: xc.LoadedModel) -> list[str]:
    """What must stay beside the map: a banner for random weights or weights of unknown training."""
    from xai_core.report import weights_status

    status = weights_status(model.weights_source)
    return [] if status.is_result else [f"**{status.banner.capitalize()}.**"]


def exit_button(page: str, where=st) -> None:
    where.button("Exit presenter mode", icon=":material/close_fullscreen:", on_click=_exit, key=key(page, "exit"))


def fused_block(
    shown: xc.Explanation, display, *, original=None, whats: str = "classes", notes: list[str] | None = None
) -> None:
    """The fused map (as tall as the window allows) beside its legend and colour scale, then each class's map.

    ``notes``: warnings that must stay on screen (research use only, random weights), under the legend.
    """
    k = shown.k_max
    fused = shown.fused(k, normalise=display.normalise, activation=display.activation, brightness=display.brightness)
    fused_img = views.on_image(shown, views.fused_picture(shown, fused, display), original, display)
    rows = xc.legend(shown, k)
    method = xc.get_explainer(shown.method).label if shown.method in xc.EXPLAINERS else shown.method
    left, right = st.columns([3, 2], vertical_alignment="top")
    with left, st.container(key="presenter_fused"):
        st.image(fused_img, caption=f"FM-G-CAM fused map, top {k} ({method} at {shown.layer})")
    with right, st.container(key="presenter_legend"):
        st.markdown(f"### Fused {whats}")
        show_legend(rows)
        scale = xc.colour_scale("fused", colours=xc.class_colours(k), labels=list(shown.labels))
        st.image(views.horizontal(scale.image), width=min(48 * k, 300))
        st.caption(f"Colour scale: {scale.title}")
        for note in notes or []:
            st.warning(note, icon=":material/warning:")
    maps = [
        views.on_image(
            shown,
            xc.render_map(shown, i, colormap=display.colormap, alpha=display.alpha, signed=display.signed),
            original,
            display,
        )
        for i in range(k)
    ]
    image_grid(maps, [f"{i + 1}. {r['label']}" for i, r in enumerate(rows)], columns=5)

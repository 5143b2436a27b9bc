"""Widgets shared by the pages: image source, model and method pickers, display controls."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import streamlit as st

import xai_core as xc
from pages._ui import compute
from pages._ui.state import K_MAX, PENDING_SAMPLE, SAMPLES, key
from xai_core.fusion.fmgcam import ACTIVATIONS, NORMALISATIONS
from xai_core.images import MAX_UPLOAD_BYTES, image_digest
from xai_core.render.colour import COLORMAPS

log = logging.getLogger("xai_dashboard")
T = TypeVar("T")

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]
XRAY_TYPES = ["dcm", "dicom", *IMAGE_TYPES]
# The extensions above steer the browser's file dialog. The MIME types added below (the
# same formats) make Streamlit skip its server-side *extension* check, which otherwise
# raises an uncaught StreamlitAPIException for a file whose name does not end in a listed
# extension (a client that bypasses the browser's filter, or a DICOM without an
# extension) and leaves the session without its uploader. The file's content decides
# instead: xai_core.images opens only an allow-list of formats and explains a refusal.
IMAGE_MIME_TYPES = ["image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff", "image/gif"]
XRAY_MIME_TYPES = ["application/dicom", *IMAGE_MIME_TYPES]
#: Per-uploader limits in MB. The server's own limit (.streamlit/config.toml) is the larger,
#: so weights files fit; images keep xai_core's limit, which its readers also enforce.
IMAGE_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
WEIGHTS_UPLOAD_MB = 200
SAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".dcm"}

ACTIVATION_LABELS = {"relu": "ReLU", "elu": "ELU", "gelu": "GELU", "none": "none"}
NORMALISATION_LABELS = {
    "reference": "L2, reference (FM-G-CAM library)",
    "per_class": "L2, per class",
    "off": "off",
}


def attempt(fn: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Run ``fn``; show an XaiCoreError's message, or a short generic one for a bug; None on failure."""
    try:
        return fn(*args, **kwargs)
    except xc.XaiCoreError as err:
        st.error(str(err))
    except Exception:  # noqa: BLE001 - anything else is a bug: log it, keep the page alive
        log.exception("Unexpected error in %s", getattr(fn, "__name__", fn))
        st.error("Something went wrong while computing this. The details were written to the server log.")
    return None


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageFile:
    """An image the user chose: its name, raw bytes and SHA-256."""

    name: str
    data: bytes
    digest: str
    is_sample: bool


def sample_files(family: str) -> list[str]:
    """Sample file names of one family (``imagenet`` or ``xray``), sorted."""
    folder = SAMPLES / family
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)


def image_source(page: str, family: str, default_sample: str | None = None) -> ImageFile | None:
    """An uploader plus a sample picker; an uploaded file wins over the sample."""
    types = XRAY_TYPES + XRAY_MIME_TYPES if family == "xray" else IMAGE_TYPES + IMAGE_MIME_TYPES
    names = sample_files(family)
    sample_key = key(page, "sample")
    pending = st.session_state.get(PENDING_SAMPLE)
    if pending and pending.get("family") == family and pending.get("name") in names:
        st.session_state[sample_key] = pending["name"]
        st.session_state.pop(PENDING_SAMPLE, None)
    if sample_key not in st.session_state and names:
        st.session_state[sample_key] = default_sample if default_sample in names else names[0]

    left, right = st.columns([3, 2])
    with left:
        what = (
            "a chest X-ray (DICOM, PNG or JPEG)" if family == "xray" else "an image (PNG, JPEG, WebP, BMP, TIFF, GIF)"
        )
        upload = st.file_uploader(
            f"Upload {what}", type=types, key=key(page, "upload"), max_upload_size=IMAGE_UPLOAD_MB
        )
    with right:
        sample = st.selectbox("...or use a sample", names, key=sample_key, disabled=upload is not None)
    if upload is not None:
        data = upload.getvalue()
        return ImageFile(upload.name, data, image_digest(data), False)
    if sample:
        data = (SAMPLES / family / sample).read_bytes()
        return ImageFile(sample, data, image_digest(data), True)
    return None


# ----------------------------------------------------------------------------- models


def model_picker(page: str, family: str) -> tuple[compute.ModelChoice, bytes | None]:
    """Model select box and, for models whose weights are not shipped, the weights source."""
    specs = xc.list_models(family)
    labels = {s.key: s.label for s in specs}
    keys = [s.key for s in specs]
    model_key = st.selectbox(
        "Model",
        keys,
        format_func=labels.get,
        key=key(page, "model"),
        help="EfficientNet-Lite0's weights ship with a Python package and work offline; "
        "the others are downloaded once.",
    )
    spec = xc.get_spec(model_key)
    if spec.description:
        st.caption(spec.description)
    if spec.offline:
        return compute.ModelChoice(model_key), None
    sources = {
        "default": "Default weights (downloaded once, then cached)",
        "file": "A local weights file (.pt / .pth state_dict)",
        "random": "Random weights (demo/testing only; outputs are meaningless)",
    }
    source = st.radio("Weights", list(sources), format_func=sources.get, key=key(page, "weights"))
    if source == "file":
        upload = st.file_uploader(
            "Weights file",
            type=["pt", "pth", "bin", "ckpt"],
            key=key(page, "weights_file"),
            max_upload_size=WEIGHTS_UPLOAD_MB,
            help="A state_dict saved with torch.save(model.state_dict(), path). Read with weights_only=True: "
            "files that need arbitrary unpickling are refused.",
        )
        if upload is None:
            return compute.ModelChoice(model_key, "file", ""), None
        data = upload.getvalue()
        return compute.ModelChoice(model_key, "file", image_digest(data), upload.name), data
    return compute.ModelChoice(model_key, source), None


def load_model_or_explain(choice: compute.ModelChoice, weights_file: bytes | None) -> xc.LoadedModel | None:
    """Load the chosen model; when weights are missing, say so and how to supply them."""
    if choice.weights == "file" and not choice.digest:
        st.info("Upload a weights file in the sidebar (or choose another weights source).")
        return None
    try:
        model = compute.load_model(choice, weights_file)
    except xc.WeightsError as err:
        if choice.weights == "file":
            st.error(
                f"**The uploaded weights file cannot be used.** {err} Upload a state_dict saved with "
                "`torch.save(model.state_dict(), path)` for the model picked above, or choose another weights source."
            )
            return None
        st.error(f"**The model's weights are not available.** {err}")
        limit = WEIGHTS_UPLOAD_MB
        st.info(
            "No network here? Choose **A local weights file** under *Weights* in the sidebar and upload the file "
            f"named above (uploads are limited to {limit} MB), or put it in the folder named above and reload."
        )
        return None
    except xc.XaiCoreError as err:
        st.error(str(err))
        return None
    if choice.weights == "random":
        st.warning(
            "**Random weights**: this model is untrained. Its outputs and maps are meaningless; "
            "use this only to try the dashboard."
        )
    return model


def layer_picker(page: str, model: xc.LoadedModel, choice: compute.ModelChoice) -> str:
    """Layer select box over ``model.layers`` (default: the spec's default layer)."""
    layers = model.layers
    names = [layer.name for layer in layers]
    labels = {layer.name: layer.label for layer in layers}
    widget = key(page, f"layer.{choice.key}")
    if widget not in st.session_state or st.session_state[widget] not in names:
        st.session_state[widget] = model.spec.default_layer if model.spec.default_layer in names else names[-1]
    return st.selectbox(
        "Layer",
        names,
        format_func=lambda n: labels.get(n, n),
        key=widget,
        help="The convolutional layer whose feature maps are explained (default: the last block).",
    )


def method_params(page: str, spec) -> tuple[tuple[str, object], ...]:
    """Widgets for a method's tunable parameters; returns them as a hashable tuple."""
    values: list[tuple[str, object]] = []
    for p in spec.params:
        widget = key(page, f"param.{spec.key}.{p.name}")
        if p.choices:
            value = st.selectbox(
                p.label, list(p.choices), index=list(p.choices).index(p.default), key=widget, help=p.help
            )
        elif isinstance(p.default, int):
            value = int(
                st.number_input(
                    p.label,
                    min_value=int(p.minimum or 1),
                    max_value=int(p.maximum or 10_000),
                    value=int(p.default),
                    step=1,
                    key=widget,
                    help=p.help,
                )
            )
        else:
            value = st.number_input(p.label, value=float(p.default), key=widget, help=p.help)
        values.append((p.name, value))
    return tuple(values)


def method_picker(page: str, label: str = "Base method") -> tuple[str, tuple[tuple[str, object], ...]]:
    """The base CAM method (from ``xai_core.METHODS``) and its parameters."""
    methods = xc.list_methods()
    labels = {m.key: m.label + (" (slow)" if m.slow else "") for m in methods}
    method = st.selectbox(
        label,
        [m.key for m in methods],
        format_func=labels.get,
        key=key(page, "method"),
        help="The method whose per-class maps FM-G-CAM fuses (the paper uses Grad-CAM).",
    )
    spec = xc.get_method(method)
    st.caption(f"{spec.summary} *{spec.paper}*")
    return method, method_params(page, spec)


@dataclass(frozen=True)
class Display:
    """Display-only choices: changing them never runs the model."""

    k: int
    activation: str
    normalise: str
    colormap: str
    alpha: float
    signed: bool


def display_controls(page: str, k_max: int, default_k: int = 3) -> Display:
    """K, end activation, L2 normalisation, colour map, opacity, signed view."""
    k_max = max(1, min(K_MAX, k_max))
    k_key = key(page, "k")
    if k_key in st.session_state and st.session_state[k_key] > k_max:
        st.session_state[k_key] = k_max
    if k_max > 1:
        k = st.slider(
            "K: classes fused",
            1,
            k_max,
            min(default_k, k_max),
            key=k_key,
            help=f"Up to {k_max} classes are computed once; moving K does not run the model again.",
        )
    else:
        k = 1
    activation = st.selectbox(
        "End activation",
        list(ACTIVATIONS),
        format_func=ACTIVATION_LABELS.get,
        key=key(page, "activation"),
        help="Applied after the L2 normalisation (FM-G-CAM: ReLU; ELU/GELU keep some negative evidence).",
    )
    normalise = st.selectbox(
        "L2 normalisation",
        list(NORMALISATIONS),
        format_func=NORMALISATION_LABELS.get,
        key=key(page, "normalise"),
    )
    colormap = st.selectbox(
        "Colour map (single-class maps)", list(COLORMAPS), index=list(COLORMAPS).index("jet"), key=key(page, "colormap")
    )
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=key(page, "alpha"))
    signed = st.toggle(
        "Signed per-class maps (red +, blue -)",
        key=key(page, "signed"),
        help="Show each class's raw map with its sign instead of ReLU + min-max.",
    )
    return Display(k, activation, normalise, colormap, alpha, signed)


# ----------------------------------------------------------------------------- output


class Setup(NamedTuple):
    """What the sidebar of an explanation page chose."""

    choice: compute.ModelChoice
    model: xc.LoadedModel
    layer: str
    method: str
    params: tuple[tuple[str, object], ...]
    display: Display
    k_max: int


def explanation_sidebar(page: str, family: str) -> Setup | None:
    """Model, layer, base method and display controls in the sidebar (None: no usable model)."""
    with st.sidebar:
        st.header("Model")
        choice, weights_file = model_picker(page, family)
    model = load_model_or_explain(choice, weights_file)
    if model is None:
        return None
    k_max = min(K_MAX, model.n_valid)
    with st.sidebar:
        layer = layer_picker(page, model, choice)
        method, params = method_picker(page)
        st.header("Display")
        display = display_controls(page, k_max)
    return Setup(choice, model, layer, method, params, display, k_max)


def legend_html(rows: list[dict]) -> str:
    """Colour swatches naming each fused class and its probability."""
    items = []
    for r in rows:
        items.append(
            f'<div style="display:flex;align-items:center;gap:.5em;margin:.2em 0;font-size:1.05rem">'
            f'<span style="display:inline-block;width:1.3em;height:1.3em;border-radius:3px;'
            f'background:{r["colour"]};border:1px solid #555"></span>'
            f"<span><b>{html.escape(str(r['label']))}</b> &nbsp;{100 * r['probability']:.1f}%</span></div>"
        )
    return '<div class="fmgcam-legend">' + "".join(items) + "</div>"


def show_legend(rows: list[dict]) -> None:
    st.markdown(legend_html(rows), unsafe_allow_html=True)


def image_grid(images: list, captions: list[str], columns: int = 5) -> None:
    """Images in rows of ``columns``, each with its caption."""
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(img, caption=cap, width="stretch")


def progress_callback(bar) -> Callable[[int, int], None]:
    """``progress(done, total)`` for slow methods, driving a ``st.progress`` bar."""

    def report(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{done} / {total}")

    return report


def explain_top_classes(page: str, setup: Setup, digest: str, image: object, what: str) -> xc.Explanation | None:
    """Raw maps of the top ``setup.k_max`` classes, computed once per image and settings.

    Slow methods run only after a button press; what was asked for stays computed (cached)
    afterwards. ``what`` names the classes in messages ("classes", "pathologies").
    """
    spec = xc.get_method(setup.method)
    request = (digest, setup.choice.model_id, setup.layer, setup.method, setup.params)
    requested = st.session_state.setdefault(key(page, "requested"), set())
    if spec.slow and request not in requested:
        st.warning(f"{spec.label} is slow: it runs one forward pass per feature map (a minute or more on a CPU).")
        if not st.button(f"Compute {spec.label}", type="primary", key=key(page, "run_slow")):
            st.stop()
        requested.add(request)
    bar = st.progress(0.0, text="Explaining...") if spec.slow else None
    with st.spinner(f"Explaining the top {setup.k_max} {what} with {spec.label}..."):
        exp = attempt(
            compute.compute_explanation,
            digest,
            setup.choice.model_id,
            setup.layer,
            setup.method,
            setup.params,
            setup.k_max,
            _image=image,
            _model=setup.model,
            _progress=progress_callback(bar) if bar else None,
        )
    if bar is not None:
        bar.empty()
    return exp

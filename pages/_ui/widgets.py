"""Input widgets shared by the pages: image source, model, layer, method and class pickers, display controls.

:func:`explanation_sidebar` lays them out in an explanation page's sidebar and returns the
choices as a :class:`Setup`; running the explanation is :mod:`pages._ui.orchestration`'s job.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import streamlit as st

import xai_core as xc
from pages._ui import compute
from pages._ui.state import K_MAX, PENDING_SAMPLE, SAMPLES, key, remember, seed, set_shared, shared
from xai_core.fusion.fmgcam import ACTIVATIONS, NORMALISATIONS
from xai_core.images import MAX_UPLOAD_BYTES, image_digest
from xai_core.render.colour import COLORMAPS

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
#: The same for weights files: a file of another extension reaches read_state_dict, which names what it is.
WEIGHTS_TYPES = ["pt", "pth", "bin", "ckpt", "safetensors", "application/octet-stream"]
#: Per-uploader limits in MB. The server's own limit (.streamlit/config.toml) is the larger,
#: so weights files fit; images keep xai_core's limit, which its readers also enforce.
IMAGE_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
WEIGHTS_UPLOAD_MB = 200
SAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".dcm"}

ACTIVATION_LABELS = {"relu": "ReLU", "elu": "ELU", "gelu": "GELU", "none": "none"}
BRIGHTNESS_LABELS = {"normalised": "normalised (paper)", "probability": "by probability"}
NORMALISATION_LABELS = {
    "reference": "L2, reference (FM-G-CAM library)",
    "per_class": "L2, per class",
    "off": "off",
}


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


def _image_name(family: str) -> str:
    return f"image.{family}"


def _take_upload(widget: str, family: str) -> None:
    """Uploader ``on_change``: a new file becomes the session's image on every page.

    Removing the file goes back to the sample. Each upload also counts one more in
    ``uploads.<family>``, which keys the sample box drawn while the upload is shown: a new,
    empty box (nothing chosen), never a value set on a box the browser already shows.
    """
    upload = st.session_state.get(widget)
    if upload is None:
        set_shared(_image_name(family), None)
        return
    data = upload.getvalue()
    set_shared(_image_name(family), ImageFile(upload.name, data, image_digest(data), False))
    set_shared(f"uploads.{family}", _count(f"uploads.{family}") + 1)


def _count(name: str) -> int:
    value = shared(name, 0)
    return value if isinstance(value, int) else 0


def share_image(family: str, name: str, data: bytes) -> None:
    """Make ``(name, data)`` the session's image of ``family`` on every page (the gallery's "Open")."""
    set_shared(_image_name(family), ImageFile(name, data, image_digest(data), False))


def _upload_box(slot: str) -> str:
    """The end of the sample box's key while the upload ``uploads.<slot>`` is shown (see image_source)."""
    return f"sample.upload{_count(f'uploads.{slot}')}"


def _take_sample(widget: str, family: str) -> None:
    """Sample box ``on_change``: the chosen sample becomes the session's image.

    An upload is dropped, and the uploader is drawn anew (a new key, ``cleared.<family>``
    counting), so that its file chip goes too.
    """
    value = st.session_state.get(widget)
    if value is None:
        return
    if shared(_image_name(family)) is not None and not widget.endswith(_upload_box(family)):
        # A box not drawn while an upload is shown: the browser sent its value before it had
        # drawn the upload (its message raced the upload's run, seen on a loaded machine as
        # the upload lost on the next page). Only the box drawn with the upload can replace it.
        return
    set_shared(f"sample.{family}", value)
    if shared(_image_name(family)) is not None:
        set_shared(_image_name(family), None)
        set_shared(f"cleared.{family}", _count(f"cleared.{family}") + 1)


def image_source(page: str, family: str, default_sample: str | None = None, *, scope: str = "") -> ImageFile | None:
    """An uploader plus a sample picker, shared by every page of the session.

    The image last uploaded (on any page) wins over the sample until a sample is chosen
    or the upload removed; moving between pages keeps it. ``scope``: a second, independent
    image (its own upload and sample, e.g. the side-by-side page's image 2); default the session's.
    """
    slot = f"{family}.{scope}" if scope else family  # the shared names' part: the family, or its own image
    types = XRAY_TYPES + XRAY_MIME_TYPES if family == "xray" else IMAGE_TYPES + IMAGE_MIME_TYPES
    names = sample_files(family)
    pending = None if scope else st.session_state.get(PENDING_SAMPLE)
    if pending and pending.get("family") == family and pending.get("name") in names:
        set_shared(f"sample.{slot}", pending["name"])
        if shared(_image_name(slot)) is not None:
            set_shared(_image_name(slot), None)
            set_shared(f"cleared.{slot}", _count(f"cleared.{slot}") + 1)
        st.session_state.pop(PENDING_SAMPLE, None)
    uploaded = shared(_image_name(slot))
    if uploaded is None:
        sample_key = key(page, "sample")
        if names:
            fallback = default_sample if default_sample in names else names[0]
            seed(sample_key, f"sample.{slot}", fallback, valid=lambda v: v in names)
    else:
        # While an upload is shown the box is a new widget per upload, drawn with nothing
        # chosen: it never names a sample that is not shown, any sample is a change, and no
        # value is ever set on a box the browser already has (such a set, racing the
        # browser's next rerun, once fired the box's on_change and dropped the upload).
        sample_key = key(page, _upload_box(slot))

    left, right = st.columns([3, 2])
    with left:
        what = (
            "a chest X-ray (DICOM, PNG or JPEG)" if family == "xray" else "an image (PNG, JPEG, WebP, BMP, TIFF, GIF)"
        )
        cleared = _count(f"cleared.{slot}")
        upload_key = key(page, "upload") if cleared == 0 else key(page, f"upload.{cleared}")
        st.file_uploader(
            f"Upload {what}",
            type=types,
            key=upload_key,
            max_upload_size=IMAGE_UPLOAD_MB,
            on_change=_take_upload,
            args=(upload_key, slot),
        )
    uploaded = shared(_image_name(slot))
    current = st.session_state.get(upload_key)
    with right:
        sample = st.selectbox(
            "...or use a sample",
            names,
            index=None if uploaded is not None else 0,
            placeholder="(your upload is shown)" if uploaded is not None else "Choose a sample",
            key=sample_key,
            on_change=_take_sample,
            args=(sample_key, slot),
            help="Choosing a sample replaces the uploaded image.",
        )
        if uploaded is not None and current is None:
            st.caption(f"Showing **{html.escape(uploaded.name)}**, uploaded earlier (a reload shows it again).")
    if uploaded is not None:
        return uploaded
    if sample:
        data = (SAMPLES / family / sample).read_bytes()
        return ImageFile(sample, data, image_digest(data), True)
    return None


# ----------------------------------------------------------------------------- models


def model_picker(
    page: str,
    family: str,
    *,
    label: str = "Model",
    name: str | None = None,
    default: str | None = None,
    default_weights: str = "default",
) -> tuple[compute.ModelChoice, bytes | None]:
    """Model select box and, for models whose weights are not shipped, the weights source.

    ``name``: the shared choice the box follows (default ``model.<family>``, the session's model);
    a page showing a second model gives it its own. ``default``: the model chosen first;
    ``default_weights``: its weights source first (``"default"``, ``"file"`` or ``"random"``).
    """
    specs = xc.list_models(family)
    # The X-ray page's models all start "Chest X-ray ...": without it the name fits the sidebar's box
    # (it was cut at "Chest X-ray DenseNet121, all dat..."); the caption below gives it in full.
    labels = {s.key: s.label.removeprefix("Chest X-ray ") for s in specs}
    keys = [s.key for s in specs]
    widget = key(page, "model")
    name = name or f"model.{family}"
    seed(widget, name, default if default in keys else keys[0], valid=lambda v: v in keys)
    model_key = st.selectbox(
        label,
        keys,
        format_func=labels.get,
        key=widget,
        on_change=remember,
        args=(widget, name),
        help="EfficientNet-Lite0's weights ship with a Python package and work offline; "
        "the others are downloaded once.",
    )
    spec = xc.get_spec(model_key)
    if spec.description or labels[model_key] != spec.label:
        st.caption(f"{spec.label}: {spec.description}" if labels[model_key] != spec.label else spec.description)
    if spec.offline:
        return compute.ModelChoice(model_key), None
    sources = {
        "default": "Default weights (downloaded once, then cached)",
        "file": "A local weights file (.pt / .pth state_dict or .safetensors)",
        "random": "Random weights (demo/testing only; outputs are meaningless)",
    }
    widget = key(page, "weights")
    seed(widget, f"weights.{model_key}", default_weights, valid=lambda v: v in sources)
    source = st.radio(
        "Weights",
        list(sources),
        format_func=sources.get,
        key=widget,
        on_change=remember,
        args=(widget, f"weights.{model_key}"),
    )
    if source == "file":
        upload = st.file_uploader(
            "Weights file",
            type=WEIGHTS_TYPES,
            key=key(page, "weights_file"),
            max_upload_size=WEIGHTS_UPLOAD_MB,
            help="A state_dict saved with torch.save(model.state_dict(), path), read with weights_only=True "
            "(files that need arbitrary unpickling are refused), or a .safetensors file (never runs code).",
        )
        if upload is None:
            return compute.ModelChoice(model_key, "file", ""), None
        data = upload.getvalue()
        return compute.ModelChoice(model_key, "file", image_digest(data), upload.name), data
    return compute.ModelChoice(model_key, source), None


def load_model_or_explain(
    choice: compute.ModelChoice, weights_file: bytes | None, *, say_random: bool = True, who: str = ""
) -> xc.LoadedModel | None:
    """Load the chosen model; when weights are missing, say so and how to supply them.

    ``say_random=False``: the page says itself, beside its result, that random weights give none.
    ``who``: the model's name on a page with two (``"Model B"``), so that a warning says which.
    """
    if choice.weights == "file" and not choice.digest:
        st.info("Upload a weights file in the sidebar (or choose another weights source).")
        return None
    try:
        model = compute.load_model(choice, weights_file)
    except xc.WeightsError as err:
        if choice.weights == "file":
            st.error(
                f"**The uploaded weights file {choice.name!r} cannot be used.** {_user_file(str(err), choice.name)} "
                "Upload a state_dict saved with "
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
    if choice.weights == "random" and say_random:
        which = f"{who} ({model.spec.label}): r" if who else "R"
        st.warning(
            f"**{which}andom weights — not a result.** This model is untrained: its outputs and maps are "
            "meaningless and nothing is flagged against thresholds; use this only to try the dashboard."
        )
    return model


def _user_file(message: str, name: str) -> str:
    """``message`` with any server-side path of the uploaded file replaced by the user's file name."""
    import re

    safe = compute._safe_file_name(name, "")
    if not safe:
        return message
    return re.sub(r"(?:[A-Za-z]:)?[^\s'\"]*[/\\]" + re.escape(safe), name.replace("\\", "/"), message)


#: Module kinds whose output only pads, copies or drops its input: never offered as a layer.
SKIPPED_LAYER_KINDS = re.compile(r"^(Zero|Constant|Reflection|Replication|Circular)Pad\dd$|^Identity$|^Dropout")


def skipped_layer(info) -> bool:
    """Whether the layer picker leaves ``info`` (an ``xai_core`` LayerInfo) out of its list."""
    return info.name.endswith("static_padding") or bool(SKIPPED_LAYER_KINDS.match(info.kind))


def layer_picker(page: str, model: xc.LoadedModel, choice: compute.ModelChoice) -> str:
    """Layer select box over ``model.layers`` (default: the spec's default layer).

    Padding, identity and dropout modules are left out: their output is their input's,
    only shifted or padded, so they add length to the list and nothing to explain.
    """
    layers = [info for info in model.layers if not skipped_layer(info)] or list(model.layers)
    names = [layer.name for layer in layers]
    labels = {layer.name: layer.label for layer in layers}
    widget = key(page, f"layer.{choice.key}")
    default = model.spec.default_layer if model.spec.default_layer in names else names[-1]
    seed(widget, f"layer.{choice.key}", default, valid=lambda v: v in names)
    return st.selectbox(
        "Layer",
        names,
        format_func=lambda n: labels.get(n, n),
        key=widget,
        on_change=remember,
        args=(widget, f"layer.{choice.key}"),
        help="The convolutional layer whose feature maps are explained (default: the last block).",
    )


def method_params(page: str, spec, *, name_method: bool = False) -> tuple[tuple[str, object], ...]:
    """Widgets for a method's tunable parameters; returns them as a hashable tuple.

    ``name_method`` puts the method's name in each label ("Score-CAM: masks per batch"),
    for pages that show several methods' parameters together.
    """
    values: list[tuple[str, object]] = []
    for p in spec.params:
        widget = key(page, f"param.{spec.key}.{p.name}")
        name = f"param.{spec.key}.{p.name}"
        label = f"{spec.label}: {p.label[0].lower()}{p.label[1:]}" if name_method else p.label
        common = dict(key=widget, help=p.help, on_change=remember, args=(widget, name))
        kind = getattr(p, "type", "")
        if p.choices:
            seed(widget, name, p.default, valid=lambda v, c=p.choices: v in c)
            value = st.selectbox(label, list(p.choices), **common)
        elif kind == "bool" or isinstance(p.default, bool):
            seed(widget, name, bool(p.default), valid=lambda v: isinstance(v, bool))
            value = bool(st.toggle(label, **common))
        elif isinstance(p.default, int):
            lo, hi = int(p.minimum or 1), int(p.maximum or 10_000)
            seed(widget, name, int(p.default), valid=lambda v, lo=lo, hi=hi: isinstance(v, int) and lo <= v <= hi)
            value = int(st.number_input(label, min_value=lo, max_value=hi, step=1, **common))
        else:
            seed(widget, name, float(p.default), valid=lambda v: isinstance(v, float))
            value = st.number_input(label, **common)
        values.append((p.name, value))
    return tuple(values)


def cam_methods() -> list:
    """The registry's CAM-family methods: one map per class at a layer, the ones FM-G-CAM fuses."""
    return [m for m in xc.list_explainers() if m.is_cam]


def method_picker(
    page: str, label: str = "Base method", unavailable: dict[str, str] | None = None
) -> tuple[str, tuple[tuple[str, object], ...]]:
    """The base CAM method (from the method registry) and its parameters.

    ``unavailable``: methods that cannot run at the chosen layer, left out with their reason.
    """
    unavailable = unavailable or {}
    methods = [m for m in cam_methods() if m.key not in unavailable]
    labels = {m.key: m.label + (" (slow)" if m.slow else "") for m in methods}
    keys = [m.key for m in methods]
    widget = key(page, "method")
    seed(widget, "method", keys[0], valid=lambda v: v in keys)  # the registry lists its default first
    method = st.selectbox(
        label,
        keys,
        format_func=labels.get,
        key=widget,
        on_change=remember,
        args=(widget, "method"),
        help="The method whose per-class maps FM-G-CAM fuses (the paper uses Grad-CAM).",
    )
    spec = xc.get_explainer(method)
    st.caption(f"{spec.summary} *{spec.paper}*")
    for why in unavailable.values():
        st.caption(":material/info: " + why)
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
    on_original: bool = False
    brightness: str = "normalised"
    fused_alpha: float = 0.85
    grey_photo: bool = True


def _bound(page: str, name: str, default: object, valid=None) -> dict:
    """Seed widget ``page.name`` from the shared choice ``name``; the widget keyword arguments."""
    widget = key(page, name)
    seed(widget, name, default, valid=valid)
    return dict(key=widget, on_change=remember, args=(widget, name))


def display_controls(page: str, k_max: int, default_k: int = 3) -> Display:
    """K, end activation, L2 normalisation, colour map, opacity, signed view, full image."""
    k_max = max(1, min(K_MAX, k_max))
    want_k = shared("k", default_k)
    k_default = min(want_k, k_max) if isinstance(want_k, int) else min(default_k, k_max)
    if k_max > 1:
        widget = key(page, "k")
        if st.session_state.get(widget) != k_default:
            st.session_state[widget] = k_default
        k = st.slider(
            "K: classes fused",
            1,
            k_max,
            key=widget,
            on_change=remember,
            args=(widget, "k"),
            help=f"Up to {k_max} classes are computed once; moving K does not run the model again.",
        )
    else:
        k = 1
    activation = st.selectbox(
        "End activation",
        list(ACTIVATIONS),
        format_func=ACTIVATION_LABELS.get,
        help="Applied after the L2 normalisation (FM-G-CAM: ReLU; ELU/GELU keep some negative evidence).",
        **_bound(page, "activation", "relu", valid=lambda v: v in ACTIVATIONS),
    )
    normalise = st.selectbox(
        "L2 normalisation",
        list(NORMALISATIONS),
        format_func=NORMALISATION_LABELS.get,
        **_bound(page, "normalise", "reference", valid=lambda v: v in NORMALISATIONS),
    )
    brightness = st.radio(
        "Fused map brightness",
        list(xc.BRIGHTNESS),
        format_func=BRIGHTNESS_LABELS.get,
        horizontal=True,
        help="Normalised: the paper's drawing (each class on one scale, whatever its probability). "
        "By probability: each class's map also scaled by its probability relative to the top class shown.",
        **_bound(page, "brightness", xc.BRIGHTNESS[0], valid=lambda v: v in xc.BRIGHTNESS),
    )
    fused_alpha = st.slider(
        "Fused map opacity",
        0.0,
        1.0,
        step=0.05,
        help="The fused map's colours over the photo (the per-class maps have their own opacity below).",
        **_bound(page, "fused_alpha", Display.fused_alpha),
    )
    grey_photo = st.toggle(
        "Photo in grey under the fused map",
        help="The class colours stay readable on coloured objects (an orange class on a red ladybug).",
        **_bound(page, "grey_photo", Display.grey_photo),
    )
    colormap, alpha, signed = map_display_controls(page)
    on_original = st.toggle(
        "Show maps on the full image",
        help="Place the maps on the whole uploaded image (inside the part the model saw) instead of on the "
        "resized, centre-cropped view.",
        **_bound(page, "on_original", False),
    )
    return Display(k, activation, normalise, colormap, alpha, signed, on_original, brightness, fused_alpha, grey_photo)


def map_display_controls(page: str) -> tuple[str, float, bool]:
    """Colour map, opacity and signed view of single-class maps (shared by every page)."""
    default_map = xc.DEFAULT_COLORMAP
    colormap = st.selectbox(
        "Colour map (single-class maps)",
        list(COLORMAPS),
        **_bound(page, "colormap", default_map, valid=lambda v: v in COLORMAPS),
    )
    alpha = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, **_bound(page, "alpha", 0.5))
    signed = st.toggle(
        "Signed per-class maps (red +, blue -)",
        help="Show each class's raw map with its sign instead of ReLU + min-max.",
        **_bound(page, "signed", False),
    )
    return colormap, alpha, signed


def searchable_labels(labels: Sequence[str]) -> list[str]:
    """The option texts of the class search: ImageNet classes also carry their other WordNet names.

    The search box matches what it shows, so "tabby cat" finds "tabby (also: tabby cat)".
    """
    from xai_core.models.imagenet_classes import IMAGENET_CLASSES, class_synonyms

    if tuple(labels) != IMAGENET_CLASSES:
        return list(labels)
    out = []
    for i, name in enumerate(labels):
        others = [s for s in class_synonyms(i) if s.lower() != name.lower()]
        out.append(f"{name} (also: {', '.join(others)})" if others else name)
    return out


def class_picker(page: str, family: str, model: xc.LoadedModel, what: str = "classes") -> tuple[list[int], str]:
    """Search-as-you-type over every named output: classes to explain besides (or instead of) the top K.

    Returns the chosen class numbers and ``"join"`` or ``"replace"``.
    """
    named = [i for i, name in enumerate(model.labels) if name]
    labels = searchable_labels(model.labels)
    name = f"classes.{model.key}"
    chosen = st.multiselect(
        f"Explain {what} I choose",
        named,
        format_func=lambda i: labels[i],
        placeholder="Type to search...",
        help=f"Any of the model's {len(named)} {what}, computed in the same pass as the top K.",
        **_bound(page, name, [], valid=lambda v: isinstance(v, list) and all(c in named for c in v)),
    )
    mode = "join"
    if chosen:
        modes = {"join": "Add to the top K", "replace": "Only these"}
        mode = st.radio(
            "In the fused map",
            list(modes),
            format_func=modes.get,
            horizontal=True,
            **_bound(page, "class_mode", "join", valid=lambda v: v in modes),
        )
    return list(chosen), mode


def device_note(model: xc.LoadedModel) -> None:
    """Say where the model runs: the device ``XAI_DEVICE`` chose, a GPU by name."""
    try:
        device = str(next(model.module.parameters()).device)
    except StopIteration:
        device = "cpu"
    if device.startswith("cuda"):
        st.success(f"Running on the GPU (`{device}`)", icon=":material/memory:")
    elif device != "cpu":
        st.success(f"Running on `{device}`", icon=":material/memory:")
    else:
        st.caption("Running on the CPU (set XAI_DEVICE=cuda to use a GPU).")


class Setup(NamedTuple):
    """What the sidebar of an explanation page chose."""

    choice: compute.ModelChoice
    model: xc.LoadedModel
    layer: str
    method: str
    params: tuple[tuple[str, object], ...]
    display: Display
    k_max: int
    classes: tuple[int, ...] = ()
    class_mode: str = "join"


def model_sidebar(
    page: str, family: str, *, say_random: bool = True
) -> tuple[compute.ModelChoice, xc.LoadedModel, str] | None:
    """The sidebar's "Model" section: model, weights source, device and layer (None: no usable model).

    ``say_random``: see :func:`load_model_or_explain`.
    """
    with st.sidebar:
        st.header("Model")
        choice, weights_file = model_picker(page, family)
    model = load_model_or_explain(choice, weights_file, say_random=say_random)
    if model is None:
        return None
    with st.sidebar:
        device_note(model)
        layer = layer_picker(page, model, choice)
    return choice, model, layer


def explanation_sidebar(page: str, family: str, what: str = "classes", *, say_random: bool = True) -> Setup | None:
    """Model, layer, base method, chosen classes and display controls in the sidebar (None: no usable model).

    ``say_random``: see :func:`load_model_or_explain`.
    """
    chosen = model_sidebar(page, family, say_random=say_random)
    if chosen is None:
        return None
    choice, model, layer = chosen
    k_max = min(K_MAX, model.n_valid)
    with st.sidebar:
        method, params = method_picker(page, unavailable=compute.unavailable_methods(model, layer))
        classes, mode = class_picker(page, family, model, what)
        st.header("Display")
        display = display_controls(page, k_max)
    return Setup(choice, model, layer, method, params, display, k_max, tuple(classes), mode)

"""Cached loaders and one ``compute_*`` helper per page action.

- Models: ``st.cache_resource`` (shared by every session), a few at a time.
- Model results (predictions, per-class maps, FG-CAM relevance, FG-CAM target layers,
  metric curves, ROAD scores): the job store (:data:`pages._ui.jobs.STORE`, one LRU
  cache shared by every session, see :func:`stored`), keyed by the image's SHA-256, the
  model and its weights, the layer, the method, its parameters and the classes. Results
  are frozen: readers never change them. Everything shown from a result afterwards (K,
  activation, normalisation, colour map, opacity) is model-free.
- Decoded images and gallery thumbnails (no model): ``st.cache_data``.

Arguments with a leading underscore are not part of the key: their identity is carried
by the argument next to them (``digest`` for the image, ``model_id`` for the model).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st

import xai_core as xc
from pages._ui.jobs import MISSING, STORE
from pages._ui.state import count_model_run
from xai_core.hooks.layers import linear_head

T = TypeVar("T")


def stored(key: tuple, make: Callable[[], T]) -> T:
    """The job store's result for ``key``; ``make()`` computes and stores it when missing.

    The pages' one cache of model results (the slow ones run as jobs, with progress,
    and land in the same store).
    """
    found = STORE.get(key)
    if found is MISSING:
        found = make()
        STORE.put(key, found)
    return found


@dataclass(frozen=True)
class ModelChoice:
    """A model the page may use: the registry key and where its weights come from.

    ``weights`` is ``"default"``, ``"random"`` or ``"file"``; ``digest`` is the SHA-256 of
    an uploaded weights file (empty otherwise).
    """

    key: str
    weights: str = "default"
    digest: str = ""
    #: the uploaded weights file's name, only for messages (not part of the cache key).
    name: str = dataclasses.field(default="", compare=False)

    @property
    def model_id(self) -> str:
        """A cache key naming the exact weights."""
        return f"{self.key}|{self.weights}|{self.digest}"


# ----------------------------------------------------------------------------- models


def _safe_file_name(name: str, fallback: str) -> str:
    """``name`` reduced to a harmless base name (letters, digits, ``._-``), else ``fallback``."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name or ""))[:100].lstrip(".")
    return base or fallback


@st.cache_resource(max_entries=3, show_spinner="Loading the model...")
def _load(
    key: str, weights: str, digest: str, device: str, _data: bytes | None = None, name: str = ""
) -> xc.LoadedModel:
    if weights == "random":
        return xc.build_model(key, weights=None, device=device)
    if weights == "file":
        # build_model reads the file with torch.load(weights_only=True); the temporary
        # copy is removed as soon as it is read. It carries the uploaded file's (sanitised)
        # name so that error messages name the user's file, inside a private folder.
        with tempfile.TemporaryDirectory(prefix="xai-weights-") as tmp:
            path = os.path.join(tmp, _safe_file_name(name, f"{digest[:16]}.pt"))
            with open(path, "wb") as fh:
                fh.write(_data or b"")
            model = xc.build_model(key, weights=path, device=device)
        # Captions, downloads and reports name the user's file, not the temporary copy that is gone.
        return dataclasses.replace(model, weights_source=f"uploaded file {name or digest[:16] + '.pt'!r}")
    return xc.build_model(key, device=device)


def load_model(choice: ModelChoice, weights_file: bytes | None = None) -> xc.LoadedModel:
    """The model for ``choice`` on the server's device (``XAI_DEVICE``, default the CPU), built once.

    Raises:
        WeightsError: the weights are missing or unusable.
        DeviceError: ``XAI_DEVICE`` names a device this machine does not have.
    """
    return _load(choice.key, choice.weights, choice.digest, xc.default_device(), weights_file, choice.name)


def fgcam_layers(model_id: str, cam_layer: str, _model: xc.LoadedModel) -> list[tuple[str, str]]:
    """FG-CAM target layers below ``cam_layer``, deepest first: ``(name, label)``."""
    from xai_core.relevance import fgcam_target_layers

    def make() -> tuple[tuple[str, str], ...]:
        count_model_run()
        with _model.lock:
            targets = fgcam_target_layers(_model.module, _model.example_input(), cam_layer)
        return tuple((t.name, t.label) for t in targets)

    return list(stored(("fgcam_layers", model_id, cam_layer), make))


# ----------------------------------------------------------------------------- images


@st.cache_data(max_entries=8, show_spinner=False)
def read_image(digest: str, _data: bytes, _name: str | None = None):
    """Decode an uploaded ImageNet-page image (PIL, first frame). Raises ImageError.

    ``_name`` (the uploaded file's name) only appears in error messages.
    """
    source = io.BytesIO(_data)
    source.name = _name
    return xc.read_image(source)


@st.cache_data(max_entries=8, show_spinner=False)
def read_xray(digest: str, filename: str, _data: bytes):
    """Decode a chest X-ray (DICOM or image) into an ``XrayImage``. Raises ImageError."""
    from xai_core.images import read_xray as _read_xray

    source = io.BytesIO(_data)
    source.name = filename  # named in every message, the "empty file" one included
    return _read_xray(source, filename=filename)


@st.cache_data(max_entries=64, show_spinner=False)
def thumbnail(path: str, size: int = 240):
    """A square, centre-cropped thumbnail of a sample file (PIL), for the home gallery."""
    from PIL import ImageOps

    from xai_core.images import to_rgb

    return ImageOps.fit(to_rgb(xc.read_image(path)), (size, size))


# ----------------------------------------------------------------------------- explanations


@dataclass(frozen=True)
class Predictions:
    """The model's outputs on one image, and how long one forward pass takes here.

    Attributes:
        all_probs: probability of every output.
        order: named outputs, most probable first (the top-K are its first K).
        forward_seconds: measured time of one forward pass of one image on this
            machine (a batch of a few copies, divided), for honest time estimates.
    """

    all_probs: object
    order: tuple[int, ...]
    forward_seconds: float


def predictions(digest: str, model_id: str, *, _image, _model: xc.LoadedModel) -> Predictions:
    """One forward pass of the image (stored per image and weights), timed."""
    from xai_core.select import top_classes

    def make() -> Predictions:
        count_model_run()
        prepared = xc.prepare(_image, _model.spec.preprocessing)
        probs = _model.predict(prepared.tensor)[0]
        batch = prepared.tensor.expand(4, -1, -1, -1).contiguous()
        start = time.perf_counter()
        _model.predict(batch)
        per_image = (time.perf_counter() - start) / 4
        order = top_classes(probs.cpu().numpy(), _model.labels, _model.n_valid)
        return Predictions(probs.cpu().numpy(), tuple(order), per_image)

    return stored(("predictions", digest, model_id), make)


def explanation_key(
    digest: str, model_id: str, layer: str, method: str, params: tuple, class_idx: tuple[int, ...]
) -> tuple:
    """The store key of one explanation."""
    return ("explain", digest, model_id, layer, method, params, tuple(class_idx))


def explanation_work(
    model: xc.LoadedModel, image, layer: str, method: str, params: tuple, class_idx: tuple[int, ...]
) -> Callable[[Callable[[int, int], None]], xc.Explanation]:
    """``work(progress)``: every class of ``class_idx`` explained in one pass (no Streamlit inside)."""

    def work(progress: Callable[[int, int], None]) -> xc.Explanation:
        warm_up(model, image, layer, class_idx[0])
        count_model_run()
        return xc.explain(
            model,
            image,
            method=method,
            layer=layer,
            class_idx=list(class_idx),
            progress=progress,
            accelerate="auto",  # one image on CUDA: a replayed CUDA graph; eager elsewhere
            **dict(params),
        )

    return work


_WARM: set[tuple[int, str]] = set()
_WARM_LOCK = threading.Lock()


def warm_up(model: xc.LoadedModel, image, layer: str, cls: int) -> bool:
    """One untimed Grad-CAM pass the first time a model and layer are explained in this process.

    The first forward and backward pass through a model pays one-off costs (memory
    allocation, kernel selection): timed, it made the first method shown look ten times
    slower than the others (0.30 s against 0.03 s). Returns True when it ran.
    """
    ident = (id(model.module), layer)
    with _WARM_LOCK:
        if ident in _WARM:
            return False
        _WARM.add(ident)
    # The same switch as explanation_work: on CUDA the capture of one-class passes is one-off work too.
    xc.explain(model, image, method="grad_cam", layer=layer, class_idx=[int(cls)], accelerate="auto")
    return True


def fgcam_key(digest: str, model_id: str, cam_layer: str, target: str, base: str, denoise: bool, cls: int) -> tuple:
    """Store key of one class's FG-CAM map (classes are computed together, stored one by one)."""
    return ("fgcam", digest, model_id, cam_layer, target, base, denoise, int(cls))


def fgcam_work(
    model: xc.LoadedModel, exp: xc.Explanation, digest: str, model_id: str, target: str, base: str, denoise: bool
) -> Callable[[Callable[[int, int], None]], xc.Explanation]:
    """``work(progress)``: FG-CAM of every class of ``exp`` in one pass, each class stored on its own."""
    from xai_core.select import subset

    def work(progress: Callable[[int, int], None]) -> xc.Explanation:
        from pages._ui.jobs import STORE

        count_model_run()
        fine = xc.explain_fine(model, exp, target_layer=target, base=base, denoise=denoise, progress=progress)
        for i, cls in enumerate(fine.class_idx):
            STORE.put(fgcam_key(digest, model_id, exp.layer, target, base, denoise, cls), subset(fine, [i]))
        return fine

    return work


def layer_channels(model: xc.LoadedModel, layer: str) -> int:
    """Feature maps of ``layer`` (the masks a perturbation method runs), 0 if unknown."""
    for info in model.layers:
        if info.name == layer:
            return int(info.shape[0])
    return 0


def unavailable_methods(model: xc.LoadedModel, layer: str) -> dict[str, str]:
    """Methods that cannot run at ``layer`` of this model, with the reason (for the method lists).

    CAM needs the layer whose feature maps feed the model's last linear layer through
    global average pooling (the check CAM itself makes, :func:`xai_core.hooks.layers.linear_head`).
    """
    out = {}
    channels = layer_channels(model, layer)
    if channels and linear_head(model.module, channels) is None:
        out["cam"] = (
            f"CAM applies only to the layer whose feature maps feed the final linear layer through global average "
            f"pooling (`{model.spec.default_layer}` here), not `{layer}`: Grad-CAM equals CAM there."
        )
    return out


def compute_metrics(
    digest: str,
    model_id: str,
    method_id: str,
    class_idx: int,
    steps: int,
    *,
    _exp: xc.Explanation,
    _model: xc.LoadedModel,
):
    """Faithfulness scores and insertion/deletion curves of ``_exp``'s first map.

    ``steps``: points on the insertion/deletion curves (the FG-CAM paper uses 112, about
    ``2 * steps + 8`` forward passes).
    """
    from xai_core.metrics import evaluate_map

    def make():
        count_model_run()
        h, w = _exp.input_size
        step = max(1, round(h * w / steps))
        return evaluate_map(_model.predict, _exp.prepared.tensor, _exp.saliency(0), class_idx, pixels_per_step=step)

    return stored(("metrics", digest, model_id, method_id, int(class_idx), int(steps)), make)


def road_key(digest: str, model_id: str, exp: xc.Explanation, class_idx: int, fractions: tuple[float, ...]) -> tuple:
    """Store key of one map's ROAD scores: the image, the weights, the class and the map itself (its bytes)."""
    import hashlib

    saliency = exp.saliency(0)
    return ("road", digest, model_id, int(class_idx), hashlib.sha1(saliency.tobytes()).hexdigest(), tuple(fractions))


def road_work(
    model: xc.LoadedModel, maps: list[tuple[tuple, xc.Explanation]], class_idx: int, fractions: tuple[float, ...]
) -> Callable[[Callable[[int, int], None]], dict]:
    """``work(progress)``: ROAD MoRF and LeRF of each ``(key, explanation)``'s first map, each stored as it ends.

    ``progress`` counts imputed images over all the maps (2 orders x the fractions each);
    a map finished before Stop stays in the store.
    """
    from xai_core.metrics import road_scores

    def work(progress: Callable[[int, int], None]) -> dict:
        from pages._ui.jobs import STORE

        count_model_run()
        per_map = 2 * len(fractions)
        total = len(maps) * per_map
        out = {}
        for i, (k, exp) in enumerate(maps):
            out[k] = road_scores(
                model.predict,
                exp.prepared.tensor,
                exp.saliency(0),
                [class_idx],
                fractions=fractions,
                progress=lambda done, _total, offset=i * per_map: progress(offset + done, total),
            )
            STORE.put(k, out[k])
        return out

    return work


def fgcam_bases() -> tuple[str, ...]:
    """The CAM methods FG-CAM can start from: the choices of the registry's ``fg_cam`` ``base`` parameter."""
    return tuple(xc.get_explainer("fg_cam").param("base").choices or ())


# ----------------------------------------------------------------------------- sanity check


def sanity_key(digest: str, model_id: str, layer: str, method: str, params: tuple, cls: int, layers: int) -> tuple:
    """Store key of one method's cascading randomisation check on one image and class."""
    return ("sanity", digest, model_id, layer, method, params, int(cls), int(layers))


def sanity_partial_key(key: tuple) -> tuple:
    """Where the steps finished before Stop of the check ``key`` are kept (the check itself stays to do)."""
    return ("sanity-partial", *key[1:])


def sanity_work(
    model: xc.LoadedModel, image, layer: str, todo: list[tuple[tuple, str, tuple]], cls: int, layers: int
) -> Callable[[Callable[[int, int], None]], dict]:
    """``work(progress)``: the cascading randomisation check of each ``(key, method, params)``, stored as it ends.

    ``progress`` counts maps over all the methods (``layers + 1`` each: the trained model's,
    then one per randomisation step). On Stop the method running keeps the steps it
    finished (under :func:`sanity_partial_key`) and the methods after it do not start.
    The model is never changed: the library randomises a deep copy.
    """
    from xai_core.trust import model_randomisation

    def work(progress: Callable[[int, int], None]) -> dict:
        from pages._ui.jobs import STORE, Stopped

        count_model_run()
        per = layers + 1
        total = len(todo) * per
        out = {}
        for i, (k, method, params) in enumerate(todo):
            halted = threading.Event()

            def report(done: int, _total: int, offset: int = i * per, halted: threading.Event = halted) -> None:
                try:
                    progress(offset + done, total)
                except Stopped:  # the library ends the check after this step and returns what it has
                    halted.set()

            result = model_randomisation(
                model,
                image,
                method,
                order="cascading",
                layers=layers,
                layer=layer,
                class_idx=[cls],
                keep_maps=True,
                similarities=("spearman_abs", "spearman"),
                progress=report,
                stop=halted,
                **dict(params),
            )
            if result.stopped:
                STORE.put(sanity_partial_key(k), result)
                raise Stopped
            STORE.put(k, result)
            out[k] = result
            if halted.is_set():
                raise Stopped
        return out

    return work

"""Cached loaders and one ``compute_*`` helper per page action.

- Models: ``st.cache_resource`` (shared by every session), a few at a time.
- Raw results (per-class maps, FG-CAM relevance, metric curves): ``st.cache_data`` keyed
  by the image's SHA-256, the model and its weights, the layer, the method, its
  parameters and K_max. Each caller gets its own unpickled copy. Everything shown from a
  result afterwards (K, activation, normalisation, colour map, opacity) is model-free.

Arguments with a leading underscore are not hashed: their identity is carried by the
hashed argument next to them (``digest`` for the image, ``model_id`` for the model).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

import xai_core as xc
from pages._ui.state import count_model_run


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
def _load(key: str, weights: str, digest: str, _data: bytes | None = None, _name: str = "") -> xc.LoadedModel:
    if weights == "random":
        return xc.build_model(key, weights=None)
    if weights == "file":
        # build_model reads the file with torch.load(weights_only=True); the temporary
        # copy is removed as soon as it is read. It carries the uploaded file's (sanitised)
        # name so that error messages name the user's file, inside a private folder.
        with tempfile.TemporaryDirectory(prefix="xai-weights-") as tmp:
            path = os.path.join(tmp, _safe_file_name(_name, f"{digest[:16]}.pt"))
            with open(path, "wb") as fh:
                fh.write(_data or b"")
            return xc.build_model(key, weights=path)
    return xc.build_model(key)


def load_model(choice: ModelChoice, weights_file: bytes | None = None) -> xc.LoadedModel:
    """The model for ``choice`` (built once per process and weights). Raises WeightsError."""
    return _load(choice.key, choice.weights, choice.digest, weights_file, choice.name)


@st.cache_data(max_entries=16, show_spinner=False)
def fgcam_layers(model_id: str, cam_layer: str, _model: xc.LoadedModel) -> list[tuple[str, str]]:
    """FG-CAM target layers below ``cam_layer``, deepest first: ``(name, label)``."""
    from xai_core.relevance import fgcam_target_layers

    count_model_run()
    with _model.lock:
        targets = fgcam_target_layers(_model.module, _model.example_input(), cam_layer)
    return [(t.name, t.label) for t in targets]


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


@st.cache_data(max_entries=48, show_spinner=False)
def compute_explanation(
    digest: str,
    model_id: str,
    layer: str,
    method: str,
    params: tuple[tuple[str, object], ...],
    k_max: int,
    class_idx: tuple[int, ...] | None = None,
    *,
    _image,
    _model: xc.LoadedModel,
    _progress: Callable[[int, int], None] | None = None,
) -> xc.Explanation:
    """Raw maps of the top ``k_max`` classes (or ``class_idx``): one model run per new key."""
    count_model_run()
    return xc.explain(
        _model,
        _image,
        method=method,
        layer=layer,
        top_k=k_max,
        class_idx=list(class_idx) if class_idx else None,
        progress=_progress,
        **dict(params),
    )


@st.cache_data(max_entries=24, show_spinner=False)
def compute_fgcam(
    digest: str,
    model_id: str,
    cam_layer: str,
    target_layer: str,
    class_idx: tuple[int, ...],
    base: str,
    denoise: bool,
    *,
    _exp: xc.Explanation,
    _model: xc.LoadedModel,
    _progress: Callable[[int, int], None] | None = None,
) -> xc.Explanation:
    """FG-CAM maps of the first ``len(class_idx)`` classes of ``_exp`` at ``target_layer``."""
    count_model_run()
    return xc.explain_fine(
        _model, _exp, target_layer=target_layer, base=base, denoise=denoise, k=len(class_idx), progress=_progress
    )


@st.cache_data(max_entries=32, show_spinner=False)
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

    count_model_run()
    h, w = _exp.input_size
    return evaluate_map(
        _model.predict, _exp.prepared.tensor, _exp.saliency(0), class_idx, pixels_per_step=max(1, round(h * w / steps))
    )

"""The notebook-level API: pick a model, explain an image, fuse and render.

Example:
    >>> import xai_core as xc
    >>> model = xc.load_model("efficientnet_lite0")           # offline weights
    >>> image = xc.read_image("samples/imagenet/cat_dog.png")
    >>> exp = xc.explain(model, image, method="grad_cam", top_k=3)
    >>> exp.predictions[0]                                     # (class, name, probability)
    (243, 'bull mastiff', 0.33...)
    >>> fused = exp.fused(k=2, activation="relu")              # FM-G-CAM, maps in [0, 1]
    >>> picture = xc.render_fused(exp, fused)                  # uint8 [224, 224, 3]

An :class:`Explanation` holds the raw signed maps of the K_max explained classes at the
layer's resolution. Everything shown from it afterwards (any K up to K_max, end
activation, normalisation, colour map, opacity) is computed from those maps without the
model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from xai_core.errors import MethodError
from xai_core.fusion.fmgcam import FusedMap, fm_g_cam
from xai_core.methods.base import compute_cams
from xai_core.methods.context import Progress
from xai_core.models.preprocess import PreparedInput, prepare
from xai_core.models.registry import LoadedModel, load_model
from xai_core.render.colour import (
    apply_colormap,
    class_colours,
    colourise_fused,
    minmax,
    overlay,
    place_on_original,
    resize_map,
    signed_colormap,
)


@dataclass(frozen=True)
class Explanation:
    """Raw result of explaining one image (signed maps at the layer's resolution).

    Attributes:
        model_key, method, layer: what produced it.
        class_idx: the K_max explained classes, most likely first (or as requested).
        labels: their names.
        probs: their probabilities.
        cams: ``[K_max, h, w]`` signed maps (``sum_c w_c A_c``).
        channels: C of the explained layer (FM-G-CAM's 1/C).
        all_probs: ``[N]`` probabilities of every output.
        prepared: the model input and the view the model saw, with its crop box.
        params: method parameters used.
        seconds: compute time.
    """

    model_key: str
    method: str
    layer: str
    class_idx: tuple[int, ...]
    labels: tuple[str, ...]
    probs: tuple[float, ...]
    cams: torch.Tensor
    channels: int
    all_probs: np.ndarray
    prepared: PreparedInput
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def k_max(self) -> int:
        """How many classes were computed (any K up to this needs no model call)."""
        return len(self.class_idx)

    @property
    def predictions(self) -> list[tuple[int, str, float]]:
        """``(class index, name, probability)`` per explained class."""
        return list(zip(self.class_idx, self.labels, self.probs))

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return tuple(self.prepared.tensor.shape[-2:])

    def fused(self, k: int | None = None, *, normalise: str = "reference", activation: str = "relu") -> FusedMap:
        """FM-G-CAM over the first ``k`` classes (default all computed)."""
        k = self.k_max if k is None else int(k)
        if not 1 <= k <= self.k_max:
            raise MethodError(f"k must be between 1 and {self.k_max} (the classes computed), got {k}.")
        return fm_g_cam(self.cams[:k], channels=self.channels, normalise=normalise, activation=activation)

    def saliency(self, i: int = 0, *, relu: bool = True) -> np.ndarray:
        """Class ``i``'s map at input resolution ``[H, W]``: ReLU (optional), upsampled, min-max scaled."""
        cam = self.cams[i]
        if relu:
            cam = cam.clamp(min=0)
        return minmax(resize_map(cam, self.input_size))


def explain(
    model: LoadedModel | str,
    image: Image.Image | np.ndarray,
    *,
    method: str = "grad_cam",
    layer: str | None = None,
    top_k: int = 5,
    class_idx: Sequence[int] | None = None,
    progress: Progress | None = None,
    **params: object,
) -> Explanation:
    """Explain the model's top-K classes (or ``class_idx``) on one image.

    One forward pass and, for gradient methods, one batched backward pass for all K.

    Args:
        model: a :class:`LoadedModel` or a registry key.
        image: a PIL image (any mode) or a float array in [0, 1].
        method: a key of ``xai_core.METHODS``.
        layer: dotted layer name; default the model's ``default_layer``.
        top_k: number of classes to explain, most likely first.
        class_idx: explain these classes instead.
        progress: ``progress(done, total)`` for slow methods.
        **params: method parameters (see ``get_method(key).params``).
    """
    if isinstance(model, str):
        model = load_model(model)
    prepared = prepare(image, model.spec.preprocessing)
    layer = layer or model.spec.default_layer
    start = time.perf_counter()
    with model.lock:
        result = compute_cams(
            model.module,
            prepared.tensor,
            method=method,
            layer=layer,
            top_k=top_k,
            class_idx=class_idx,
            probabilities=model.probabilities,
            valid_outputs=model.valid_outputs,
            progress=progress,
            **params,
        )
    seconds = time.perf_counter() - start
    probs = model.probabilities(result.logits[None])[0]
    idx = tuple(int(i) for i in result.class_idx)
    return Explanation(
        model_key=model.key,
        method=method,
        layer=layer,
        class_idx=idx,
        labels=tuple(model.labels[i] for i in idx),
        probs=tuple(float(probs[i]) for i in idx),
        cams=result.cams,
        channels=result.channels,
        all_probs=probs.numpy(),
        prepared=prepared,
        params=dict(params),
        seconds=seconds,
    )


def explain_fine(
    model: LoadedModel,
    exp: Explanation,
    *,
    target_layer: str = "input",
    base: str = "grad_cam",
    denoise: bool = False,
    k: int | None = None,
    progress: Progress | None = None,
) -> Explanation:
    """FG-CAM maps of ``exp``'s first ``k`` classes (default all) at ``target_layer``, as an :class:`Explanation`.

    The explanation components are taken at ``exp.layer`` (the CAM layer) with the
    ``base`` method (``"grad_cam"`` or ``"score_cam"``), optionally denoised (FG-CAM_D),
    and carried down to ``target_layer`` (a layer name or ``"input"``). The result fuses
    (``.fused``) and renders like any other explanation: FM-G-CAM over FG-CAM maps gives
    the fine-grained fused map. ``channels`` is 1 because relevance is already a channel sum.
    """
    from xai_core.relevance import fg_cam

    k = exp.k_max if k is None else int(k)
    if not 1 <= k <= exp.k_max:
        raise MethodError(f"k must be between 1 and {exp.k_max}, got {k}.")
    start = time.perf_counter()
    with model.lock:
        relevance = fg_cam(
            model.module,
            exp.prepared.tensor,
            cam_layer=exp.layer,
            target_layer=target_layer,
            class_idx=list(exp.class_idx[:k]),
            base=base,
            denoise=denoise,
            probabilities=model.probabilities,
            progress=progress,
        ).relevance[0]
    return replace(
        exp,
        method="fg_cam_d" if denoise else "fg_cam",
        layer=target_layer,
        class_idx=exp.class_idx[:k],
        labels=exp.labels[:k],
        probs=exp.probs[:k],
        cams=relevance.detach(),
        channels=1,
        params={"cam_layer": exp.layer, "base": base, "denoise": denoise},
        seconds=time.perf_counter() - start,
    )


def render_map(
    exp: Explanation, i: int = 0, *, colormap: str = "viridis", alpha: float = 0.5, signed: bool = False
) -> np.ndarray:
    """Class ``i``'s map over the view the model saw, ``uint8 [H, W, 3]``.

    ``signed=True`` shows the signed map in a diverging colour map (red positive, blue negative).
    """
    if signed:
        heat = signed_colormap(resize_map(exp.cams[i], exp.input_size))
    else:
        heat = apply_colormap(exp.saliency(i), colormap)
    return overlay(exp.prepared.view, heat, alpha)


def render_fused(exp: Explanation, fused: FusedMap, *, alpha: float = 0.6, colormap: str = "jet") -> np.ndarray:
    """A fused map over the view the model saw, ``uint8 [H, W, 3]``.

    Each class in its own colour (:func:`~xai_core.render.class_colours`); with K = 1 the
    single map uses ``colormap`` as in the FM-G-CAM library. The opacity follows the map
    strength, so regions no class claims keep the image visible.
    """
    maps = fused.maps
    if maps.shape[0] == 1:
        heat = apply_colormap(resize_map(maps[0], exp.input_size), colormap)
        return overlay(exp.prepared.view, heat, alpha)
    big = resize_map(maps, exp.input_size)
    heat = colourise_fused(big)
    strength = big.max(axis=0)
    return overlay(exp.prepared.view, heat, alpha, weight=minmax(strength) ** 0.5)


def dominant_class(fused: FusedMap, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per display position, the class that dominates the fused map and its value.

    Args:
        fused: the fused map.
        size: ``(H, W)`` of the display grid.

    Returns:
        ``(owner [H, W] int rank index, value [H, W] in [0, 1])``, for hover read-outs.
    """
    owner = torch.nn.functional.interpolate(fused.owner[None, None].float(), size=tuple(size), mode="nearest")
    owner_np = owner[0, 0].long().numpy()
    maps = resize_map(fused.maps, size)
    if maps.ndim == 2:
        maps = maps[None]
    value = np.take_along_axis(maps, owner_np[None], axis=0)[0]
    return owner_np, value


def legend(exp: Explanation, k: int | None = None) -> list[dict]:
    """Legend rows for a fused map: colour (hex), class index, name, probability."""
    k = exp.k_max if k is None else k
    return [
        {"colour": "#{:02x}{:02x}{:02x}".format(*c), "class_idx": i, "label": name, "probability": p}
        for c, (i, name, p) in zip(class_colours(k), exp.predictions[:k])
    ]


def render_on_original(exp: Explanation, original: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Put a rendered heat map back on the full uploaded image, inside the model's crop."""
    return place_on_original(original, heat, exp.prepared.crop_box, alpha)

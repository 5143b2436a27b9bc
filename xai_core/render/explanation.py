"""Drawing an explanation: its maps over the image the model saw, fused maps, legends.

These functions read an explanation (:class:`xai_core.Explanation`) and a fused map
(:class:`xai_core.fusion.FusedMap`) through the attributes named by :class:`Explained`
and :class:`Fused`, so rendering depends on neither the API nor the fusion code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from xai_core.errors import MethodError
from xai_core.render.colour import (
    DEFAULT_COLORMAP,
    apply_colormap,
    class_colours,
    colourise_fused,
    minmax,
    overlay,
    place_on_original,
    resize_map,
    signed_colormap,
)
from xai_core.render.relevance import DEFAULT_PERCENTILE, scale_relevance


class Prepared(Protocol):
    """What rendering reads of a prepared input (:class:`xai_core.models.preprocess.PreparedInput`)."""

    view: np.ndarray | None
    crop_box: tuple[float, float, float, float]


class Explained(Protocol):
    """What rendering reads of an explanation (:class:`xai_core.Explanation`)."""

    cams: torch.Tensor
    prepared: Prepared

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""

    @property
    def k_max(self) -> int:
        """How many classes were computed."""

    @property
    def predictions(self) -> Sequence[tuple[int, str, float]]:
        """``(class index, name, probability)`` per explained class."""

    def saliency(self, i: int = 0, *, relu: bool = True) -> np.ndarray:
        """Class ``i``'s map at input resolution, in ``[0, 1]``."""


class Fused(Protocol):
    """What rendering reads of a fused map (:class:`xai_core.fusion.FusedMap`)."""

    maps: torch.Tensor
    owner: torch.Tensor


def _view(exp: Explained) -> np.ndarray:
    """The view the model saw, or a clear error for explanations of prepared tensors."""
    if exp.prepared.view is None:
        raise MethodError(
            "This explanation was computed from a prepared tensor, so there is no image to draw on; "
            "explain the PIL image or array instead, or render exp.cams yourself."
        )
    return exp.prepared.view


def render_map(
    exp: Explained, i: int = 0, *, colormap: str = "viridis", alpha: float = 0.5, signed: bool = False
) -> np.ndarray:
    """Class ``i``'s map over the view the model saw, ``uint8 [H, W, 3]``.

    ``signed=True`` shows the signed map in a diverging colour map (red positive, blue negative).
    """
    if signed:
        heat = signed_colormap(resize_map(exp.cams[i], exp.input_size))
    else:
        heat = apply_colormap(exp.saliency(i), colormap)
    return overlay(_view(exp), heat, alpha)


def render_fused(exp: Explained, fused: Fused, *, alpha: float = 0.6, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A fused map over the view the model saw, ``uint8 [H, W, 3]``.

    Each class in its own colour (:func:`~xai_core.render.class_colours`); with K = 1 the
    single map uses ``colormap`` (viridis by default, as the FM-G-CAM paper recommends). The opacity follows the map
    strength, so regions no class claims keep the image visible.
    """
    maps = fused.maps
    if maps.shape[0] == 1:
        heat = apply_colormap(resize_map(maps[0], exp.input_size), colormap)
        return overlay(_view(exp), heat, alpha)
    big = resize_map(maps, exp.input_size)
    heat = colourise_fused(big)
    strength = big.max(axis=0)
    return overlay(_view(exp), heat, alpha, weight=minmax(strength) ** 0.5)


def render_fused_relevance(exp: Explained, fused: Fused, *, percentile: float = DEFAULT_PERCENTILE) -> np.ndarray:
    """A fused map of fine-grained relevance (FG-CAM at the input), legible, ``uint8 [H, W, 3]``.

    :func:`render_fused` fades each class colour in with the map's strength over the
    photo, which suits a smooth CAM; a relevance map at input resolution is sparse (a
    few strong pixels on edges and texture), and drawn that way it all but vanishes.
    This draws it as the per-class relevance maps are drawn: on a light background (the
    photo in faint grey, so the object can be found), each pixel goes from white to its
    dominant class's colour with the fused value divided by the ``percentile`` of the
    positive values (clipped at 1).
    """
    maps = resize_map(fused.maps, exp.input_size)
    if maps.ndim == 2:
        maps = maps[None]
    view = _view(exp).astype(np.float32)
    grey = view.mean(axis=2, keepdims=True)
    base = 255.0 * 0.8 + 0.2 * grey  # faint photo on white
    value = scale_relevance(maps.max(axis=0), mode="positive", percentile=percentile)[..., None]
    colours = np.asarray(class_colours(maps.shape[0]), dtype=np.float32)
    colour = colours[maps.argmax(axis=0)]  # [H, W, 3]: the dominant class's colour
    out = base * (1.0 - value) + colour * value
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def dominant_class(fused: Fused, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
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


def legend(exp: Explained, k: int | None = None) -> list[dict]:
    """Legend rows for a fused map: colour (hex), class index, name, probability."""
    k = exp.k_max if k is None else k
    return [
        {"colour": "#{:02x}{:02x}{:02x}".format(*c), "class_idx": i, "label": name, "probability": p}
        for c, (i, name, p) in zip(class_colours(k), exp.predictions[:k])
    ]


def render_on_original(exp: Explained, original: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Put a rendered heat map back on the full uploaded image, inside the model's crop."""
    return place_on_original(original, heat, exp.prepared.crop_box, alpha)

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


#: The fine-grained fused map's defaults: smoothing (share of the longer image side), the
#: share of each class's scale below which the photo shows untinted, the colour's opacity.
FINE_SMOOTHING = 0.015
FINE_FLOOR = 0.3
FINE_OPACITY = 0.8


def _gaussian_smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[K, H, W]`` (zero padding), float32."""
    if sigma <= 0:
        return maps.astype(np.float32)
    radius = max(1, int(round(3 * sigma)))
    d = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(d**2) / (2 * sigma**2))
    k = k / k.sum()
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    t = torch.nn.functional.conv2d(t, k.view(1, 1, -1, 1), padding=(radius, 0))
    t = torch.nn.functional.conv2d(t, k.view(1, 1, 1, -1), padding=(0, radius))
    return t[:, 0].numpy()


def fine_fused_layers(
    maps: np.ndarray | torch.Tensor,
    *,
    percentile: float = DEFAULT_PERCENTILE,
    smoothing: float = FINE_SMOOTHING,
) -> tuple[np.ndarray, np.ndarray]:
    """Owner and strength of a fine-grained fused map from K signed relevance maps ``[K, H, W]``.

    Each class's positive relevance is clipped at its own ``percentile`` of the positive
    values (a few extreme edge pixels must not set the scale), smoothed (Gaussian,
    ``sigma = smoothing * max(H, W)`` pixels, so that regions follow the evidence rather
    than single edge pixels) and divided by its maximum: every class is on a scale of its
    own, so a class whose relevance is weaker overall still owns the regions where it is
    strongest for itself (a shared scale hands the whole picture to the class with the
    largest relevance). The owner of a pixel is the class with the largest scaled
    value there; the strength is that value.

    Returns:
        ``(owner [H, W] int, strength [H, W] in [0, 1])``.
    """
    a = np.nan_to_num(np.asarray(maps, dtype=np.float32)).clip(min=0)
    if a.ndim == 2:
        a = a[None]
    clipped = np.stack([scale_relevance(m, mode="positive", percentile=percentile) for m in a])
    smooth = _gaussian_smooth(clipped, smoothing * max(a.shape[-2:]))
    peak = smooth.reshape(len(smooth), -1).max(axis=1)
    scaled = smooth / np.where(peak > 0, peak, 1.0)[:, None, None]
    return scaled.argmax(axis=0), scaled.max(axis=0)


def render_fused_relevance(
    exp: Explained,
    fused: Fused,
    *,
    percentile: float = DEFAULT_PERCENTILE,
    smoothing: float = FINE_SMOOTHING,
    floor: float = FINE_FLOOR,
    opacity: float = FINE_OPACITY,
) -> np.ndarray:
    """A fused map of fine-grained relevance (FG-CAM at the input), legible, ``uint8 [H, W, 3]``.

    The classes are the fused map's first K (``fused.maps``); their maps are read from
    ``exp.cams`` (signed relevance) and drawn as :func:`fine_fused_layers` describes:
    each pixel takes its owner's colour with an opacity that grows from 0 at ``floor``
    of the owner's own scale to ``opacity`` at its full scale, over the photo in grey
    (full contrast, lifted a little so the colours read on dark parts). Below ``floor``
    the photo shows untinted.
    """
    k = int(fused.maps.shape[0]) if fused.maps.dim() == 3 else 1
    maps = resize_map(exp.cams[:k].detach().float().cpu(), exp.input_size)
    if maps.ndim == 2:
        maps = maps[None]
    owner, value = fine_fused_layers(maps, percentile=percentile, smoothing=smoothing)
    view = _view(exp).astype(np.float32)
    grey = view.mean(axis=2, keepdims=True)
    base = 255.0 * 0.25 + 0.75 * grey  # the photo in grey, lifted a little
    shade = (opacity * np.clip((value - floor) / max(1.0 - floor, 1e-6), 0.0, 1.0))[..., None]
    colours = np.asarray(class_colours(k), dtype=np.float32)
    out = base * (1.0 - shade) + colours[owner] * shade
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

"""Colour maps, fused per-class colouring, overlays and placement (numpy and Pillow only).

Render functions take numpy arrays or CPU tensors and return ``uint8`` RGB arrays
``[H, W, 3]``. They never touch a model.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xai_core.errors import UnknownNameError
from xai_core.render._luts import LUT_HEX
from xai_core.render.palette import BASE_PALETTE, class_palette

COLORMAPS: tuple[str, ...] = ("viridis", "jet", "turbo", "inferno", "magma", "plasma", "cividis", "gray")
SIGNED_COLORMAPS: tuple[str, ...] = ("RdBu_r", "coolwarm")

#: The default colour map of single-class maps: viridis, the FM-G-CAM paper's own
#: recommendation (perceptually uniform, readable in grey and with colour-vision deficiency).
DEFAULT_COLORMAP: str = "viridis"

#: Colours of ranks 1-7 in fused maps (Okabe-Ito without black; see
#: :mod:`xai_core.render.palette`). :func:`class_colours` extends them to any K.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = BASE_PALETTE


@cache
def colormap(name: str) -> np.ndarray:
    """The 256x3 ``uint8`` lookup table of a colour map."""
    if name not in LUT_HEX:
        raise UnknownNameError("colour map", name, list(COLORMAPS + SIGNED_COLORMAPS))
    lut = np.frombuffer(bytes.fromhex(LUT_HEX[name]), dtype=np.uint8).reshape(256, 3)
    lut.setflags(write=False)
    return lut


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def minmax(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """Scale to [0, 1]; a constant map gives zeros."""
    a = _np(a).astype(np.float32)
    lo, hi = float(np.min(a)), float(np.max(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def resize_map(a: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[h, w]`` or ``[K, h, w]`` (or ``[h, w, 3]`` colour) to ``size`` = (H, W)."""
    arr = _np(a).astype(np.float32)
    colour = arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[0] != 3
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1) if colour else arr))
    t = t[None, None] if t.dim() == 2 else t[None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    out = t[0].numpy()
    if colour:
        return out.transpose(1, 2, 0)
    return out[0] if np.ndim(a) == 2 else out


def apply_colormap(map01: np.ndarray | torch.Tensor, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """``[h, w]`` values in [0, 1] to ``uint8`` RGB through colour map ``name``."""
    idx = np.clip(np.nan_to_num(_np(map01).astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap(name)[idx]


def signed_colormap(signed: np.ndarray | torch.Tensor, name: str = "RdBu_r") -> np.ndarray:
    """A signed map in a diverging colour map, symmetric around 0 (white = 0)."""
    a = _np(signed).astype(np.float32)
    m = float(np.max(np.abs(a))) or 1.0
    return apply_colormap(0.5 + 0.5 * a / m, name)


def class_colours(k: int) -> list[tuple[int, int, int]]:
    """RGB colours (0-255) of ranks 1..k in fused maps, for any ``k >= 1``.

    The first classes are colour-blind safe (Okabe-Ito), later ones a distinct Glasbey
    extension; see :func:`xai_core.render.palette.class_palette`.

    Raises:
        MethodError: ``k`` is not a whole number >= 1.
    """
    return class_palette(k)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``(r, g, b)`` in 0-255 as ``"#rrggbb"`` (for legends, charts and hover text)."""
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def colourise_fused(maps: np.ndarray | torch.Tensor, colours: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """FM-G-CAM colouring (paper section 3.3.2): black-to-hue per class, summed, max-scaled.

    The sum is divided by the larger of the strongest map value and the brightest summed
    channel, one factor for the whole picture (ratios between classes are kept). So the
    strongest position shows its class's colour exactly as the legend does, and sums of
    overlapping classes (ELU/GELU backgrounds) never clip.

    Args:
        maps: ``[K, h, w]`` in [0, 1].
        colours: one RGB per class (default :func:`class_colours`).

    Returns:
        ``[h, w, 3]`` ``uint8``.
    """
    m = _np(maps).astype(np.float32)
    colours = colours or class_colours(m.shape[0])
    rgb = np.einsum("khw,kc->hwc", m, np.asarray(colours, dtype=np.float32) / 255.0)
    peak = max(float(m.max()) if m.size else 0.0, float(rgb.max()) if rgb.size else 0.0)
    if peak > 0:
        rgb = rgb / peak
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, weight: np.ndarray | None = None) -> np.ndarray:
    """Blend ``heat`` over ``image`` (both ``[H, W, 3]`` uint8; heat is resized if needed).

    Args:
        image: the picture underneath.
        heat: the coloured map.
        alpha: opacity of the heat map in [0, 1].
        weight: optional ``[h, w]`` in [0, 1] scaling the opacity per pixel (for fused maps,
            the map strength, so weak regions keep the image visible).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = image.shape[:2]
    heat_f = resize_map(heat.astype(np.float32), (h, w)) if heat.shape[:2] != (h, w) else heat.astype(np.float32)
    a = np.full((h, w, 1), alpha, dtype=np.float32)
    if weight is not None:
        a = a * np.clip(resize_map(weight, (h, w)), 0, 1)[..., None]
    out = image.astype(np.float32) * (1 - a) + heat_f * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def place_on_original(
    original: Image.Image | np.ndarray,
    heat: np.ndarray,
    crop_box: tuple[float, float, float, float],
    alpha: float = 0.5,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Put a map computed on the model's view back on the full uploaded image.

    The heat map covers only ``crop_box`` (what the model saw); outside it the image is
    shown unchanged. Nothing is stretched onto the uncropped image.
    """
    img = np.asarray(original.convert("RGB") if isinstance(original, Image.Image) else original).copy()
    left, top, right, bottom = (int(round(v)) for v in crop_box)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, img.shape[1]), min(bottom, img.shape[0])
    if right <= left or bottom <= top:
        return img
    region = img[top:bottom, left:right]
    img[top:bottom, left:right] = overlay(region, heat, alpha, weight)
    return img

"""Two maps of one class side by side: one grid, one colour scale, their difference (no model code).

Two models rarely see the same pixels: each resizes and centre-crops the upload its own
way (EfficientNet-Lite0 resizes to 256 then crops 224, ResNet50 resizes to 232) and
their inputs may differ in size (a 224 and a 512 chest X-ray model). Before two maps can
be compared pixel by pixel they are resampled onto one grid covering the part of the
upload *both* models saw (:func:`align_maps`). They are then drawn on one colour scale
(:func:`shared_range`) and subtracted (:func:`difference`), the difference drawn in a
diverging colour map centred at 0 (:func:`render_difference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xai_core.errors import MethodError
from xai_core.render.colour import DEFAULT_COLORMAP, SIGNED_COLORMAPS, _np, apply_colormap

__all__ = [
    "Comparison",
    "align_maps",
    "common_classes",
    "common_grid",
    "compare_maps",
    "crop_box_intersection",
    "difference",
    "render_difference",
    "render_on_scale",
    "shared_range",
]

Box = tuple[float, float, float, float]


def common_grid(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid ``(H, W)`` two (or more) maps are compared on: the finest of their sizes.

    Taking the largest height and width keeps every map's detail (a 224 map is upsampled to
    a 512 model's grid, never the 512 one thinned to 224).

    Raises:
        MethodError: no sizes, or a size that is not two positive whole numbers.
    """
    sizes = [tuple(int(v) for v in s) for s in sizes]
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise MethodError(f"A common grid needs sizes (H, W) of at least 1 pixel; got {sizes}.")
    return max(s[0] for s in sizes), max(s[1] for s in sizes)


def crop_box_intersection(boxes: Sequence[Box]) -> Box:
    """The part of the original image inside every crop box ``(left, top, right, bottom)``.

    Raises:
        MethodError: the boxes do not overlap (the models saw different parts of the image).
    """
    if not boxes:
        raise MethodError("No crop boxes to intersect.")
    left = max(float(b[0]) for b in boxes)
    top = max(float(b[1]) for b in boxes)
    right = min(float(b[2]) for b in boxes)
    bottom = min(float(b[3]) for b in boxes)
    if right <= left or bottom <= top:
        raise MethodError(
            f"The models saw parts of the image that do not overlap ({list(boxes)}): their maps cannot be compared."
        )
    return left, top, right, bottom


def _resample(a: np.ndarray, box: Box, target: Box, size: tuple[int, int]) -> np.ndarray:
    """Bilinear samples of ``a`` (covering ``box`` of the original image) on a grid over ``target``.

    The samples sit at the pixel centres of a ``size`` grid covering ``target`` (a part of ``box``).
    """
    h, w = size
    left, top, right, bottom = box
    # Pixel centres of the output grid, in original-image coordinates...
    xs = target[0] + (np.arange(w) + 0.5) * (target[2] - target[0]) / w
    ys = target[1] + (np.arange(h) + 0.5) * (target[3] - target[1]) / h
    # ...then in grid_sample's normalised coordinates of ``a`` (align_corners=False: -1 and 1
    # are the outer edges of the first and last pixels, so the same box and size is the identity).
    gx = 2.0 * (xs - left) / (right - left) - 1.0
    gy = 2.0 * (ys - top) / (bottom - top) - 1.0
    grid = np.stack(np.meshgrid(gx, gy, indexing="xy"), axis=-1)[None].astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    out = F.grid_sample(t, torch.from_numpy(grid), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, 0].numpy()


def align_maps(
    maps: Sequence[np.ndarray | torch.Tensor],
    boxes: Sequence[Box] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[list[np.ndarray], Box | None]:
    """Resample maps of one image onto one grid over the part every model saw.

    Args:
        maps: ``[h, w]`` maps, any resolutions (a CAM at its layer's resolution, a map at the input's).
        boxes: per map, the ``(left, top, right, bottom)`` crop box in the original image that the
            map covers (``Explanation.prepared.crop_box``). ``None``: every map covers the same
            region (maps of one model on two images), only the grid is made common.
        size: the grid ``(H, W)``; default :func:`common_grid` of the maps' own sizes.

    Returns:
        ``(aligned maps [H, W] float32, the common box or None)``.

    Raises:
        MethodError: a map that is not 2-D, a box count that does not match, boxes that do not overlap.
    """
    arrays = [_np(m).astype(np.float32) for m in maps]
    if not arrays or any(a.ndim != 2 for a in arrays):
        raise MethodError(f"align_maps needs 2-D maps; got shapes {[a.shape for a in arrays]}.")
    size = common_grid([a.shape for a in arrays]) if size is None else common_grid([size])
    if boxes is None:
        whole: Box = (0.0, 0.0, 1.0, 1.0)
        return [_resample(a, whole, whole, size) for a in arrays], None
    if len(boxes) != len(arrays):
        raise MethodError(f"Got {len(boxes)} crop boxes for {len(arrays)} maps; give one box per map.")
    common = crop_box_intersection(boxes)
    return [_resample(a, tuple(map(float, b)), common, size) for a, b in zip(arrays, boxes)], common


def shared_range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(vmin, vmax)`` over every map: one colour scale for all of them.

    A constant set (``vmin == vmax``) is widened to ``(v, v + 1)`` so that it still draws.
    Raises MethodError when the maps hold no finite value.
    """
    finite = [np.asarray(m, np.float64)[np.isfinite(m)] for m in maps]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.empty(0)
    if values.size == 0:
        raise MethodError("The maps hold no finite value to put on a colour scale.")
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def difference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """``a - b`` and its symmetric colour limit ``max |a - b|`` (1.0 when the maps are identical).

    Raises:
        MethodError: the maps are not on one grid (align them first with :func:`align_maps`).
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise MethodError(f"Maps of shapes {a.shape} and {b.shape} are not on one grid: align them first.")
    diff = a - b
    limit = float(np.nanmax(np.abs(diff))) if diff.size else 0.0
    return diff, (limit if limit > 0 else 1.0)


def render_on_scale(m: np.ndarray, vmin: float, vmax: float, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A map through ``colormap`` with fixed ``vmin``/``vmax`` (not its own min-max), ``uint8 [H, W, 3]``."""
    span = (vmax - vmin) or 1.0
    return apply_colormap(np.clip((np.asarray(m, np.float32) - vmin) / span, 0.0, 1.0), colormap)


def render_difference(diff: np.ndarray, limit: float, colormap: str = SIGNED_COLORMAPS[0]) -> np.ndarray:
    """A difference map in a diverging colour map, 0 at the centre (white), ``±limit`` at the ends."""
    limit = limit or 1.0
    return apply_colormap(np.clip(0.5 + 0.5 * np.asarray(diff, np.float32) / limit, 0.0, 1.0), colormap)


@dataclass(frozen=True)
class Comparison:
    """Two maps of one class on one grid and one colour scale, and their difference.

    Attributes:
        a, b: the maps ``[H, W]`` on the common grid (ReLU'd and/or min-max scaled as asked).
        vmin, vmax: the one colour scale of ``a`` and ``b``.
        diff: ``a - b``; ``limit``: its symmetric colour limit (the scale runs ``-limit..+limit``).
        box: the part of the original image the grid covers (``None``: one model, two images).
        values: ``"raw"`` (the maps' own values) or ``"normalised"`` (each min-max scaled to [0, 1]).
    """

    a: np.ndarray
    b: np.ndarray
    vmin: float
    vmax: float
    diff: np.ndarray
    limit: float
    box: Box | None
    values: str

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the common grid."""
        return tuple(self.a.shape)  # type: ignore[return-value]


VALUES = ("raw", "normalised")


def compare_maps(
    map_a: np.ndarray | torch.Tensor,
    map_b: np.ndarray | torch.Tensor,
    *,
    box_a: Box | None = None,
    box_b: Box | None = None,
    size: tuple[int, int] | None = None,
    values: str = "raw",
    relu: bool = True,
) -> Comparison:
    """Two maps of one class made comparable: one grid, one colour scale, their difference.

    Args:
        map_a: the first map (``Explanation.cams[i]``: a CAM at its layer's resolution).
        map_b: the second map, any resolution.
        box_a: ``map_a``'s crop box in the original image (give both boxes or neither).
        box_b: ``map_b``'s crop box.
        size: the common grid ``(H, W)``; give :func:`common_grid` of the models' input sizes.
        values: ``"raw"``: the maps' own values on a shared min/max (comparable for one model
            on two images; across models the units differ); ``"normalised"``: each map min-max
            scaled to [0, 1] first (compares *where*, not *how much*).
        relu: drop negative evidence first (as single-class maps are drawn).

    Raises:
        MethodError: unknown ``values``, one box without the other, maps that cannot be aligned.
    """
    if values not in VALUES:
        raise MethodError(f"values must be one of {VALUES}; got {values!r}.")
    if (box_a is None) != (box_b is None):
        raise MethodError("Give both crop boxes or neither.")
    boxes = None if box_a is None else [box_a, box_b]
    (a, b), box = align_maps([map_a, map_b], boxes, size)
    if relu:
        a, b = np.maximum(a, 0.0), np.maximum(b, 0.0)
    if values == "normalised":
        a, b = (_unit(m) for m in (a, b))
    vmin, vmax = shared_range([a, b])
    diff, limit = difference(a, b)
    return Comparison(a, b, vmin, vmax, diff, limit, box, values)


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def common_classes(labels_a: Sequence[str], labels_b: Sequence[str]) -> list[tuple[int, int, str]]:
    """The classes two models both predict, matched by name: ``(index in a, index in b, name)``.

    Unnamed outputs (empty labels) are left out; the order is model ``a``'s.
    """
    where_b: dict[str, int] = {}
    for j, name in enumerate(labels_b):
        if name:
            where_b.setdefault(str(name).strip().lower(), j)
    out = []
    for i, name in enumerate(labels_a):
        j = where_b.get(str(name).strip().lower()) if name else None
        if j is not None:
            out.append((i, j, str(name)))
    return out

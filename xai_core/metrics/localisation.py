"""Localisation metric: the energy-based pointing game ("Proportion", FG-CAM Table 3).

After Wang et al. (Score-CAM): the share of the map's positive mass that falls inside a
ground-truth bounding box.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from xai_core.errors import XaiCoreError

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels of the map: columns ``x0 .. x1 - 1``, rows ``y0 .. y1 - 1``."""


def check_box(box: object, height: int, width: int) -> Box:
    """Validate a box ``(x0, y0, x1, y1)`` against a ``height x width`` map.

    Coordinates are whole pixels, half-open like Python slices: the box covers
    ``map[y0:y1, x0:x1]``, and ``0 <= x0 < x1 <= W``, ``0 <= y0 < y1 <= H``.

    Raises:
        XaiCoreError: the box is not four integers or is empty or outside the map.
    """
    if not isinstance(box, Sequence | np.ndarray | torch.Tensor) or isinstance(box, str | bytes) or len(box) != 4:
        raise XaiCoreError(f"box must be four integers (x0, y0, x1, y1); got {box!r}.")
    values = [v.item() if isinstance(v, np.generic | torch.Tensor) else v for v in box]
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        raise XaiCoreError(f"box must hold whole pixel coordinates (x0, y0, x1, y1); got {box!r}. Round them first.")
    x0, y0, x1, y1 = (int(v) for v in values)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise XaiCoreError(
            f"box (x0, y0, x1, y1) = {(x0, y0, x1, y1)} must satisfy 0 <= x0 < x1 <= W = {width} and "
            f"0 <= y0 < y1 <= H = {height} (half-open, like map[y0:y1, x0:x1])."
        )
    return x0, y0, x1, y1


def proportion_in_box(saliency: torch.Tensor | np.ndarray, box: Sequence[int]) -> float:
    """Energy-based pointing game: share of the map's positive mass inside ``box``.

    ``Proportion = sum_{(i, j) in box} max(S_ij, 0) / sum_{(i, j)} max(S_ij, 0)``. Negative
    values count as zero (so a signed map is scored on its positive evidence); a map
    with no positive value scores 0.

    Args:
        saliency: map ``[H, W]`` (tensor or numpy array; leading size-1 dims allowed).
        box: ``(x0, y0, x1, y1)``, half-open pixel coordinates (see :func:`check_box`).

    Returns:
        The proportion, in ``[0, 1]``.

    Raises:
        XaiCoreError: the map is not 2-D or not finite, or the box is invalid.
    """
    if isinstance(saliency, np.ndarray):
        s = torch.from_numpy(np.array(saliency, dtype=np.float64, copy=True))
    elif isinstance(saliency, torch.Tensor):
        s = saliency.detach().to(dtype=torch.float64)
    else:
        raise XaiCoreError(f"saliency must be a torch.Tensor or numpy array [H, W]; got {type(saliency).__name__}.")
    while s.ndim > 2 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2 or s.numel() == 0:
        raise XaiCoreError(f"saliency must have shape [H, W]; got {list(saliency.shape)}.")
    if not bool(torch.isfinite(s).all()):
        raise XaiCoreError("saliency contains NaN or infinite values; fix the map before evaluating it.")
    x0, y0, x1, y1 = check_box(box, s.shape[0], s.shape[1])
    positive = s.clamp(min=0.0)
    total = float(positive.sum())
    if total <= 0.0:
        return 0.0
    return min(1.0, float(positive[y0:y1, x0:x1].sum()) / total)

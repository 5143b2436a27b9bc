"""Legible display of signed relevance maps (FG-CAM, LRP), as the LRP community shows them.

A relevance map at input resolution has a few extreme pixels (edges the first
convolution responds to most) that hold a large share of ``max |R|``; scaling by the
maximum then shows almost everything as 0. The usual remedy (Montavon et al. 2018,
zennit's ``imgify(..., symmetric=True)``, iNNvestigate's heatmaps) is to clip at a high
percentile of ``|R|`` and use a symmetric colour scale around 0:

- ``"signed"``: ``R / L`` clipped to [-1, 1], ``L`` = the ``percentile``-th percentile of
  ``|R|``; blue = negative, white = 0, red = positive.
- ``"positive"``: only ``R > 0``, ``R / L+`` clipped to [0, 1], ``L+`` = the same
  percentile of the positive values; white to red.

The limit is computed over everything passed at once, so a stack of per-class maps
``[K, h, w]`` keeps the classes' relative strengths (use it before a fused map).
Pure numpy: these functions take arrays (or CPU tensors via ``np.asarray``) and never
touch a model.
"""

from __future__ import annotations

import numpy as np

from xai_core.errors import MethodError
from xai_core.render.colour import colormap

SCALE_MODES: tuple[str, ...] = ("signed", "positive")
DEFAULT_PERCENTILE = 99.5


def _check(mode: str, percentile: float) -> None:
    if mode not in SCALE_MODES:
        raise MethodError(f"Unknown relevance scale {mode!r}. Valid choices: {', '.join(SCALE_MODES)}.")
    if not 0.0 < float(percentile) <= 100.0:
        raise MethodError(f"percentile must be in (0, 100], got {percentile}.")


def relevance_limit(relevance: np.ndarray, *, mode: str = "signed", percentile: float = DEFAULT_PERCENTILE) -> float:
    """The value that maps to full colour: the ``percentile`` of ``|R|`` (or of ``R > 0``).

    Args:
        relevance: any shape; non-finite values are ignored.
        mode: ``"signed"`` or ``"positive"``.
        percentile: in (0, 100]; 100 is the plain maximum.

    Returns:
        A positive float (1.0 when there is nothing to show, so that 0 stays 0).
    """
    _check(mode, percentile)
    a = np.asarray(relevance, dtype=np.float64)
    a = a[np.isfinite(a)]
    values = np.abs(a) if mode == "signed" else a[a > 0]
    values = values[values > 0]
    if values.size == 0:
        return 1.0
    return float(np.percentile(values, percentile))


def scale_relevance(
    relevance: np.ndarray,
    *,
    mode: str = "signed",
    percentile: float = DEFAULT_PERCENTILE,
    limit: float | None = None,
) -> np.ndarray:
    """Relevance scaled for display: ``[-1, 1]`` (signed) or ``[0, 1]`` (positive), float32.

    Args:
        relevance: any shape (for example ``[h, w]`` or a class stack ``[K, h, w]``).
        mode: ``"signed"`` or ``"positive"``.
        percentile: where to clip, see :func:`relevance_limit`.
        limit: a given limit instead (for example shared by several images).

    Returns:
        The scaled array, same shape; NaN / inf become 0.
    """
    _check(mode, percentile)
    a = np.nan_to_num(np.asarray(relevance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lim = relevance_limit(a, mode=mode, percentile=percentile) if limit is None else float(limit)
    if not lim > 0:
        raise MethodError(f"limit must be positive, got {limit}.")
    low = -1.0 if mode == "signed" else 0.0
    return np.clip(a / lim, low, 1.0).astype(np.float32)


def render_relevance(
    relevance: np.ndarray,
    *,
    mode: str = "signed",
    percentile: float = DEFAULT_PERCENTILE,
    limit: float | None = None,
    colormap_name: str = "RdBu_r",
) -> np.ndarray:
    """A ``[h, w]`` relevance map as ``uint8`` RGB ``[h, w, 3]``.

    The diverging colour map is used symmetrically: 0 is its middle (white for
    ``RdBu_r``), ``-L`` and ``+L`` its ends; the positive mode uses its upper half.

    Args:
        relevance: ``[h, w]``.
        mode: ``"signed"`` or ``"positive"``.
        percentile: where to clip, see :func:`relevance_limit`.
        limit: a given limit instead.
        colormap_name: a diverging colour map of :mod:`xai_core.render.colour`.

    Returns:
        ``uint8`` ``[h, w, 3]``.
    """
    a = np.asarray(relevance)
    if a.ndim != 2:
        raise MethodError(f"render_relevance takes one [h, w] map, got shape {a.shape}.")
    scaled = scale_relevance(a, mode=mode, percentile=percentile, limit=limit)
    idx = np.clip(np.rint((0.5 + 0.5 * scaled) * 255.0), 0, 255).astype(np.uint8)
    return colormap(colormap_name)[idx]


def negative_share(relevance: np.ndarray) -> float:
    """Share of the total ``|R|`` that is negative, in ``[0, 1]`` (0 for an all-zero map)."""
    a = np.nan_to_num(np.asarray(relevance, dtype=np.float64))
    total = float(np.abs(a).sum())
    return float(-a[a < 0].sum() / total) + 0.0 if total > 0 else 0.0


def scale_label(mode: str = "signed", percentile: float = DEFAULT_PERCENTILE, *, negative: float | None = None) -> str:
    """A caption naming the display choice, for pages and figures.

    ``negative``: the maps' :func:`negative_share`; the signed caption then says how much
    blue there is to see, rather than promising blue that the maps do not have.
    """
    _check(mode, percentile)
    if mode == "signed":
        text = f"signed relevance, symmetric scale clipped at the {percentile:g}th percentile of |R| (red +, blue -)"
        if negative is not None:
            if negative == 0:
                text += "; these maps have no negative relevance, so nothing is blue"
            elif negative < 0.005:
                text += f"; negative relevance (blue) is only {100 * negative:.2f} % of the total |R| here"
            else:
                text += f"; negative relevance (blue) is {100 * negative:.0f} % of the total |R| here"
        return text
    return f"positive relevance, clipped at the {percentile:g}th percentile of R > 0"

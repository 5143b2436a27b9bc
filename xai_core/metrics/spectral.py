"""Spectral artefact score of a saliency map: how much of it is a stride checkerboard.

A relevance rule run backward through a strided convolution (a transposed strided
convolution) covers the input pixels unevenly, and the map inherits a periodic pattern
at the stride's frequencies. :func:`checkerboard_score` measures it as a share of the
map's spectral energy. Pure numpy; model-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _stride_mask(n: int, strides: Sequence[int]) -> np.ndarray:
    """Boolean ``[n]``: frequency indices that are harmonics of a stride (multiples of ``n / s``)."""
    mask = np.zeros(n, dtype=bool)
    for s in strides:
        for k in range(int(s)):
            mask[int(round(k * n / s)) % n] = True
    return mask


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Circular dilation of a 2-D boolean mask by ``radius`` bins (Chebyshev distance)."""
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(mask, (dy, dx), axis=(0, 1))
    return out


def checkerboard_score(maps: np.ndarray, strides: Sequence[int] = (2, 4), radius: int = 1) -> np.ndarray:
    """Share of each map's spectral energy at the strides' frequencies.

    The power spectrum ``|FFT2(map)|^2`` of each ``[H, W]`` map; the stride frequencies
    are every ``(k H / s, l W / s)``, ``0 <= k, l < s``, for each stride ``s`` (the
    period-``s`` patterns and their harmonics), except ``(0, 0)``. Returned: the energy
    within ``radius`` bins of those frequencies divided by the energy outside the DC
    neighbourhood (bins within ``radius`` of ``(0, 0)``, excluded from both, so that the
    map's mean and its broad shape do not count). 0 for a constant map.

    A pure stride-2 checkerboard scores 1; a smooth blob and a natural photo score about
    0 (measured: ImageNet photos 0.0004); an input-layer LRP map of EfficientNet-Lite0
    with z rules 0.1 (docs/fgcam.md).

    Args:
        maps: ``[H, W]`` or ``[N, H, W]``.
        strides: the strides whose frequencies count (EfficientNet-Lite0's stem and first
            block: 2 and 4).
        radius: bins around each frequency (and around DC) that count.

    Returns:
        ``[N]`` scores in ``[0, 1]`` (a 0-d array for one map).
    """
    m = np.asarray(maps, dtype=np.float64)
    one = m.ndim == 2
    if one:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"checkerboard_score takes [H, W] or [N, H, W] maps, got shape {m.shape}.")
    h, w = m.shape[-2:]
    power = np.abs(np.fft.fft2(m - m.mean(axis=(1, 2), keepdims=True))) ** 2
    centres = _stride_mask(h, strides)[:, None] & _stride_mask(w, strides)[None, :]
    dc = np.zeros((h, w), dtype=bool)
    dc[0, 0] = True
    centres &= ~dc
    dc_zone = _dilate(dc, radius)
    stride_zone = _dilate(centres, radius) & ~dc_zone
    total = power[:, ~dc_zone].sum(axis=1)
    part = power[:, stride_zone].sum(axis=1)
    score = np.where(total > 0, part / np.where(total > 0, total, 1.0), 0.0)
    return score[0] if one else score

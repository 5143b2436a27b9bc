"""How alike two saliency maps are: the measures of Adebayo et al. (2018).

Every function takes two batches of maps ``[N, H, W]`` (numpy) and returns ``[N]``
similarities, one per pair. The measures:

* ``"spearman"``: Spearman rank correlation of the signed maps (ties get their average
  rank, as :func:`scipy.stats.spearmanr` and Quantus's ``correlation_spearman``).
* ``"spearman_abs"``: the same on the absolute values (the paper's "with absolute value").
* ``"ssim"``: structural similarity (:func:`skimage.metrics.structural_similarity`) of
  the absolute maps, each divided by its largest value, so both lie in ``[0, 1]``
  (``data_range=1``).
* ``"hog"``: Pearson correlation of the histograms of oriented gradients
  (:func:`skimage.feature.hog`) of those scaled absolute maps.

scikit-image does SSIM and HOG as the paper's code does (it is a Quantus dependency, so
installed with it). A pair where one map is constant has no rank or Pearson correlation:
the result is ``nan``, not a made-up number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from xai_core.errors import MethodError, UnknownNameError


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise MethodError(
            f"Maps to compare must be two batches of the same shape [N, ...]; got {a.shape} and {b.shape}."
        )
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def spearman(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> np.ndarray:
    """Spearman rank correlation per pair of maps ``[N, ...]`` (of ``|a|``, ``|b|`` if ``absolute``)."""
    a, b = _pairs(a, b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return _pearson_rows(rankdata(a, axis=1), rankdata(b, axis=1))


def _scaled_abs(m: np.ndarray) -> np.ndarray:
    m = np.abs(np.asarray(m, dtype=np.float64))
    top = m.max()
    return m / top if top > 0 else m


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per pair of 2-D maps ``[N, H, W]``, on absolute values scaled to ``[0, 1]``."""
    from skimage.metrics import structural_similarity

    _pairs(a, b)
    out = []
    for x, y in zip(a, b):
        x, y = _scaled_abs(x), _scaled_abs(y)
        win = min(7, *x.shape) // 2 * 2 + 1 if min(x.shape) < 7 else 7  # skimage needs an odd window <= the side
        out.append(structural_similarity(x, y, data_range=1.0, win_size=win))
    return np.asarray(out)


def _hog(m: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    cell = max(2, min(m.shape) // 14)  # 16 px cells on a 224 px map, 4 px on 64 px
    return hog(_scaled_abs(m), orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))


def hog_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the HOG features per pair of 2-D maps ``[N, H, W]``."""
    _pairs(a, b)
    ha = np.stack([_hog(x) for x in a])
    hb = np.stack([_hog(y) for y in b])
    return _pearson_rows(ha, hb)


SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "spearman": lambda a, b: spearman(a, b),
    "spearman_abs": lambda a, b: spearman(a, b, absolute=True),
    "ssim": ssim,
    "hog": hog_correlation,
}
"""Name -> measure, each ``(maps_a [N, H, W], maps_b [N, H, W]) -> [N]``."""


def similarity(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The measure called ``name`` (a key of :data:`SIMILARITIES`) per pair of maps."""
    if name not in SIMILARITIES:
        raise UnknownNameError("similarity", name, list(SIMILARITIES))
    return SIMILARITIES[name](a, b)

"""Legible relevance display: percentile clipping, symmetric scale, positive part."""

from __future__ import annotations

import numpy as np
import pytest

from xai_core.errors import MethodError
from xai_core.render.colour import colormap
from xai_core.render.relevance import relevance_limit, render_relevance, scale_label, scale_relevance


def _map_with_outlier() -> np.ndarray:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(40, 50))
    r[3, 4] = 1e4  # one extreme pixel
    return r


def test_percentile_clipping_keeps_the_rest_visible() -> None:
    r = _map_with_outlier()
    by_max = scale_relevance(r, percentile=100)
    clipped = scale_relevance(r)  # 99.5th percentile of |R|
    assert np.median(np.abs(by_max)) < 1e-3  # washed out
    assert np.median(np.abs(clipped)) > 0.15
    assert clipped[3, 4] == 1.0 and clipped.min() >= -1.0
    lim = relevance_limit(r)
    assert lim == pytest.approx(np.percentile(np.abs(r), 99.5))
    assert np.mean(np.abs(r) > lim) == pytest.approx(0.005, abs=0.001)


def test_symmetric_scale_and_colours() -> None:
    r = _map_with_outlier()
    pos, neg = render_relevance(r), render_relevance(-r)
    lut = colormap("RdBu_r")
    idx_pos = np.array([np.argmin(np.abs(lut.astype(int) - p).sum(1)) for p in pos.reshape(-1, 3)[:200]])
    idx_neg = np.array([np.argmin(np.abs(lut.astype(int) - p).sum(1)) for p in neg.reshape(-1, 3)[:200]])
    assert np.all(np.abs((idx_pos + idx_neg) - 255) <= 1)  # mirrored around the middle
    zero = render_relevance(np.zeros((4, 4)))
    assert pos.dtype == np.uint8 and pos.shape == (40, 50, 3)
    assert np.all(zero == lut[128])  # 0 is the middle (white) of the scale


def test_positive_part_and_shared_limit() -> None:
    r = _map_with_outlier()
    p = scale_relevance(r, mode="positive")
    assert p.min() == 0.0 and p.max() == 1.0
    assert np.all(p[r <= 0] == 0)
    assert relevance_limit(r, mode="positive") == pytest.approx(np.percentile(r[r > 0], 99.5))
    stack = np.stack([r, 0.5 * r])  # one limit for both classes keeps their relative strength
    s = scale_relevance(stack)
    np.testing.assert_allclose(s[1][np.abs(s[0]) < 1], 0.5 * s[0][np.abs(s[0]) < 1], atol=1e-6)
    assert "99.5th percentile" in scale_label() and scale_label("positive", 99).startswith("positive")


def test_errors() -> None:
    with pytest.raises(MethodError, match="scale"):
        scale_relevance(np.ones(3), mode="abs")
    with pytest.raises(MethodError, match="percentile"):
        relevance_limit(np.ones(3), percentile=0)
    with pytest.raises(MethodError, match=r"\[h, w\]"):
        render_relevance(np.ones((2, 3, 4)))
    assert relevance_limit(np.full((3, 3), np.nan)) == 1.0

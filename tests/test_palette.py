"""Class palette, brightness modes and colour scales (issue 14 item 4, issue 10 item 4).

Colour-vision deficiency is simulated with ``colorspacious`` (Machado, Oliveira & Fernandes
2009 matrices, severity 100 = dichromacy) and distances are CAM02-UCS Delta-E' (Luo, Cui &
Li 2006), where about 1 unit is a just-noticeable difference between patches side by side.

Thresholds (chosen to leave margin over patches that touch, since map regions do):

- first 5 class colours: Delta-E' >= 12 between every pair, in normal vision and under
  each simulated deuteranopia, protanopia and tritanopia (achieved: 31.5, 14.8, 16.5, 13.7);
- first 8: >= 10 under each (achieved: 20.8, 14.8, 14.0, 11.0);
- first 20 in normal vision: >= 10 (achieved: 14.8): no near duplicates;
- every colour up to K = 20: CAM02-UCS lightness J' >= 45 (visible when drawn from black),
  J' <= 92 and chroma >= 20 (not white, not grey).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from colorspacious import cspace_convert, deltaE

import xai_core
from xai_core.errors import MethodError, UnknownNameError
from xai_core.fusion import BRIGHTNESS, brightness_caption, fm_g_cam, scale_by_probability
from xai_core.render import (
    BASE_PALETTE,
    CVD_TYPES,
    SCALE_KINDS,
    class_colours,
    colour_scale,
    colourise_fused,
    cvd_simulate,
    hex_colour,
)

VISIONS = ("normal",) + CVD_TYPES


def _seen(colours: list[tuple[int, int, int]], vision: str) -> np.ndarray:
    rgb = np.asarray(colours, dtype=np.float64)
    return rgb if vision == "normal" else cvd_simulate(rgb, vision)


def _min_pair_distance(colours: list[tuple[int, int, int]], vision: str) -> float:
    seen = _seen(colours, vision) / 255.0
    return min(
        float(deltaE(a, b, input_space="sRGB1", uniform_space="CAM02-UCS")) for a, b in itertools.combinations(seen, 2)
    )


@pytest.mark.parametrize("vision", VISIONS)
def test_first_five_distinct_under_each_colour_vision(vision):
    assert _min_pair_distance(class_colours(5), vision) >= 12.0


@pytest.mark.parametrize("vision", VISIONS)
def test_first_eight_distinct_under_each_colour_vision(vision):
    assert _min_pair_distance(class_colours(8), vision) >= 10.0


def test_simulation_is_real_and_can_fail():
    """The check detects what it should: the old primaries palette fails it under deficiencies."""
    old = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    assert _min_pair_distance(old, "normal") > 20
    for vision in CVD_TYPES:
        assert _min_pair_distance(old, vision) < 12.0, vision
    # red and green move towards each other under deuteranopia (Machado 2009)
    assert _min_pair_distance(old[:2], "deuteranomaly") < _min_pair_distance(old[:2], "normal") / 2


def test_no_white_grey_dark_or_near_duplicate_colours_up_to_20():
    for k in range(1, 21):
        colours = class_colours(k)
        assert len(colours) == k and colours == class_colours(20)[:k]  # a prefix: ranks keep their colour
        jab = cspace_convert(np.asarray(colours, np.float64) / 255.0, "sRGB1", "CAM02-UCS")
        assert jab[:, 0].min() >= 45.0, "a colour too dark to see when drawn from black"
        assert jab[:, 0].max() <= 92.0, "a near-white colour"
        assert np.hypot(jab[:, 1], jab[:, 2]).min() >= 20.0, "a grey colour"
        assert all(max(c) < 255 or min(c) < 200 for c in colours), "white"
    assert _min_pair_distance(class_colours(20), "normal") >= 10.0


def test_base_is_okabe_ito_without_black():
    okabe_ito = {"#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}
    assert {hex_colour(c) for c in BASE_PALETTE} == okabe_ito
    assert class_colours(7) == list(BASE_PALETTE)


def test_any_k_and_bad_k():
    assert len(class_colours(1000)) == 1000
    assert len(set(class_colours(100))) == 100
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(MethodError):
            class_colours(bad)  # type: ignore[arg-type]


def test_render_fused_with_k_12(lite0, cat_dog):
    exp = xai_core.explain(lite0, cat_dog, top_k=12)
    picture = xai_core.render_fused(exp, exp.fused())
    assert picture.shape == (*exp.input_size, 3) and picture.dtype == np.uint8
    rows = xai_core.legend(exp, 12)
    assert len({r["colour"] for r in rows}) == 12


# --------------------------------------------------------------------------- brightness


def test_probability_brightness_scales_each_class():
    cams = torch.zeros(2, 4, 4)
    cams[0, :2] = 1.0  # class 0 owns the top half
    cams[1, 2:] = 1.0  # class 1 the bottom half, with the same evidence
    plain = fm_g_cam(cams, normalise="off")
    assert plain.brightness == "normalised"
    assert plain.maps[0, 0, 0] == plain.maps[1, 3, 0] == 1.0  # 52 % and 0.5 % equally bright
    fused = fm_g_cam(cams, normalise="off", brightness="probability", probs=[0.52, 0.005])
    assert fused.brightness == "probability"
    assert float(fused.maps[0, 0, 0]) == pytest.approx(1.0)
    assert float(fused.maps[1, 3, 0]) == pytest.approx(0.005 / 0.52)
    torch.testing.assert_close(fused.owner, plain.owner)
    rgb = colourise_fused(fused.maps, [(255, 0, 0), (0, 255, 0)])
    assert rgb[0, 0, 0] == 255 and rgb[3, 0, 1] <= 3  # the unlikely class is almost black


def test_probability_brightness_errors():
    cams = torch.rand(3, 4, 4)
    with pytest.raises(MethodError, match="needs probs"):
        fm_g_cam(cams, brightness="probability")
    with pytest.raises(MethodError, match="normalised, probability"):
        fm_g_cam(cams, brightness="bright")
    with pytest.raises(MethodError, match="one probability per class"):
        scale_by_probability(cams, [0.5, 0.5])
    with pytest.raises(MethodError, match="not all 0"):
        scale_by_probability(cams, [0.0, 0.0, 0.0])


def test_captions_say_what_brightness_means():
    normal = brightness_caption("normalised", normalise="reference", probs=[0.52, 0.005])
    assert "does not show how likely" in normal and "52.0%" in normal and "0.5%" in normal
    assert "unit length" in normal
    assert "unit overall" in brightness_caption("normalised", normalise="per_class")
    prob = brightness_caption("probability", probs=[0.52, 0.005], labels=["bull mastiff", "tabby"])
    assert "multiplied by the class's probability" in prob and "bull mastiff, 52.0%" in prob
    assert "0.0096" in prob  # 0.005 / 0.52
    assert {brightness_caption(b) for b in BRIGHTNESS} == {brightness_caption(b) for b in BRIGHTNESS}
    assert len({brightness_caption(b) for b in BRIGHTNESS}) == 2
    with pytest.raises(MethodError):
        brightness_caption("loud")
    with pytest.raises(MethodError):
        brightness_caption("normalised", normalise="L1")


# --------------------------------------------------------------------------- colour scales


def test_single_scale_is_the_colour_map_top_high():
    scale = colour_scale("single")
    assert scale.image.shape == (256, 24, 3) and scale.image.dtype == np.uint8
    assert tuple(scale.image[0, 0]) == (253, 231, 37) and tuple(scale.image[-1, 0]) == (68, 1, 84)  # viridis
    assert scale.stops[0] == (0.0, "#440154") and scale.stops[-1] == (1.0, "#fde725")
    assert [t for t, _ in scale.ticks] == [0.0, 0.5, 1.0]
    assert colour_scale("single", colormap_name="gray").stops[-1] == (1.0, "#ffffff")


def test_signed_scale_is_symmetric_around_white():
    scale = colour_scale("signed", max_abs=0.25, length=101)
    middle = scale.image[50, 0].astype(int)
    assert middle.min() > 235  # white at 0
    assert scale.image[0, 0, 0] > scale.image[0, 0, 2] and scale.image[-1, 0, 2] > scale.image[-1, 0, 0]
    assert scale.ticks[0][1].startswith("-0.25") and scale.ticks[-1][1].startswith("+0.25")
    assert "strongest" in colour_scale("signed").ticks[0][1]


def test_fused_scale_black_to_each_class_colour():
    labels = ["bull mastiff", "boxer", "tiger cat"]
    scale = colour_scale("fused", labels=labels, width=10)
    assert scale.image.shape == (256, 30, 3)
    for i, c in enumerate(class_colours(3)):
        assert tuple(scale.image[0, 10 * i + 5]) == c and tuple(scale.image[-1, 10 * i + 5]) == (0, 0, 0)
    assert scale.classes == tuple((lbl, hex_colour(c)) for lbl, c in zip(labels, class_colours(3)))
    with pytest.raises(UnknownNameError):
        colour_scale("rainbow")
    with pytest.raises(MethodError):
        colour_scale("fused")
    assert set(SCALE_KINDS) == {"single", "signed", "fused"}

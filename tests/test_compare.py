"""Side-by-side maths: one grid, one colour scale, the difference (xai_core.render.compare)."""

from __future__ import annotations

import numpy as np
import pytest

import xai_core as xc
from xai_core.errors import MethodError
from xai_core.render import colormap, render_difference, render_on_scale
from xai_core.render.compare import align_maps, crop_box_intersection, difference, shared_range


def test_common_grid_is_the_finest_size():
    assert xc.common_grid([(224, 224), (512, 512)]) == (512, 512)
    assert xc.common_grid([(300, 200), (100, 400)]) == (300, 400)
    with pytest.raises(MethodError):
        xc.common_grid([])
    with pytest.raises(MethodError):
        xc.common_grid([(0, 5)])


def test_same_box_and_size_is_the_identity():
    rng = np.random.default_rng(0)
    m = rng.random((9, 13)).astype(np.float32)
    (out,), box = align_maps([m], [(10.0, 20.0, 140.0, 110.0)], (9, 13))
    np.testing.assert_allclose(out, m, atol=1e-6)
    assert box == (10.0, 20.0, 140.0, 110.0)


def test_maps_of_different_sizes_land_on_one_grid_without_a_fixed_size():
    a = np.ones((7, 7), np.float32)
    b = np.ones((16, 16), np.float32) * 2
    (ra, rb), box = align_maps([a, b], None, (512, 384))
    assert ra.shape == rb.shape == (512, 384)
    assert box is None
    np.testing.assert_allclose(ra, 1.0, rtol=1e-6)
    np.testing.assert_allclose(rb, 2.0, rtol=1e-6)
    # Default grid: the finer map's own size.
    (ra, rb), _ = align_maps([a, b])
    assert ra.shape == rb.shape == (16, 16)


def test_alignment_follows_the_crop_boxes():
    # Map a covers x in [0, 100), b covers [50, 150): a step at x = 75 in the original image
    # must sit at the same place of the common grid for both.
    xs = np.arange(100) + 0.5
    a = np.tile((xs >= 75).astype(np.float32), (10, 1))  # covers [0, 100)
    b = np.tile((xs + 50 >= 75).astype(np.float32), (10, 1))  # covers [50, 150)
    (ra, rb), box = align_maps([a, b], [(0, 0, 100, 10), (50, 0, 150, 10)], (10, 50))
    assert box == (50.0, 0.0, 100.0, 10.0)
    np.testing.assert_allclose(ra, rb, atol=1e-6)
    assert ra[0, :24].max() == 0.0 and ra[0, 26:].min() == 1.0  # the step at 75 -> column 25


def test_boxes_that_do_not_overlap_are_refused():
    with pytest.raises(MethodError, match="do not overlap"):
        crop_box_intersection([(0, 0, 10, 10), (20, 0, 30, 10)])
    with pytest.raises(MethodError, match="one box per map"):
        align_maps([np.zeros((2, 2))], [(0, 0, 1, 1), (0, 0, 1, 1)])


def test_shared_range_and_difference():
    a = np.array([[0.0, 2.0]], np.float32)
    b = np.array([[1.0, 5.0]], np.float32)
    assert shared_range([a, b]) == (0.0, 5.0)
    assert shared_range([np.full((2, 2), 3.0)]) == (3.0, 4.0)  # constant: widened, still drawable
    diff, limit = difference(a, b)
    np.testing.assert_allclose(diff, [[-1.0, -3.0]])
    assert limit == 3.0
    assert difference(a, a)[1] == 1.0
    with pytest.raises(MethodError, match="not on one grid"):
        difference(a, np.zeros((2, 2)))
    with pytest.raises(MethodError, match="no finite value"):
        shared_range([np.array([np.nan])])


def test_compare_maps_puts_both_maps_on_one_scale():
    a = np.array([[0.0, 1.0], [2.0, -4.0]], np.float32)  # negative evidence dropped (ReLU)
    b = np.array([[0.0, 10.0], [0.0, 0.0]], np.float32)
    c = xc.compare_maps(a, b, size=(2, 2))
    assert (c.vmin, c.vmax) == (0.0, 10.0)
    np.testing.assert_allclose(c.a, [[0, 1], [2, 0]])
    np.testing.assert_allclose(c.diff, c.a - c.b)
    assert c.limit == pytest.approx(9.0)
    # Drawn on the shared scale: a's strongest value (2) is dark, b's (10) is the top colour.
    lut = colormap("viridis")
    img_a = render_on_scale(c.a, c.vmin, c.vmax)
    img_b = render_on_scale(c.b, c.vmin, c.vmax)
    assert tuple(img_b[0, 1]) == tuple(lut[255])
    assert tuple(img_a[1, 0]) == tuple(lut[round(0.2 * 255)])
    n = xc.compare_maps(a, b, size=(2, 2), values="normalised")
    assert (n.vmin, n.vmax) == (0.0, 1.0) and n.a.max() == 1.0 and n.b.max() == 1.0
    with pytest.raises(MethodError):
        xc.compare_maps(a, b, values="log")
    with pytest.raises(MethodError, match="both crop boxes"):
        xc.compare_maps(a, b, box_a=(0, 0, 2, 2))


def test_one_model_on_two_images_compares_on_the_input_grid():
    """One model, two images of different sizes: each map covers its own image's crop, whose boxes differ in
    pixels, so no boxes are given and the maps meet position for position on the model's input grid."""
    from PIL import Image

    spec = xc.get_spec("efficientnet_lite0")
    samples = [Image.new("RGB", (640, 480)), Image.new("RGB", (300, 500))]
    boxes = [xc.prepare(img, spec.preprocessing).crop_box for img in samples]
    assert boxes[0] != boxes[1], "two images, two crop boxes in their own pixels"
    hot = np.zeros((7, 7), np.float32)
    hot[0, 0] = 1.0  # the same cell of the model's input in both maps
    size = (224, 224)
    c = xc.compare_maps(hot, hot, size=size)
    assert c.box is None and c.size == size
    assert not c.diff.any(), "the same position of the input grid in both maps: no difference"
    assert c.a[:16, :16].mean() > c.a[-16:, -16:].mean()
    moved = np.roll(hot, 3, axis=1)
    d = xc.compare_maps(hot, moved, size=size)
    assert d.diff[:16, :16].mean() > 0 > d.diff[:16, 96:128].mean()


def test_difference_is_centred_at_zero():
    lut = colormap("RdBu_r")
    img = render_difference(np.array([[-2.0, 0.0, 2.0]]), 2.0)
    assert tuple(img[0, 0]) == tuple(lut[0])
    assert tuple(img[0, 2]) == tuple(lut[255])
    assert tuple(img[0, 1]) in {tuple(lut[127]), tuple(lut[128])}


def test_common_classes_by_name():
    assert xc.common_classes(["cat", "", "dog"], ["Dog", "bird", ""]) == [(2, 0, "dog")]
    from xai_core.models.imagenet_classes import IMAGENET_CLASSES

    xray = xc.get_spec("xrv-densenet121-res224-all").labels
    assert xc.common_classes(IMAGENET_CLASSES, xray) == []
    nih = xc.get_spec("xrv-densenet121-res224-nih").labels
    shared = xc.common_classes(xray, nih)
    assert shared and all(xray[i] == nih[j] == name for i, j, name in shared)


def test_real_models_of_different_crops_on_one_grid():
    """Lite0 (resize 256) and ResNet50 (resize 232) crop the upload differently: the grid covers both."""
    from PIL import Image

    img = Image.new("RGB", (640, 480), (120, 80, 40))
    boxes = [xc.prepare(img, xc.get_spec(k).preprocessing).crop_box for k in ("efficientnet_lite0", "resnet50")]
    assert boxes[0] != boxes[1]
    sizes = [xc.get_spec(k).preprocessing.input_size for k in ("efficientnet_lite0", "resnet50")]
    grid = xc.common_grid(sizes)
    c = xc.compare_maps(np.ones((7, 7)), np.ones((7, 7)) * 3, box_a=boxes[0], box_b=boxes[1], size=grid)
    assert c.size == xc.common_grid(sizes)
    assert c.box == crop_box_intersection(boxes)

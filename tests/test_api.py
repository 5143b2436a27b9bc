"""The notebook API end to end: explain, FG-CAM via explain_fine, fine-grained fused maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xai_core as xc

DOG, CAT = 243, 282  # bull mastiff (upper half of cat_dog.png), tiger cat (lower half)


@pytest.fixture(scope="module")
def fine(lite0, cat_dog):
    coarse = xc.explain(lite0, cat_dog, method="grad_cam", class_idx=[DOG, CAT])
    return xc.explain_fine(lite0, coarse, target_layer="input")


def test_explain_fine_is_an_explanation_at_the_target_resolution(fine):
    assert fine.method == "fg_cam" and fine.layer == "input"
    assert fine.cams.shape == (2, 224, 224) and fine.channels == 1
    assert fine.class_idx == (DOG, CAT)
    assert fine.params["cam_layer"] == "_head_act"


def test_fine_grained_fused_map_shows_each_class_in_its_colour_where_it_is(fine):
    fused = fine.fused(2)
    owner, value = xc.dominant_class(fused, (224, 224))
    strong = value > np.quantile(value, 0.8)  # where the map is bright
    upper, lower = np.zeros_like(strong), np.zeros_like(strong)
    upper[:112], lower[112:] = True, True
    dog_up = (owner[strong & upper] == 0).mean()
    cat_down = (owner[strong & lower] == 1).mean()
    assert dog_up > 0.5 and cat_down > 0.5, (dog_up, cat_down)
    picture = xc.render_fused(fine, fused, alpha=1.0).astype(np.float64)
    # Where the picture moves from the photo towards class 1's legend colour rather than
    # class 2's. (The palette is no longer red/green, issue 14: compare with the legend.)
    c1, c2 = (np.array([int(row["colour"][i : i + 2], 16) for i in (1, 3, 5)], float) for row in xc.legend(fine, 2))
    towards = (picture - fine.prepared.view.astype(np.float64)) @ ((c1 - c2) / np.linalg.norm(c1 - c2))
    first, second = towards > 20, towards < -20
    assert first[:112].sum() > first[112:].sum() and second[112:].sum() > second[:112].sum()
    assert [row["label"] for row in xc.legend(fine, 2)] == ["bull mastiff", "tiger cat"]


def test_fine_maps_put_positive_mass_on_the_right_half(fine):
    for k, upper_wins in ((0, True), (1, False)):
        positive = np.clip(fine.cams[k].numpy(), 0, None)
        assert (positive[:112].sum() > positive[112:].sum()) == upper_wins


def test_explain_fine_rejects_bad_k(lite0, cat_dog, fine):
    with pytest.raises(xc.MethodError, match="between 1 and 2"):
        xc.explain_fine(lite0, fine, k=3)


def test_twelve_classes_fuse_and_render(lite0, cat_dog):
    """More classes than the first palette's colours: every class gets its own colour."""
    exp = xc.explain(lite0, cat_dog, method="grad_cam", top_k=12)
    picture = xc.render_fused(exp, exp.fused(12))
    assert picture.shape == (224, 224, 3)
    rows = xc.legend(exp, 12)
    assert len({row["colour"] for row in rows}) == 12


def test_one_image_gives_one_explanation_and_a_list_gives_a_list(lite0, cat_dog):
    one = xc.explain(lite0, cat_dog, top_k=2)
    many = xc.explain(lite0, [cat_dog, cat_dog], top_k=2)
    assert isinstance(one, xc.Explanation) and len(many) == 2
    for exp in many:
        assert exp.class_idx == one.class_idx
        torch.testing.assert_close(exp.cams, one.cams, rtol=1e-4, atol=1e-5 * float(one.cams.abs().max()))


def test_a_prepared_tensor_has_no_view_to_draw_on(lite0, cat_dog):
    x = xc.prepare(cat_dog, lite0.spec.preprocessing).tensor
    exp = xc.explain(lite0, x, top_k=1)[0]
    with pytest.raises(xc.MethodError, match="prepared tensor"):
        xc.render_map(exp, 0)
    with pytest.raises(xc.MethodError, match=r"\[N, 3, H, W\]"):
        xc.explain(lite0, x[0], top_k=1)

"""Tests of xai_core.metrics: constructed models with known answers, CPU only, fast."""

from __future__ import annotations

import ast
import math
import pathlib

import numpy as np
import pytest
import torch

from xai_core.errors import MethodError, XaiCoreError
from xai_core.metrics import (
    average_drop_increase,
    black_baseline,
    confidence_change_when_multiplied,
    confidence_drop_top_removed,
    default_pixels_per_step,
    evaluate_map,
    evaluate_maps,
    gaussian_blur,
    insertion_deletion,
    proportion_in_box,
    rank_of_pixels,
    scale_to_unit,
)

# A non-square image with a region R away from the top-left corner, so that a constant
# map (ranked row-major by the stable tie-break) overlaps R only partly at 25 % and 50 %.
H, W = 12, 16
R_ROWS, R_COLS = slice(2, 8), slice(5, 11)
R_BOX = (5, 2, 11, 8)  # (x0, y0, x1, y1)
R_MASK = torch.zeros(H, W, dtype=torch.bool)
R_MASK[R_ROWS, R_COLS] = True


def make_image(seed: int, channels: int = 3) -> torch.Tensor:
    """Zero-mean clutter outside R, a bright object (about 2.0) inside R: [1, C, H, W]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, H, W, generator=g)
    x[:, :, R_MASK] = 2.0 + 0.1 * torch.randn(1, channels, int(R_MASK.sum()), generator=g)
    return x


def region_predict(batch: torch.Tensor) -> torch.Tensor:
    """Class 0's evidence is the brightness inside R; clutter energy outside R counts against it.

    logit_0 = 3 * mean_R(x) - mean_outside(x**2) - 2, logit_1 = 0, softmax. Blurring R
    lowers the score (0.95 -> 0.55 on ``make_image(0)``); blurring clutter raises it.
    """
    m = R_MASK.to(batch.device)
    region = batch[:, :, m].mean(dim=(1, 2))
    clutter = (batch[:, :, ~m] ** 2).mean(dim=(1, 2))
    logit = 3.0 * region - clutter - 2.0
    return torch.softmax(torch.stack([logit, torch.zeros_like(logit)], dim=1), dim=1)


MAPS = {
    "region": R_MASK.double(),
    "rest": (~R_MASK).double(),
    "constant": torch.full((H, W), 0.7, dtype=torch.float64),
}


def constant_predict(value: float, n_classes: int = 3):
    def predict(batch: torch.Tensor) -> torch.Tensor:
        out = torch.full((batch.shape[0], n_classes), (1 - value) / (n_classes - 1))
        out[:, 1] = value
        return out

    return predict


# --------------------------------------------------------------------------------------
# The constructed model: a map on R beats a map on the rest everywhere; constant between
# --------------------------------------------------------------------------------------


def test_blur_meaningfully_lowers_the_region_model():
    x = make_image(0)
    y = region_predict(x)[0, 0].item()
    yb = region_predict(gaussian_blur(x))[0, 0].item()
    assert y > 0.9 and yb < y - 0.3


def test_region_map_beats_rest_on_every_per_image_metric_constant_in_between():
    x = make_image(0)
    res = {k: evaluate_map(region_predict, x, s, 0, box=R_BOX).scores for k, s in MAPS.items()}
    r, c, o = res["region"], res["constant"], res["rest"]
    # Lower is better.
    for key in ["average_drop", "deletion_auc", "multiplied_drop_percent"]:
        assert r[key] < o[key], key
    for key in ["average_drop", "deletion_auc"]:
        assert r[key] < c[key] < o[key], key
    # Higher is better.
    for key in ["insertion_auc", "overall", "proportion", "top_removed_drop", "multiplied_change"]:
        assert r[key] > o[key], key
    for key in ["insertion_auc", "overall", "proportion", "top_removed_drop"]:
        assert r[key] > c[key] > o[key], key
    assert r["proportion"] == 1.0 and o["proportion"] == 0.0
    assert c["proportion"] == pytest.approx(R_MASK.sum().item() / (H * W))
    # Step-valued per-image flags: region 100 / 1, rest 0.
    assert r["average_increase"] == 100.0 and o["average_increase"] == 0.0
    assert r["multiplied_increased"] == 1.0 and o["multiplied_increased"] == 0.0
    # Degenerate case: a constant map scaled to [0, 1] is all ones, the image is unchanged.
    assert c["multiplied_change"] == 0.0 and c["multiplied_drop_percent"] == 0.0


def test_average_drop_increase_over_several_images():
    xs = [make_image(seed) for seed in range(5)]
    res = {k: average_drop_increase(region_predict, xs, [s] * 5, 0) for k, s in MAPS.items()}
    r, c, o = res["region"], res["constant"], res["rest"]
    assert r.average_drop < c.average_drop < o.average_drop
    assert r.average_drop == 0.0
    # A.I. counts images with O > Y: region 100 %, the others 0 % (constant ties rest here).
    assert r.average_increase == 100.0
    assert r.average_increase > o.average_increase
    assert r.average_increase >= c.average_increase >= o.average_increase
    assert r.increase.all() and not o.increase.any()
    # Aggregates are the documented means of the per-image values.
    assert o.average_drop == pytest.approx(np.mean(100 * np.maximum(0, o.y - o.o) / o.y))
    assert (r.keep_fraction, r.kernel_size, r.sigma) == (0.5, 11, 5.0)


def test_multiplied_check_orders_region_rest_and_half_constant():
    x = make_image(1)
    region = confidence_change_when_multiplied(region_predict, x, MAPS["region"], 0)
    half = confidence_change_when_multiplied(region_predict, x, torch.full((H, W), 0.5), 0)
    rest = confidence_change_when_multiplied(region_predict, x, MAPS["rest"], 0)
    assert region.change > half.change > rest.change
    assert region.increased and not rest.increased
    assert rest.drop_percent == pytest.approx(100 * (rest.y - rest.o) / rest.y)


def test_top_removed_orders_region_constant_rest():
    x = make_image(2)
    drops = {k: confidence_drop_top_removed(region_predict, x, s, 0).drop for k, s in MAPS.items()}
    assert drops["region"] > drops["constant"] > drops["rest"]


# --------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------


def test_auc_of_a_constant_curve_is_the_constant():
    x = make_image(3)
    res = insertion_deletion(constant_predict(0.3), x, MAPS["region"], 1, pixels_per_step=7)
    np.testing.assert_allclose(res.insertion, 0.3, rtol=0, atol=1e-7)
    np.testing.assert_allclose(res.deletion, 0.3, rtol=0, atol=1e-7)
    assert res.insertion_auc == pytest.approx(0.3, abs=1e-7)
    assert res.deletion_auc == pytest.approx(0.3, abs=1e-7)
    assert res.overall == pytest.approx(0.0, abs=1e-7)
    assert res.fractions[0] == 0.0 and res.fractions[-1] == 1.0


def step_predict(batch: torch.Tensor) -> torch.Tensor:
    """Probability 1 exactly when every pixel of R is at its original value 1.0, else 0."""
    p = (batch[:, 0, R_MASK].min(dim=1).values > 0.999).double()
    return torch.stack([p, 1 - p], dim=1)


def step_image() -> torch.Tensor:
    x = torch.zeros(1, 1, H, W)
    x[0, 0, R_MASK] = 1.0
    return x


@pytest.mark.parametrize("step", [1, 6, 12, 36])
def test_perfect_map_on_step_model_has_known_insertion_and_deletion(step):
    # |R| = 36 pixels, a multiple of every step above. Insertion is 0 until all of R is
    # back (point k* = 36 / step), then 1: AUC = 1 - 36/n + step/(2n). Deletion drops to 0
    # at the first step: AUC = step / (2n).
    n, r = H * W, int(R_MASK.sum())
    x = step_image()
    assert step_predict(gaussian_blur(x))[0, 0] == 0 and step_predict(x)[0, 0] == 1
    res = insertion_deletion(step_predict, x, MAPS["region"], 0, pixels_per_step=step)
    k_star = r // step
    expected_curve = (np.arange(res.fractions.size) >= k_star).astype(float)
    np.testing.assert_array_equal(res.insertion, expected_curve)
    assert res.insertion_auc == pytest.approx(1 - r / n + step / (2 * n))
    assert res.deletion_auc == pytest.approx(step / (2 * n))
    assert res.deletion[0] == 1.0 and not res.deletion[1:].any()


def test_proportion_known_answers():
    s = torch.zeros(H, W)
    s[2:4, 5:9] = 2.0  # entirely inside R_BOX
    assert proportion_in_box(s, R_BOX) == 1.0
    s = torch.zeros(H, W)
    s[4, 9:13] = 1.0  # columns 9, 10 inside (x1 = 11), 11, 12 outside: half inside
    assert proportion_in_box(s, R_BOX) == pytest.approx(0.5)
    assert proportion_in_box(s.numpy(), R_BOX) == pytest.approx(0.5)
    # Negative values carry no mass; no positive mass gives 0, not NaN.
    s[0, 0] = -100.0
    assert proportion_in_box(s, R_BOX) == pytest.approx(0.5)
    assert proportion_in_box(-torch.ones(H, W), R_BOX) == 0.0
    assert proportion_in_box(torch.zeros(H, W), R_BOX) == 0.0
    # Whole-map box: 1; box coordinates are half-open (x1, y1 exclusive).
    assert proportion_in_box(torch.rand(H, W) + 0.1, (0, 0, W, H)) == pytest.approx(1.0)
    one = torch.zeros(H, W)
    one[3, 7] = 1.0
    assert proportion_in_box(one, (7, 3, 8, 4)) == 1.0
    assert proportion_in_box(one, (0, 0, 7, 3)) == 0.0


def test_pixels_per_step_scales_with_area_on_a_non_square_input():
    assert default_pixels_per_step(224, 224) == 448
    assert default_pixels_per_step(512, 512) == 2341  # round(262144 / 112)
    assert default_pixels_per_step(16, 28) == 4
    assert default_pixels_per_step(3, 5) == 1
    x = torch.randn(1, 2, 16, 28)
    res = insertion_deletion(constant_predict(0.5), x, torch.rand(16, 28), 0)
    assert res.pixels_per_step == 4
    assert res.fractions.size == 16 * 28 // 4 + 1
    np.testing.assert_allclose(np.diff(res.fractions), 4 / (16 * 28))
    # A step that does not divide H * W: the last step is shorter, both ends included.
    res = insertion_deletion(constant_predict(0.5), torch.randn(1, 1, 5, 7), torch.rand(5, 7), 0, pixels_per_step=4)
    np.testing.assert_allclose(res.fractions * 35, [0, 4, 8, 12, 16, 20, 24, 28, 32, 35])


def test_top_removed_equals_deletion_at_the_same_fraction():
    x = make_image(4)
    s = torch.rand(H, W, generator=torch.Generator().manual_seed(0))
    top = confidence_drop_top_removed(region_predict, x, s, 0, fraction=0.25)
    curve = insertion_deletion(region_predict, x, s, 0, pixels_per_step=H * W // 4)
    assert curve.fractions[1] == 0.25
    assert top.o == pytest.approx(curve.deletion[1], abs=1e-12)
    assert top.y == pytest.approx(curve.deletion[0], abs=1e-12)
    assert top.drop == pytest.approx(top.y - top.o) and top.change == pytest.approx(-top.drop)


def test_average_drop_known_answer_and_positive_only():
    x = make_image(5)
    s = torch.rand(H, W, generator=torch.Generator().manual_seed(1)) - 0.8  # ~20 % positive
    res = average_drop_increase(region_predict, x, s[None], [0], keep_fraction=0.5)
    keep = rank_of_pixels(s).view(H, W) < H * W // 2
    expected_o = region_predict(torch.where(keep, x, gaussian_blur(x)))[0, 0].item()
    assert res.o[0] == pytest.approx(expected_o, abs=1e-6)
    assert res.drop[0] == pytest.approx(100 * max(0.0, res.y[0] - expected_o) / res.y[0], abs=1e-4)
    pos = average_drop_increase(region_predict, x, s[None], [0], keep_fraction=0.5, positive_only=True)
    expected_pos = region_predict(torch.where(keep & (s > 0), x, gaussian_blur(x)))[0, 0].item()
    assert pos.o[0] == pytest.approx(expected_pos, abs=1e-6)
    assert pos.o[0] != pytest.approx(res.o[0])


def test_multiplied_means_blend_towards_baseline():
    seen = []

    def recording_predict(batch):
        seen.append(batch.clone())
        return constant_predict(0.4)(batch)

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    raw = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(2))
    m = torch.rand(H, W, generator=torch.Generator().manual_seed(3))
    mt, st = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x = (raw - mt) / st
    # With the black baseline: exactly "multiply the image before normalisation".
    confidence_change_when_multiplied(recording_predict, x, m, 0, baseline=black_baseline(mean, std))
    torch.testing.assert_close(seen[-1][1:2], (raw * m - mt) / st)
    torch.testing.assert_close(seen[-1][0:1], x)
    # Default baseline 0: the normalised input times the map.
    confidence_change_when_multiplied(recording_predict, x, m, 0)
    torch.testing.assert_close(seen[-1][1:2], x * m)
    # A map of ones changes nothing.
    res = confidence_change_when_multiplied(region_predict, make_image(0), torch.ones(H, W), 0)
    assert res.change == 0.0 and not res.increased


def test_gaussian_blur_matches_torchvision_and_keeps_constants():
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    x = torch.randn(2, 3, 20, 30, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(gaussian_blur(x), tv_blur(x, [11, 11], [5.0, 5.0]))
    torch.testing.assert_close(gaussian_blur(x, 5, 1.5), tv_blur(x, [5, 5], [1.5, 1.5]))
    c = torch.full((1, 1, 4, 3), -1.7)  # smaller than the kernel: replicate padding
    torch.testing.assert_close(gaussian_blur(c), c)
    assert gaussian_blur(x).dtype == x.dtype


def test_gaussian_blur_of_small_images_replicates_the_edges():
    """Images too small for reflect padding: the separable Gaussian over edge-replicated pixels."""
    x = torch.randn(2, 3, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    k, sigma = 11, 5.0
    t = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    padded = torch.nn.functional.pad(x.reshape(6, 1, 4, 7), (5, 5, 5, 5), mode="replicate")
    want = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, g.view(1, 1, 1, k)), g.view(1, 1, k, 1))
    torch.testing.assert_close(gaussian_blur(x, k, sigma), want.reshape(2, 3, 4, 7), rtol=0, atol=1e-12)


def test_ties_are_broken_in_row_major_order():
    assert torch.equal(rank_of_pixels(torch.ones(3, 4)), torch.arange(12))
    s = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0]])
    # Order: 2.0 (pixel 5), then the 1.0s in row-major order (1, 2, 3), then 0s (0, 4).
    assert rank_of_pixels(s).tolist() == [4, 1, 2, 3, 5, 0]


def test_signed_maps_are_ranked_by_value():
    x = make_image(6)
    s = torch.randn(H, W, generator=torch.Generator().manual_seed(5))
    a = insertion_deletion(region_predict, x, s, 0, pixels_per_step=8)
    b = insertion_deletion(region_predict, x, 3 * s - 10, 0, pixels_per_step=8)  # same order
    np.testing.assert_array_equal(a.insertion, b.insertion)
    np.testing.assert_array_equal(a.deletion, b.deletion)
    c = insertion_deletion(region_predict, x, -s, 0, pixels_per_step=8)
    assert not np.array_equal(a.deletion, c.deletion)


# --------------------------------------------------------------------------------------
# Batching, purity, evaluate_map
# --------------------------------------------------------------------------------------


def test_batching_gives_the_same_results_and_respects_batch_size():
    x = make_image(7)
    s = torch.rand(H, W, generator=torch.Generator().manual_seed(6))
    sizes: list[int] = []

    def counting_predict(batch):
        sizes.append(batch.shape[0])
        return region_predict(batch)

    one = insertion_deletion(counting_predict, x, s, 0, pixels_per_step=5, batch_size=1)
    assert set(sizes) == {1}
    sizes.clear()
    seven = insertion_deletion(counting_predict, x, s, 0, pixels_per_step=5, batch_size=7)
    assert max(sizes) == 7 and sum(sizes) == 2 * one.fractions.size
    big = insertion_deletion(region_predict, x, s, 0, pixels_per_step=5, batch_size=10_000)
    for other in (seven, big):
        np.testing.assert_allclose(other.insertion, one.insertion, rtol=0, atol=1e-6)
        np.testing.assert_allclose(other.deletion, one.deletion, rtol=0, atol=1e-6)
    xs = [make_image(seed) for seed in range(3)]
    maps = [torch.rand(H, W, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    a1 = average_drop_increase(region_predict, xs, maps, 0, batch_size=1)
    a4 = average_drop_increase(region_predict, torch.cat(xs), torch.stack(maps), [0, 0, 0], batch_size=4)
    np.testing.assert_allclose(a1.o, a4.o, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a1.y, a4.y, rtol=0, atol=1e-6)


def test_average_drop_accepts_images_of_different_sizes():
    def mean_predict(batch):
        p = torch.sigmoid(batch.mean(dim=(1, 2, 3)))
        return torch.stack([p, 1 - p], dim=1)

    xs = [torch.randn(1, 1, 8, 10), torch.randn(1, 1, 6, 6), torch.randn(1, 1, 8, 10)]
    maps = [torch.rand(x.shape[2], x.shape[3]) for x in xs]
    together = average_drop_increase(mean_predict, xs, maps, 0, kernel_size=3, sigma=1.0)
    for i in range(3):
        alone = average_drop_increase(mean_predict, xs[i], maps[i][None], 0, kernel_size=3, sigma=1.0)
        assert together.o[i] == pytest.approx(alone.o[0], abs=1e-6)


def test_inputs_are_not_modified():
    x = make_image(8)
    s = torch.randn(H, W, generator=torch.Generator().manual_seed(7))
    s_np = s.numpy().copy()
    x0, s0, s_np0 = x.clone(), s.clone(), s_np.copy()
    evaluate_map(region_predict, x, s, 0, box=R_BOX, pixels_per_step=16)
    evaluate_map(region_predict, x, s_np, 0, pixels_per_step=16)
    average_drop_increase(region_predict, [x], [s], [0])
    confidence_change_when_multiplied(region_predict, x, scale_to_unit(s), 0, baseline=torch.full((1, 3, 1, 1), -2.0))
    gaussian_blur(x)
    proportion_in_box(s, R_BOX)
    assert torch.equal(x, x0) and torch.equal(s, s0)
    np.testing.assert_array_equal(s_np, s_np0)


def test_evaluate_map_reports_scores_curves_and_settings():
    x = make_image(9)
    ev = evaluate_map(region_predict, x, MAPS["region"], 0, pixels_per_step=16)
    assert "proportion" not in ev.scores
    assert all(isinstance(v, float) and math.isfinite(v) for v in ev.scores.values())
    assert ev.scores["overall"] == pytest.approx(ev.scores["insertion_auc"] - ev.scores["deletion_auc"])
    assert ev.curves.insertion.shape == ev.curves.deletion.shape == ev.curves.fractions.shape == (13,)
    assert ev.curves.insertion[-1] == pytest.approx(ev.scores["probability"])
    assert ev.settings["kernel_size"] == 11 and ev.settings["sigma"] == 5.0
    assert "sigma 5" in ev.settings["blur"]


def test_metrics_never_imports_methods():
    package = pathlib.Path(__file__).resolve().parents[1] / "xai_core" / "metrics"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("xai_core.methods") for n in names), path


# --------------------------------------------------------------------------------------
# evaluate_maps: many maps, one stream of forward passes
# --------------------------------------------------------------------------------------


def _region_batch(seeds=(1, 2, 3)):
    x = torch.cat([make_image(seed) for seed in seeds])
    g = torch.Generator().manual_seed(5)
    maps = torch.stack([MAPS["region"], torch.randn(H, W, generator=g, dtype=torch.float64), MAPS["constant"]])
    return x, maps[: len(seeds)]


@pytest.mark.parametrize("step", [1, 7, 40, H * W])
def test_evaluate_maps_equals_the_single_metric_functions_per_image(step):
    x, maps = _region_batch()
    positive = [False, True, False]
    sizes: list[int] = []

    def counting_predict(batch):
        sizes.append(batch.shape[0])
        return region_predict(batch)

    ev = evaluate_maps(counting_predict, x, maps, [0, 1, 0], positive_only=positive, pixels_per_step=step, batch_size=9)
    assert max(sizes) <= 9 and sum(sizes) == ev.forwards
    counts = {*range(0, H * W, step), H * W}
    # Per image: 2 curves minus their shared ends (the original and the blurred image), the multiplied
    # image, and the Average Drop / top-removed images unless a curve point is the same image.
    expected = [2 * len(counts) - 2 + 1 + (positive[i] or 96 not in counts) + (48 not in counts) for i in range(3)]
    assert ev.forwards == sum(expected)
    for i in range(3):
        # The single-metric definitions, one image at a time.
        xi, si, c = x[i : i + 1], maps[i], [0, 1, 0][i]
        curves = insertion_deletion(region_predict, xi, si, c, pixels_per_step=step)
        adi = average_drop_increase(region_predict, xi, [si], c, positive_only=positive[i])
        mul = confidence_change_when_multiplied(region_predict, xi, scale_to_unit(si), c)
        top = confidence_drop_top_removed(region_predict, xi, si, c)
        want = {
            "probability": float(adi.y[0]),
            "average_drop": float(adi.drop[0]),
            "average_increase": float(adi.average_increase),
            "insertion_auc": curves.insertion_auc,
            "deletion_auc": curves.deletion_auc,
            "overall": curves.overall,
            "multiplied_change": mul.change,
            "multiplied_increased": float(mul.increased),
            "multiplied_drop_percent": mul.drop_percent,
            "top_removed_drop": top.drop,
            "top_removed_drop_percent": top.drop_percent,
        }
        assert set(want) == set(ev.scores)
        for name, value in want.items():
            assert ev.scores[name][i] == pytest.approx(value, abs=1e-9), name
        np.testing.assert_allclose(ev.insertion[i], curves.insertion, atol=1e-9)
        np.testing.assert_allclose(ev.deletion[i], curves.deletion, atol=1e-9)
        one = evaluate_map(region_predict, xi, si, c, pixels_per_step=step)
        assert one.scores == pytest.approx({k: float(v[i]) for k, v in ev.scores.items()}, abs=1e-12) or positive[i]
    np.testing.assert_array_equal(ev.positive_only, positive)
    assert ev.settings["pixels_per_step"] == step and ev.settings["kernel_size"] == 11


def test_evaluate_maps_scores_the_region_map_above_the_rest():
    x = torch.cat([make_image(1), make_image(1)])
    maps = torch.stack([MAPS["region"], MAPS["rest"]])
    ev = evaluate_maps(region_predict, x, maps, [0, 0], pixels_per_step=8)
    assert ev.scores["insertion_auc"][0] > ev.scores["insertion_auc"][1]
    assert ev.scores["deletion_auc"][0] < ev.scores["deletion_auc"][1]
    assert ev.scores["average_drop"][0] < ev.scores["average_drop"][1]


def test_evaluate_maps_creates_everything_on_the_input_device():
    # The meta device has no data: any tensor created elsewhere (the CPU) would raise on mixing.
    x, maps = _region_batch()
    seen = []

    def predict(batch):
        seen.append(batch.device)
        return region_predict(batch)

    evaluate_maps(predict, x, maps.numpy(), torch.tensor([0, 0, 0]), pixels_per_step=30)
    assert set(seen) == {torch.device("cpu")}
    if torch.cuda.is_available():
        seen.clear()
        ev = evaluate_maps(predict, x.cuda(), maps.cuda(), [0, 0, 0], pixels_per_step=30)
        assert {d.type for d in seen} == {"cuda"}
        cpu = evaluate_maps(region_predict, x, maps, [0, 0, 0], pixels_per_step=30)
        np.testing.assert_allclose(ev.scores["overall"], cpu.scores["overall"], atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"saliencies": torch.zeros(2, H, W)}, "saliencies must be"),
        ({"class_idxs": [0, 0]}, "class_idxs must hold 3"),
        ({"positive_only": [True]}, "positive_only"),
        ({"batch_size": 0}, "batch_size"),
        ({"pixels_per_step": 0}, "pixels_per_step"),
        ({"x": torch.zeros(3, H, W)}, "x must be"),
        ({"saliencies": torch.full((3, H, W), float("nan"))}, "NaN"),
    ],
)
def test_evaluate_maps_bad_arguments(kwargs, match):
    x, maps = _region_batch()
    call = {"x": x, "saliencies": maps, "class_idxs": [0, 0, 0], **kwargs}
    with pytest.raises(XaiCoreError, match=match):
        evaluate_maps(region_predict, call.pop("x"), call.pop("saliencies"), call.pop("class_idxs"), **call)


# --------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------

X = make_image(0)
S = MAPS["region"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: insertion_deletion(region_predict, X[0], S, 0), "x must have shape"),
        (lambda: insertion_deletion(region_predict, torch.cat([X, X]), S, 0), r"x must have shape \[1, C, H, W\]"),
        (lambda: insertion_deletion(region_predict, X.long(), S, 0), "x must be a floating"),
        (
            lambda: insertion_deletion(region_predict, X, S[:, :-1], 0),
            r"saliency must have shape \[H, W\] = \[12, 16\]",
        ),
        (lambda: insertion_deletion(region_predict, X, S * float("nan"), 0), "saliency contains NaN"),
        (lambda: insertion_deletion(region_predict, X, "map", 0), "saliency must be a torch.Tensor"),
        (lambda: insertion_deletion(region_predict, X, S, -1), "class_idx must be an integer >= 0"),
        (lambda: insertion_deletion(region_predict, X, S, 1.0), "class_idx must be an integer"),
        (lambda: insertion_deletion(region_predict, X, S, 2), "class_idx 2 is out of range"),
        (lambda: insertion_deletion(region_predict, X, S, 0, pixels_per_step=0), "pixels_per_step"),
        (lambda: insertion_deletion(region_predict, X, S, 0, pixels_per_step=2.5), "pixels_per_step"),
        (lambda: insertion_deletion(region_predict, X, S, 0, batch_size=0), "batch_size"),
        (lambda: insertion_deletion(region_predict, X, S, 0, kernel_size=4), "kernel_size must be odd"),
        (lambda: insertion_deletion(region_predict, X, S, 0, sigma=0.0), "sigma must be a positive"),
        (lambda: insertion_deletion("model", X, S, 0), "predict must be a callable"),
        (lambda: average_drop_increase(region_predict, [X], [S], 0, keep_fraction=0.0), "keep_fraction"),
        (lambda: average_drop_increase(region_predict, [X], [S], 0, keep_fraction=1.5), "keep_fraction"),
        (lambda: average_drop_increase(region_predict, [X, X], [S], 0), "saliencies has 1 maps but xs has 2"),
        (lambda: average_drop_increase(region_predict, [X], [S], [0, 1]), "class_idxs has 2 entries"),
        (lambda: average_drop_increase(region_predict, [], [], 0), "xs is empty"),
        (lambda: average_drop_increase(region_predict, [X], [S[:-1]], 0), r"saliencies\[0\] must have shape"),
        (lambda: proportion_in_box(S, (5, 2, 5, 8)), "box"),
        (lambda: proportion_in_box(S, (0, 0, W + 1, H)), "box"),
        (lambda: proportion_in_box(S, (-1, 0, 3, 3)), "box"),
        (lambda: proportion_in_box(S, (0, 0, 3)), "box must be four integers"),
        (lambda: proportion_in_box(S, (0.5, 0, 3, 3)), "box must hold whole pixel"),
        (
            lambda: confidence_change_when_multiplied(region_predict, X, S * 2, 0),
            r"saliency01 must be scaled to \[0, 1\]",
        ),
        (lambda: confidence_change_when_multiplied(region_predict, X, S, 0, baseline=torch.zeros(3)), "baseline"),
        (lambda: confidence_change_when_multiplied(region_predict, X, S, 0, baseline="black"), "baseline"),
        (lambda: confidence_drop_top_removed(region_predict, X, S, 0, fraction=-0.25), "fraction"),
        (lambda: gaussian_blur(X[0]), r"x must be a tensor of shape \[B, C, H, W\]"),
        (lambda: black_baseline([0.5, 0.5], [0.2]), "mean and std"),
        (lambda: evaluate_map(region_predict, X, S, 0, box=(0, 0, 99, 99)), "box"),
        (lambda: evaluate_map(region_predict, X, S, 0, top_removed_fraction=2), "top_removed_fraction"),
    ],
)
def test_bad_arguments_raise_xai_core_error_naming_the_argument(call, match):
    with pytest.raises(XaiCoreError, match=match):
        call()


def test_bad_predict_outputs_raise_method_error():
    with pytest.raises(MethodError, match=r"probabilities in \[0, 1\]"):
        insertion_deletion(lambda b: 10 * torch.randn(b.shape[0], 2), X, S, 0)
    with pytest.raises(MethodError, match=r"shape \[B, N\]"):
        insertion_deletion(lambda b: torch.rand(b.shape[0]), X, S, 0)
    with pytest.raises(MethodError, match="torch.Tensor"):
        insertion_deletion(lambda b: [0.5] * b.shape[0], X, S, 0)

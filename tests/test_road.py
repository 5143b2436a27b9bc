"""ROAD (remove and debias): the imputation against pytorch-grad-cam's, and its defects on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from xai_core.errors import MethodError, XaiCoreError
from xai_core.metrics.road import (
    DEFAULT_FRACTIONS,
    NEIGHBOUR_WEIGHTS,
    even_fractions,
    noisy_linear_impute,
    removal_masks,
    road,
    road_combined,
    road_scores,
)


def test_imputation_equals_pytorch_grad_cams_sparse_solve():
    torch.manual_seed(0)
    img = torch.randn(3, 20, 24)
    for keep in ((torch.rand(20, 24) > 0.6).float(), torch.ones(20, 24).index_fill_(0, torch.arange(2, 18), 0)):
        ref = NoisyLinearImputer(noise=0.0)(img, keep)
        ours = noisy_linear_impute(img[None], (keep == 0)[None], noise=0.0)[0]
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_imputation_is_the_neighbour_mean_analytically():
    """One removed pixel in a linear ramp: the weighted neighbour mean is the ramp's value; kept pixels stay."""
    ramp = torch.arange(7.0)[None, :].expand(7, 7)
    x = torch.stack([ramp, 2 * ramp.T, torch.ones(7, 7)])[None]
    removed = torch.zeros(1, 7, 7, dtype=torch.bool)
    removed[0, 3, 3] = removed[0, 3, 4] = True
    out = noisy_linear_impute(x, removed, noise=0.0)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-9)  # a linear function is its own neighbour mean
    assert sum(sum(r) for r in NEIGHBOUR_WEIGHTS) == pytest.approx(1.0)
    x2 = x.clone()
    x2[0, :, 3, 3] = 100.0
    out2 = noisy_linear_impute(x2, removed, noise=0.0)
    torch.testing.assert_close(out2, x, rtol=0, atol=1e-9)  # the removed value never leaks


def test_noise_is_seeded_per_image_and_only_on_removed_pixels():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 12)
    removed = torch.rand(2, 10, 12) > 0.5
    a = noisy_linear_impute(x, removed, noise=0.1, seed=[4, 5])
    b = noisy_linear_impute(x[1:], removed[1:], noise=0.1, seed=5)
    torch.testing.assert_close(a[1:], b)
    assert torch.equal(a[:, :, ~removed[0]][0], x[:, :, ~removed[0]][0])
    assert not torch.allclose(a, noisy_linear_impute(x, removed, noise=0.1, seed=[6, 7]))
    with pytest.raises(XaiCoreError, match="Every pixel"):
        noisy_linear_impute(x, torch.ones(2, 10, 12, dtype=torch.bool))


class _Mean(nn.Module):
    """Logits: (mean of channel 0 over the top half, mean of channel 1 over the bottom half, 0)."""

    def forward(self, x):
        h = x.shape[-2] // 2
        return torch.stack([x[:, 0, :h].mean((1, 2)), x[:, 1, h:].mean((1, 2)), torch.zeros(len(x))], 1)


def _predict(x):
    return torch.softmax(_Mean()(x), dim=1)


def test_road_morf_and_lerf_on_a_model_that_reads_the_top_half():
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, :4] = 3.0
    good = torch.zeros(8, 8)
    good[:4] = 1.0 + torch.linspace(0, 0.1, 32).reshape(4, 8)
    morf = road(_predict, x, good, [0], order="morf", noise=0.0, fractions=(0.25, 0.5))
    lerf = road(_predict, x, good, [0], order="lerf", noise=0.0, fractions=(0.25, 0.5))
    assert morf.scores[0, 1] < lerf.scores[0, 1] - 0.3  # removing the evidence hurts, removing the rest does not
    assert np.all(lerf.scores[0] >= lerf.base[0] - 1e-6)
    assert road_combined(_predict, x, good, [0], noise=0.0, fractions=(0.25, 0.5))[0] > 0
    assert road_combined(_predict, x, -good, [0], noise=0.0, fractions=(0.25, 0.5))[0] < 0


def test_batched_road_equals_one_image_at_a_time():
    torch.manual_seed(2)
    x = torch.randn(3, 3, 10, 10)
    s = torch.rand(3, 5, 5)
    both = road(_predict, x, s, [0, 1, 0], fractions=(0.3, 0.6))
    for i in range(3):
        one = road(_predict, x[i : i + 1], s[i : i + 1], [[0, 1, 0][i]], fractions=(0.3, 0.6), seed=i)
        np.testing.assert_allclose(both.scores[i], one.scores[0], rtol=1e-5, atol=1e-6)


def test_pytorch_grad_cam_removes_every_pixel_when_the_map_has_many_zeros():
    """Its percentile threshold with a strict '<' keeps nothing when ties fill the kept share.

    A ReLU'd map that is 0 on 60 % of the pixels, MoRF keeping 50 %: the 50th percentile
    is 0 and ``cam < 0`` keeps no pixel, so 100 % are removed instead of 50 % (and the
    imputation then has nothing to impute from). Ours removes exactly half.
    """
    cam = torch.zeros(10, 10)
    cam[:4] = torch.rand(4, 10) + 0.1
    seen = {}

    def spy(img, keep):
        seen["kept"] = int(keep.sum())
        return img

    RemoveMostRelevantFirst(50, spy)(torch.zeros(3, 10, 10), cam)
    assert seen["kept"] == 0
    ours = removal_masks(cam[None], [0.5], "morf")
    assert int(ours.sum()) == 50
    assert bool(ours[0, 0, :4].all())  # the 40 non-zero pixels are removed first


def test_pytorch_grad_cam_imputer_ignores_its_weighting_argument():
    torch.manual_seed(3)
    img = torch.randn(1, 6, 6)
    keep = torch.ones(6, 6)
    keep[2:4, 2:4] = 0
    only_right = [((0, 1), 1.0)]
    a = NoisyLinearImputer(noise=0.0, weighting=only_right)(img, keep)
    b = NoisyLinearImputer(noise=0.0)(img, keep)
    torch.testing.assert_close(a, b)


def test_road_scores_match_pytorch_grad_cam_without_noise_where_its_threshold_is_exact():
    """Distinct map values (no ties): the same removed pixels, the same imputation, the same logits."""
    torch.manual_seed(4)
    x = torch.randn(1, 3, 12, 12)
    cam = torch.rand(12, 12)
    net = _Mean()
    ref = ROADMostRelevantFirst(percentile=70)
    ref.perturbation.imputer.noise = 0.0
    theirs = ref(x, cam[None].numpy(), [ClassifierOutputTarget(1)], net, return_diff=False)
    ours = road(lambda b: net(b), x, cam, [1], order="morf", fractions=(0.3,), noise=0.0)
    np.testing.assert_allclose(ours.scores[0, 0], theirs[0], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- progress, stop, bad values


def test_road_scores_gives_both_orders_as_road_does_and_counts_every_imputed_image():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 12, 10)
    s = torch.rand(2, 6, 5)
    calls = []
    both = road_scores(_predict, x, s, [0, 1], fractions=(0.2, 0.5, 0.8), progress=lambda d, t: calls.append((d, t)))
    for order in ("morf", "lerf"):
        one = road(_predict, x, s, [0, 1], order=order, fractions=(0.2, 0.5, 0.8))
        np.testing.assert_allclose(both[order].scores, one.scores, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(both[order].base, one.base)
    assert list(both) == ["morf", "lerf"]
    total = 2 * 2 * 3  # orders x images x fractions
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == total and done == sorted(done)
    assert sorted(set(done)) == list(range(0, total + 1, 2))  # after each fraction (2 images), once at the start
    assert len(calls) > len(set(done)), "the solver reports (with the same numbers) between fractions too"


def test_a_progress_callback_that_raises_stops_road_within_one_solver_iteration():
    class Stop(Exception):
        pass

    torch.manual_seed(6)
    x = torch.randn(1, 3, 16, 16)
    s = torch.rand(16, 16)
    predicted = []

    def predict(b):
        predicted.append(len(b))
        return _predict(b)

    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 2:  # two fractions scored: stop in the third one's solve
            raise Stop

    with pytest.raises(Stop):
        road_scores(predict, x, s, [0], fractions=(0.2, 0.4, 0.6, 0.8), progress=progress)
    assert sum(predicted) == 1 + 2  # the unperturbed image, then the two finished fractions only
    assert seen[-1] == 2

    iterations = []

    def on_iteration():
        iterations.append(1)
        if len(iterations) == 3:
            raise Stop

    removed = torch.zeros(1, 16, 16, dtype=torch.bool)
    removed[0, 4:12, 4:12] = True
    with pytest.raises(Stop):
        noisy_linear_impute(x, removed, on_iteration=on_iteration)
    assert len(iterations) == 3


def test_even_fractions():
    assert even_fractions(9) == DEFAULT_FRACTIONS
    assert even_fractions(3) == (0.25, 0.5, 0.75)
    assert even_fractions(1) == (0.5,)
    for bad in (0, 2.5, True):
        with pytest.raises(MethodError):
            even_fractions(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": "random"}, "order must be one of"),
        ({"fractions": (0.5, 1.0)}, "fraction must lie in"),
        ({"fractions": ()}, "at least one share"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"class_idx": [0, 1]}, "one class per image"),
        ({"saliency": torch.rand(2, 4, 4)}, "saliency must be"),
        ({"x": torch.zeros(1, 3, 8, 8, dtype=torch.long)}, "floating-point"),
        ({"x": "not a tensor"}, "floating-point"),
    ],
)
def test_bad_values_raise_the_value_error_subclass(kwargs, match):
    args = {"x": torch.zeros(1, 3, 8, 8), "saliency": torch.rand(8, 8), "class_idx": [0], **kwargs}
    x, s, c = args.pop("x"), args.pop("saliency"), args.pop("class_idx")
    with pytest.raises(MethodError, match=match) as info:
        road(_predict, x, s, c, **args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, XaiCoreError)
    with pytest.raises(MethodError, match="orders must be distinct"):
        road_scores(_predict, torch.zeros(1, 3, 8, 8), torch.rand(8, 8), [0], orders=("morf", "morf"))
    with pytest.raises(ValueError, match="Every pixel"):
        noisy_linear_impute(torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))

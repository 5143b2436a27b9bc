"""Analytic tests of the new methods and of what the CAM driver adds (smoothing, fusion, targets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import TinyGapNet
from tests.peer_helpers import run_ours
from xai_core.errors import MethodError
from xai_core.methods.activation import fem_weights, kpca_cam, random_weights
from xai_core.methods.blocks import GRAIN, SERIAL_LIMIT, serial_blocks
from xai_core.methods.gradient import EPS, xgrad_cam_weights
from xai_core.methods.guided import GuidedClamp, guided_relus
from xai_core.methods.smoothing import AUGMENTATIONS, augment, principal_projection, relu_minmax, to_maps


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return TinyGapNet(classes=5, channels=6).eval()


def _features(net, x):
    return net.features(x).detach()


def test_fem_weights_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[0.0, 0.0], [0.0, 4.0]])  # mean 1, std sqrt(3): 4 > 1 + 1 * 1.73
    a[0, 1] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # constant: nothing above the mean
    torch.testing.assert_close(fem_weights(a, k=1.0), torch.tensor([[[0.25, 0.0]]]))
    torch.testing.assert_close(fem_weights(a, k=2.0), torch.tensor([[[0.0, 0.0]]]))  # 4 < 1 + 2 * 1.73


@pytest.mark.parametrize("shape", [(1, 1280, 7, 7), (2, 1280, 7, 7), (3, 320, 7, 7), (1, 40, 56, 56), (1, 7, 3, 5)])
def test_fem_and_xgrad_in_serial_blocks_are_the_whole_tensor_maths_bit_for_bit(shape):
    """Small CPU maps are computed per block of channels (no OpenMP region per op); the weights do not change."""
    torch.manual_seed(sum(shape))
    a = (torch.randn(shape) * torch.rand(1, shape[1], 1, 1) * 3).relu()
    blocks = serial_blocks(a)
    assert sum(b.shape[1] for b in blocks) == shape[1]
    small = GRAIN < a.numel() <= SERIAL_LIMIT
    assert len(blocks) > 1 if small else len(blocks) == 1
    assert all(b.numel() <= GRAIN for b in blocks) or not small
    for k in (0.0, 1.0, 2.0):
        mean = a.mean(dim=(2, 3), keepdim=True)
        std = a.std(dim=(2, 3), keepdim=True, unbiased=False)
        whole = (a > mean + k * std).to(a.dtype).mean(dim=(2, 3))[:, None]
        assert torch.equal(fem_weights(a, k), whole)
    g = torch.randn(shape[0], 2, *shape[1:])  # K = 2 classes
    whole = (g * a[:, None]).sum(dim=(3, 4)) / (a.sum(dim=(2, 3))[:, None] + EPS)
    assert torch.equal(xgrad_cam_weights(a, g), whole)
    assert len(serial_blocks(torch.zeros(1, 64, 112, 112))) == 1  # large maps keep PyTorch's parallel ops


def test_random_cam_is_seeded_per_class_and_in_range(tiny):
    idx = torch.tensor([[3, 1], [1, 4]])
    w = random_weights(idx, 6, seed=7, dtype=torch.float32)
    assert w.shape == (2, 2, 6) and float(w.abs().max()) <= 1.0
    torch.testing.assert_close(w[0, 1], w[1, 0])  # class 1 in both images: the same weights
    assert not torch.allclose(w[0, 0], w[0, 1])
    torch.testing.assert_close(w, random_weights(idx, 6, seed=7, dtype=torch.float32))
    assert not torch.allclose(w, random_weights(idx, 6, seed=8, dtype=torch.float32))
    x = torch.randn(1, 3, 10, 10)
    cam = run_ours(tiny, x, "features", "random_cam", 3, seed=7)
    expected = torch.einsum(
        "c,chw->hw", random_weights(torch.tensor([[3]]), 6, 7, torch.float32)[0, 0], _features(tiny, x)[0]
    )
    torch.testing.assert_close(cam, expected)


def test_shapley_cam_with_a_quadratic_head():
    """Score = sum_c v_c mean(A_c^2): g = 2 v A / hw, H A = 2 v A / hw, so w_c = v_c mean(A_c) / hw."""

    class Quad(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3, padding=1)
            self.v = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

        def forward(self, x):
            a = self.features(x)
            return (a.pow(2).mean(dim=(2, 3)) * self.v).sum(1, keepdim=True).expand(-1, 2) * torch.tensor([1.0, 2.0])

    torch.manual_seed(1)
    net = Quad().eval()
    x = torch.randn(1, 3, 5, 6)
    a = net.features(x).detach()[0]
    hw = 30
    expected = ((net.v[0] * a.mean(dim=(1, 2)) / hw)[:, None, None] * a).sum(0)
    torch.testing.assert_close(run_ours(net, x, "features", "shapley_cam", 0), expected, rtol=1e-4, atol=1e-6)
    grad_cam = ((2 * net.v[0] * a.mean(dim=(1, 2)) / hw)[:, None, None] * a).sum(0)
    torch.testing.assert_close(run_ours(net, x, "features", "grad_cam", 0), grad_cam, rtol=1e-4, atol=1e-6)


def test_shapley_cam_equals_grad_cam_behind_a_linear_head(tiny):
    x = torch.randn(1, 3, 10, 12)
    for c in range(3):
        torch.testing.assert_close(
            run_ours(tiny, x, "features", "shapley_cam", c), run_ours(tiny, x, "features", "grad_cam", c)
        )


def test_finer_cam_on_a_linear_head(tiny):
    """GAP + linear: dy_j/dA_c = W[j, c] / hw, so Finer-CAM's weights are (W_c - alpha mean W_refs) / hw."""
    x = torch.randn(1, 3, 10, 12)
    a = _features(tiny, x)[0]
    logits = tiny(x)[0].detach()
    c = 2
    d = (logits - logits[c]).abs()
    d[c] = float("inf")
    refs = torch.sort(d, stable=True).indices[:3]
    hw = a.shape[1] * a.shape[2]
    wt = (tiny.fc.weight[c] - 0.6 * tiny.fc.weight[refs].mean(0)).detach() / hw
    expected = (wt[:, None, None] * a).sum(0)
    ours = run_ours(tiny, x, "features", "finer_cam", c, alpha=0.6, comparison="mean")
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)
    zero = run_ours(tiny, x, "features", "finer_cam", c, alpha=0.0)
    torch.testing.assert_close(zero, run_ours(tiny, x, "features", "grad_cam", c), rtol=1e-5, atol=1e-7)


def test_kpca_with_a_linear_kernel_is_pca():
    torch.manual_seed(2)
    a = torch.randn(2, 5, 4, 6)
    lin = kpca_cam(a, kernel="linear")
    pca = principal_projection(a[:, None])
    for i in range(2):
        assert abs(float(torch.corrcoef(torch.stack([lin[i, 0].flatten(), pca[i, 0].flatten()]))[0, 1])) > 0.9999


def test_principal_projection_sign_follows_the_sum():
    comp = torch.zeros(1, 1, 3, 4, 4)
    blob = torch.zeros(4, 4)
    blob[1:3, 1:3] = 1.0
    comp[0, 0] = torch.stack([blob, 2 * blob, 0.5 * blob])  # rank one: the projection is the centred blob
    proj = principal_projection(comp)[0, 0]
    assert float(proj[1, 1]) > 0 > float(proj[0, 0])
    torch.testing.assert_close(
        proj - proj.mean(), (proj.max() - proj.min()) * (blob - blob.mean()), rtol=1e-5, atol=1e-6
    )


def test_driver_accepts_weights_components_and_maps():
    torch.manual_seed(3)
    a = torch.randn(2, 4, 3, 5)
    w = torch.randn(2, 3, 4)
    maps = to_maps(w, a)
    torch.testing.assert_close(maps, torch.einsum("nkc,nchw->nkhw", w, a))
    torch.testing.assert_close(to_maps(w[..., None, None] * a[:, None], a), maps)
    torch.testing.assert_close(to_maps(maps, a), maps)
    with pytest.raises(MethodError, match="must return"):
        to_maps(torch.randn(2, 3, 7), a)


def test_smooth_grad_cam_pp_without_noise_is_grad_cam_pp_with_torchcams_eps(tiny):
    from xai_core.methods import gradient

    x = torch.randn(1, 3, 10, 12)
    a = _features(tiny, x)
    ours = run_ours(tiny, x, "features", "smooth_grad_cam_pp", 1, std=0.0, num_samples=3)
    g = torch.autograd.functional.jacobian(lambda t: tiny.fc(tiny.pool(t).flatten(1))[0, 1], a)
    w = gradient.grad_cam_pp_weights(a, g[:, None], eps=1e-8)
    torch.testing.assert_close(ours, gradient.weighted_sum(w, a)[0, 0], rtol=1e-5, atol=1e-8)


def test_is_cam_with_one_step_is_ss_cam_without_noise(tiny):
    x = torch.randn(1, 3, 10, 12)
    a = run_ours(tiny, x, "features", "is_cam", 1, num_samples=1, batch_size=4)
    b = run_ours(tiny, x, "features", "ss_cam", 1, num_samples=1, std=0.0, batch_size=4)
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0  # softmax weights of non-negative activations


def test_aug_smooth_is_the_mean_of_the_augmented_maps(tiny):
    x = torch.randn(2, 3, 10, 12)
    ours = torch.stack([run_ours(tiny, x[i : i + 1], "features", "grad_cam", 0, aug_smooth=True) for i in range(2)])
    for i in range(2):
        parts = []
        for flip, factor in AUGMENTATIONS:
            m = relu_minmax(run_ours(tiny, augment(x[i : i + 1], flip, factor), "features", "grad_cam", 0))
            parts.append(m.flip(-1) if flip else m)
        torch.testing.assert_close(ours[i], torch.stack(parts).mean(0), rtol=1e-5, atol=1e-6)
    assert len(AUGMENTATIONS) == 6


def test_multi_layer_fusion_by_hand(tiny):
    x = torch.randn(1, 3, 10, 12)
    maps = [run_ours(tiny, x, name, "grad_cam", 2) for name in ("features.1", "features.3")]
    maps = [relu_minmax(m)[None, None] for m in maps]
    mean = relu_minmax(
        torch.stack([F.interpolate(m, size=(10, 12), mode="bilinear", align_corners=False) for m in maps]).mean(0)
    )
    torch.testing.assert_close(run_ours(tiny, x, ["features.1", "features.3"], "grad_cam", 2), mean[0, 0])
    big = maps[0].shape[-2:]
    peak = torch.maximum(maps[0], F.interpolate(maps[1], size=big, mode="bilinear", align_corners=False))
    torch.testing.assert_close(
        run_ours(tiny, x, ["features.1", "features.3"], "grad_cam", 2, layer_fusion="max"), peak[0, 0]
    )
    with pytest.raises(MethodError, match="distinct"):
        run_ours(tiny, x, ["features.1", "features.1"], "grad_cam", 2)
    with pytest.raises(MethodError, match="one layer"):
        run_ours(tiny, x, ["features.1", "features.3"], "guided_backprop", 2)


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = F.hardtanh(h, -1.0, 1.0)  # not a rectifier: left alone
        return self.act(self.c2(h)).mean(dim=(2, 3))


def test_guided_relus_route_every_rectifier_and_leave_others():
    torch.manual_seed(4)
    net = _Functional().eval()
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    calls = []
    original = GuidedClamp.apply

    def spy(*args):
        calls.append(args[1:])
        return original(*args)

    GuidedClamp.apply = spy
    try:
        with guided_relus():
            y = net(x)
    finally:
        GuidedClamp.apply = original
    assert calls == [(0.0, None, False), (0.0, 6.0, True)]
    (g,) = torch.autograd.grad(y[0, 0], x)
    # By hand: the same network with the guided rule written out.
    x2 = x.detach().clone().requires_grad_(True)
    z1 = net.c1(x2)
    h = GuidedClamp.apply(z1, 0.0, None, False)
    z2 = net.c2(F.hardtanh(h, -1.0, 1.0))
    out = GuidedClamp.apply(z2, 0.0, 6.0, False).mean(dim=(2, 3))
    (g2,) = torch.autograd.grad(out[0, 0], x2)
    torch.testing.assert_close(g, g2)
    y = net(x)  # outside the block: plain rectifiers again
    (plain,) = torch.autograd.grad(y[0, 0], x)
    assert not torch.allclose(plain, g)


def test_guided_clamp_backward_by_hand():
    x = torch.tensor([-1.0, 0.5, 2.0, 7.0], requires_grad=True)
    y = GuidedClamp.apply(x, 0.0, 6.0, False)
    (g,) = torch.autograd.grad(y, x, grad_outputs=torch.tensor([1.0, 1.0, -1.0, 1.0]))
    torch.testing.assert_close(g, torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_fullgrad_on_a_bias_only_network():
    """One conv with bias then GAP + linear: FullGrad = psi(|x dy/dx|) + sum_c psi(|b_c dy/dz_c|)."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    x = torch.randn(1, 2, 4, 5)
    ours = run_ours(net, x, "0", "fullgrad", 1)
    hw = 20
    gz = (net[3].weight[1] / hw).detach()  # dy/dz_c, constant over positions
    gx = torch.einsum("c,ck->k", gz, net[0].weight[:, :, 0, 0].detach())  # dy/dx_k

    def psi(t):
        return (t - t.amin(dim=(-2, -1), keepdim=True)) / (
            t.amax(dim=(-2, -1), keepdim=True) - t.amin(dim=(-2, -1), keepdim=True) + 1e-7
        )  # noqa: E731

    input_part = psi((x[0] * gx[:, None, None]).abs()).sum(0)
    bias_part = psi((net[0].bias.detach() * gz)[:, None, None].abs().expand(3, 4, 5)).sum(0)  # constant maps: 0
    torch.testing.assert_close(ours, input_part + bias_part, rtol=1e-5, atol=1e-6)

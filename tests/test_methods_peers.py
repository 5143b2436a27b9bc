"""The new CAM methods against the peer that has each: pytorch-grad-cam 1.5.7 and torchcam 0.5.0.

Same model, layer, image and class; our map processed as the peers process theirs (ReLU,
bilinear upsampling, min-max); agreement = Pearson correlation >= 0.999 on three
architectures (random-weight torchvision ResNet-18, a small random VGG-like net,
EfficientNet-Lite0 with its real weights) and three sample images. Where we differ on
purpose, a test on a constructed case shows the peer's defect.

The masked-pass methods (SS-CAM, IS-CAM) run thousands of forward passes and are marked
slow; they use a shallower layer (fewer channels) and few samples.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchcam.methods as tcm
import torchvision
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel
from torch import nn

from tests.conftest import slow_except
from tests.peer_helpers import (
    ARCHS,
    corr,
    images,
    pgc_map,
    processed,
    resnet18,
    run_ours,
    top_class,
    torchcam_map,
    vgg_like,
)

AGREE = 0.999


@pytest.fixture(scope="module")
def imgs():
    return images()


# ResNet-18 and Lite0 (224 px) in the full suite only; the fast loop compares on the small VGG.
@pytest.fixture(scope="module", params=slow_except(sorted(ARCHS), fast={"vgg_like"}))
def arch(request):
    build, layer = ARCHS[request.param]
    return request.param, build(), layer


def _each(arch, imgs):
    name, model, layer = arch
    for i, x in enumerate(imgs):
        yield name, i, model, layer, x, top_class(model, x)


PGC_CASES = {
    # method key: (pytorch-grad-cam class, our parameters, pytorch-grad-cam call arguments)
    "eigen_grad_cam": ("EigenGradCAM", {}, {}),
    "grad_cam_elementwise": ("GradCAMElementWise", {}, {}),
    "fem": ("FEM", {}, {}),
    "shapley_cam": ("ShapleyCAM", {}, {}),
    "grad_cam": ("GradCAM", {"eigen_smooth": True}, {"eigen_smooth": True}),
    "layer_cam": ("LayerCAM", {"eigen_smooth": True}, {"eigen_smooth": True}),
}


@pytest.mark.parametrize("method", sorted(PGC_CASES))
def test_agrees_with_pytorch_grad_cam(method, arch, imgs):
    cls_name, ours_params, call = PGC_CASES[method]
    for name, i, model, layer, x, c in _each(arch, imgs):
        signed = run_ours(model, x, layer, method, c, **ours_params)
        ours = processed(signed, x.shape[-2:])
        ref = pgc_map(getattr(pgc, cls_name), model, x, model.get_submodule(layer), c, **call)
        if call.get("eigen_smooth") and corr(ours, ref) < AGREE:
            # pytorch-grad-cam keeps LAPACK's arbitrary sign (test_pytorch_grad_cam_eigen_smooth_sign_is_arbitrary)
            ours = processed(-signed, x.shape[-2:])
        assert corr(ours, ref) >= AGREE, (method, name, i, corr(ours, ref))


@pytest.mark.slow
def test_aug_smooth_agrees_with_pytorch_grad_cam(arch, imgs):
    for name, i, model, layer, x, c in _each(arch, imgs):
        ours = processed(run_ours(model, x, layer, "grad_cam", c, aug_smooth=True), x.shape[-2:])
        ref = pgc_map(pgc.GradCAM, model, x, model.get_submodule(layer), c, aug_smooth=True)
        assert corr(ours, ref) >= AGREE, (name, i, corr(ours, ref))


def test_finer_cam_agrees_with_both_peers(arch, imgs):
    for name, i, model, layer, x, c in _each(arch, imgs):
        ours = processed(run_ours(model, x, layer, "finer_cam", c, comparison="probability", alpha=1.0), (224, 224))
        with pgc.FinerCAM(model, [model.get_submodule(layer)]) as cam:
            ref = cam(x, target_idx=c)[0]
        assert corr(ours, ref) >= AGREE, ("pytorch-grad-cam", name, i, corr(ours, ref))
        ours = processed(run_ours(model, x, layer, "finer_cam", c, comparison="mean", alpha=0.6), (224, 224))
        ref = processed(torchcam_map(tcm.FinerCAM, model, x, layer, c), (224, 224))
        assert corr(ours, ref) >= AGREE, ("torchcam", name, i, corr(ours, ref))


MULTI = {
    "resnet18": ["layer3", "layer4"],
    "vgg_like": ["features.9", "features.12"],
    "lite0": ["_blocks.10", "_head_act"],
}


def test_multi_layer_fusion_agrees_with_both_peers(arch, imgs):
    for name, i, model, _, x, c in _each(arch, imgs):
        layers = MULTI[name]
        ours = processed(run_ours(model, x, layers, "grad_cam", c, layer_fusion="mean"), (224, 224))
        ref = pgc_map(pgc.GradCAM, model, x, [model.get_submodule(n) for n in layers], c)
        assert corr(ours, ref) >= AGREE, ("mean", name, i, corr(ours, ref))
        ours = processed(run_ours(model, x, layers, "grad_cam", c, layer_fusion="max"), (224, 224))
        ref = processed(torchcam_map(tcm.GradCAM, model, x, layers, c, fuse=True), (224, 224))
        assert corr(ours, ref) >= AGREE, ("max", name, i, corr(ours, ref))


def test_smooth_grad_cam_pp_agrees_with_torchcam_at_small_noise(arch, imgs):
    """With negligible noise both are Grad-CAM++ with averaged derivatives (the weights' formula)."""
    for name, i, model, layer, x, c in _each(arch, imgs):
        ours = processed(run_ours(model, x, layer, "smooth_grad_cam_pp", c, std=1e-4, seed=0), (224, 224))
        torch.manual_seed(0)
        ref = processed(torchcam_map(tcm.SmoothGradCAMpp, model, x, layer, c, std=1e-4), (224, 224))
        assert corr(ours, ref) >= AGREE, (name, i, corr(ours, ref))


def test_fullgrad_agrees_with_pytorch_grad_cam(arch, imgs):
    for name, i, model, layer, x, c in _each(arch, imgs):
        ours = processed(run_ours(model, x, layer, "fullgrad", c), (224, 224))
        ref = pgc_map(pgc.FullGrad, model, x, [], c)
        assert corr(ours, ref) >= AGREE, (name, i, corr(ours, ref))


def _squeezenet() -> nn.Module:
    torch.manual_seed(5)
    return torchvision.models.squeezenet1_1(weights=None, num_classes=20).eval()


@pytest.mark.parametrize(
    "build,layer", [(resnet18, "layer4"), (vgg_like, "features.12"), (_squeezenet, "features.12")], ids=str
)
def test_guided_methods_agree_with_pytorch_grad_cam_on_relu_networks(build, layer, imgs):
    """ReLU networks (EfficientNet-Lite0's ReLU6 is not guided by pytorch-grad-cam: see below).

    The peer runs on a copy of the model and of the input: it rewrites the model's ReLUs
    and makes the input require grad (see the defect tests).
    """
    model = build()
    for i, x in enumerate(imgs):
        c = top_class(model, x)
        gb = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")(x.clone(), target_category=c).sum(-1)
        ours = run_ours(model, x, layer, "guided_backprop", c)
        assert corr(ours.numpy(), gb) >= AGREE, (i, corr(ours.numpy(), gb))  # signed maps
        mask = pgc_map(pgc.GradCAM, model, x, model.get_submodule(layer), c)
        ggc = (
            GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")(x.clone(), target_category=c) * mask[..., None]
        )
        ours = run_ours(model, x, layer, "guided_grad_cam", c)
        assert corr(ours.numpy(), ggc.sum(-1)) >= AGREE, (i, corr(ours.numpy(), ggc.sum(-1)))


MASKED_LAYERS = {"resnet18": "layer1", "vgg_like": "features.12", "lite0": "_blocks.3"}


@pytest.mark.slow
def test_ss_cam_and_is_cam_agree_with_torchcam(arch, imgs):
    name, model, _ = arch
    layer = MASKED_LAYERS[name]
    for i, x in enumerate(imgs):
        c = top_class(model, x)
        ours = processed(run_ours(model, x, layer, "ss_cam", c, num_samples=2, std=2.0, seed=3), (224, 224))
        torch.manual_seed(3)
        ref = processed(torchcam_map(tcm.SSCAM, model, x, layer, c, num_samples=2, std=2.0), (224, 224))
        assert corr(ours, ref) >= AGREE, ("SS-CAM", name, i, corr(ours, ref))
        ours = processed(run_ours(model, x, layer, "is_cam", c, num_samples=3), (224, 224))
        ref = processed(torchcam_map(tcm.ISCAM, model, x, layer, c, num_samples=3), (224, 224))
        assert corr(ours, ref) >= AGREE, ("IS-CAM", name, i, corr(ours, ref))


def test_kpca_cam_is_pytorch_grad_cams_projection_up_to_sign(arch, imgs):
    """The signed projections agree up to sign; the sign is ours (see the next test)."""
    from xai_core.hooks import capture
    from xai_core.methods.activation import kpca_cam

    name, model, layer = arch
    for i, x in enumerate(imgs):
        with capture(model, layer, grad=False) as cap:
            model(x)
        a = cap[layer]
        ours = kpca_cam(a)[0, 0].numpy()
        ref = get_2d_projection_kernel(a.numpy(), "sigmoid", None)[0]
        assert abs(corr(ours, ref)) >= AGREE, (name, i, corr(ours, ref))
        assert corr(ours, a[0].sum(0).numpy()) > 0


# ------------------------------------------------------------------ the peers' defects, on constructed cases


def test_pytorch_grad_cam_eigen_smooth_sign_is_arbitrary(imgs):
    """Its ``get_2d_projection`` keeps LAPACK's sign: here (seeded VGG-like net, first sample image,
    Grad-CAM++) its eigen-smoothed map is the *negative* projection, anti-correlated with the
    plain Grad-CAM++ map. Ours fixes the sign to agree with the map without smoothing."""
    model, x = vgg_like(), imgs[0]
    c = top_class(model, x)
    layer = model.get_submodule("features.12")
    theirs = pgc_map(pgc.GradCAMPlusPlus, model, x, layer, c, eigen_smooth=True)
    plain = pgc_map(pgc.GradCAMPlusPlus, model, x, layer, c)
    ours = run_ours(model, x, "features.12", "grad_cam_pp", c, eigen_smooth=True)
    assert corr(theirs, processed(-ours, (224, 224))) >= AGREE  # the same projection, other sign
    assert corr(theirs, plain) < 0 < corr(processed(ours, (224, 224)), plain)


def test_pytorch_grad_cam_kpca_sign_can_highlight_the_inactive_region():
    """scikit-learn's KernelPCA signs its component so that the largest |entry| is positive.

    Feature maps active (1) on 70 % of the positions and 0 on the rest: centred, the small
    inactive region has the largest |value|, so pytorch-grad-cam's KPCA-CAM points at the
    region where no channel fires; ours points at the active region.
    """
    from xai_core.methods.activation import kpca_cam

    a = torch.zeros(1, 4, 10, 10)
    a[:, :, :7, :] = torch.tensor([1.0, 0.8, 1.2, 0.9])[:, None, None]
    ref = get_2d_projection_kernel(a.numpy(), "sigmoid", None)[0]
    ours = kpca_cam(a)[0, 0].numpy()
    active = a[0, 0].numpy() > 0
    assert ref[~active].mean() > ref[active].mean()  # the peer: the inactive rows are "salient"
    assert ours[active].mean() > ours[~active].mean()


def test_torchcam_smooth_grad_cam_pp_maps_the_last_noisy_input():
    """torchcam's map weights the activations of the last noisy input, not the clean image's.

    With one sample, torchcam's map is ``relu(sum_c w_c A_c(x + noise))`` (then min-max
    scaled), ``w`` from that sample's gradients; the same weights on the clean image's
    activations (our definition) give a different map.
    """
    from xai_core.methods.smoothing import relu_minmax

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)
    )
    net.eval()
    x = torch.randn(1, 3, 12, 12)
    torch.manual_seed(5)
    theirs = torchcam_map(tcm.SmoothGradCAMpp, net, x, "1", 2, num_samples=1, std=1.0)
    torch.manual_seed(5)
    noisy = (x + torch.randn(x.shape)).requires_grad_(True)
    a_noisy = net[:2](noisy)
    (g,) = torch.autograd.grad(net[2:](a_noisy)[0, 2], a_noisy)
    a_noisy, a_clean = a_noisy.detach()[0], net[:2](x).detach()[0]
    g2, g3 = g[0] ** 2, g[0] ** 3
    alpha = g2 / (2 * g2 + (g3 * a_clean).sum(dim=(1, 2), keepdim=True) + 1e-8)
    w = (alpha * g[0].clamp(min=0)).sum(dim=(1, 2))
    on_noisy = relu_minmax((w[:, None, None] * a_noisy).sum(0))
    on_clean = relu_minmax((w[:, None, None] * a_clean).sum(0))
    torch.testing.assert_close(theirs, on_noisy, rtol=1e-4, atol=1e-5)
    assert corr(on_noisy.numpy(), on_clean.numpy()) < 0.99


class _FunctionalAndReLU6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 6, 3, padding=1)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = self.act(self.c1(x))
        return self.fc(torch.nn.functional.relu(self.c2(h)).mean(dim=(2, 3)))


def test_pytorch_grad_cam_guided_backprop_ignores_relu6_and_functional_relus():
    """It swaps ``nn.ReLU`` modules only: on this net its "guided" gradient is the plain gradient."""
    torch.manual_seed(1)
    net = _FunctionalAndReLU6().eval()
    x = torch.randn(1, 3, 8, 8)
    theirs = GuidedBackpropReLUModel(copy.deepcopy(net), device="cpu")(x.clone(), target_category=1)
    xg = x.clone().requires_grad_(True)
    net(xg)[0, 1].backward()
    plain = xg.grad[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(theirs, plain, rtol=1e-5, atol=1e-7)
    ours = run_ours(net, x, "c2", "guided_backprop", 1)
    assert not np.allclose(ours.numpy(), plain.sum(-1), atol=1e-6)


def test_pytorch_grad_cam_guided_backprop_changes_the_model_and_its_output_aliases_the_input_grad():
    """After one call the model's ReLUs are one shared, not-in-place module (our layer check then
    refuses them as reused), and the returned array is a view of ``input.grad`` that a later backward
    pass through the same input changes. Ours leaves the model and the input untouched."""
    model = vgg_like()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    x = torch.randn(1, 3, 32, 32)
    gb = GuidedBackpropReLUModel(model, device="cpu")(x, target_category=1)
    assert model.features[2] is model.features[6] and model.features[2] is not relus[0]
    assert not model.features[2].inplace
    before = gb.copy()
    model(x)[0, 2].backward()
    assert not np.allclose(gb, before)
    fresh = vgg_like()
    y = torch.randn(1, 3, 32, 32)
    y0 = y.clone()
    run_ours(fresh, y, "features.12", "guided_backprop", 1)
    assert torch.equal(y, y0) and not y.requires_grad and y.grad is None
    assert all(m.inplace for m in fresh.modules() if isinstance(m, nn.ReLU))

"""CAM-family maths: analytic cases, the independent pytorch-grad-cam oracle, contracts."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

from tests.conftest import TinyGapNet
from tests.explain_helpers import cams
from tests.test_registry import hook_count as _hook_count
from xai_core.errors import LayerError, LayerNotFoundError, MethodError, UnknownNameError
from xai_core.methods import class_gradients, get_explainer
from xai_core.methods.activation import eigen_cam


def ours_at_input(model, x, method, layer, cls, **params) -> np.ndarray:
    """Our map, processed as pytorch-grad-cam processes its output: ReLU, upsample, min-max."""
    cam = cams(model, x, method=method, layer=layer, class_idx=[cls], **params).cams[0]
    up = F.interpolate(cam.clamp(min=0)[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    up = up - up.min()
    return (up / (up.max() + 1e-7)).numpy()


def theirs(cls_, model, x, layer_module, cls, **kwargs) -> np.ndarray:
    with cls_(model=model, target_layers=[layer_module], **kwargs) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


PGC_GRADIENT = {
    "grad_cam": pgc.GradCAM,
    "grad_cam_pp": pgc.GradCAMPlusPlus,
    "xgrad_cam": pgc.XGradCAM,
    "hires_cam": pgc.HiResCAM,
    "layer_cam": pgc.LayerCAM,
}


@pytest.mark.parametrize("method", sorted(PGC_GRADIENT))
def test_gradient_methods_agree_with_pytorch_grad_cam(lite0, cat_dog, method):
    x = __import__("xai_core").prepare(cat_dog, lite0.spec.preprocessing).tensor
    layer = "_head_act"
    for cls in (243, 282):  # bull mastiff, tiger cat
        ours = ours_at_input(lite0.module, x, method, layer, cls)
        ref = theirs(PGC_GRADIENT[method], lite0.module, x, lite0.module._head_act, cls)
        assert corr(ours, ref) >= 0.999, (method, cls, corr(ours, ref))


@pytest.fixture()
def small_relu_net():
    """A small random CNN with a post-ReLU feature layer (cheap for perturbation methods)."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 6),
    ).eval()
    x = torch.randn(1, 3, 24, 20)
    return net, x


def test_score_cam_logit_softmax_variant_agrees_with_pytorch_grad_cam(small_relu_net):
    net, x = small_relu_net
    for cls in range(3):
        ours = ours_at_input(net, x, "score_cam", "4", cls, variant="logit_softmax")
        ref = theirs(pgc.ScoreCAM, net, x, net[4], cls)
        assert corr(ours, ref) >= 0.999


def test_score_cam_default_uses_probabilities(small_relu_net):
    """The authors' definition: weights are the class probabilities of the masked inputs."""
    net, x = small_relu_net
    res = cams(net, x, method="score_cam", layer="4", class_idx=[2])
    a = net[:5](x)
    weights = []
    with torch.no_grad():
        for c in range(a.shape[1]):
            m = F.interpolate(a[:, c : c + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            span = m.max() - m.min()
            m = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
            weights.append(torch.softmax(net(x * m), dim=1)[0, 2])
    expected = (torch.stack(weights)[:, None, None] * a[0]).sum(0)
    torch.testing.assert_close(res.cams[0], expected, rtol=1e-4, atol=1e-6)


def test_ablation_cam_agrees_with_pytorch_grad_cam(small_relu_net):
    net, x = small_relu_net
    for cls in range(3):
        ours = ours_at_input(net, x, "ablation_cam", "4", cls)
        ref = theirs(pgc.AblationCAM, net, x, net[4], cls)
        assert corr(ours, ref) >= 0.999


def test_eigen_cam_is_pytorch_grad_cams_projection_up_to_sign(small_relu_net):
    net, x = small_relu_net
    a = net[:5](x).detach()
    ours = eigen_cam(a)[0, 0].numpy()
    ref = get_2d_projection(a.numpy())[0]
    assert abs(corr(ours, ref)) >= 0.9999
    # our sign convention: positive correlation with the summed activation
    assert corr(ours, a[0].sum(0).numpy()) > 0


def test_grad_cam_equals_cam_up_to_a_positive_constant(tiny_gap):
    """On GAP + linear, dy_c/dA_k = W[c, k] / (h w): Grad-CAM = CAM / (h w)."""
    x = torch.randn(1, 3, 10, 14)
    for cls in range(5):
        g = cams(tiny_gap, x, method="grad_cam", layer="features", class_idx=[cls]).cams[0]
        c = cams(tiny_gap, x, method="cam", layer="features", class_idx=[cls]).cams[0]
        hw = g.shape[0] * g.shape[1]
        torch.testing.assert_close(g * hw, c, rtol=1e-5, atol=1e-6)


def test_cam_analytic_hand_weighted():
    """Hand-set weights: CAM and HiResCAM give exactly the expected numbers."""
    net = TinyGapNet(classes=2, channels=2)
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    a = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[0.0, 1.0], [2.0, 0.0]]]])
    from xai_core.methods.activation import cam
    from xai_core.methods.gradient import hires_cam

    expected = torch.tensor([[[1.0, 0.0], [-4.0, 1.0]], [[0.5, 4.0], [6.0, 0.5]]])
    torch.testing.assert_close(cam(a, net.fc.weight[None]), expected[None])
    grads = net.fc.weight[:, :, None, None].expand(2, 2, 2, 2) / 4
    torch.testing.assert_close(hires_cam(a, grads[None]), expected[None] / 4)


def test_batched_backward_equals_separate_backward_passes(lite0, cat_dog):
    import xai_core

    x = xai_core.prepare(cat_dog, lite0.spec.preprocessing).tensor
    from xai_core.hooks import capture

    with capture(lite0.module, "_head_act") as cap:
        logits = lite0.module(x)
        idx = logits.topk(5, dim=1).indices
        batched = class_gradients(logits.gather(1, idx), cap["_head_act"])
        separate = class_gradients(logits.gather(1, idx), cap["_head_act"], batched=False)
    assert batched.shape == (1, 5, 1280, 7, 7)
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-8)


def test_disconnected_layer_gives_a_clear_error():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(3, 2, 1)
            self.unused = nn.Conv2d(3, 2, 1)
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            self.unused(x).detach()
            return self.fc(self.used(x).mean(dim=(2, 3)))

    with pytest.raises(MethodError, match="does not influence"):
        cams(TwoPaths(), torch.randn(1, 3, 8, 8), method="grad_cam", layer="unused", top_k=2)


def test_unknown_names_suggest_close_matches(tiny_gap):
    with pytest.raises(UnknownNameError, match="grad_cam"):
        get_explainer("gradcam")
    with pytest.raises(LayerNotFoundError, match="features"):
        cams(tiny_gap, torch.randn(1, 3, 8, 8), method="grad_cam", layer="feature")
    with pytest.raises(MethodError, match="no parameter"):
        cams(tiny_gap, torch.randn(1, 3, 8, 8), method="grad_cam", layer="features", alpha=2)


def test_reused_module_is_refused():
    act = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 4, 3), act, nn.Conv2d(4, 4, 3), act, nn.Flatten(), nn.LazyLinear(3))
    net(torch.randn(1, 3, 8, 8))
    with pytest.raises(LayerError, match="more than once"):
        cams(net, torch.randn(1, 3, 8, 8), method="grad_cam", layer="1")
    from xai_core.hooks import candidate_layers

    assert "1" not in [layer.name for layer in candidate_layers(net, torch.randn(1, 3, 8, 8))]


def test_state_restored_after_an_exception(tiny_gap):
    def boom(ctx):
        raise RuntimeError("boom")

    from dataclasses import replace

    from xai_core.methods import registry

    registry.register_explainer(replace(get_explainer("grad_cam"), key="boom", compute=boom))
    try:
        with pytest.raises(MethodError, match="boom"):
            cams(tiny_gap, torch.randn(1, 3, 8, 8), method="boom", layer="features")
    finally:
        registry.unregister_explainer("boom")  # also tells the listeners (FG-CAM's base list)
    assert _hook_count(tiny_gap) == 0
    assert all(p.requires_grad for p in tiny_gap.parameters())
    assert all(p.grad is None for p in tiny_gap.parameters())


def test_in_place_op_after_layer_does_not_corrupt_activations():
    """DenseNet-style functional in-place ReLU after the explained layer."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            f = F.relu(self.features(x), inplace=True)
            return self.fc(f.mean(dim=(2, 3)))

    torch.manual_seed(1)
    net = Net().eval()
    x = torch.randn(1, 3, 6, 6)
    res = cams(net, x, method="grad_cam", layer="features", class_idx=[0])
    a = net.features(x).detach()  # pre-ReLU activations, as the hook saw them
    assert res.cams.shape == (1, 6, 6)
    g = torch.autograd.functional.jacobian(lambda t: net.fc(F.relu(t).mean(dim=(2, 3)))[0, 0], a)
    expected = (g.mean(dim=(2, 3))[0][:, None, None] * a[0]).sum(0)
    torch.testing.assert_close(res.cams[0], expected, rtol=1e-5, atol=1e-6)

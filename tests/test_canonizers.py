"""Canonizers (BatchNorm folding), the canonized rule set, and batched relevance results.

Every architecture is built with ``weights=None`` and its BatchNorm running statistics and
affine parameters set to non-trivial random values, so that folding changes the weights a
lot while the model's function must not change.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import SmallVGG, slow_except
from xai_core.errors import MethodError
from xai_core.relevance import (
    canonized,
    fg_cam,
    find_batchnorm_folds,
    fold_batchnorms,
    lrp,
    propagate_relevance,
)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.4)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


def _tv(name: str):
    def make() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return make


def _lite0() -> nn.Module:
    from xai_core.models.zoo import _build_lite0

    return _build_lite0()


def _xrv() -> nn.Module:
    from xai_core.models.zoo import XrvDenseNet

    return XrvDenseNet()


# key: (factory, input shape, CAM layer, number of BatchNorms that must fold)
ARCHS = {
    "efficientnet_lite0": (_lite0, (1, 3, 64, 64), "_head_act", 49),
    "resnet50": (_tv("resnet50"), (1, 3, 64, 64), "layer4", 53),
    "densenet121": (_tv("densenet121"), (1, 3, 64, 64), "features.norm5", 59),
    "xrv_densenet": (_xrv, (1, 1, 64, 64), "features.norm5", 59),
    "mobilenet_v3_large": (_tv("mobilenet_v3_large"), (1, 3, 64, 64), "features.16", 46),
    "efficientnet_b0": (_tv("efficientnet_b0"), (1, 3, 64, 64), "features.8", 49),
    "vgg16_bn": (_tv("vgg16_bn"), (1, 3, 32, 32), "features.42", 13),
}


def _build(arch: str) -> tuple[nn.Module, torch.Tensor, str, int]:
    factory, shape, cam, n_folds = ARCHS[arch]
    torch.manual_seed(0)
    model = _randomise_bn(factory())
    x = torch.randn(*shape) * (300 if arch == "xrv_densenet" else 1)
    return model, x, cam, n_folds


def _snapshot(model: nn.Module) -> dict:
    return {
        "params": [(n, p, p.detach().clone()) for n, p in model.named_parameters()],
        "buffers": [(n, b, b.clone()) for n, b in model.named_buffers()],
        "eps": [getattr(m, "eps", None) for m in model.modules()],
        "forward": [("forward" in m.__dict__) for m in model.modules()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    }


def _assert_restored(model: nn.Module, snap: dict) -> None:
    now = dict(model.named_parameters())
    assert [n for n, _, _ in snap["params"]] == list(now)
    for name, obj, value in snap["params"]:
        assert now[name] is obj, f"{name}: not the same Parameter object"
        assert torch.equal(obj, value), f"{name}: values changed"
        assert obj.grad is None
    buffers = dict(model.named_buffers())
    for name, obj, value in snap["buffers"]:
        assert buffers[name] is obj and torch.equal(obj, value), name
    assert _snapshot(model)["eps"] == snap["eps"]
    assert _snapshot(model)["forward"] == snap["forward"]
    assert _snapshot(model)["inplace"] == snap["inplace"]
    assert _snapshot(model)["hooks"] == snap["hooks"] == 0


@pytest.mark.parametrize("arch", slow_except(ARCHS, fast={"efficientnet_lite0", "mobilenet_v3_large"}))
def test_folding_keeps_the_function_and_restores_bit_for_bit(arch: str) -> None:
    model, x, _cam, n_folds = _build(arch)
    with torch.no_grad():
        before = model(x)
    snap = _snapshot(model)
    folds = find_batchnorm_folds(model, x)
    assert len(folds) == n_folds
    with torch.no_grad(), canonized(model, x) as folded:
        assert len(folded) == n_folds
        name = f"{folds[0].linear}.weight"
        original = next(value for n, _, value in snap["params"] if n == name)
        assert not torch.equal(dict(model.named_parameters())[name], original)  # really folded
        during = model(x)
    scale = before.abs().max()
    torch.testing.assert_close(during, before, atol=1e-5 * scale, rtol=1e-4)
    _assert_restored(model, snap)
    with torch.no_grad():
        assert torch.equal(model(x), before)


@pytest.mark.slow
def test_dense_layer_folds_norm2_not_norm1() -> None:
    """DenseNet: conv1 -> norm2 folds; norm1 sits after a concatenation and before a ReLU, so it
    keeps the identity rule (docs/fgcam.md)."""
    model, x, _cam, _n = _build("densenet121")
    norms = {f.norm for f in find_batchnorm_folds(model, x)}
    assert "features.denseblock1.denselayer1.norm2" in norms
    assert "features.denseblock1.denselayer1.norm1" not in norms
    assert "features.norm0" in norms and "features.norm5" not in norms


def test_batchnorm_read_twice_is_not_folded() -> None:
    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.other = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + self.other(y)  # the conv output has a second reader

    model = _randomise_bn(Branches())
    assert find_batchnorm_folds(model, torch.randn(1, 3, 8, 8)) == ()


@pytest.mark.slow
def test_folding_restores_after_an_error() -> None:
    model, x, _cam, _n = _build("resnet50")
    snap = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), canonized(model, x):
        raise RuntimeError("boom")
    _assert_restored(model, snap)
    model.train()
    with pytest.raises(MethodError, match="eval mode"), fold_batchnorms(model, find_batchnorm_folds(model, x)):
        pass
    model.eval()
    _assert_restored(model, snap)


def test_fold_cache_sees_storage_swapped_under_the_same_parameter() -> None:
    """``param.data = ...`` keeps the object and its version counter: the fold must still be redone."""
    model = _randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    x = torch.randn(1, 3, 8, 8)
    folds = find_batchnorm_folds(model, x)
    with fold_batchnorms(model, folds):
        model(x)
    with torch.no_grad():
        model[0].weight.data = model[0].weight.data.to(memory_format=torch.channels_last)
        model[1].running_var.data = model[1].running_var.data * 4  # new values, version unchanged
    conv, bn = model[0], model[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()[:, None, None, None]
    with fold_batchnorms(model, folds):
        w = model[0].weight.detach()
    assert w.is_contiguous(memory_format=torch.channels_last), "the fold follows the weights' memory format"
    torch.testing.assert_close(w, conv.weight.detach() * scale)


# ----------------------------------------------------------------------------- conservation


def _kept(model: nn.Module, x: torch.Tensor, cam: str, rules: str) -> float:
    top1 = lambda z: z.argmax(dim=1, keepdim=True)  # noqa: E731
    at_cam = fg_cam(model, x, cam_layer=cam, target_layer=cam, class_idx=top1, rules=rules)
    at_input = fg_cam(model, x, cam_layer=cam, target_layer="input", class_idx=at_cam.class_idx, rules=rules)
    assert torch.isfinite(at_input.relevance).all()
    return float(at_input.relevance.sum() / at_cam.relevance.sum())


@pytest.mark.parametrize(
    "arch",
    slow_except(["resnet50", "densenet121", "mobilenet_v3_large", "efficientnet_b0"], fast={"mobilenet_v3_large"}),
)
def test_canonized_rules_conserve_relevance_to_the_input(arch: str) -> None:
    model, x, cam, _n = _build(arch)
    snap = _snapshot(model)
    kept = _kept(model, x, cam, "canonized")
    assert 0.9 <= kept <= 1.1, kept
    _assert_restored(model, snap)


def test_lite0_with_shifted_batchnorms_canonized_keeps_what_authors_drop() -> None:
    """Large positive BatchNorm shifts before ReLU6 (as in trained EfficientNet-Lite): units that
    are active through the shift alone. The authors' rules drop their relevance; the canonized
    rules treat them as bias and keep it on the units with evidence."""
    model, x, cam, _n = _build("efficientnet_lite0")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.add_(1.0)
    kept_canon = _kept(model, x, cam, "canonized")
    kept_authors = _kept(model, x, cam, "authors")
    assert kept_canon == pytest.approx(1.0, abs=0.02)
    assert kept_authors < 0.9 * kept_canon


# ----------------------------------------------------------------------------- squeeze-excitation


class SEBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from torchvision.ops.misc import SqueezeExcitation

        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.se = SqueezeExcitation(8, 4)
        self.out = nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.se(self.act(self.conv(x)))).mean(dim=(2, 3))


def test_squeeze_excitation_gate_is_a_constant() -> None:
    """All relevance at the SE output reaches its input (none leaks into the gate branch)."""
    torch.manual_seed(3)
    model = SEBlock().double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        active = model.act(model.conv(x)) > 0
    r = torch.rand(2, 1, 8, 6, 6, dtype=torch.float64) * active[:, None]  # none on units that are 0
    at_input_of_se = propagate_relevance(model, x, r, start_layer="se", target_layer="act").relevance
    torch.testing.assert_close(at_input_of_se, r, rtol=1e-9, atol=1e-12)
    authors = propagate_relevance(model, x, r, start_layer="se", target_layer="act", rules="authors").relevance
    assert not torch.allclose(authors, r)  # the gate's gradient branch adds relevance there


# ----------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    from pathlib import Path

    golden = torch.load(Path(__file__).parent / "golden" / "fgcam_small_vgg.pt", weights_only=True)
    model = SmallVGG(golden["model"])
    model.load_state_dict(golden["model"]["state_dict"])
    return model.eval()


def _close_rel(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5 * b.abs().max().item(), rtol=1e-4)


@pytest.mark.slow  # real architectures; test_batched_bases_and_lrp_equal_per_image covers it on the small VGG
@pytest.mark.parametrize(
    ("arch", "target"), [("efficientnet_lite0", "input"), ("efficientnet_lite0", "_blocks.4"), ("resnet50", "input")]
)
def test_batched_equals_per_image(arch: str, target: str) -> None:
    model, _x, cam, _n = _build(arch)
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    classes = torch.tensor([[1, 7], [3, 1], [0, 5]])
    batched = fg_cam(model, x, cam_layer=cam, target_layer=target, class_idx=classes)
    assert batched.relevance.shape[:2] == (3, 2) and batched.relevance.shape[-2:] == (
        (64, 64) if target == "input" else batched.relevance.shape[-2:]
    )
    assert torch.equal(batched.class_idx, classes)
    for n in range(3):
        one = fg_cam(model, x[n : n + 1], cam_layer=cam, target_layer=target, class_idx=classes[n : n + 1])
        _close_rel(batched.relevance[n], one.relevance[0])
        torch.testing.assert_close(batched.logits[n], one.logits[0], atol=1e-4, rtol=1e-4)


def test_classes_from_the_same_forward_pass(vgg: nn.Module) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 64, 64)
    res = fg_cam(vgg, x, cam_layer="features.18", target_layer="input", class_idx=lambda z: z.topk(3).indices)
    with torch.no_grad():
        assert torch.equal(res.class_idx, vgg(x).topk(3).indices)
    assert res.relevance.shape == (2, 3, 64, 64)
    with pytest.raises(MethodError, match="out of range"):
        fg_cam(vgg, x, cam_layer="features.18", target_layer="input", class_idx=[[1], [99]])
    with pytest.raises(MethodError, match=r"\[2, K\]"):
        fg_cam(vgg, x, cam_layer="features.18", target_layer="input", class_idx=[[1], [2], [3]])
    with pytest.raises(MethodError, match="rule set"):
        fg_cam(vgg, x, cam_layer="features.18", target_layer="input", class_idx=[1], rules="zennit")


@pytest.mark.parametrize("base", ["grad_cam", "score_cam"])
def test_batched_bases_and_lrp_equal_per_image(vgg: nn.Module, base: str) -> None:
    torch.manual_seed(4)
    x = torch.rand(3, 3, 64, 64)
    classes = torch.tensor([[1, 2], [0, 4], [5, 1]])
    seen: list[tuple[int, int]] = []
    batched = fg_cam(
        vgg,
        x,
        cam_layer="features.18",
        target_layer="features.3",
        class_idx=classes,
        base=base,
        denoise=True,
        score_batch_size=40,
        progress=lambda d, t: seen.append((d, t)),
    )
    lrp_batched = lrp(vgg, x, class_idx=classes, variant="clrp")
    for n in range(3):
        kw = dict(cam_layer="features.18", target_layer="features.3", base=base, denoise=True)
        one = fg_cam(vgg, x[n : n + 1], class_idx=classes[n : n + 1], **kw)
        _close_rel(batched.relevance[n], one.relevance[0])
        one_lrp = lrp(vgg, x[n : n + 1], class_idx=classes[n : n + 1], variant="clrp")
        _close_rel(lrp_batched.relevance[n], one_lrp.relevance[0])
    if base == "score_cam":  # up to 3 images x 64 channels (identical channels share a pass), chunks of 40
        done, total = seen[-1]
        assert done == total <= 192 and len(seen) == -(-total // 40)


def test_score_cam_uses_the_given_probabilities(vgg: nn.Module) -> None:
    torch.manual_seed(5)
    x = torch.rand(1, 3, 64, 64)
    kw = dict(cam_layer="features.18", target_layer="features.18", class_idx=[1], base="score_cam")
    soft = fg_cam(vgg, x, **kw).relevance
    sig = fg_cam(vgg, x, probabilities=torch.sigmoid, **kw).relevance
    assert not torch.allclose(soft, sig)

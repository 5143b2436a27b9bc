"""The fast paths give the maps of the straightforward computations they replace.

- K gradients from one batched backward = K separate backward passes (and K separate
  ``explain`` calls), on EfficientNet-Lite0 and ResNet-style models.
- Score-CAM (deduplicated masks, built per batch, ``channels_last``, ``inference_mode``)
  = one plain ``no_grad`` forward per channel, with every mask computed.
- Ablation-CAM with the upstream run once (``rest_of_network``) = the whole network
  per batch = one full forward per ablated channel; also where the fast path must give
  up (control flow, batch size taken from the input, in-place changes downstream).

No timing here: speed is measured by ``benchmarks/run.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.conftest import slow_except
from tests.explain_helpers import as_model, cams
from xai_core.hooks.capture import capture, rest_of_network
from xai_core.hooks.layers import resolve_layer
from xai_core.methods import class_gradients
from xai_core.methods import score as score_module
from xai_core.methods.context import CamContext


def _resnet18(seed: int = 0) -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    return resnet18(weights=None).eval()


def _context(model: nn.Module, x: torch.Tensor, layer: str, classes: list[int]) -> CamContext:
    with capture(model, layer, grad=False) as cap:
        with torch.inference_mode():
            logits = model(x)
        a = cap[layer]
    return CamContext(model, x, layer, a, None, torch.tensor([classes]), logits, lambda t: torch.softmax(t, dim=-1))


def _ablation_maps(ctx: CamContext, **kwargs) -> torch.Tensor:
    """Ablation-CAM maps ``[N, K, h, w]``: its channel weights times the activations."""
    return torch.einsum("nkc,nchw->nkhw", score_module.ablation_cam_weights(ctx, **kwargs), ctx.activations)


def _run(fn, ctx: CamContext, **kwargs) -> torch.Tensor:
    """Call a perturbation method as the driver does (hooks of a grad=False capture in place)."""
    with capture(ctx.module, ctx.layer_name, grad=False):
        return fn(ctx, **kwargs)


def _no_instance_forward(model: nn.Module) -> bool:
    return all("forward" not in m.__dict__ for m in model.modules())


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ----------------------------------------------------------------------------- batched backward


@pytest.mark.parametrize("layer", ["_blocks.10", "_head_act"])
def test_lite0_batched_backward_equals_separate_passes(lite0, cat_dog, layer):
    import xai_core

    x = xai_core.prepare(cat_dog, lite0.spec.preprocessing).tensor
    with capture(lite0.module, layer) as cap:
        logits = lite0.module(x)
        idx = logits.topk(5, dim=1).indices
        batched = class_gradients(logits.gather(1, idx), cap[layer])
        separate = class_gradients(logits.gather(1, idx), cap[layer], batched=False)
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-8)


def test_lite0_k_classes_at_once_equal_k_single_class_calls(lite0, cat_dog):
    import xai_core

    x = xai_core.prepare(cat_dog, lite0.spec.preprocessing).tensor
    joint = cams(lite0.module, x, method="grad_cam", layer="_blocks.15", top_k=5)
    for i, c in enumerate(joint.class_idx):
        single = cams(lite0.module, x, method="grad_cam", layer="_blocks.15", class_idx=[c]).cams[0]
        torch.testing.assert_close(joint.cams[i], single, rtol=1e-5, atol=1e-7)


# The fast loop keeps one case of the 3 x 3 (a block inside layer4, Grad-CAM); the full suite runs all.
@pytest.mark.parametrize("layer", slow_except(["layer3", "layer4.0.conv2", "layer4"], fast={"layer4.0.conv2"}))
@pytest.mark.parametrize("method", slow_except(["grad_cam", "grad_cam_pp", "layer_cam"], fast={"grad_cam"}))
def test_resnet_k_classes_at_once_equal_k_single_class_calls(layer, method):
    model = _resnet18()
    x = torch.randn(1, 3, 64, 80)
    joint = cams(model, x, method=method, layer=layer, top_k=4)
    for i, c in enumerate(joint.class_idx):
        single = cams(model, x, method=method, layer=layer, class_idx=[c]).cams[0]
        torch.testing.assert_close(joint.cams[i], single, rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- Score-CAM


def _score_cam_reference(
    model: nn.Module, x: torch.Tensor, layer: str, classes: list[int], variant: str
) -> torch.Tensor:
    """Score-CAM written plainly: every channel's mask, one no_grad forward each, no dedupe."""
    with capture(model, layer, grad=False) as cap:
        with torch.no_grad():
            model(x)
        a = cap[layer]
    align = variant == "logit_softmax"
    scores = []
    with torch.no_grad():
        for k in range(a.shape[1]):
            m = F.interpolate(a[:, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=align)
            span = m.max() - m.min()
            if a[0, k].max() == a[0, k].min():  # constant: zero mask (not upsampling's rounding ripple)
                m = torch.zeros_like(m)
            elif align:
                m = (m - m.min()) / (span + 1e-8)
            else:
                m = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
            out = model(x * m)
            scores.append((out if align else torch.softmax(out, dim=1))[0, classes])
    w = torch.stack(scores, dim=1)  # [K, C]
    if align:
        w = torch.softmax(w, dim=1)
    return torch.einsum("kc,chw->khw", w, a[0])


class DuplicatedChannels(nn.Module):
    """Its feature layer has zero, constant, duplicated and scaled-copy channels (dedupe must act)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv = nn.Conv2d(4, 10, 3, padding=1)
        with torch.no_grad():
            w, b = self.conv.weight, self.conv.bias
            w[1], b[1] = w[0], b[0]  # duplicate
            w[2], b[2] = 2 * w[0], 2 * b[0]  # scaled copy: the same mask after min-max
            w[3], b[3] = 0, -1  # zero after ReLU
            w[4], b[4] = 0, 0.5  # constant
            w[6], b[6] = w[5], b[5]
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(self.stem(x))))


@pytest.mark.parametrize("variant", ["probability", "logit_softmax"])
def test_score_cam_dedupe_equals_every_mask(variant):
    model = DuplicatedChannels().eval()
    x = torch.randn(1, 3, 20, 24)
    loaded = as_model(model, x, layer="act")  # its own forward pass, before the count
    calls = []
    handle = model.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].shape[0]))
    try:
        ours = cams(loaded, x, method="score_cam", layer="act", class_idx=[0, 3], variant=variant, batch_size=4)
    finally:
        handle.remove()
    masked_inputs = sum(calls) - 1  # minus the driver's own forward
    assert masked_inputs <= 10 - 4, "zero/constant channels and copies should share one forward"
    expected = _score_cam_reference(model, x, "act", [0, 3], variant)
    torch.testing.assert_close(ours.cams, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # one masked forward pass per channel of a ResNet-18 stage, twice; the tiny-net case above stays fast
@pytest.mark.parametrize("variant", ["probability", "logit_softmax"])
def test_score_cam_batched_inference_mode_equals_plain_loop_on_resnet(variant):
    model = _resnet18(2)
    x = torch.randn(1, 3, 48, 48)
    ours = cams(model, x, method="score_cam", layer="layer3", class_idx=[7, 1], variant=variant, batch_size=48)
    expected = _score_cam_reference(model, x, "layer3", [7, 1], variant)
    torch.testing.assert_close(ours.cams, expected, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- Ablation-CAM


def _ablation_reference(model: nn.Module, x: torch.Tensor, layer: str, classes: list[int]) -> torch.Tensor:
    """Ablation-CAM written plainly: one full forward per channel with that channel zeroed."""
    module = resolve_layer(model, layer)
    with capture(model, layer, grad=False) as cap:
        with torch.no_grad():
            base = model(x)[0, classes]
        a = cap[layer]
    weights = torch.zeros(len(classes), a.shape[1])
    for k in range(a.shape[1]):

        def zero(_m, _i, out, k=k):
            out = out.clone()
            out[:, k] = 0
            return out

        handle = module.register_forward_hook(zero)
        try:
            with torch.no_grad():
                y = model(x)[0, classes]
        finally:
            handle.remove()
        weights[:, k] = (base - y) / base
    return torch.einsum("kc,chw->khw", weights, a[0])


class ControlFlow(nn.Module):
    """Alternates between two (equal) branches from pass to pass: the replay cannot retrace it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.b.load_state_dict(self.a.state_dict())
        self.layer = nn.ReLU()
        self.fc = nn.Linear(6, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.a(x) if self.calls % 2 else self.b(x)
        return self.fc(self.layer(h).mean(dim=(2, 3)))


class BatchFromInput(nn.Module):
    """Reads the batch size from its input (``x.view(inputs.size(0), -1)``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.layer = nn.ReLU()
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(self.layer(self.conv(inputs)), 4)
        return self.fc(h.view(inputs.size(0), -1))


class InPlaceOnUpstream(nn.Module):
    """Adds into an upstream tensor in place after the layer (a stored output must not be reused)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.layer = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        h = self.layer(s)
        s = s.expand_as(h).clone() if s.shape[0] != h.shape[0] else s
        s += h  # in place on the upstream output when the batches agree
        return self.fc(s.mean(dim=(2, 3)))


class SharedActivation(nn.Module):
    """One ReLU module used before and after the layer (as in torchvision's ResNet blocks)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.c1(x))
        h = self.c2(h)
        return self.fc(self.relu(self.c3(h) + h).mean(dim=(2, 3)))


class InPlaceAfterLayer(nn.Module):
    """DenseNet-style functional ``relu(inplace=True)`` on the layer's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.features(x), inplace=True).mean(dim=(2, 3)))


ABLATION_CASES = [
    # ResNet-18: one ablated forward pass per channel (256 and 512), with and without the fast path.
    pytest.param("resnet18", lambda: _resnet18(3), "layer3.1.conv1", (1, 3, 48, 48), marks=pytest.mark.slow),
    pytest.param("resnet18-stage", lambda: _resnet18(3), "layer4", (1, 3, 48, 48), marks=pytest.mark.slow),
    ("control-flow", ControlFlow, "layer", (1, 3, 10, 10)),
    ("batch-from-input", BatchFromInput, "layer", (1, 3, 12, 12)),
    ("in-place-on-upstream", InPlaceOnUpstream, "layer", (1, 3, 10, 10)),
    ("shared-activation", SharedActivation, "c2", (1, 3, 10, 10)),
    ("in-place-after-layer", InPlaceAfterLayer, "features", (1, 3, 10, 10)),
]


@pytest.mark.parametrize(
    ("name", "build", "layer", "shape"), ABLATION_CASES, ids=[getattr(c, "values", c)[0] for c in ABLATION_CASES]
)
def test_ablation_fast_path_equals_full_input_path(name, build, layer, shape):
    model = build().eval()
    torch.manual_seed(9)
    x = torch.randn(*shape)
    classes = [0, 2]
    ctx = _context(model, x, layer, classes)
    hooks = _hook_count(model)
    fast = _run(_ablation_maps, ctx, batch_size=4)
    assert _no_instance_forward(model) and _hook_count(model) == hooks
    full = _run(_ablation_maps, ctx, batch_size=4, upstream_once=False)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-7)
    # The plain one-channel-at-a-time loop differs by float rounding only (batch 1 vs 4,
    # and (y - y_k) / y amplifies it where y is small): compare at the map's scale.
    expected = _ablation_reference(model, x, layer, classes)
    torch.testing.assert_close(full[0], expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


class _CountConvolutions(TorchDispatchMode):
    """Counts convolutions actually computed (hooks fire on replayed modules; kernels do not run)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).split(".")[1] in ("conv2d", "convolution"):  # inference_mode stops at conv2d
            self.n += 1
        return func(*args, **(kwargs or {}))


def test_ablation_on_lite0_head_runs_the_upstream_once(lite0, cat_dog):
    """On the real model: the convolutions (all before the head layer) run for two passes, not per batch."""
    import xai_core

    x = xai_core.prepare(cat_dog, lite0.spec.preprocessing).tensor
    with _CountConvolutions() as one_pass, torch.no_grad():
        lite0.module(x)
    with _CountConvolutions() as counted:
        res = cams(lite0, x, method="ablation_cam", layer="_head_act", top_k=1, batch_size=64)
    assert counted.n == 2 * one_pass.n  # the driver's forward + the recording pass
    assert torch.isfinite(res.cams).all()
    assert _no_instance_forward(lite0.module)


def test_rest_of_network_replays_and_restores():
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        full = model(x)
    with capture(model, "c2", grad=False) as cap, torch.no_grad():
        model(x)
        a = cap["c2"]
    with _CountConvolutions() as counted, rest_of_network(model, "c2", x) as rest:
        same = rest(a.clone())
        batch = rest(torch.cat([a, torch.zeros_like(a)]))
        rest(a.clone())
    torch.testing.assert_close(same, full)
    assert batch.shape == (2, 4)
    with torch.no_grad():
        torch.testing.assert_close(batch[1:], model.fc(model.relu(model.c3(torch.zeros_like(a))).mean(dim=(2, 3))))
    assert counted.n == 3 + 3  # c1, c2, c3 while recording; then only c3, in each of the three passes
    assert _no_instance_forward(model)


def test_rest_of_network_restores_after_an_exception():
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(RuntimeError):
        with rest_of_network(model, "c2", x) as rest:
            rest(torch.zeros(1, 6, 8, 8))
            raise RuntimeError("boom")
    assert _no_instance_forward(model)

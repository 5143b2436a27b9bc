"""Relevance rules against slow float64 matrix-form re-implementations (zennit tests style),
the golden per-rule unit vectors, residual/concat routing and the LRP baselines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xai_core.errors import MethodError
from xai_core.relevance import lrp, propagate_relevance, start_relevance

GOLDEN = Path(__file__).parent / "golden" / "fgcam_small_vgg.pt"


class Copy(nn.Module):
    """Makes a new tensor, so the next conv does not take the model input (hidden rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _matrix(fn, x: torch.Tensor) -> torch.Tensor:
    """Dense matrix ``[out, in]`` of the linear map ``fn`` at ``x`` (float64)."""
    jac = torch.autograd.functional.jacobian(fn, x)
    return jac.reshape(-1, x.numel())


def _lrp_matrix(contrib: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """``R_in_i = sum_j Z_ji / (sum_i Z_ji) * R_j`` with the zero-safe division."""
    z = contrib.sum(1)
    s = torch.where(z != 0, r_out / torch.where(z != 0, z, torch.ones_like(z)), torch.zeros_like(z))
    return (contrib * s[:, None]).sum(0)


def ref_zplus(module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """z+/z- rule, bias ignored: ``Z_ji = x+_i W+_ji + x-_i W-_ji``."""
    lin = _no_bias(module)
    w = _matrix(lin, x)
    xf = x.flatten()
    contrib = xf.clamp(min=0)[None] * w.clamp(min=0) + xf.clamp(max=0)[None] * w.clamp(max=0)
    return _lrp_matrix(contrib, r_out.flatten()).reshape(x.shape)


def ref_zbox(module: nn.Module, x: torch.Tensor, r_out: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """z^B rule: ``Z_ji = x_i W_ji - l W+_ji - h W-_ji`` (padding is outside the matrix)."""
    w = _matrix(_no_bias(module), x)
    xf = x.flatten()
    contrib = xf[None] * w - low * w.clamp(min=0) - high * w.clamp(max=0)
    return _lrp_matrix(contrib, r_out.flatten()).reshape(x.shape)


def ref_pool(module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """LRP-0 on the clamped input: ``Z_ji = X_i dY_j/dX_i`` with ``X = x+``."""
    xt = x.clamp(min=0)
    jac = _matrix(module, xt)
    return _lrp_matrix(xt.flatten()[None] * jac, r_out.flatten()).reshape(x.shape)


def _no_bias(module: nn.Module):
    def fn(inp: torch.Tensor) -> torch.Tensor:
        return module(inp) - module(torch.zeros_like(inp))  # removes the bias, keeps the padding

    return fn


def _prop(model: nn.Module, x: torch.Tensor, r: torch.Tensor, rules: str = "authors", **kw) -> torch.Tensor:
    """``propagate_relevance`` for one image: ``r`` ``[K, ...]`` in, ``[K, ...]`` out.

    The per-rule tests use the plain rules (``"authors"``): the canonized set adds
    refinements for units without positive contributions, tested in test_canonizers.py.
    """
    return propagate_relevance(model, x, r[None], rules=rules, **kw).relevance[0]


def _ours(module: nn.Module, x: torch.Tensor, r_out: torch.Tensor, *, first: bool) -> torch.Tensor:
    """Relevance at the module's input from our hooked rules (one class)."""
    model = nn.Sequential(module) if first else nn.Sequential(Copy(), module)
    start = "0" if first else "1"
    return _prop(model, x, r_out, start_layer=start, target_layer="input")


def _setup(seed: int):
    torch.manual_seed(seed)
    return torch.float64


CONVS = {
    "conv3x3": lambda: nn.Conv2d(4, 5, 3, padding=1),
    "strided_grouped": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
    "depthwise": lambda: nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),
    "dilated": lambda: nn.Conv2d(4, 3, 3, padding=2, dilation=2),
    "pointwise": lambda: nn.Conv2d(4, 7, 1),
    # stride-1 depthwise: the transposed pass runs as a forward convolution (rules._depthwise_t)
    "depthwise_s1": lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4),
    "depthwise_s1_dilated": lambda: nn.Conv2d(4, 4, 3, padding=(2, 1), dilation=2, groups=4),
}


def _tf_same_conv(stride: int = 2, kernel: int = 3) -> nn.Module:
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    return Conv2dStaticSamePadding(4, 4, kernel, stride=stride, image_size=7, groups=4, bias=False)


TF_SAME = {
    "tf_same_depthwise": lambda: _tf_same_conv(),
    # stride 1: the even static pad moves into the convolution (rules._implicit_pad)
    "tf_same_depthwise_s1": lambda: _tf_same_conv(stride=1, kernel=5),
}


@pytest.mark.parametrize("name", [*CONVS, *TF_SAME])
@pytest.mark.parametrize("signed", [False, True])
def test_hidden_conv_rule_matches_matrix_form(name: str, signed: bool) -> None:
    dtype = _setup(0)
    module = (CONVS[name]() if name in CONVS else TF_SAME[name]()).to(dtype).eval()
    x = torch.randn(1, 4, 7, 7, dtype=dtype)
    if not signed:
        x = x.clamp(min=0)
    r_out = torch.randn_like(module(x))
    expected = ref_zplus(module, x, r_out)
    torch.testing.assert_close(_ours(module, x, r_out, first=False), expected, atol=1e-6, rtol=1e-6)
    assert expected.abs().sum() > 0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ["conv3x3", "tf_same"])
def test_first_conv_uses_zbox_with_image_bounds(channels: int, name: str) -> None:
    """z^B is chosen because the conv takes the model input, also with 1 channel (X-ray)."""
    dtype = _setup(1)
    if name == "tf_same":
        from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

        module = Conv2dStaticSamePadding(channels, 4, 3, stride=2, image_size=8, bias=False)
    else:
        module = nn.Conv2d(channels, 4, 3, padding=1)
    module = module.to(dtype).eval()
    x = torch.randn(1, channels, 8, 8, dtype=dtype)
    r_out = torch.randn_like(module(x))
    expected = ref_zbox(module, x, r_out, x.min().item(), x.max().item())
    torch.testing.assert_close(_ours(module, x, r_out, first=True), expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(expected, ref_zplus(module, x, r_out))  # the two rules differ here


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.MaxPool2d(2, 2),
        lambda: nn.MaxPool2d(3, 2, padding=1),
        lambda: nn.AvgPool2d(2),
        lambda: nn.AvgPool2d(3, 2, padding=1),
        lambda: nn.AdaptiveAvgPool2d((3, 3)),
        lambda: nn.AdaptiveMaxPool2d((3, 2)),
    ],
    ids=["max2", "max3s2p1", "avg2", "avg3s2p1", "adaptive_avg", "adaptive_max"],
)
def test_pool_rule_matches_matrix_form(make) -> None:
    dtype = _setup(2)
    module = make()
    x = torch.randn(1, 3, 7, 7, dtype=dtype)
    x[0, 1] = -x[0, 1].abs()  # an all-negative channel: its relevance is dropped
    r_out = torch.randn_like(module(x))
    expected = ref_pool(module, x, r_out)
    torch.testing.assert_close(_ours(module, x, r_out, first=False), expected, atol=1e-6, rtol=1e-6)
    assert expected[0, 1].abs().sum() == 0


def test_linear_rule_matches_matrix_form() -> None:
    dtype = _setup(3)
    module = nn.Linear(6, 4).to(dtype)
    x = torch.randn(1, 6, dtype=dtype)
    r_out = torch.randn(1, 4, dtype=dtype)
    # Linear works on [1, N]; go through a flatten so the public API's [1, C, H, W] check holds.
    model = nn.Sequential(nn.Flatten(), Copy(), module)
    ours = _prop(model, x.view(1, 6, 1, 1), r_out, start_layer="2").view(1, 6)
    torch.testing.assert_close(ours, ref_zplus(module, x, r_out), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [lambda: nn.BatchNorm2d(3), nn.ReLU6, nn.SiLU, nn.ReLU, lambda: nn.ReLU(inplace=True)],
    ids=["bn", "relu6", "silu", "relu", "relu_inplace"],
)
def test_elementwise_layers_pass_relevance_unchanged(make) -> None:
    dtype = _setup(4)
    module = make().to(dtype).eval()
    if isinstance(module, nn.BatchNorm2d):
        module.running_mean.uniform_(-1, 1)
        module.running_var.uniform_(0.5, 2)
        module.weight.data.uniform_(-1.5, 1.5)  # a negative gamma is ignored too
        module.bias.data.normal_()
    x = torch.randn(1, 3, 5, 5, dtype=dtype) * 5  # some values above 6 for ReLU6
    y = module(x.clone())
    r_out = torch.randn_like(y) * (y != 0)
    ours = _ours(module, x, r_out, first=False)
    torch.testing.assert_close(ours, r_out, atol=1e-9, rtol=1e-9)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.b = nn.Conv2d(3, 3, 1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.a(x)
        out += self.b(x)  # in place, as torchvision's Bottleneck
        return self.relu(out)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.a(x), self.b(x)], dim=1))


def test_residual_addition_splits_in_proportion() -> None:
    dtype = _setup(5)
    model = Residual().to(dtype)
    x = torch.randn(1, 3, 6, 6, dtype=dtype)
    a, b = model.a(x), model.b(x)
    s = torch.relu(a + b)
    r_out = torch.rand(2, 3, 6, 6, dtype=dtype) * s  # two "classes", zero where the ReLU is off
    for name, part in (("a", a), ("b", b)):
        ours = _prop(model, x, r_out, start_layer="relu", target_layer=name)
        expected = part * r_out / torch.where(s > 0, a + b, torch.ones_like(s)) * (s > 0)
        torch.testing.assert_close(ours, expected, atol=1e-9, rtol=1e-7)
    total = _prop(model, x, r_out, start_layer="relu", target_layer="input")
    torch.testing.assert_close(total.sum(dim=(1, 2, 3)), r_out.sum(dim=(1, 2, 3)), atol=1e-8, rtol=1e-8)


def test_concatenation_routes_channels() -> None:
    dtype = _setup(6)
    model = Concat().to(dtype)
    x = torch.randn(1, 3, 5, 5, dtype=dtype)
    r_out = torch.randn(1, 6, 5, 5, dtype=dtype)
    ra = _prop(model, x, r_out, start_layer="out", target_layer="a")
    rb = _prop(model, x, r_out, start_layer="out", target_layer="b")
    torch.testing.assert_close(ra, r_out[:, :2], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(rb, r_out[:, 2:], atol=1e-9, rtol=1e-9)


# ----------------------------------------------------------------------------- golden unit vectors


@pytest.fixture(scope="module")
def rule_vectors() -> dict:
    return torch.load(GOLDEN, weights_only=True)["rule_vectors"]


def _golden_conv(v: dict) -> nn.Conv2d:
    w = v["weight"]
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[-1], stride=v["stride"], padding=v["padding"])
    conv.load_state_dict({"weight": w, "bias": v["bias"]})
    return conv


@pytest.mark.parametrize(
    "key", ["conv_first_zB", "conv_hidden_mixed_sign", "conv_hidden_nonneg", "maxpool_2x2", "adaptive_avgpool_3x3"]
)
def test_golden_rule_vectors(rule_vectors: dict, key: str) -> None:
    v = rule_vectors[key]
    if key.startswith("conv"):
        module = _golden_conv(v)
    elif key == "maxpool_2x2":
        module = nn.MaxPool2d(v["kernel_size"], v["stride"])
    else:
        module = nn.AdaptiveAvgPool2d(tuple(v["output_size"]))
    first = key == "conv_first_zB"
    if first:  # our bounds are the image's global min / max: the golden ones must be those
        assert v["lower"] == pytest.approx(v["X"].min().item()) and v["upper"] == pytest.approx(v["X"].max().item())
    ours = _ours(module, v["X"], v["R_out"], first=first)
    expected = v["R_in"]
    torch.testing.assert_close(ours, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


# ----------------------------------------------------------------------------- LRP baselines


class TinyNet(nn.Module):
    """Bias-free ReLU CNN: LRP with z^B / z+ / LRP-0 pooling conserves relevance."""

    def __init__(self, channels: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=False),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(7)
    model = TinyNet().double().eval()
    with torch.no_grad():
        model.fc.weight.abs_()  # positive weights: z+ at the head equals LRP-0, totals are checkable
    return model, torch.randn(1, 3, 10, 12, dtype=torch.float64)


def test_lrp_starts_at_logit_and_conserves(tiny) -> None:
    model, x = tiny
    logits = model(x)[0]
    res = lrp(model, x, class_idx=[0, 3], variant="lrp")
    maps = res.relevance[0]
    assert res.relevance.shape == (1, 2, 10, 12) and res.class_idx.tolist() == [[0, 3]]
    torch.testing.assert_close(res.logits[0], logits.detach())
    torch.testing.assert_close(maps.sum(dim=(1, 2)), logits[[0, 3]].detach(), rtol=1e-6, atol=1e-9)


def test_clrp_and_sglrp_are_lrp_of_their_start_vectors(tiny) -> None:
    """CLRP = LRP(class) - LRP(dual: y_t/(N-1) on every other class); SGLRP starts at the softmax
    gradient. By linearity both are combinations of the per-class LRP maps."""
    model, x = tiny
    n = 5
    per_class = lrp(model, x, class_idx=list(range(n)), variant="lrp").relevance[0]  # [n, H, W], start y_n at n
    logits = model(x).detach()
    y = logits[0]
    for variant in ("clrp", "sglrp"):
        start = start_relevance(logits, [2], variant)[0, 0]
        expected = (start / y)[:, None, None].mul(per_class).sum(0)
        ours = lrp(model, x, class_idx=[2], variant=variant).relevance[0, 0]
        torch.testing.assert_close(ours, expected, atol=1e-9, rtol=1e-6)
    p = torch.softmax(y, 0)
    sg = start_relevance(logits, [2], "sglrp")[0, 0]
    assert sg[2] == pytest.approx((p[2] * (1 - p[2])).item()) and sg[0] == pytest.approx((-p[2] * p[0]).item())
    cl = start_relevance(logits, [2], "clrp")[0, 0]
    assert cl.sum().item() == pytest.approx(0.0, abs=1e-9) and cl[2] == y[2]


def test_lrp_target_layer_and_errors(tiny) -> None:
    model, x = tiny
    at_pool = lrp(model, x, class_idx=[1], target_layer="features.3").relevance
    assert at_pool.shape == (1, 1, 5, 6)
    with pytest.raises(MethodError, match="variant"):
        lrp(model, x, class_idx=[1], variant="lrp_eps")
    with pytest.raises(MethodError, match="out of range"):
        lrp(model, x, class_idx=[9])

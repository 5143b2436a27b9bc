"""The fast forms of the relevance rules (issue 20 item 4) against their straightforward forms.

Each fused or rewritten computation in ``xai_core.relevance.rules`` is pinned here to the
plain PyTorch computation it replaces: float masks against bool masks and ``masked_fill``,
a transposed depthwise convolution run as a forward one, 1x1 convolutions as matmuls,
z^B's three transposed passes in one, and a TF "same" pad moved into the convolution.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.relevance import lrp, rules
from xai_core.relevance.rules import (
    ZPlusConv,
    differs_mask,
    negative_mask,
    nonzero_mask,
    positive_mask,
    safe_divide,
    zbox_conv_grads,
)


def _with_zeros(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64)
    return x * (torch.rand(shape, dtype=torch.float64) > 0.3)  # exact zeros too


def test_float_masks_equal_bool_masks() -> None:
    x = _with_zeros((2, 3, 5, 5), 0)
    b = torch.randn(3, 1, 1, dtype=torch.float64)
    x[0, 1, 2] = b[1, 0, 0]  # some units equal the value exactly
    assert torch.equal(positive_mask(x), (x > 0).double())
    assert torch.equal(negative_mask(x), (x < 0).double())
    assert torch.equal(nonzero_mask(x), (x != 0).double())
    assert torch.equal(differs_mask(x, b), (x != b).double())
    g = torch.randn_like(x)
    assert torch.equal(g * positive_mask(x), g.masked_fill(x <= 0, 0.0))


GEOMETRIES = {
    # (in channels, out channels, kernel, stride, padding, dilation, groups)
    "depthwise_3x3": (6, 6, 3, 1, 1, 1, 6),
    "depthwise_5x5_no_pad": (4, 4, 5, 1, 0, 1, 4),
    "depthwise_dilated_uneven_pad": (4, 4, 3, 1, (2, 1), 2, 4),
    "depthwise_strided": (4, 4, 3, 2, 1, 1, 4),  # not the fast path: conv2d_input
    "pointwise": (5, 7, 1, 1, 0, 1, 1),
    "pointwise_strided": (5, 7, 1, 2, 0, 1, 1),  # not the fast path
    "grouped": (4, 6, 3, 1, 1, 1, 2),
    "dense": (3, 4, 3, 1, 1, 1, 1),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_conv_and_transposed_conv_match_the_plain_ops(name: str) -> None:
    c_in, c_out, k, stride, padding, dilation, groups = GEOMETRIES[name]
    torch.manual_seed(1)
    x = torch.randn(2, c_in, 9, 8, dtype=torch.float64)
    w = torch.randn(c_out, c_in // groups, k, k, dtype=torch.float64)
    geo = (None, stride, padding, dilation, groups)
    y = F.conv2d(x, w, None, stride, padding, dilation, groups)
    torch.testing.assert_close(rules._conv(x, w, geo), y, rtol=1e-12, atol=1e-12)
    s = torch.randn_like(y)
    expected = torch.nn.grad.conv2d_input(x.shape, w, s, stride, padding, dilation, groups)
    torch.testing.assert_close(rules._conv_t(x.shape, w, s, geo), expected, rtol=1e-12, atol=1e-12)


def _zplus_plain(module: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, g_out: torch.Tensor, constant=None):
    """The z+/z- rule as first written: explicit pad, bool masks, ``masked_fill``, ``conv2d_input``."""
    pad, stride, padding, dilation, groups = rules._conv_geometry(module)
    if constant is not None:
        x = x.masked_fill(constant, 0.0)
    xp = x if pad is None else F.pad(x, pad)
    w = module.weight.detach()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    z = F.conv2d(xp.clamp(min=0), wp, None, stride, padding, dilation, groups)
    z = z + F.conv2d(xp.clamp(max=0), wn, None, stride, padding, dilation, groups)
    s = g_out * safe_divide(y, z)
    cp = torch.nn.grad.conv2d_input(xp.shape, wp, s, stride, padding, dilation, groups)
    cn = torch.nn.grad.conv2d_input(xp.shape, wn, s, stride, padding, dilation, groups)
    g = cp.masked_fill(xp <= 0, 0.0) + cn.masked_fill(xp >= 0, 0.0)
    if pad is not None:
        left, right, top, bottom = pad
        g = g[..., top : g.shape[-2] - bottom, left : g.shape[-1] - right]
    return g


def _tf_same(stride: int, kernel: int, groups: int) -> nn.Module:
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    return Conv2dStaticSamePadding(4, 4, kernel, stride=stride, image_size=9, groups=groups, bias=False)


MODULES = {
    "depthwise_s1": lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4),
    "pointwise": lambda: nn.Conv2d(4, 6, 1),
    "dense": lambda: nn.Conv2d(4, 5, 3, padding=1),
    "tf_same_s1_depthwise": lambda: _tf_same(1, 5, 4),
    "tf_same_s2_depthwise": lambda: _tf_same(2, 3, 4),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("with_constant", [False, True])
def test_zplus_rule_equals_its_plain_form(name: str, signed: bool, with_constant: bool) -> None:
    module = MODULES[name]().double().eval()
    x = _with_zeros((2, 4, 9, 9), 2)
    if not signed:
        x = x.abs()
    y = module(x).detach()
    g_out = torch.randn_like(y)
    constant = (torch.rand_like(x) > 0.7) if with_constant else None
    keep = None if constant is None else (lambda: (~constant).double())
    ours = ZPlusConv(module, x, y, constant=keep)(g_out)
    expected = _zplus_plain(module, x, y, g_out, constant)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    assert expected.abs().sum() > 0


@pytest.mark.parametrize("stride", [1, 2])
def test_zbox_one_stacked_transposed_pass_equals_three(stride: int) -> None:
    torch.manual_seed(4)
    module = nn.Conv2d(3, 5, 3, stride=stride, padding=1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    low, high = torch.full_like(x, x.min().item()), torch.full_like(x, x.max().item())
    y = module(x).detach()
    g_out = torch.randn_like(y)
    ours = zbox_conv_grads(module, x, low, high, y, g_out)
    w = module.weight.detach()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    z = F.conv2d(x, w, None, stride, 1) - F.conv2d(low, wp, None, stride, 1) - F.conv2d(high, wn, None, stride, 1)
    s = g_out * safe_divide(y, z)

    def conv_t(weight: torch.Tensor) -> torch.Tensor:
        return torch.nn.grad.conv2d_input(x.shape, weight, s, stride, 1)

    for a, b in zip(ours, (conv_t(w), -conv_t(wp), -conv_t(wn))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_stride_spread_over_equals_the_masked_zero_safe_division() -> None:
    torch.manual_seed(6)
    z1 = torch.rand(2, 3, 9, 9, dtype=torch.float64) * (torch.rand(2, 3, 9, 9, dtype=torch.float64) > 0.4)
    spread = rules.StrideSpread(z1, (2, 2), (5, 5))
    r = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    expected = safe_divide(spread(r), z1)
    torch.testing.assert_close(spread.over(r, z1), expected, rtol=0, atol=0)


@pytest.mark.parametrize("spread", [False, True])
@pytest.mark.parametrize("static_pad", [None, (0, 1, 0, 1)])
def test_zbox_fast_forms_equal_the_plain_rule(spread: bool, static_pad: tuple[int, ...] | None) -> None:
    """The w+/w- transposed pass and StrideSpread.over against three passes and the masked division."""
    torch.manual_seed(7)
    module = nn.Conv2d(3, 5, 3, stride=2, padding=0 if static_pad else 1).double()
    if static_pad is not None:
        module.static_padding = nn.ZeroPad2d(static_pad)
    x = torch.randn(1, 3, 10, 10, dtype=torch.float64)
    low, high = torch.full_like(x, x.min().item()), torch.full_like(x, x.max().item())
    y = F.conv2d(rules._pad(x, static_pad), module.weight, module.bias, 2, module.padding).detach()
    g_out = torch.randn_like(y)
    ours = zbox_conv_grads(module, x, low, high, y, g_out, spread=spread)
    # plain: three convolutions, the mask of StrideSpread.__call__, three conv2d_input passes
    w = module.weight.detach()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    stride = 1 if spread else 2
    xf, lf, hf = (rules._pad(t, static_pad) for t in (x, low, high))
    parts = ((1, xf, w), (-1, lf, wp), (-1, hf, wn))
    z = sum(sign * F.conv2d(t, v, None, stride, module.padding) for sign, t, v in parts)
    if spread:
        s = safe_divide(rules.StrideSpread(z, (2, 2), tuple(y.shape[-2:]))(g_out * y), z)
    else:
        s = g_out * safe_divide(y, z)
    expected = [torch.nn.grad.conv2d_input(xf.shape, v, s, stride, module.padding) for v in (w, wp, wn)]
    expected = [expected[0], -expected[1], -expected[2]]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, rules._unpad(b, static_pad), rtol=1e-10, atol=1e-12)
    assert ours[0].abs().sum() > 0


class _DepthwiseNet(nn.Module):
    """Stem, stride-1 and stride-2 depthwise convs, 1x1 convs with signed input (a residual), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.dw2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.expand = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn(self.stem(x)))
        b = self.pw(torch.relu(self.dw(a))) + a  # signed: a 1x1 conv's output plus a residual
        c = torch.relu(self.expand(torch.relu(self.dw2(b)) - 0.1))
        return self.fc(c.mean(dim=(2, 3)))


@pytest.mark.parametrize("rules_name", ["crisp", "canonized", "authors"])
def test_batched_classes_equal_one_class_at_a_time(rules_name: str) -> None:
    """K classes go down in one vmapped backward: the fast paths must batch the same way."""
    torch.manual_seed(5)
    net = _DepthwiseNet().eval()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 16, 16)
    together = lrp(net, x, class_idx=[0, 2, 4], rules=rules_name).relevance
    for k, cls in enumerate([0, 2, 4]):
        alone = lrp(net, x, class_idx=[cls], rules=rules_name).relevance[:, 0]
        torch.testing.assert_close(together[:, k], alone, rtol=1e-5, atol=1e-6 * alone.abs().max().item())
    assert together.abs().sum() > 0


# ----------------------------------------------------------------------------- rule outputs without copies


class _SkipNet(nn.Module):
    """conv -> (conv output ``+=`` a skip, in place, like ResNet's ``out += identity``) -> conv -> head.

    ``late``: from now on, the third convolution's output is also modified in place, with grad
    mode on (``"grad"``) or off (``"no_grad"``).
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)
        self.late = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(x)
        b = self.conv2(torch.relu(a))
        b += a  # the rule output of conv2, modified in place on every pass
        c = self.conv3(torch.relu(b))
        if self.late == "grad":
            c.mul_(1.5)
        elif self.late == "no_grad":
            with torch.no_grad():
                c.mul_(1.5)
        return self.head(torch.relu(c).mean(dim=(2, 3)))


def _known(model: nn.Module, rules_name: str) -> dict[str, bool]:
    from xai_core.relevance.composite import _ALIASES, rule_set

    return dict(_ALIASES[model][rule_set(rules_name)])


@pytest.mark.parametrize("rules_name", ["crisp", "authors"])
def test_rule_outputs_are_copied_only_where_modified_in_place(rules_name: str) -> None:
    """The first pass copies every rule output and learns which one is modified in place; later
    passes skip the other copies and give the same relevance (an aliased ``b += a`` would be
    refused by autograd)."""
    model = _SkipNet().eval()
    x = torch.randn(2, 3, 8, 8)
    first = lrp(model, x, class_idx=[1], rules=rules_name).relevance
    known = _known(model, rules_name)
    assert known["conv2"] is False and known["conv1"] is True and known["conv3"] is True
    for _ in range(2):
        assert torch.equal(lrp(model, x, class_idx=[1], rules=rules_name).relevance, first)
    assert _known(model, rules_name) == known


@pytest.mark.parametrize("late", ["grad", "no_grad"])
def test_an_output_modified_in_place_only_later_is_refused_then_copied(late: str) -> None:
    """An output the first pass saw untouched and a later pass modifies in place (grad mode on or
    off): a clear error (autograd refuses the modified view at its next use), never a wrong map;
    the next call copies it and equals a fresh model's result."""
    from xai_core.errors import MethodError

    model = _SkipNet().eval()
    x = torch.randn(2, 3, 8, 8)
    lrp(model, x, class_idx=[1])
    assert _known(model, "crisp")["conv3"] is True
    model.late = late
    with pytest.raises(MethodError, match="modified in place"):
        lrp(model, x, class_idx=[1])
    assert _known(model, "crisp")["conv3"] is False
    fresh = _SkipNet().eval()
    fresh.late = late
    assert torch.equal(lrp(model, x, class_idx=[1]).relevance, lrp(fresh, x, class_idx=[1]).relevance)

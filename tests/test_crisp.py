"""The stride checkerboard score, and the crisp rules that remove the checkerboard at its cause.

``xai_core.metrics.checkerboard_score`` on synthetic maps; the ``StrideSpread`` rules
against a loop-form re-implementation (float64); on EfficientNet-Lite0's real weights
the input maps of the ``canonized`` rules score high and those of ``crisp`` do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from xai_core.metrics import checkerboard_score
from xai_core.relevance import fg_cam, lrp, propagate_relevance

from .test_relevance_rules import CONVS, Copy, _no_bias, _tf_same_conv, ref_zbox, ref_zplus

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "imagenet"


# ----------------------------------------------------------------------------- the score


def _grid(n: int = 64):
    return np.mgrid[:n, :n].astype(np.float64)


def test_checkerboard_scores_one_and_smooth_blob_zero() -> None:
    y, x = _grid()
    board = ((y % 2) + (x % 2)) % 2
    blob = np.exp(-((y - 30) ** 2 + (x - 36) ** 2) / (2 * 8.0**2))
    assert checkerboard_score(board) == pytest.approx(1.0)
    assert checkerboard_score(blob) < 1e-3
    assert checkerboard_score((y // 2) % 2) == pytest.approx(1.0)  # period 4 counts too
    assert checkerboard_score(((y // 2) % 2), strides=(2,)) < 0.01  # ... only when asked
    # a blob modulated by a stride-2 pattern: the pattern's share, neither 0 nor 1
    mixed = checkerboard_score(blob * (1 + 0.3 * board))
    assert 0.05 < mixed < 0.5
    scores = checkerboard_score(np.stack([board, blob, np.zeros_like(blob)]))
    assert scores.shape == (3,) and scores[2] == 0.0


def test_checkerboard_score_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="H, W"):
        checkerboard_score(np.zeros(5))


# ----------------------------------------------------------------------------- the rule


def _stride1(module: nn.Module) -> nn.Module:
    """The same convolution at stride 1 (shares the weights)."""
    out = type(module).__new__(type(module))
    out.__dict__ = {**module.__dict__, "_parameters": module._parameters, "stride": (1, 1)}
    return out


def _spread(z1: torch.Tensor, r: torch.Tensor, s: int) -> torch.Tensor:
    """Loop form of StrideSpread: tent weights over the stride-1 units with z1 > 0, renormalised."""
    c, h1, w1 = z1.shape
    out = torch.zeros_like(z1)
    for ch in range(c):
        for i in range(r.shape[1]):
            for j in range(r.shape[2]):
                cells = []
                for dy in range(-(s - 1), s):
                    for dx in range(-(s - 1), s):
                        yy, xx = s * i + dy, s * j + dx
                        if 0 <= yy < h1 and 0 <= xx < w1 and z1[ch, yy, xx] > 0:
                            cells.append((yy, xx, (s - abs(dy)) * (s - abs(dx))))
                total = sum(c_[2] for c_ in cells)
                for yy, xx, wgt in cells:
                    out[ch, yy, xx] += r[ch, i, j] * wgt / total
    return out


def _z1(module: nn.Module, x: torch.Tensor, *, box: tuple[float, float] | None) -> torch.Tensor:
    """``z`` of the z+ (or z^B) rule at stride 1, ``[C, H1, W1]``, via the matrix form."""
    lin = _no_bias(_stride1(module))
    w = torch.autograd.functional.jacobian(lin, x).reshape(-1, x.numel())
    xf = x.flatten()
    if box is None:
        contrib = xf.clamp(min=0)[None] * w.clamp(min=0) + xf.clamp(max=0)[None] * w.clamp(max=0)
    else:
        contrib = xf[None] * w - box[0] * w.clamp(min=0) - box[1] * w.clamp(max=0)
    return contrib.sum(1).reshape(lin(x).shape[1:])


@pytest.mark.parametrize("name", ["strided_grouped", "depthwise", "tf_same_depthwise"])
@pytest.mark.parametrize("first", [False, True])
def test_crisp_rule_is_the_stride1_rule_on_spread_relevance(name: str, first: bool) -> None:
    torch.manual_seed(3)
    module = (CONVS[name]() if name in CONVS else _tf_same_conv()).double().eval()
    x = torch.randn(1, 4, 7, 7, dtype=torch.float64)
    if not first:
        x = x.clamp(min=0)
    y = module(x)
    r_out = torch.randn_like(y) * (y != 0)  # relevance is R = y * g: none on a zero unit
    box = (x.min().item(), x.max().item()) if first else None
    r1 = _spread(_z1(module, x, box=box), r_out[0], 2)[None]
    one = _stride1(module)
    expected = ref_zbox(one, x, r1, *box) if first else ref_zplus(one, x, r1)
    model = nn.Sequential(module) if first else nn.Sequential(Copy(), module)
    ours = propagate_relevance(
        model, x, r_out[None], rules="crisp", start_layer="0" if first else "1", target_layer="input"
    ).relevance[0]
    torch.testing.assert_close(ours.sum(0, keepdim=True) if ours.dim() == 4 else ours, expected, atol=1e-6, rtol=1e-6)
    # conservation: the spread keeps what the stride-1 rule can place
    assert expected.sum().item() == pytest.approx(r_out.sum().item(), rel=1e-6)


def test_crisp_equals_canonized_without_strides() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 4),
    ).eval()
    x = torch.randn(2, 3, 10, 10)
    a = lrp(net, x, class_idx=[1], rules="canonized").relevance
    b = lrp(net, x, class_idx=[1], rules="crisp").relevance
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def lite0():
    import xai_core as xc

    model = xc.load_model("efficientnet_lite0")
    files = [SAMPLES / "cat_dog.png", SAMPLES / "ILSVRC2012_val_00000001.JPEG"]
    x = torch.cat([xc.prepare(xc.read_image(p), model.spec.preprocessing).tensor for p in files])
    return model, x


def test_lite0_input_maps_have_no_checkerboard_under_crisp_rules(lite0) -> None:
    model, x = lite0
    top1 = lambda z: z.argmax(1, keepdim=True)  # noqa: E731
    layer = model.spec.default_layer
    maps, kept = {}, {}
    for rules in ("canonized", "crisp"):
        res = fg_cam(model.module, x, cam_layer=layer, target_layer="input", class_idx=top1, rules=rules)
        cam = fg_cam(model.module, x, cam_layer=layer, target_layer=layer, class_idx=top1, rules=rules)
        maps[rules] = checkerboard_score(res.relevance[:, 0].numpy())
        kept[rules] = (res.relevance[:, 0].flatten(1).sum(1) / cam.relevance[:, 0].flatten(1).sum(1)).numpy()
    assert (maps["canonized"] > 0.05).all()  # the stride checkerboard of the z rules
    assert (maps["crisp"] < 0.02).all()
    np.testing.assert_allclose(kept["crisp"], 1.0, atol=1e-3)
    lrp_map = lrp(model.module, x, class_idx=top1, rules="crisp").relevance[:, 0]
    assert (checkerboard_score(lrp_map.numpy()) < 0.02).all()

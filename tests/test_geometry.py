"""Receptive-field geometry (xai_core.hooks.geometry): analytic cases and EfficientNet-Lite0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xai_core.errors import LayerError, LayerNotFoundError
from xai_core.hooks.geometry import receptive_field


def _net(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(3)).eval()


@pytest.mark.parametrize(
    ("layers", "name", "stride", "size", "offset"),
    [
        # symmetric padding: unit i centred on pixel 2i, half a pixel above/left of its cell's centre
        ([nn.Conv2d(3, 4, 3, stride=2, padding=1)], "0", 2.0, 3, -0.5),
        # TF "same" padding of an even input pads only after: centred on 2i + 1, half a pixel below/right
        ([nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2)], "1", 2.0, 3, 0.5),
        # two symmetric stride-2 layers: centre 4i, cell centre 4i + 1.5; size 3 + 2 * 2
        ([nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1)], "2", 4.0, 7, -1.5),
        # stride-1 "same" layers change the size, not the centre
        ([nn.Conv2d(3, 4, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2)], "2", 2.0, 6, 0.0),
    ],
)
def test_analytic_geometry(layers, name, stride, size, offset):
    torch.manual_seed(0)
    net = _net(*layers)
    x = torch.randn(1, 3, 32, 32)
    net(x)  # materialise the lazy head
    rf = receptive_field(net, x, name)
    assert rf.stride == (stride, stride)
    assert rf.size == (size, size)
    assert rf.offset == (offset, offset)
    assert rf.grid == (round(32 / stride), round(32 / stride))
    assert not net.training and all(p.grad is None for p in net.parameters())


def test_bad_layers_are_refused():
    net = _net(nn.Conv2d(3, 4, 3, 2, 1))
    x = torch.randn(1, 3, 16, 16)
    net(x)
    with pytest.raises(LayerNotFoundError):
        receptive_field(net, x, "nope")
    with pytest.raises(LayerError, match="does not return"):
        receptive_field(net, x, "3")  # the Linear head


@pytest.mark.slow  # backward passes of the whole Lite0 trunk on padded textures (~1 min on 2 cores)
def test_efficientnet_lite0_cells_sit_half_a_cell_down_right(lite0, cat_dog):
    """TF "same" padding: Lite0's 7x7 units look 15.5 pixels below and right of their cells."""
    import xai_core

    x = xai_core.prepare(cat_dog, lite0.spec.preprocessing).tensor
    rf = receptive_field(lite0.module, x, "_head_act")
    assert rf.stride == (32.0, 32.0) and rf.grid == (7, 7)
    assert rf.offset == (15.5, 15.5)
    assert rf.size[0] > 224  # each unit sees more than the whole image

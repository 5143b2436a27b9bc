"""CAM upsampling at the measured receptive-field centres (xai_core.trust.upsample)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xai_core.trust import synthetic
from xai_core.trust.upsample import aligned_resize, unit_offset


def test_zero_offset_is_the_usual_bilinear_upsampling() -> None:
    maps = torch.randn(2, 3, 7, 5, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(maps, size=(224, 160), mode="bilinear", align_corners=False)
    torch.testing.assert_close(aligned_resize(maps, (224, 160)), expected, atol=1e-5, rtol=0)
    assert aligned_resize(maps[0, 0], (224, 160)).shape == (224, 160)


def test_offset_moves_each_unit_to_its_centre() -> None:
    maps = torch.randn(1, 7, 7, generator=torch.Generator().manual_seed(1))
    naive = aligned_resize(maps, (224, 224))
    shifted = aligned_resize(maps, (224, 224), offset=(16.0, -32.0))
    # Inside the map, everything sits 16 px lower and 32 px further left.
    torch.testing.assert_close(shifted[0, 40:200, 8:180], naive[0, 24:184, 40:212], atol=1e-5, rtol=0)
    # Unit (i, j)'s value lands exactly at its centre stride * i + (stride - 1) / 2 + offset.
    centre = aligned_resize(maps, (224, 224), offset=(0.5, 0.5))
    assert torch.allclose(centre[0, 32 * 3 + 16, 32 * 2 + 16], maps[0, 3, 2], atol=1e-6)


@pytest.mark.slow  # the measurement runs the model on 6 inputs of 1088 x 1088 px
def test_measured_offset_of_the_benchmark_cnn() -> None:
    model = synthetic.as_loaded(synthetic.TinyCNN(), 64, "features.6")
    offset, stride = unit_offset(model)
    assert stride == (4.0, 4.0)
    # Unit j of the last ReLU sees input pixels 4j - 3 .. 4j + 5 (padding 1 everywhere, a stride-2
    # convolution, then a 2x2 max-pool): centred at 4j + 1, half a pixel before its cell's centre 4j + 1.5.
    assert offset == (-0.5, -0.5)

"""CAM upsampling at the measured receptive-field centres.

Bilinear upsampling with ``align_corners=False`` (what every CAM library does) puts unit
``i`` of an ``h``-unit map at the centre of the ``i``-th of ``h`` equal cells of the
input: pixel ``stride * i + (stride - 1) / 2``. Where the network's padding is
asymmetric the unit's receptive field is centred elsewhere; :func:`xai_core.hooks.geometry.receptive_field`
measures by how much (EfficientNet-Lite0's 7 x 7 maps: 15.5 px down and right at 224 px,
TF "same" padding; torchvision ResNets: -15.5 px). :func:`aligned_resize` samples the
map with each unit at its measured centre instead; ``offset=(0, 0)`` is exactly the
usual bilinear upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xai_core.hooks.geometry import receptive_field
from xai_core.models.registry import LoadedModel


def unit_offset(model: LoadedModel, layer: str | None = None) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(offset, stride)`` of ``layer``'s units (default the model's layer), in input pixels per axis."""
    rf = receptive_field(model.module, model.example_input(), layer or model.spec.default_layer)
    return rf.offset, rf.stride


def aligned_resize(
    maps: torch.Tensor,
    size: Sequence[int],
    offset: Sequence[float] = (0.0, 0.0),
    stride: Sequence[float] | None = None,
) -> torch.Tensor:
    """Upsample ``maps`` ``[..., h, w]`` to ``size`` ``(H, W)`` with unit ``(i, j)`` at its field's centre.

    Unit ``i``'s centre is at input pixel ``stride * i + (stride - 1) / 2 + offset``
    (per axis; ``stride`` defaults to ``H / h``). Each output pixel is interpolated
    bilinearly between the units whose centres surround it; beyond the outermost
    centres the border value is kept (as ``align_corners=False`` does).
    """
    x = maps.float()
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    out_h, out_w = int(size[0]), int(size[1])
    sy, sx = (out_h / h, out_w / w) if stride is None else (float(stride[0]), float(stride[1]))
    flat = x.reshape(-1, 1, h, w)
    pix_y = torch.arange(out_h, dtype=torch.float32, device=x.device)
    pix_x = torch.arange(out_w, dtype=torch.float32, device=x.device)
    uy = (pix_y - (sy - 1) / 2 - float(offset[0])) / sy  # unit coordinate of each output row
    ux = (pix_x - (sx - 1) / 2 - float(offset[1])) / sx
    gy = 2 * uy / max(h - 1, 1) - 1 if h > 1 else torch.zeros_like(uy)
    gx = 2 * ux / max(w - 1, 1) - 1 if w > 1 else torch.zeros_like(ux)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # (x, y) order for grid_sample
    grid = grid[None].expand(flat.shape[0], -1, -1, -1)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(*lead, out_h, out_w)

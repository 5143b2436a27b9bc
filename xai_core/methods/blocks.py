"""Small CPU tensors computed in channel blocks that PyTorch runs on the calling thread.

An element-wise op or a reduction over more than :data:`GRAIN` elements (PyTorch's
intra-op grain size, ``at::internal::GRAIN_SIZE``) opens an OpenMP parallel region. On an
idle CPU that costs microseconds; on cores shared with other work every region waits for a
scheduler time slice: on a loaded 2-core machine each op on a 1280 x 7 x 7 feature map
took a median 12 ms (0.05 ms idle), so a method's handful of small ops after the forward
pass could cost more than the pass itself (FEM's weights: 60 ms loaded, 0.8 ms idle). A
peer that does the same maths in NumPy (single-threaded) does not pay this.

So a small CPU feature map (at most :data:`SERIAL_LIMIT` elements) is split along its
channels into blocks of at most :data:`GRAIN` elements, and each block's per-channel maths
runs serially; a larger map, or one on another device, stays whole (its work amortises a
parallel region). Only per-channel maths is blocked (statistics over the positions of
each channel), so the result is the same bit for bit.
"""

from __future__ import annotations

import torch

GRAIN = 32768
"""PyTorch's intra-op grain size: an op over at most this many elements runs without OpenMP."""
SERIAL_LIMIT = 8 * GRAIN
"""Tensors up to this many elements are split into serial blocks."""


def block_channels(x: torch.Tensor, dim: int = 1) -> int | None:
    """Channels (along ``dim``) per serial block of ``x``, or None where ``x`` stays whole."""
    channels = x.shape[dim]
    if x.device.type != "cpu" or channels == 0 or not GRAIN < x.numel() <= SERIAL_LIMIT:
        return None
    per_channel = x.numel() // channels
    return GRAIN // per_channel if per_channel <= GRAIN else None


def serial_blocks(x: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, ...]:
    """``x`` split along ``dim`` into serial blocks (:func:`block_channels`), or ``(x,)``."""
    per = block_channels(x, dim)
    return (x,) if per is None else x.split(per, dim=dim)

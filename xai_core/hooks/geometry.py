"""Where a layer's units look in the input: receptive-field stride, size and centre.

A CAM drawn on the image assumes that unit ``(i, j)`` of a ``h x w`` map stands for the
``i``-th of ``h`` equal cells of the input (bilinear upsampling, the pooled comparisons
of FG-CAM with its CAM). The network's padding decides whether that is true. With
TensorFlow "same" padding (EfficientNet-Lite, efficientnet_pytorch) every stride-2
layer pads more at the bottom/right, so a unit's receptive field is centred
``(k - 1) / 2 - pad_top`` input steps further down than its cell; on
EfficientNet-Lite0 the 7x7 units' fields are centred 15.5 pixels (half a cell) below
and right of their cells. Symmetric padding (torchvision ResNets) shifts them half a
cell the other way.

:func:`receptive_field` measures it rather than deriving it from the module list (a
residual or dense network has parallel branches whose geometry a chain walk would add
up wrongly): the bounding box of the input gradient of one unit is its receptive
field, exactly, wherever the gradient is non-zero somewhere on each border of the field
(true for a generic image; a unit far enough from the image border is used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import LayerError
from xai_core.hooks.layers import resolve_layer
from xai_core.hooks.state import eval_mode, model_lock


@dataclass(frozen=True)
class ReceptiveField:
    """The geometry of a layer's units on the input, per axis ``(rows, columns)``.

    Attributes:
        stride: input pixels between neighbouring units.
        size: the receptive field's extent in pixels (clipped by nothing: measured on a
            unit whose field lies inside the image, where possible).
        offset: the field's centre minus the centre of the unit's cell
            (``stride * i + (stride - 1) / 2``), in input pixels; positive = down / right.
        grid: the layer's ``(h, w)``.
    """

    stride: tuple[float, float]
    size: tuple[int, int]
    offset: tuple[float, float]
    grid: tuple[int, int]


class _Stop(Exception):
    """Raised by the hook once the layer has run: the rest of the network is not needed."""


@contextlib.contextmanager
def _output_of(module: nn.Module, store: list) -> Iterator[None]:
    def hook(_m: nn.Module, _i: tuple, out: object) -> None:
        store.append(out)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _support(grad: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` of the non-zero entries of ``grad`` ``[C, H, W]``."""
    nz = grad.abs().sum(0) > 0
    rows = torch.nonzero(nz.any(1)).flatten()
    cols = torch.nonzero(nz.any(0)).flatten()
    if rows.numel() == 0:
        raise LayerError("The unit's output does not depend on the input; no receptive field to measure.")
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


#: Margin added on every side of the example, in pixels: a multiple of every stride up to
#: 512, so each stride-2 layer sees sizes of the same parity (TF "same" padding then pads
#: the interior exactly as it pads the original), and wide enough that the measured
#: units' fields lie inside the enlarged input.
MARGIN = 512

#: Random textures whose gradient supports are united (see :func:`receptive_field`).
TRIALS = 6


def _union(boxes: list[tuple[tuple[int, int], tuple[int, int]]]) -> tuple[tuple[int, int], tuple[int, int]]:
    (rows, cols) = zip(*boxes)
    return (min(r[0] for r in rows), max(r[1] for r in rows)), (min(c[0] for c in cols), max(c[1] for c in cols))


def receptive_field(model: nn.Module, example: torch.Tensor, layer: str) -> ReceptiveField:
    """Measure the receptive-field geometry of ``layer``'s units for inputs like ``example``.

    The geometry does not depend on the picture, only on its size: the network runs, up
    to ``layer`` only, on :data:`TRIALS` fixed pseudo-random textures with the example's
    mean and spread and :data:`MARGIN` more pixels on every side than ``example``
    ``[1, C, H, W]``; the input gradients of the centre unit and its diagonal neighbour,
    united over the textures, give the fields' bounding boxes: the stride, the size and
    the centre, mapped back to the coordinates of an ``H x W`` input. The model is left as found (eval mode restored, no
    hooks, no parameter gradients).

    Raises:
        LayerNotFoundError: unknown layer.
        LayerError: the layer does not return an ``[N, C, h, w]`` map.
    """
    module = resolve_layer(model, layer)
    ex = example[:1].detach()
    height, width = ex.shape[-2:]
    gen = torch.Generator().manual_seed(0)
    boxes: list[list[tuple[tuple[int, int], tuple[int, int]]]] = [[], []]
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        for _ in range(TRIALS):
            big = torch.randn(1, ex.shape[1], height + 2 * MARGIN, width + 2 * MARGIN, generator=gen).to(ex)
            x = (big * ex.std().clamp_min(1e-3) + ex.mean()).requires_grad_(True)
            outs: list = []
            with _output_of(module, outs), contextlib.suppress(_Stop):
                model(x)
            if not outs or not isinstance(outs[0], torch.Tensor) or outs[0].dim() != 4:
                raise LayerError(f"Layer {layer!r} does not return an [N, C, h, w] map.")
            out = outs[0]
            big_h, big_w = out.shape[-2:]
            i, j = (big_h - 1) // 2, (big_w - 1) // 2
            for d in (0, 1):
                (g,) = torch.autograd.grad(out[0, :, i + d, j + d].sum(), x, retain_graph=d == 0)
                boxes[d].append(_support(g[0]))
    # A max-pool passes each window's gradient to its maximum only, and a ReLU drops units
    # below zero, so one input's gradient may miss a border row of the field: the union over
    # TRIALS textures is the field.
    boxes = [_union(b) for b in boxes]
    (r0, c0), (r1, c1) = boxes
    stride = ((sum(r1) - sum(r0)) / 2, (sum(c1) - sum(c0)) / 2)
    if stride[0] <= 0 or stride[1] <= 0:
        raise LayerError(
            f"The receptive field of {layer!r} is wider than the input plus a {MARGIN}-pixel margin; "
            "its geometry cannot be measured here."
        )
    # centre of unit i in the original image = centre in the enlarged one - MARGIN, with
    # unit i = i_big - MARGIN / stride: so centre(i) = stride * i + (centre_big - stride * i_big).
    shift = (sum(r0) / 2 - stride[0] * i, sum(c0) / 2 - stride[1] * j)
    offset = (shift[0] - (stride[0] - 1) / 2, shift[1] - (stride[1] - 1) / 2)
    size = (r0[1] - r0[0] + 1, c0[1] - c0[0] + 1)
    grid = (round(height / stride[0]), round(width / stride[1]))
    return ReceptiveField(stride, size, offset, grid)

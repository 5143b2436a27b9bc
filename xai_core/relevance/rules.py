"""Relevance rules as modified gradients (FG-CAM, ALGORITHMS.md section 3).

Convention: the signal that flows backward through autograd is ``g = R / a``, the
relevance *per unit of activation*, so that the relevance held by any tensor ``a`` of the
forward graph is ``R = a * g``. With this convention the operations no rule is attached
to behave as LRP-0 for free: a sum ``a + b`` hands ``a * g`` and ``b * g`` to its
summands (the proportional split of a residual addition), a concatenation routes each
part's channels, a functional average pool or ``flatten`` is LRP-0, and the plain
gradient of a ReLU is the identity rule (``R_in = x * g * 1[x > 0] = relu(x) * g``).

Each rule below maps ``g_out`` (the signal at a module's output ``y``) to the signal at
its input ``x``. Relevance at the output is ``R_out = y * g_out``; the rule computes
``R_in`` and returns ``g_in`` with ``x * g_in = R_in``. Divisions are "zero-safe": the
quotient is 0 where the denominator is exactly 0 (no epsilon), as in the official
FG-CAM code. Bias terms are ignored by the z rules.

The backward functions only use operations that have vmap batching rules, so K classes
run in one ``torch.autograd.grad(..., is_grads_batched=True)`` call; data-dependent
branches only look at forward tensors (never at the batched ``g``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import MethodError


def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, and 0 where ``den == 0`` exactly (shapes broadcast).

    Two passes: the quotient, then NaN (0/0) and +-inf (x/0) set to 0 in place on the
    fresh quotient. A finite quotient too large for the dtype (denominators below ~1e-38
    times the numerator) would also become 0; the z rules never get that close.
    """
    return (num / den).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


# ----------------------------------------------------------------------------- masks
# Indicator masks as float tensors, built from ``sign`` (the bool comparisons, ``masked_fill_``
# and ``where`` run many times slower on the CPU; tests/test_relevance_fast_paths.py pins the two
# forms against each other). ``g * mask`` equals ``g.masked_fill(~mask, 0)`` for finite ``g``
# (up to the sign of zero).


def positive_mask(x: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x > 0``, else ``0`` (float, ``x``'s dtype)."""
    return x.sign().clamp_(min=0)


def negative_mask(x: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x < 0``, else ``0`` (float, ``x``'s dtype)."""
    return x.sign().clamp_(max=0).neg_()


def nonzero_mask(x: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x != 0``, else ``0`` (float, ``x``'s dtype)."""
    return x.sign().abs_()


def differs_mask(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x != value``, else ``0`` (``value`` broadcasts; finite values: ``x - value == 0`` iff equal)."""
    return (x - value).sign_().abs_()


# ----------------------------------------------------------------------------- conv helpers


def _conv_geometry(module: nn.Module) -> tuple[Any, ...]:
    """``(pad, stride, padding, dilation, groups)`` of a conv module.

    ``pad`` is the explicit zero padding its forward applies before ``F.conv2d`` (TF "same"
    convs of efficientnet_pytorch keep it in ``static_padding``), as ``F.pad`` widths or ``None``.
    """
    if getattr(module, "padding_mode", "zeros") != "zeros":
        raise MethodError(
            f"Relevance rules support zero-padded convolutions only; {type(module).__name__} uses "
            f"padding_mode={module.padding_mode!r}."
        )
    if isinstance(module.padding, str):
        raise MethodError(
            f"Relevance rules need numeric padding; {type(module).__name__} has padding={module.padding!r}."
        )
    pad = None
    static = getattr(module, "static_padding", None)
    if isinstance(static, nn.ZeroPad2d):
        pad = tuple(static.padding)
    elif static is not None and not isinstance(static, nn.Module):
        raise MethodError(f"Unexpected static_padding {static!r} on {type(module).__name__}.")
    elif static is None and type(module).forward is not nn.Conv2d.forward:
        raise MethodError(
            f"{type(module).__name__} overrides Conv2d.forward in a way the relevance rules do not know; "
            "only plain nn.Conv2d and TF-'same' convs with a static_padding ZeroPad2d are supported."
        )
    return pad, module.stride, module.padding, module.dilation, module.groups


def _implicit_pad(geo: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same convolution with a symmetric explicit zero pad moved into the convolution's ``padding``.

    (TF "same" convolutions at stride 1 pad evenly.) The rule then needs no padded copy of
    its input, and its transposed pass returns the unpadded signal directly.
    """
    pad, stride, padding, dilation, groups = geo
    if pad is None or pad[0] != pad[1] or pad[2] != pad[3] or isinstance(padding, str):
        return geo
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return None, stride, (int(ph) + pad[2], int(pw) + pad[0]), dilation, groups


def _pad(x: torch.Tensor, pad: tuple[int, ...] | None) -> torch.Tensor:
    return x if pad is None else F.pad(x, pad)


def _unpad(g: torch.Tensor, pad: tuple[int, ...] | None) -> torch.Tensor:
    if pad is None:
        return g
    left, right, top, bottom = pad
    h, w = g.shape[-2], g.shape[-1]
    return g[..., top : h - bottom, left : w - right]


def _pointwise(w: torch.Tensor, stride: Any, padding: Any, groups: int) -> bool:
    """A 1x1 convolution at stride 1 without padding: a matrix product over channels."""
    return groups == 1 and w.shape[2:] == (1, 1) and _pairs(stride) == (1, 1) and _pairs(padding) == (0, 0)


def _conv(x: torch.Tensor, w: torch.Tensor, geo: tuple[Any, ...]) -> torch.Tensor:
    _, stride, padding, dilation, groups = geo
    if _pointwise(w, stride, padding, groups):  # a plain matmul: no im2col bookkeeping
        z = w.reshape(w.shape[0], w.shape[1]) @ x.reshape(*x.shape[:-2], -1)
        return z.reshape(*x.shape[:-3], -1, *x.shape[-2:])
    return F.conv2d(x, w, None, stride, padding, dilation, groups)


def _conv_t(shape: torch.Size, w: torch.Tensor, s: torch.Tensor, geo: tuple[Any, ...]) -> torch.Tensor:
    """Adjoint of :func:`_conv` applied to ``s`` (``conv^T(w, s)``), for an input of ``shape``.

    A depthwise convolution at stride 1 (every depthwise layer under the crisp rules) takes
    the forward convolution with the flipped kernel (:func:`_depthwise_t`): oneDNN's
    transposed depthwise pass is several times slower than its forward pass on the CPU.
    """
    _, stride, padding, dilation, groups = geo
    if _pointwise(w, stride, padding, groups):  # ``w^T s`` as a matmul (no zero-filled col2im buffer)
        return (w.reshape(w.shape[0], w.shape[1]).t() @ s.reshape(*s.shape[:-2], -1)).reshape(shape)
    if _depthwise_t_ok(shape, w, stride, padding, dilation, groups):
        return _depthwise_t(w, s, padding, dilation, groups)
    return torch.nn.grad.conv2d_input(shape, w, s, stride, padding, dilation, groups)


def _pairs(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _depthwise_t_ok(shape: Any, w: torch.Tensor, stride: Any, padding: Any, dilation: Any, groups: int) -> bool:
    if groups == 1 or w.shape[1] != 1 or w.shape[0] != groups or shape[-3] != groups or _pairs(stride) != (1, 1):
        return False
    (ph, pw), (dh, dw) = _pairs(padding), _pairs(dilation)
    return dh * (w.shape[2] - 1) >= ph and dw * (w.shape[3] - 1) >= pw


def _depthwise_t(w: torch.Tensor, s: torch.Tensor, padding: Any, dilation: Any, groups: int) -> torch.Tensor:
    """Transposed depthwise convolution at stride 1 as a forward one.

    ``conv(s, flip(w))`` with padding ``d (k - 1) - p`` per axis (the adjoint of a stride-1
    correlation is the correlation with the flipped kernel, padded to the full size).
    """
    (ph, pw), (dh, dw) = _pairs(padding), _pairs(dilation)
    pad_t = (dh * (w.shape[2] - 1) - ph, dw * (w.shape[3] - 1) - pw)
    return F.conv2d(s, w.flip(-2, -1), None, 1, pad_t, (dh, dw), groups)


def _strides(geo: tuple[Any, ...]) -> tuple[int, int]:
    stride = geo[1]
    return (int(stride), int(stride)) if isinstance(stride, int) else (int(stride[0]), int(stride[1]))


def _unstrided(geo: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same convolution with stride 1 (its output at ``[::s, ::s]`` is the strided one's)."""
    pad, _, padding, dilation, groups = geo
    return pad, (1, 1), padding, dilation, groups


def _tent(stride: tuple[int, int], channels: int, like: torch.Tensor) -> torch.Tensor:
    """Per-channel separable tent kernel ``[C, 1, 2s-1, 2s-1]``, ``(s - |d|) / s`` per axis."""
    taps = []
    for s in stride:
        d = torch.arange(-(s - 1), s, dtype=like.dtype, device=like.device).abs()
        taps.append((s - d) / s)
    k = taps[0][:, None] * taps[1][None, :]
    return k.expand(channels, 1, *k.shape).contiguous()


class StrideSpread:
    """Shares a strided output's relevance over the stride-1 grid it was sampled from.

    A convolution with stride ``s`` is the stride-1 convolution sampled at every ``s``-th
    unit. The transposed strided pass of a z rule covers the input unevenly (with a
    3 x 3 kernel and stride 2 every other input pixel is reached by one output unit,
    the others by two or four, weighted by different kernel taps): the stride-2
    checkerboard of input-layer relevance maps (docs/fgcam.md, "Crisp maps"). This
    rule hands each sampled unit's relevance to the stride-1 units around it with the
    separable tent ``(s - |d|) / s`` (bilinear interpolation's weights; the tents of
    the sampled units sum to the same value everywhere), renormalised per unit over
    the stride-1 units that have positive ``z`` (so the relevance is conserved), and
    the z rule then runs at stride 1: an even transposed pass. The spread moves
    relevance by at most ``s - 1`` units of the stride-1 grid.

    Args:
        z1: the rule's ``z`` at stride 1 ``[N, C, H1, W1]`` (forward tensors only).
        stride: the convolution's stride.
        size: ``(h, w)`` of the strided output.
    """

    def __init__(self, z1: torch.Tensor, stride: tuple[int, int], size: tuple[int, int]) -> None:
        self.stride = stride
        self.mask = positive_mask(z1)
        self.kernel = _tent(stride, z1.shape[1], z1)
        self.padding = (stride[0] - 1, stride[1] - 1)
        h1, w1 = z1.shape[-2:]
        self.output_padding = (h1 - (size[0] - 1) * stride[0] - 1, w1 - (size[1] - 1) * stride[1] - 1)
        norm = F.conv2d(self.mask, self.kernel, None, stride, self.padding, 1, z1.shape[1])
        self.inv_norm = norm.reciprocal_().nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # safe_divide(1, norm)

    def _spread(self, r: torch.Tensor) -> torch.Tensor:
        lead = r.shape[:-3]
        flat = (r * self.inv_norm).reshape(-1, *r.shape[-3:]) if lead else r * self.inv_norm
        up = F.conv_transpose2d(
            flat, self.kernel, None, self.stride, self.padding, self.output_padding, self.kernel.shape[0]
        )
        return up.reshape(*lead, *up.shape[-3:])

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """Relevance ``[..., C, h, w]`` at the strided output -> ``[..., C, H1, W1]`` at stride 1."""
        return self._spread(r).mul_(self.mask)

    def over(self, r: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """``safe_divide(self(r), z1)`` for the ``z1 >= 0`` it was built from, in place on the spread.

        The mask ``z1 > 0`` is not applied: where it is 0, ``z1 == 0`` and the zero-safe
        division gives 0 anyway (the same numbers; tests/test_relevance_fast_paths.py).
        """
        return self._spread(r).div_(z1).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def stride_of(module: nn.Module) -> tuple[int, int]:
    """A convolution's stride as a pair."""
    return _strides((None, module.stride, None, None, None))


# ----------------------------------------------------------------------------- rule maths
# Each function: forward tensors (x, y, module) and the batched-able signal g_out -> g_in.


def identity_grad(x: torch.Tensor, y: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
    """Identity rule (BatchNorm, ReLU, ReLU6, SiLU, ...): ``R_in = R_out``.

    Args:
        x: module input ``[N, C, h, w]``.
        y: module output, same shape.
        g_out: signal at the output, same shape.

    Returns:
        ``g_in = g_out * y / x`` (0 where ``x == 0``: relevance sitting on an exactly zero
        input is dropped, as the z rule below it would drop it anyway).
    """
    return g_out * safe_divide(y, x)


def pool_grad(module: nn.Module, x: torch.Tensor, y: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
    """LRP-0 on the clamped input for max/avg/adaptive-avg pooling.

    ``X = clamp(x, min=0)``, ``Y = pool(X)``, ``s = R_out / Y`` (0 where Y = 0),
    ``R_in = X * (dY/dX)^T s``. Shapes: x ``[N, C, H, W]``, y and g_out ``[N, C, h, w]``.
    """
    xt = x.clamp(min=0)
    if isinstance(module, nn.MaxPool2d):
        k, st, p, d = (
            _pair(module.kernel_size),
            _pair(module.stride or module.kernel_size),
            _pair(module.padding),
            _pair(module.dilation),
        )
        big_y, idx = F.max_pool2d(xt, k, st, p, d, module.ceil_mode, return_indices=True)
        s = g_out * safe_divide(y, big_y)
        c = torch.ops.aten.max_pool2d_with_indices_backward(s, xt, k, st, p, d, module.ceil_mode, idx)
    elif isinstance(module, nn.AvgPool2d):
        k, st, p = _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding)
        big_y = F.avg_pool2d(xt, k, st, p, module.ceil_mode, module.count_include_pad, module.divisor_override)
        s = g_out * safe_divide(y, big_y)
        c = torch.ops.aten.avg_pool2d_backward(
            s, xt, k, st, p, module.ceil_mode, module.count_include_pad, module.divisor_override
        )
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        big_y = F.adaptive_avg_pool2d(xt, module.output_size)
        s = g_out * safe_divide(y, big_y)
        c = torch.ops.aten._adaptive_avg_pool2d_backward(s, xt)
    elif isinstance(module, nn.AdaptiveMaxPool2d):
        big_y, idx = F.adaptive_max_pool2d(xt, module.output_size, return_indices=True)
        s = g_out * safe_divide(y, big_y)
        c = torch.ops.aten.adaptive_max_pool2d_backward(s, xt, idx)
    else:  # pragma: no cover - the composite only maps the classes above here
        raise MethodError(f"No pooling rule for {type(module).__name__}.")
    # R_in = X * c; X = x where x > 0, else 0, so g_in = c on x > 0.
    return c.mul_(positive_mask(x))


def _pair(v: Any) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v), int(v)]


def signed_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w.clamp(min=0), w.clamp(max=0))``.

    Computed once per rule application (not kept per model: that would hold two more copies
    of every weight for the model's lifetime, for about 2% of an FG-CAM call on Lite0).
    """
    return w.clamp(min=0), w.clamp(max=0)


class ZPlusConv:
    """Hidden-conv z+/z- rule, bias ignored (groups and depthwise supported), as a callable.

    ``z = conv(x+, w+) + conv(x-, w-)`` (the positive contributions), ``s = R_out / z``,
    ``R_in = x+ * conv^T(w+, s) + x- * conv^T(w-, s)``. ``rule(g_out) -> g_in``.

    The ``"canonized"`` rule set (docs/fgcam.md) passes ``constant``: a lazy float mask,
    ``0`` at input units that carry no evidence because the layer below gave them no positive
    contribution (:meth:`supported` of that layer's rule), else ``1``: their value is their folded
    BatchNorm shift, at most reduced by their inputs, i.e. a bias. Like this layer's own
    bias they take no relevance: ``x`` is zeroed there before the rule, and the relevance
    goes to the units that carry evidence.

    Shapes: x ``[N, C_in, H, W]``, y and g_out ``[N, C_out, h, w]``. ``weight`` is the
    kernel the forward pass used (taken at forward time, so a canonizer that is undone
    before the backward does not change it); default ``module.weight``.
    """

    def __init__(
        self,
        module: nn.Conv2d,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        weight: torch.Tensor | None = None,
        constant: Any = None,
        spread: bool = False,
    ) -> None:
        self.geo = _implicit_pad(_conv_geometry(module))
        self.x, self.y = x, y
        self.w = module.weight.detach() if weight is None else weight
        self.constant = constant
        self.spread = spread and _strides(self.geo) != (1, 1)
        self._parts: tuple[torch.Tensor, ...] | None = None
        self._w_parts: tuple[torch.Tensor, torch.Tensor] | None = None  # (w+, w-), set with the parts

    def _forward_parts(self) -> tuple[torch.Tensor, ...]:
        """``(x_padded, x+, x- or None, z)``, computed once from forward tensors only.

        The rule of the layer above may ask for :meth:`supported` first.
        """
        if self._parts is None:
            x = self.x
            if self.constant is not None:
                x = x * self.constant()
            xp_full = _pad(x, self.geo[0])
            has_neg = bool(x.amin() < 0)  # inputs after ReLU/ReLU6 have none: skip the x- branch
            xpos = xp_full.clamp(min=0) if has_neg else xp_full
            xneg = xp_full.clamp(max=0) if has_neg else None
            geo = _unstrided(self.geo) if self.spread else self.geo
            wp, wn = self._w_parts = signed_weights(self.w)
            z = _conv(xpos, wp, geo)
            if has_neg:
                z = z + _conv(xneg, wn, geo)
            self._parts = (xp_full, xpos, xneg, z)
        return self._parts

    def _strided_z(self) -> torch.Tensor:
        z = self._forward_parts()[3]
        if not self.spread:
            return z
        sy, sx = _strides(self.geo)
        h, w = self.y.shape[-2:]
        return z[..., ::sy, ::sx][..., :h, :w]

    def with_output(self, y: torch.Tensor) -> ZPlusConv:
        """The same rule with relevance read from ``y`` (an identity-rule activation's output)."""
        other = copy.copy(self)
        other.y = y
        return other

    def supported(self) -> torch.Tensor:
        """Float mask: ``1`` at output units with a positive contribution (``z > 0``), ``0`` where ``z == 0``.

        ``z`` is a sum of non-negative products, so its sign is the mask (``nonzero_mask`` in one pass).
        """
        return self._strided_z().sign()  # z >= 0: the sign is the mask

    def __call__(self, g_out: torch.Tensor) -> torch.Tensor:
        """The signal at the input for ``g_out`` at the output (then frees the forward tensors)."""
        geo, pad = self.geo, self.geo[0]
        xp_full, xpos, xneg, z = self._forward_parts()
        wp, wn = self._w_parts  # type: ignore[misc]
        if self.spread:
            geo = _unstrided(geo)
            s = StrideSpread(z, _strides(self.geo), tuple(self.y.shape[-2:])).over(g_out * self.y, z)
        else:
            s = g_out * safe_divide(self.y, z)
        # R_in = x+ * cp + x- * cn, so g_in = cp where x > 0 and cn where x < 0 (in place on fresh tensors)
        pos = positive_mask(xp_full) if xneg is not None else xp_full.sign()  # x >= 0: the sign is the mask
        g = _conv_t(xp_full.shape, wp, s, geo).mul_(pos)
        if xneg is not None:
            g = g.addcmul_(_conv_t(xp_full.shape, wn, s, geo), negative_mask(xp_full))
        self._parts = None  # free the forward tensors once the backward has used them
        self.x = self.y = None
        self._w_parts = None
        return _unpad(g, pad)  # 0 at constant units: x was zeroed there


def zplus_conv_grad(
    module: nn.Conv2d,
    x: torch.Tensor,
    y: torch.Tensor,
    g_out: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain z+/z- rule of :class:`ZPlusConv` (the authors' rule), as a function."""
    return ZPlusConv(module, x, y, weight=weight)(g_out)


def zbox_conv_grads(
    module: nn.Conv2d,
    x: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    y: torch.Tensor,
    g_out: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    spread: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z^B rule for the convolution that takes the image, bias ignored.

    ``z = conv(x, w) - conv(l, w+) - conv(h, w-)``, ``s = R_out / z``;
    ``R_in = x * conv^T(w, s) - l * conv^T(w+, s) - h * conv^T(w-, s)``, returned as the
    three signals on ``x``, ``low`` and ``high`` (``R_in = x*g_x + low*g_low + high*g_high``).
    ``low`` / ``high`` are images filled with the bounds (zero padding applies to them too).
    ``spread``: a strided convolution's relevance is first shared over its stride-1 grid
    (:class:`StrideSpread`) and the rule runs at stride 1.
    """
    geo = _conv_geometry(module)
    pad = geo[0]
    strided = _strides(geo)
    spread = spread and strided != (1, 1)
    if spread:
        geo = _unstrided(geo)
    xf, lf, hf = _pad(x, pad), _pad(low, pad), _pad(high, pad)
    w = module.weight.detach() if weight is None else weight
    wp, wn = signed_weights(w)
    if geo[4] == 1:  # one convolution of the image and the bounds stacked along channels (a third of the calls)
        z = _conv(torch.cat([xf, lf, hf], dim=-3), torch.cat([w, wp.neg(), wn.neg()], dim=1), geo)
    else:
        z = _conv(xf, w, geo) - _conv(lf, wp, geo) - _conv(hf, wn, geo)
    if spread:
        # z >= 0 (x lies between the bounds); clamping the rounding below 0 keeps StrideSpread's mask z > 0
        s = StrideSpread(z.clamp_(min=0), strided, tuple(y.shape[-2:])).over(g_out * y, z)
    else:
        s = g_out * safe_divide(y, z)
    c = x.shape[1]
    if geo[4] == 1:
        # one transposed convolution for w+ and w- (stacked along input channels); w = w+ + w-, so
        # conv^T(w, s) is the sum of the two (a third fewer output channels than stacking w too)
        shape = (*xf.shape[:-3], 2 * c, *xf.shape[-2:])
        g = _conv_t(shape, torch.cat([wp, wn], dim=1), s, geo)
        g_pos, g_neg = g[..., :c, :, :], g[..., c:, :, :]
        g_x, g_low, g_high = g_pos + g_neg, -g_pos, -g_neg
    else:
        g_x, g_low, g_high = (_conv_t(xf.shape, v, s, geo) for v in (w, wp, wn))
        g_low, g_high = -g_low, -g_high
    return _unpad(g_x, pad), _unpad(g_low, pad), _unpad(g_high, pad)


def zplus_linear_grad(
    module: nn.Linear, x: torch.Tensor, y: torch.Tensor, g_out: torch.Tensor, *, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """z+/z- rule for a Linear layer (LRP head), bias ignored. x ``[N, in]``, y ``[N, out]``."""
    w = module.weight.detach() if weight is None else weight
    wp, wn = signed_weights(w)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    z = F.linear(xp, wp) + F.linear(xn, wn)
    s = g_out * safe_divide(y, z)
    return (s @ wp).mul_(positive_mask(x)).addcmul_(s @ wn, negative_mask(x))


# ----------------------------------------------------------------------------- autograd glue


class _RuleFunction(torch.autograd.Function):
    """Returns ``y`` (``alias``) or a copy of it, whose backward is ``grad_fn(g_out) -> grads of inputs``."""

    @staticmethod
    def forward(ctx: Any, grad_fn: Any, alias: bool, y: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:  # noqa: D401
        ctx.grad_fn = grad_fn
        ctx.n_inputs = len(inputs)
        if not alias:
            # A copy: later ops may modify it in place (ResNet's ``out += identity``) without
            # touching the ``y`` the backward reads.
            return y.clone()
        # y itself (autograd returns it as a view of y): no copy, for outputs no later op
        # modifies in place. Autograd refuses any later use of such a view whose base was
        # modified in place (in either grad mode), so a wrong map cannot come of it.
        return y

    @staticmethod
    def backward(ctx: Any, g_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = ctx.grad_fn(g_out)
        if isinstance(grads, torch.Tensor):
            grads = (grads,)
        ctx.grad_fn = None  # free the forward tensors held by the closure
        return (None, None, None, *grads)


def apply_rule(grad_fn: Any, y: torch.Tensor, *inputs: torch.Tensor, alias: bool = False) -> torch.Tensor:
    """Tensor equal to ``y`` (``[N, ...]``), differentiable w.r.t. ``inputs`` by ``grad_fn``.

    Args:
        grad_fn: callable ``g_out -> g_in`` (or a tuple, one per input).
        y: the module's real output (detached inside).
        inputs: the tensors the signal is sent to (the module's input, plus the bound
            images for z^B).
        alias: return ``y`` itself rather than a copy: only for an output that no later
            operation modifies in place (:func:`~xai_core.relevance.composite.relevance_rules`
            learns which those are; autograd refuses a use of one that was modified after all).
    """
    return _RuleFunction.apply(grad_fn, alias, y.detach(), *inputs)

"""Guided Backpropagation and Guided Grad-CAM (input-resolution maps), and FullGrad.

Guided backpropagation changes only the backward pass of the network's rectifiers: a
gradient passes a ReLU only where the ReLU's input was positive *and* the gradient
itself is positive. :func:`guided_relus` does this for the duration of one ``with``
block, without touching the model: a ``TorchFunctionMode`` routes every rectifier call
made inside the block (``nn.ReLU``/``nn.ReLU6`` modules, which call ``F.relu`` and
``F.hardtanh``, and functional ``F.relu``, ``torch.relu``, ``Tensor.relu``, their
in-place forms, ``F.relu6`` and ``F.hardtanh`` with a lower bound of 0) through
:class:`GuidedClamp`. pytorch-grad-cam swaps ``nn.ReLU`` modules only, so functional
rectifiers (torchvision's DenseNet) and ReLU6 (MobileNet, EfficientNet-Lite) keep their
plain backward there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.methods import gradient
from xai_core.methods.base import _run_cams, autocast_context, class_gradients
from xai_core.methods.context import ExplainRequest, MapResult
from xai_core.methods.smoothing import relu_minmax


class GuidedClamp(torch.autograd.Function):
    """``clamp(x, lo, hi)`` whose backward lets only positive gradients through the active region."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float | None, inplace: bool) -> torch.Tensor:  # noqa: D102
        active = x > lo if hi is None else (x > lo) & (x < hi)
        ctx.save_for_backward(active)
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=lo, max=hi)
        return x.clamp(min=lo, max=hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (active,) = ctx.saved_tensors
        return grad.clamp(min=0) * active, None, None, None


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: object) -> object:
    return args[i] if len(args) > i else kwargs.get(name, default)


class _GuidedMode(TorchFunctionMode):
    """Routes rectifier calls through :class:`GuidedClamp` (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func in (F.relu, torch.relu, torch.Tensor.relu):
            return GuidedClamp.apply(args[0], 0.0, None, bool(_arg(args, kwargs, 1, "inplace", False)))
        if func in (torch.relu_, torch.Tensor.relu_, F.relu_):
            return GuidedClamp.apply(args[0], 0.0, None, True)
        if func is F.relu6:
            return GuidedClamp.apply(args[0], 0.0, 6.0, bool(_arg(args, kwargs, 1, "inplace", False)))
        if func in (F.hardtanh, F.hardtanh_):
            low = float(_arg(args, kwargs, 1, "min_val", -1.0))
            if low == 0.0:
                high = float(_arg(args, kwargs, 2, "max_val", 1.0))
                inplace = func is F.hardtanh_ or bool(_arg(args, kwargs, 3, "inplace", False))
                return GuidedClamp.apply(args[0], 0.0, high, inplace)
        return func(*args, **kwargs)


@contextlib.contextmanager
def guided_relus() -> Iterator[None]:
    """Guided-backpropagation rectifiers for every forward pass run in the block (no model change)."""
    with _GuidedMode():
        yield


def input_gradients(req: ExplainRequest, *, guided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``[N, K, C_in, H, W]`` of each image's K class logits w.r.t. its input pixels.

    One forward pass and one batched backward pass; the model is left as found (mode,
    ``requires_grad``, no parameter ``.grad``).

    Returns:
        ``(grads, class_idx [N, K], logits [N, n])``.
    """
    module = req.module
    with model_lock(module), eval_mode(module), torch.enable_grad():
        x = req.x.detach().contiguous().clone().requires_grad_(True)
        with guided_relus() if guided else contextlib.nullcontext(), autocast_context(x, req.autocast):
            logits = module(x)
        if logits.dim() != 2:
            raise MethodError(f"The model must return logits [N, n]; it returned shape {tuple(logits.shape)}.")
        idx = req.choose(logits.detach())
        grads = class_gradients(logits.gather(1, idx), x)
    return grads.detach().float(), idx, logits.detach().float()


def guided_backprop(req: ExplainRequest) -> MapResult:
    """Guided Backpropagation (Springenberg et al., 2015): the guided input gradient, summed over colour channels.

    Returns:
        Maps ``[N, K, H, W]`` at the input's resolution, signed: positive where brightening
        the pixel raises the class score along the guided path.
    """
    grads, idx, logits = input_gradients(req, guided=True)
    return MapResult(grads.sum(dim=2), idx, logits, 1)


def guided_grad_cam(req: ExplainRequest) -> MapResult:
    """Guided Grad-CAM (Selvaraju et al., 2017): Guided Backpropagation times the upsampled Grad-CAM map.

    The Grad-CAM map is ReLU'd, min-max scaled and upsampled (bilinear) to the input, as
    pytorch-grad-cam shows it, then multiplies each colour channel of the guided gradient;
    the map is the sum over colour channels.

    Returns:
        Maps ``[N, K, H, W]`` at the input's resolution.
    """

    def weights(ctx):
        return gradient.grad_cam_weights(ctx.activations, ctx.grads)

    cam = _run_cams(
        req.module,
        req.x,
        weights,
        label="Guided Grad-CAM",
        layer=req.layer_name,
        choose=req.choose,
        needs_gradients=True,
        probabilities=req.probabilities,
        autocast=req.autocast,
    )
    idx = cam.class_idx
    fixed = ExplainRequest(
        req.module, req.x, req.layer_name, lambda _logits: idx, req.probabilities, None, req.autocast
    )
    grads, _, _ = input_gradients(fixed, guided=True)
    mask = F.interpolate(relu_minmax(cam.maps), size=tuple(req.x.shape[-2:]), mode="bilinear", align_corners=False)
    return MapResult((grads * mask[:, :, None]).sum(dim=2), idx, cam.logits, 1)


# ----------------------------------------------------------------------------------- FullGrad


def bias_layers(module: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, layer, bias [C])`` of every ``Conv2d`` and ``BatchNorm2d`` (subclasses too) with a bias.

    pytorch-grad-cam takes the exact types only, so it misses, for example, the biases
    of ``Conv2dStaticSamePadding`` layers (EfficientNet); Lite0's have none.

    A batch norm's bias is the one it adds in eval mode,
    ``beta - running_mean * gamma / sqrt(running_var + eps)`` (FullGrad's, and
    pytorch-grad-cam's, definition).
    """
    out = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            out.append((name, m, m.bias.detach()))
        elif isinstance(m, nn.BatchNorm2d) and m.bias is not None and m.running_mean is not None:
            scale = m.weight.detach() / torch.sqrt(m.running_var + m.eps)
            out.append((name, m, m.bias.detach() - m.running_mean * scale))
    return out


@contextlib.contextmanager
def _record(layers: list[tuple[str, nn.Module, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """Keep each layer's output (in the graph) for gradients; the network continues with a copy.

    The copy protects the kept output from in-place operations after the layer (a
    ``ReLU(inplace=True)`` after a batch norm), so its gradient is the pre-ReLU one.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str):
        def hook(_m, _i, output):
            if name in outputs:
                raise LayerError(f"FullGrad: layer {name!r} runs more than once per forward pass.")
            outputs[name] = output
            return output.clone()

        return hook

    try:
        for name, m, _ in layers:
            handles.append(m.register_forward_hook(make(name)))
        yield outputs
    finally:
        for h in handles:
            h.remove()


def _minmax_channels(t: torch.Tensor) -> torch.Tensor:
    """``(t - min) / (max - min + 1e-7)`` per channel map (pytorch-grad-cam's ``scale_accross_batch_and_channels``)."""
    t = t - t.amin(dim=(-2, -1), keepdim=True)
    return t / (t.amax(dim=(-2, -1), keepdim=True) + 1e-7)


def fullgrad(req: ExplainRequest) -> MapResult:
    """FullGrad (Srinivas & Fleuret, 2019): input-gradient and bias-gradient maps of every layer, summed.

    ``S = psi(|x * dy/dx|) + sum_layers sum_c psi(|b_c * dy/dz_c|)``, where ``z`` is each
    convolution's or batch norm's output and ``b`` its bias, ``psi`` scales each channel
    map to [0, 1] (min-max) and upsamples it (bilinear) to the input. The explained
    layer plays no part (all bias layers are used). One forward and one batched
    backward pass.

    Returns:
        Maps ``[N, K, H, W]`` at the input's resolution (non-negative).
    """
    module = req.module
    size = tuple(req.x.shape[-2:])
    layers = bias_layers(module)
    with model_lock(module), eval_mode(module), torch.enable_grad():
        x = req.x.detach().contiguous().clone().requires_grad_(True)
        with _record(layers) as outputs, autocast_context(x, req.autocast):
            logits = module(x)
        if logits.dim() != 2:
            raise MethodError(f"The model must return logits [N, n]; it returned shape {tuple(logits.shape)}.")
        idx = req.choose(logits.detach())
        scores = logits.gather(1, idx)
        used = [(name, b) for name, _, b in layers if name in outputs]
        inputs = [x] + [outputs[name] for name, _ in used]
        k = idx.shape[1]
        grads = None
        if k > 1:
            try:
                eye = torch.eye(k, dtype=scores.dtype, device=scores.device)[:, None, :].expand(k, *scores.shape)
                grads = torch.autograd.grad(scores, inputs, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
                grads = [None if g is None else g.transpose(0, 1) for g in grads]
            except RuntimeError:
                grads = None
        if grads is None:
            rows = [
                torch.autograd.grad(scores[:, i].sum(), inputs, retain_graph=True, allow_unused=True) for i in range(k)
            ]
            grads = [None if r[0] is None else torch.stack(list(r), dim=1) for r in zip(*rows)]
    gx = grads[0]
    if gx is None:
        raise MethodError("FullGrad: the output does not depend on the input.")
    total = _minmax_channels((req.x[:, None] * gx.float()).abs()).sum(dim=2)
    for (_, bias), g in zip(used, grads[1:]):
        if g is None:
            continue
        m = _minmax_channels((bias.float()[None, None, :, None, None] * g.float()).abs()).sum(dim=2)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        total = total + m
    return MapResult(total.detach(), idx, logits.detach().float(), 1)

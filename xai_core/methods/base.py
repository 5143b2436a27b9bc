"""The CAM driver: one forward pass, one batched backward pass, then the method's maths."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import MethodError
from xai_core.hooks.capture import capture
from xai_core.methods.context import CamContext, Progress
from xai_core.methods.registry import get_method

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CamResult:
    """Signed per-class maps at the layer's resolution.

    Attributes:
        cams: ``[K, h, w]`` signed maps (no ReLU, no scaling).
        class_idx: ``[K]`` explained classes.
        logits: ``[N]`` raw model scores.
        channels: number of channels ``C`` of the explained layer.
    """

    cams: torch.Tensor
    class_idx: torch.Tensor
    logits: torch.Tensor
    channels: int


def select_classes(
    logits: torch.Tensor, *, top_k: int | None, class_idx: Sequence[int] | None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The explained classes: ``class_idx`` if given, else the ``top_k`` highest valid logits.

    Args:
        logits: ``[N]``.
        valid: optional boolean mask ``[N]`` of outputs that may be chosen.
    """
    n = logits.shape[-1]
    if class_idx is not None:
        idx = torch.as_tensor(list(class_idx), dtype=torch.long)
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= n:
            raise MethodError(f"class_idx must be class numbers in [0, {n - 1}], got {list(class_idx)}.")
        return idx
    k = 1 if top_k is None else int(top_k)
    scores = logits.detach().clone()
    if valid is not None:
        scores[~valid] = float("-inf")
        n = int(valid.sum())
    if not 1 <= k <= n:
        raise MethodError(f"top_k must be between 1 and {n}, got {top_k}.")
    return torch.topk(scores, k).indices


def class_gradients(outputs: torch.Tensor, inputs: torch.Tensor, *, batched: bool = True) -> torch.Tensor:
    """Gradients of each of K scalar ``outputs`` w.r.t. ``inputs`` ``[1, ...]``, shape ``[K, ...]``.

    One batched backward pass (``is_grads_batched``, vmap over the K unit vectors); where
    an operation has no batching rule, falls back to K backward passes on one graph.

    Raises:
        MethodError: when the outputs do not depend on ``inputs``.
    """
    k = outputs.shape[0]
    try:
        if batched and k > 1:
            try:
                eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
                (grads,) = torch.autograd.grad(outputs, inputs, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
                return grads[:, 0]
            except RuntimeError as err:
                if "does not require grad" in str(err) or "not have been used" in str(err):
                    raise
                log.warning("batched backward unavailable (%s); using %d backward passes", err, k)
        rows = [torch.autograd.grad(outputs[i], inputs, retain_graph=True)[0][0] for i in range(k)]
        return torch.stack(rows)
    except RuntimeError as err:
        if "does not require grad" in str(err) or "not have been used" in str(err):
            raise MethodError("The chosen layer does not influence the model's output; choose a layer before the head.") from err
        raise


def compute_cams(
    module: nn.Module,
    x: torch.Tensor,
    *,
    method: str,
    layer: str,
    top_k: int | None = 1,
    class_idx: Sequence[int] | None = None,
    probabilities=None,
    valid_outputs: torch.Tensor | None = None,
    progress: Progress | None = None,
    **params: object,
) -> CamResult:
    """Signed CAM maps of K classes for one input.

    Args:
        module: the network; left as found (hooks, mode, ``requires_grad``).
        x: ``[1, C_in, H, W]`` prepared input.
        method: a key of :data:`~xai_core.methods.registry.METHODS`.
        layer: dotted name of the explained layer.
        top_k: explain the K most likely classes (ignored when ``class_idx`` is given).
        class_idx: explain these classes.
        probabilities: logits -> probabilities (default softmax).
        valid_outputs: boolean mask of outputs that top-K may pick.
        progress: ``progress(done, total)`` for slow methods.
        **params: the method's parameters.

    Returns:
        A :class:`CamResult`.
    """
    spec = get_method(method)
    if x.dim() != 4 or x.shape[0] != 1:
        raise MethodError(f"x must be one image [1, C, H, W], got shape {tuple(x.shape)}.")
    known = {p.name for p in spec.params}
    unknown = set(params) - known
    if unknown:
        raise MethodError(f"{spec.label} has no parameter {sorted(unknown)}; its parameters are {sorted(known) or 'none'}.")
    probabilities = probabilities or (lambda t: torch.softmax(t, dim=-1))
    with capture(module, layer, grad=spec.needs_gradients) as cap:
        if spec.needs_gradients:
            logits = module(x)
            if logits.dim() != 2:
                raise MethodError(f"The model must return logits [1, N]; it returned shape {tuple(logits.shape)}.")
            idx = select_classes(logits[0], top_k=top_k, class_idx=class_idx, valid=valid_outputs)
            activations = cap[layer]
            grads = class_gradients(logits[0, idx], activations)
            activations = activations.detach()
            logits = logits.detach()
        else:
            with torch.inference_mode():
                logits = module(x)
            idx = select_classes(logits[0], top_k=top_k, class_idx=class_idx, valid=valid_outputs)
            activations, grads = cap[layer], None
        if activations.dim() != 4:
            raise MethodError(
                f"Layer {layer!r} gives a tensor of shape {tuple(activations.shape)}; CAM methods need a "
                "feature map [1, C, h, w]. Choose a convolutional layer."
            )
        ctx = CamContext(module, x, layer, activations, grads, idx, logits, probabilities, progress)
        try:
            cams = spec.fn(ctx, **params)
        except RuntimeError as err:
            raise MethodError(f"{spec.label} failed on layer {layer!r}: {err}") from err
    return CamResult(cams.detach(), idx, logits[0].detach(), int(activations.shape[1]))

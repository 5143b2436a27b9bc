"""The CAM driver: one forward pass and one batched backward pass for N images x K classes.

:func:`_run_cams` is the driver every CAM-family explainer goes through (the registry
wraps each method's maths with it). It is internal: the public entry point is
:func:`xai_core.explain`, which runs every explainer, one image or a batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.capture import capture, eval_mode, model_lock
from xai_core.hooks.layers import resolve_layer
from xai_core.hooks.tokens import token_hook, unfused_attention
from xai_core.methods.context import CamContext, ClassChoice, MapResult, Progress
from xai_core.methods.smoothing import AUGMENTATIONS, augment, fuse_layers, relu_minmax, to_maps

log = logging.getLogger(__name__)


def class_rows(class_idx: object, n_images: int) -> list[list[int]]:
    """Per-image class lists from one list (shared by all images), N lists, or a tensor."""
    if isinstance(class_idx, torch.Tensor):
        class_idx = class_idx.tolist()
    items = list(class_idx)  # type: ignore[arg-type]
    if items and all(isinstance(r, (list, tuple)) for r in items):
        if len(items) != n_images:
            raise MethodError(f"class_idx has {len(items)} per-image lists for {n_images} images.")
        rows = [[int(c) for c in r] for r in items]
    else:
        rows = [[int(c) for c in items]] * n_images
    return rows


def select_classes(
    logits: torch.Tensor,
    *,
    top_k: int | None,
    class_idx: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | None = None,
    extra: Sequence[int] | Sequence[Sequence[int]] | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The explained classes of each image, ``[N, K]``.

    Args:
        logits: ``[N, n]`` (or ``[n]`` for one image: then ``[K]`` is returned).
        top_k: explain each image's K highest valid logits (when ``class_idx`` is None).
        class_idx: explain these classes instead: one list for every image, or one
            list per image.
        extra: classes explained in addition to the top-K (or to ``class_idx``), after
            them; one list for every image or one per image. A class already chosen is
            not repeated.
        valid: optional boolean mask ``[n]`` of outputs that may be chosen by top-K.

    Per-image lists of different lengths are padded by repeating their last class, so
    the result is rectangular; :func:`unique_rows` undoes the padding.

    Raises:
        MethodError: a class out of range, an empty list, or a top-K larger than the
            number of valid outputs.
    """
    single = logits.dim() == 1
    logits = logits[None] if single else logits
    n_images, n = logits.shape
    if class_idx is not None:
        rows = class_rows(class_idx, n_images)
    else:
        k = 1 if top_k is None else int(top_k)
        scores = logits.detach().float().clone()
        n_valid = n
        if valid is not None:
            valid = valid.to(scores.device)
            scores[:, ~valid] = float("-inf")
            n_valid = int(valid.sum())
        if not 1 <= k <= n_valid:
            raise MethodError(f"top_k must be between 1 and {n_valid}, got {top_k}.")
        rows = torch.topk(scores, k, dim=1).indices.tolist()
    if extra is not None:
        rows = [r + [c for c in e if c not in r] for r, e in zip(rows, class_rows(extra, n_images))]
    rows = [list(dict.fromkeys(r)) for r in rows]
    flat = [c for r in rows for c in r]
    if not all(rows) or min(flat) < 0 or max(flat) >= n:
        shown = rows[0] if len({tuple(r) for r in rows}) == 1 else rows
        raise MethodError(f"class_idx must be class numbers in [0, {n - 1}], got {shown}.")
    k = max(len(r) for r in rows)
    padded = [r + [r[-1]] * (k - len(r)) for r in rows]
    idx = torch.tensor(padded, dtype=torch.long, device=logits.device)
    return idx[0] if single else idx


@dataclass(frozen=True)
class ClassSelection:
    """A class choice as data: :func:`select_classes` with these arguments, callable as a :data:`ClassChoice`.

    :func:`xai_core.explain` passes one (not a bare function) so the CUDA-graph path can
    repeat the choice on the device: top-K by ``torch.topk`` inside the graph, or fixed
    classes copied into it (:mod:`xai_core.methods.accelerate`).

    Attributes:
        top_k: each image's K highest valid logits (when ``class_idx`` is None).
        class_idx: these classes instead, one list per image.
        extra: classes explained after them, one list per image.
        valid: boolean mask ``[n]`` of outputs top-K may choose.
    """

    top_k: int | None
    class_idx: list[list[int]] | None = None
    extra: list[list[int]] | None = None
    valid: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """The classes ``[N, K]`` chosen from ``logits`` ``[N, n]``."""
        return select_classes(logits, top_k=self.top_k, class_idx=self.class_idx, extra=self.extra, valid=self.valid)


def unique_rows(class_idx: torch.Tensor) -> list[tuple[int, ...]]:
    """Per image, its explained classes without the padding :func:`select_classes` added."""
    return [tuple(dict.fromkeys(row)) for row in class_idx.tolist()]


def class_gradients(outputs: torch.Tensor, inputs: torch.Tensor, *, batched: bool = True) -> torch.Tensor:
    """Gradients of each image's K scores ``outputs`` ``[N, K]`` w.r.t. ``inputs`` ``[N, ...]``.

    Image n's scores depend only on image n's row of ``inputs`` (eval mode: no batch
    statistics), so the K backward rows "class k of every image" give every image's
    gradients at once: one batched backward pass (``is_grads_batched``, vmap over the K
    unit vectors) for all N x K. Where an operation has no batching rule, K backward
    passes on one graph.

    Returns:
        ``[N, K, ...]``.

    Raises:
        MethodError: when the outputs do not depend on ``inputs``.
    """
    k = outputs.shape[1]
    try:
        if batched and k > 1:
            try:
                eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)[:, None, :].expand(k, *outputs.shape)
                (grads,) = torch.autograd.grad(
                    outputs, inputs, grad_outputs=eye, is_grads_batched=True, retain_graph=True
                )
                return grads.transpose(0, 1)
            except RuntimeError as err:
                if "does not require grad" in str(err) or "not have been used" in str(err):
                    raise
                log.warning("batched backward unavailable (%s); using %d backward passes", err, k)
        rows = [torch.autograd.grad(outputs[:, i].sum(), inputs, retain_graph=True)[0] for i in range(k)]
        return rows[0][:, None] if k == 1 else torch.stack(rows, dim=1)  # K = 1: a view, not a copy
    except RuntimeError as err:
        if "does not require grad" in str(err) or "not have been used" in str(err):
            raise MethodError(
                "The chosen layer does not influence the model's output; choose a layer before the head."
            ) from err
        raise


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension (the default probability function)."""
    return torch.softmax(logits, dim=-1)


def autocast_context(x: torch.Tensor, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``x``'s device for ``dtype`` (``None``: a no-op, float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=dtype)


Target = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
"""``target(logits [N, n], class_idx [N, K], params) -> scores [N, K]``: what a method differentiates
(default: the class logits). Score n, k must depend on image n's logits only."""


def _hessian_vector(scores: torch.Tensor, activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``g`` and Hessian-vector products ``H A`` of each of the K scores w.r.t. ``activations``.

    ``H A`` is the derivative of ``<g, A>`` (A held fixed) w.r.t. ``A``; one double-backward
    pass per class. Where the gradient does not depend on ``A`` (a piecewise-linear rest of
    the network) the product is exactly zero.

    Returns:
        ``(grads, hvp)``, each ``[N, K, C, h, w]``.
    """
    grads, hvps = [], []
    fixed = activations.detach()
    for i in range(scores.shape[1]):
        (g,) = torch.autograd.grad(scores[:, i].sum(), activations, retain_graph=True, create_graph=True)
        hvp = None
        if g.requires_grad:
            (hvp,) = torch.autograd.grad(g, activations, grad_outputs=fixed, retain_graph=True, allow_unused=True)
        grads.append(g.detach())
        hvps.append(torch.zeros_like(fixed) if hvp is None else hvp.detach())
    return torch.stack(grads, dim=1), torch.stack(hvps, dim=1)


class _Outputs(dict):
    """Captured outputs by layer name, with capture's message for a layer that did not run."""

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self:
            raise LayerError(f"Layer {name!r} did not run during the forward pass, so nothing was captured.")
        return dict.__getitem__(self, name)


@contextlib.contextmanager
def _capture_in_graph(module: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Several layers' outputs kept *in* the autograd graph (for gradients w.r.t. each of them).

    :func:`~xai_core.hooks.capture.capture` turns each captured output into a fresh leaf,
    which cuts the graph between two captured layers; here the outputs stay connected
    (the input is made a leaf that requires grad, so the whole graph is recorded), and
    the network continues with a copy of each, so in-place operations after a layer cannot
    rewrite it. The model is left as found (hooks, mode, ``requires_grad``).
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"Layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer.")
            if name in outputs:
                raise LayerError(
                    f"Layer {name!r} runs more than once per forward pass (the module is reused), so its "
                    "output is ambiguous. Choose another layer."
                )
            outputs[name] = output
            return output.clone()

        return hook

    with model_lock(module), eval_mode(module), torch.enable_grad():
        try:
            for name in layers:
                # Vision transformers: the hook sees (and returns) [B, C, h, w] maps (hooks/tokens.py).
                handles.append(resolve_layer(module, name).register_forward_hook(token_hook(module, make(name))))
            yield outputs
        finally:
            for handle in handles:
                handle.remove()


def _one_pass(
    module: nn.Module,
    x: torch.Tensor,
    maths: Callable[..., torch.Tensor],
    layers: list[str],
    choose: ClassChoice,
    *,
    label: str,
    needs_gradients: bool,
    probabilities: Callable[[torch.Tensor], torch.Tensor],
    progress: Progress | None,
    autocast: torch.dtype | None,
    target: Target | None,
    hessian: bool,
    eigen_smooth: bool,
    params: dict,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, list[int]]:
    """One forward (and backward) pass over ``x``: per layer the maps ``[N, K, h, w]``, the classes, logits, C."""
    grad = needs_gradients or hessian
    in_graph = grad and len(layers) > 1
    # Second derivatives (ShapleyCAM): fused attention kernels have none; the unfused path is the same maths.
    unfused = unfused_attention(module) if hessian else contextlib.nullcontext()
    with unfused, _capture_in_graph(module, layers) if in_graph else capture(module, layers, grad=grad) as cap:
        if in_graph:
            with autocast_context(x, autocast):
                logits = module(x.detach().clone().requires_grad_(True))
            cap = _Outputs(cap)
        elif grad:
            with autocast_context(x, autocast):
                logits = module(x)
        else:
            with torch.inference_mode(), autocast_context(x, autocast):
                logits = module(x)
        if logits.dim() != 2:
            raise MethodError(f"The model must return logits [N, n]; it returned shape {tuple(logits.shape)}.")
        idx = choose(logits.detach())
        captured = [cap[name] for name in layers]
        for name, a in zip(layers, captured):
            if a.dim() != 4:
                raise MethodError(
                    f"Layer {name!r} gives a tensor of shape {tuple(a.shape)}; CAM methods need a "
                    "feature map [N, C, h, w]. Choose a convolutional layer."
                )
        grads: list[torch.Tensor | None] = [None] * len(layers)
        hvps: list[torch.Tensor | None] = [None] * len(layers)
        if grad:
            scores = logits.gather(1, idx) if target is None else target(logits, idx, params)
            for i, a in enumerate(captured):
                if hessian:
                    try:
                        g, h = _hessian_vector(scores, a)
                    except RuntimeError as err:
                        if "does not require grad" in str(err) or "not have been used" in str(err):
                            raise MethodError(
                                "The chosen layer does not influence the model's output; choose a layer before "
                                "the head."
                            ) from err
                        raise
                    grads[i], hvps[i] = g.float(), h.float()
                elif needs_gradients:
                    grads[i] = class_gradients(scores, a).float()
        logits = logits.detach().float()
        maps = [
            layer_maps(
                CamContext(module, x, name, a.detach().float(), g, idx, logits, probabilities, progress, h),
                maths,
                label=label,
                autocast=autocast,
                eigen_smooth=eigen_smooth,
                params=params,
            )
            for name, a, g, h in zip(layers, captured, grads, hvps)
        ]
    return maps, idx, logits, [int(a.shape[1]) for a in captured]


def layer_maps(
    ctx: CamContext,
    maths: Callable[..., torch.Tensor],
    *,
    label: str,
    autocast: torch.dtype | None,
    eigen_smooth: bool,
    params: dict,
) -> torch.Tensor:
    """One layer's maps ``[N, K, h, w]`` from the method's maths on the captured tensors of ``ctx``."""
    try:
        with autocast_context(ctx.x, autocast):
            out = maths(ctx, **params)
        return to_maps(out.detach().float(), ctx.activations, eigen_smooth=eigen_smooth)
    except RuntimeError as err:
        raise MethodError(f"{label} failed on layer {ctx.layer_name!r}: {err}") from err


def _run_cams(
    module: nn.Module,
    x: torch.Tensor,
    maths: Callable[..., torch.Tensor],
    *,
    label: str,
    layer: str | Sequence[str],
    choose: ClassChoice,
    needs_gradients: bool,
    probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
    target: Target | None = None,
    hessian: bool = False,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    layer_fusion: str = "mean",
    **params: object,
) -> MapResult:
    """Per-class CAM maps of each image from one forward and one batched backward pass.

    Args:
        module: the network; left as found (hooks, mode, ``requires_grad``).
        x: ``[N, C_in, H, W]`` prepared inputs.
        maths: the method, ``maths(ctx: CamContext, **params)`` returning channel weights
            ``[N, K, C]``, components ``[N, K, C, h, w]`` or maps ``[N, K, h, w]``
            (:func:`~xai_core.methods.smoothing.to_maps`).
        label: the method's name, for messages.
        layer: dotted name of the explained layer, or several names: their maps are
            fused (``layer_fusion``).
        choose: picks the classes ``[N, K]`` from the logits ``[N, n]``.
        needs_gradients: compute ``ctx.grads`` (one batched backward pass).
        probabilities: logits -> probabilities (default softmax).
        progress: ``progress(done, total)`` for slow methods.
        autocast: run the forward pass under ``torch.autocast`` with this dtype.
        target: what is differentiated instead of the class logits (Finer-CAM).
        hessian: also compute ``ctx.hvp``, the Hessian-vector products (ShapleyCAM).
        aug_smooth: test-time augmentation smoothing (pytorch-grad-cam's ``aug_smooth``):
            the mean over horizontal flip x (0.9, 1, 1.1) brightness of the ReLU'd,
            min-max scaled maps, flipped back. The classes are chosen on the plain input.
        eigen_smooth: project the weighted activations on their first principal
            component instead of summing them (pytorch-grad-cam's ``eigen_smooth``).
        layer_fusion: with several layers, ``"mean"`` (pytorch-grad-cam; maps at the
            input resolution) or ``"max"`` (torchcam; at the largest layer resolution) of
            the ReLU'd, min-max scaled maps (:func:`~xai_core.methods.smoothing.fuse_layers`).
        **params: the method's parameters.

    Returns:
        A :class:`MapResult` with float32 maps: signed (no ReLU, no scaling) for one
        layer without ``aug_smooth``; in [0, 1] otherwise (both smoothing steps and the
        fusion work on ReLU'd, scaled maps, as the peers do).
    """
    if x.dim() != 4:
        raise MethodError(f"x must be images [N, C, H, W], got shape {tuple(x.shape)}.")
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers or len(set(layers)) != len(layers):
        raise MethodError(f"layer must be one layer name or several distinct names; got {layer!r}.")
    kwargs = dict(
        label=label,
        needs_gradients=needs_gradients,
        probabilities=probabilities or softmax,
        progress=progress,
        autocast=autocast,
        target=target,
        hessian=hessian,
        eigen_smooth=eigen_smooth,
        params=params,
    )

    def combine(maps: list[torch.Tensor]) -> torch.Tensor:
        return maps[0] if len(maps) == 1 else fuse_layers(maps, layer_fusion, tuple(x.shape[-2:]))

    maps, idx, logits, channels = _one_pass(module, x, maths, layers, choose, **kwargs)
    if not aug_smooth:
        return MapResult(combine(maps), idx, logits, channels[0] if len(layers) == 1 else 1)
    total = relu_minmax(combine(maps))
    for flip, factor in AUGMENTATIONS:
        if not flip and factor == 1.0:
            continue
        more, *_ = _one_pass(module, augment(x, flip, factor), maths, layers, lambda _logits: idx, **kwargs)
        m = relu_minmax(combine(more))
        total = total + (m.flip(-1) if flip else m)
    return MapResult(total / len(AUGMENTATIONS), idx, logits, channels[0] if len(layers) == 1 else 1)

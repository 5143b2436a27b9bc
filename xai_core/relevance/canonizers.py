"""Canonizers: rewrite a model into an equivalent one the relevance rules treat well.

A canonizer changes parameters or module flags for the duration of one explanation
and restores them exactly on exit (``finally``), so the model computes the same
function during the call (up to float rounding) and is bit-for-bit the same object
afterwards: same ``Parameter`` and buffer objects, same values, same flags.

BatchNorm folding (ALGORITHMS.md section 3; zennit's ``MergeBatchNorm``; Montavon et al.
2019). In eval mode a BatchNorm is the per-channel affine map
``y = s * (x - mean) + beta`` with ``s = gamma / sqrt(var + eps)``. When its input is the
output of a convolution or linear layer ``x = W u + b`` (and of nothing else), the pair
is one affine layer ``y = W' u + b'`` with ``W' = s * W`` (per output channel) and
``b' = s * (b - mean) + beta``. :func:`fold_batchnorms` puts ``W'`` and ``b'`` in the
convolution (a bias is added for the call where it had none) and makes the BatchNorm
an exact identity (mean 0, var 1, eps 0, gamma 1, beta 0). The rules then see one
affine layer whose output is what the next activation clips: no relevance is put on a
unit whose BatchNorm shift alone made it active while the convolution's own output is
zero or of the other sign.

Which pairs fold is found by tracing one forward pass (:func:`find_batchnorm_folds`):
a BatchNorm folds when its input tensor is the very output tensor of a ``Conv2d`` /
``Linear`` that runs once and whose output no other module reads. What cannot fold,
and what is done instead (the identity rule, as in the authors' code):

- BatchNorm -> ReLU -> convolution (DenseNet's ``norm1``/``relu1``/``conv1``, the
  transitions, ``norm5``): the ReLU between them makes the pair non-affine, and the
  BatchNorm's input is a concatenation read by several later layers, each with its own
  BatchNorm, so it cannot be pushed into the convolutions that produced it either.
- BatchNorm directly before a convolution (none in the registered models): folding the
  shift ``beta - s * mean`` into the convolution's bias is exact only without zero
  padding (padding adds zeros *after* the BatchNorm, where the folded bias would add the
  shift at the border too); such pairs are left unfolded rather than folded approximately.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import MethodError

_FOLDABLE_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class BatchNormFold:
    """A BatchNorm that folds into the convolution or linear layer whose output it takes.

    Attributes:
        linear: dotted name of the ``Conv2d`` / ``Linear`` layer.
        norm: dotted name of the BatchNorm.
    """

    linear: str
    norm: str


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, tuple[BatchNormFold, ...]]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _signature(model: nn.Module, channels: int) -> tuple:
    return (channels, tuple((n, type(m)) for n, m in model.named_modules()))


def _foldable_norm(bn: nn.Module) -> bool:
    return isinstance(bn, _FOLDABLE_BN) and bn.running_mean is not None and bn.running_var is not None


def find_batchnorm_folds(model: nn.Module, example: torch.Tensor) -> tuple[BatchNormFold, ...]:
    """The (layer, BatchNorm) pairs that fold exactly, found by tracing ``example``.

    The trace runs once per model structure (cached weakly by model; any change to the
    module tree traces again). Call it with the model in eval mode, under its lock.

    Args:
        model: the network.
        example: an input ``[N, C, H, W]`` (only its channel count matters for the cache).

    Returns:
        The pairs, in forward order.
    """
    sig = _signature(model, int(example.shape[1]))
    with _CACHE_LOCK:
        hit = _CACHE.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1]
    names = {m: n for n, m in model.named_modules()}
    producer: dict[int, str] = {}  # id(output tensor) -> conv/linear name
    keep: list[torch.Tensor] = []  # keep traced outputs alive so their ids stay unique
    readers: dict[str, int] = {}  # conv/linear name -> modules that read its output
    calls: dict[str, int] = {}
    candidates: list[tuple[str, str]] = []

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        for t in inputs:
            if isinstance(t, torch.Tensor) and id(t) in producer:
                src = producer[id(t)]
                readers[src] = readers.get(src, 0) + 1
                if _foldable_norm(module):
                    candidates.append((src, names[module]))

    def post_hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(module, (nn.Conv2d, nn.Linear)) and isinstance(output, torch.Tensor):
            producer[id(output)] = name
            keep.append(output)

    handles = []
    try:
        for module in model.modules():
            # leaves only (containers pass tensors through), and convs with a padding child (TF "same")
            if next(module.children(), None) is None or isinstance(module, (nn.Conv2d, nn.Linear)):
                handles.append(module.register_forward_pre_hook(pre_hook))
                handles.append(module.register_forward_hook(post_hook))
        with torch.inference_mode():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    folds = []
    for lin, norm in candidates:
        layer, bn = modules[lin], modules[norm]
        if calls.get(lin) != 1 or calls.get(norm) != 1 or readers.get(lin) != 1:
            continue
        out_features = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        if bn.num_features != out_features:
            continue
        if isinstance(layer, nn.Conv2d) != isinstance(bn, nn.BatchNorm2d):
            continue
        folds.append(BatchNormFold(lin, norm))
    result = tuple(folds)
    with _CACHE_LOCK:
        _CACHE[model] = (sig, result)
    return result


_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, tuple[torch.Tensor, torch.Tensor]]] = (
    weakref.WeakKeyDictionary()
)


def _tensor_key(t: torch.Tensor | None) -> tuple | None:
    """What identifies a tensor's current values and layout.

    The in-place version counter alone misses ``param.data = ...`` (how ``Module.to`` and
    many loaders swap storage: same object, same version) and would keep a fold of the
    old values, device, dtype or memory format; the storage address, strides, dtype and
    device catch those.
    """
    if t is None:
        return None
    return (id(t), t._version, t.data_ptr(), t.stride(), t.dtype, t.device)


def _source_key(layer: nn.Module, bn: nn.Module) -> tuple:
    """Identity, version and layout of every tensor the fold reads (any update re-folds)."""
    tensors = [layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias]
    return (id(bn), bn.eps, *(_tensor_key(t) for t in tensors))


def _folded(layer: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of the folded pair, computed in float64 and cast back.

    Cached per layer, keyed by :func:`_tensor_key` of every source tensor, so repeated
    explanations do not redo the fold and any change of the weights (an optimizer step,
    ``load_state_dict``, ``param.data = ...``, a new device, dtype or memory format) is seen.
    """
    key = _source_key(layer, bn)
    with _CACHE_LOCK:
        hit = _FOLDED.get(layer)
    if hit is not None and hit[0] == key:
        return hit[1]
    w = layer.weight.detach()
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(var)
    shape = (-1,) + (1,) * (w.dim() - 1)
    new_w = (w.double() * scale.reshape(shape)).to(w.dtype)
    new_b = ((bias - mean) * scale + beta).to(w.dtype)
    with _CACHE_LOCK:
        _FOLDED[layer] = (key, (new_w, new_b))
    return new_w, new_b


@contextlib.contextmanager
def fold_batchnorms(model: nn.Module, folds: Sequence[BatchNormFold]) -> Iterator[tuple[str, ...]]:
    """Fold each BatchNorm into its layer for the duration of the block.

    The layer gets new ``weight`` / ``bias`` Parameters (``W'``, ``b'``), the BatchNorm
    new buffers and Parameters making it an exact identity (mean 0, var 1, eps 0,
    gamma 1, beta 0). On exit, in ``finally``, the original Parameter and buffer objects
    and ``eps`` are put back, so the model is bit-for-bit as before (optimizers holding
    the parameters see no change). The new Parameters copy ``requires_grad`` from the
    ones they stand in for.

    Args:
        model: the network (eval mode: the fold uses the running statistics).
        folds: the pairs from :func:`find_batchnorm_folds`.

    Yields:
        The names of the folded BatchNorms (identity maps while the block runs).
    """
    modules = dict(model.named_modules())
    saved: list[tuple[nn.Module, dict, dict, float]] = []
    identities: list[nn.Module] = []

    def swap(module: nn.Module, params: dict[str, torch.Tensor | None], buffers: dict[str, torch.Tensor]) -> None:
        old_p = {k: module._parameters.get(k) for k in params}
        old_b = {k: module._buffers.get(k) for k in buffers}
        saved.append((module, old_p, old_b, getattr(module, "eps", None)))
        for k, v in params.items():
            ref = old_p[k] if old_p[k] is not None else module._parameters.get("weight")
            module._parameters[k] = None if v is None else nn.Parameter(v, requires_grad=bool(ref.requires_grad))
        for k, v in buffers.items():
            module._buffers[k] = v

    try:
        for fold in folds:
            layer, bn = modules.get(fold.linear), modules.get(fold.norm)
            if layer is None or bn is None or not _foldable_norm(bn):
                raise MethodError(f"Cannot fold {fold.norm!r} into {fold.linear!r}: the model has changed.")
            if bn.training:
                raise MethodError("BatchNorm folding needs the model in eval mode (it uses the running statistics).")
            new_w, new_b = _folded(layer, bn)
            swap(layer, {"weight": new_w, "bias": new_b}, {})
            ones = torch.ones_like(bn.running_var)
            bn_params: dict[str, torch.Tensor | None] = {}
            if bn.weight is not None:
                bn_params = {"weight": torch.ones_like(bn.weight.detach()), "bias": torch.zeros_like(bn.bias.detach())}
            swap(bn, bn_params, {"running_mean": torch.zeros_like(bn.running_mean), "running_var": ones})
            bn.eps = 0.0
            # With these values the BatchNorm computes x * 1 + 0; skip the work and hand on the
            # very tensor it gets (the rules follow tensors through it). The module object, its
            # name and its hooks stay in place.
            if "forward" not in bn.__dict__:
                bn.forward = _identity
                identities.append(bn)
        yield tuple(f.norm for f in folds)
    finally:
        for bn in identities:
            del bn.forward
        for module, old_p, old_b, eps in reversed(saved):
            for k, v in old_p.items():
                module._parameters[k] = v
            for k, v in old_b.items():
                module._buffers[k] = v
            if eps is not None:
                module.eps = eps


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextlib.contextmanager
def no_inplace(model: nn.Module) -> Iterator[None]:
    """Set ``inplace=False`` on every module that has the flag; undone on exit."""
    changed = []
    try:
        for module in model.modules():
            if getattr(module, "inplace", False) is True:
                module.inplace = False
                changed.append(module)
        yield
    finally:
        for module in changed:
            module.inplace = True


@contextlib.contextmanager
def canonized(model: nn.Module, example: torch.Tensor) -> Iterator[tuple[str, ...]]:
    """All canonizers of the ``"canonized"`` rule set: BatchNorm folding and no in-place ops.

    Args:
        model: the network, in eval mode, under its lock.
        example: an input ``[N, C, H, W]`` (traced once per model structure).

    Yields:
        The names of the folded BatchNorms.
    """
    folds = find_batchnorm_folds(model, example)
    with no_inplace(model), fold_batchnorms(model, folds) as folded:
        yield folded


# ----------------------------------------------------------------------------- canonizers as objects


class Canonized:
    """A canonizer applied to a model: :meth:`remove` (or leaving the ``with`` block) undoes it.

    Attributes:
        identities: names of the modules that became exact identities (folded BatchNorms).
    """

    def __init__(self, context: contextlib.AbstractContextManager[tuple[str, ...] | None]) -> None:
        self._stack = contextlib.ExitStack()
        self.identities: tuple[str, ...] = tuple(self._stack.enter_context(context) or ())

    def remove(self) -> None:
        """Undo the canonizer (idempotent)."""
        self._stack.close()

    def __enter__(self) -> Canonized:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Canonizer:
    """Rewrites a model into an equivalent one the rules treat well, for one explanation.

    Subclasses define :meth:`context`, a context manager that applies the change and
    restores the model exactly on exit; :meth:`apply` returns the :class:`Canonized`
    handle whose ``remove()`` undoes it (zennit's canonizer protocol).
    """

    def context(self, model: nn.Module, example: torch.Tensor) -> contextlib.AbstractContextManager:
        """The change as a context manager, yielding the names of modules made identities (or None)."""
        raise NotImplementedError

    def apply(self, model: nn.Module, example: torch.Tensor) -> Canonized:
        """Apply to ``model`` (in eval mode, under its lock); ``example`` is an input ``[N, C, H, W]``."""
        return Canonized(self.context(model, example))


class MergeBatchNorm(Canonizer):
    """Fold every BatchNorm that takes a convolution's or linear layer's output into it (:func:`fold_batchnorms`)."""

    def context(self, model: nn.Module, example: torch.Tensor) -> contextlib.AbstractContextManager:  # noqa: D102
        return fold_batchnorms(model, find_batchnorm_folds(model, example))


class NoInplace(Canonizer):
    """Switch every ``inplace`` activation to out-of-place (:func:`no_inplace`)."""

    def context(self, model: nn.Module, example: torch.Tensor) -> contextlib.AbstractContextManager:  # noqa: D102
        return no_inplace(model)

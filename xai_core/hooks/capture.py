"""Capture layer outputs (and make them differentiable) inside a ``with`` block.

Design:
- Hooks live exactly as long as the ``with`` block; they are removed in ``finally``.
- The model's ``training`` flag and its parameters' ``requires_grad`` are restored on exit.
- With ``grad=True`` the captured output becomes a fresh leaf tensor that requires
  grad, and the model continues with a *clone* of it. Parameters are switched to
  ``requires_grad=False`` meanwhile, so autograd records only the part of the network
  after the explained layer: a backward pass costs exactly what the gradient w.r.t. that
  layer needs (the physical floor), and no parameter ``.grad`` is ever touched. The clone
  also means an in-place op after the layer (DenseNet's functional ``relu(inplace=True)``)
  cannot rewrite the stored activation.
- A module that runs more than once per forward pass raises :class:`LayerError`.
- Each model has one re-entrant lock; ``capture`` holds it, so two threads (two
  dashboard sessions sharing a cached model) never hook the same model at once.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from xai_core.errors import LayerError
from xai_core.hooks.layers import resolve_layer

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises hooked work on ``model``."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@dataclass
class Capture:
    """What a :func:`capture` block collected.

    Attributes:
        activations: layer name -> captured output ``[B, C, h, w]``. With ``grad=True``
            these are leaf tensors that require grad (differentiate w.r.t. them).
        calls: layer name -> number of times the layer ran.
    """

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, layer_name: str) -> torch.Tensor:
        if layer_name not in self.activations:
            raise LayerError(
                f"Layer {layer_name!r} did not run during the forward pass, so nothing was captured. "
                "Choose a layer on the path from the input to the output."
            )
        return self.activations[layer_name]


@contextlib.contextmanager
def eval_mode(model: nn.Module, *, freeze_params: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (and freeze its parameters); restore both on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        if freeze_params:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextlib.contextmanager
def capture(model: nn.Module, layer_names: str | Sequence[str], *, grad: bool = True) -> Iterator[Capture]:
    """Capture the outputs of ``layer_names`` during forward passes run in the block.

    Args:
        model: the network; left as found on exit (mode, ``requires_grad``, no hooks).
        layer_names: one dotted name or several.
        grad: make the captured outputs differentiable leaves (see module docstring).

    Yields:
        A :class:`Capture`, filled by each forward pass (a new pass overwrites it).

    Raises:
        LayerNotFoundError: for an unknown name.
        LayerError: when a layer's output is not a tensor or the layer runs twice.

    Example:
        >>> with capture(model, "layer4") as cap:
        ...     logits = model(x)
        ...     grads = torch.autograd.grad(logits[0, 3], cap["layer4"])[0]
    """
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    modules = {name: resolve_layer(model, name) for name in names}
    result = Capture()
    handles = []
    lock = model_lock(model)

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
            result.calls[name] = result.calls.get(name, 0) + 1
            if result.calls[name] > 1:
                raise LayerError(
                    f"Layer {name!r} runs more than once per forward pass (the module is reused), so its "
                    "output is ambiguous. Choose another layer; list_layers() offers only single-use ones."
                )
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"Layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer.")
            if grad:
                leaf = output.detach().clone().requires_grad_(True)
                result.activations[name] = leaf
                return leaf.clone()
            result.activations[name] = output.detach().clone()
            return None

        return hook

    def reset_calls(_module: nn.Module, _inputs: tuple) -> None:
        result.calls.clear()

    with lock, eval_mode(model, freeze_params=True):
        try:
            handles.append(model.register_forward_pre_hook(reset_calls))
            for name, module in modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            with torch.enable_grad() if grad else contextlib.nullcontext():
                yield result
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def replace_output(model: nn.Module, layer_name: str, fn) -> Iterator[None]:
    """Replace the output of ``layer_name`` by ``fn(output)`` for forwards run in the block.

    Used by perturbation methods (Ablation-CAM) to run the rest of the network on a
    batch of modified feature maps. The hook is removed on exit, also on error.
    """
    module = resolve_layer(model, layer_name)
    handle = module.register_forward_hook(lambda _m, _i, output: fn(output))
    try:
        yield
    finally:
        handle.remove()

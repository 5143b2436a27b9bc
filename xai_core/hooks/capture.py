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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from xai_core.errors import LayerError
from xai_core.hooks.layers import resolve_layer
from xai_core.hooks.state import eval_mode, model_lock
from xai_core.hooks.tokens import token_hook


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


def _find_layer(model: nn.Module, name: str) -> nn.Module:
    """``resolve_layer`` without listing every module when the name is right (the usual case)."""
    if isinstance(name, str) and name:
        try:
            return model.get_submodule(name)
        except AttributeError:
            pass
    return resolve_layer(model, name)


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
    modules = {name: _find_layer(model, name) for name in names}
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
                # Vision transformers: the hook sees (and returns) [B, C, h, w] maps (hooks/tokens.py).
                handles.append(module.register_forward_hook(token_hook(model, make_hook(name))))
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
    # Vision transformers: fn works on [B, C, h, w] maps (hooks/tokens.py).
    handle = module.register_forward_hook(token_hook(model, lambda _m, _i, output: fn(output)))
    try:
        yield
    finally:
        handle.remove()


class ReplayMismatch(RuntimeError):
    """The forward pass did not retrace the recorded one (data-dependent control flow)."""


class RestOfNetwork:
    """Run only the part of ``model`` after ``layer_name``, on a replacement of its output.

    Generic over ``nn.Module`` code (no tracing, no graph rewriting). One recording pass
    on ``x`` notes, in call order, every module call up to the layer and keeps the
    output of each call that *finished* before the layer started (the upstream, which
    depends on ``x`` only). Each later pass walks the same calls: a recorded call
    returns its stored output without running (its sub-calls are skipped too), the layer
    returns the replacement, and everything after the layer runs normally, on the batch
    of the replacement (stored batch-1 outputs broadcast against it, as the model's
    own batch-1 tensors would). Functional code between modules in a parent's
    ``forward`` still runs; it is cheap next to the modules it connects.

    Safety: a pass that does not retrace the recording (other modules, other order)
    raises :class:`ReplayMismatch`; a stored output changed in place by the rest of
    the network (its version counter moved) is recorded afresh before the next pass.
    Callers check :meth:`__call__` once against the full network (see
    ``xai_core.methods.score``) and fall back to full forward passes when it differs.

    Use inside :func:`rest_of_network`, which installs and removes the wrappers.
    """

    def __init__(self, model: nn.Module, layer_name: str, x: torch.Tensor) -> None:
        self.model = model
        self.layer = resolve_layer(model, layer_name)
        self.x = x
        self._mode = "off"
        self._calls: list[nn.Module] = []
        self._skip_to: dict[int, int] = {}  # call index -> index after its sub-calls
        self._stored: dict[int, object] = {}  # call index -> output (finished before the layer)
        self._versions: list[tuple[torch.Tensor, int]] = []
        self._pos = 0
        self._past_layer = False
        self._replacement: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None

    def _wrap(self, module: nn.Module, forward):
        def wrapped(*args: object, **kwargs: object) -> object:
            if self._mode == "off" or self._past_layer:
                return forward(*args, **kwargs)
            if self._mode == "record":
                i = len(self._calls)
                self._calls.append(module)
                if module is self.layer:
                    self._past_layer = True
                    return forward(*args, **kwargs)
                out = forward(*args, **kwargs)
                if not self._past_layer:  # finished before the layer started: upstream only
                    self._stored[i] = out
                    self._skip_to[i] = len(self._calls)
                return out
            i = self._pos  # replay
            if i >= len(self._calls) or self._calls[i] is not module:
                raise ReplayMismatch("the forward pass took another path than the recorded one")
            if module is self.layer:
                self._past_layer = True
                self._pos = i + 1
                return self._replacement
            if i in self._stored:
                self._pos = self._skip_to[i]
                return self._gather(self._stored[i])
            self._pos = i + 1  # an enclosing module of the layer: run its own code
            return forward(*args, **kwargs)

        return wrapped

    def record(self) -> torch.Tensor:
        """Run the full network once on ``x`` and store the upstream outputs; return its output."""
        self._calls, self._skip_to, self._stored = [], {}, {}
        self._mode, self._past_layer = "record", False
        try:
            with torch.no_grad():  # not inference_mode: stored tensors keep version counters
                out = self.model(self.x)
        finally:
            self._mode = "off"
        if not self._past_layer:
            raise ReplayMismatch("the layer did not run")
        self._versions = [
            (t, t._version)
            for value in self._stored.values()
            for t in torch.utils._pytree.tree_leaves(value)
            if isinstance(t, torch.Tensor)
        ]
        return out

    def _stale(self) -> bool:
        return any(t._version != v for t, v in self._versions)

    def _gather(self, value: object) -> object:
        """A stored upstream output, its rows picked by ``rows`` when replaying a mixed batch."""
        if self._rows is None:
            return value
        n = self.x.shape[0]

        def pick(t: object) -> object:
            return t[self._rows] if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == n else t

        return torch.utils._pytree.tree_map(pick, value)

    def __call__(self, replacement: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output with the layer's output replaced (no gradient).

        Args:
            replacement: ``[B, C, h, w]`` the layer's new output.
            rows: ``[B]`` which image of ``x`` each replacement row belongs to, so one
                batch can mix images (stored upstream outputs are gathered by row).
                ``None``: stored outputs broadcast against the replacement (``x`` of one image).
        """
        if not self._calls or self._stale():
            self.record()
        self._mode, self._pos, self._past_layer, self._replacement = "replay", 0, False, replacement
        self._rows = rows
        try:
            with torch.no_grad():
                out = self.model(self.x if rows is None else self.x[rows])
        finally:
            self._mode, self._replacement, self._rows = "off", None, None
        if not self._past_layer:
            raise ReplayMismatch("the layer was not reached")
        return out


@contextlib.contextmanager
def rest_of_network(model: nn.Module, layer_name: str, x: torch.Tensor) -> Iterator[RestOfNetwork]:
    """A :class:`RestOfNetwork` for forwards run in the block; the model is left as found.

    Wraps each sub-module's ``forward`` (an instance attribute, removed in ``finally``;
    a module that already has one is restored to it) and holds the model's lock.

    Example:
        >>> with rest_of_network(model, "layer4", x) as rest:
        ...     logits = rest(ablated_layer4_outputs)       # [B, N]; upstream ran once
    """
    runner = RestOfNetwork(model, layer_name, x)
    patched: list[tuple[nn.Module, bool, object]] = []
    with model_lock(model):
        try:
            for module in model.modules():
                if module is model:
                    continue
                own = "forward" in module.__dict__
                previous = module.__dict__.get("forward")
                module.forward = runner._wrap(module, module.forward)
                patched.append((module, own, previous))
            yield runner
        finally:
            for module, own, previous in reversed(patched):
                if own:
                    module.forward = previous
                else:
                    del module.forward

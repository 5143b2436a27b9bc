"""Layer names and the module tracer.

Layer names are the public currency of xai_core (hashable, cacheable, listable in a
select box). ``resolve_layer`` checks a name against ``named_modules()`` and suggests
close matches. ``trace_modules`` is the one tracer: one forward pass with a forward hook
on every named module, giving each module's call count and output shape in forward
order; ``candidate_layers`` (the explainable layers) and ``final_feature_layer`` (the
automatic default layer) are built on it, and other code that needs a module's order,
calls or shapes should use it instead of hooking the model itself.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import LayerError, LayerNotFoundError
from xai_core.hooks.state import eval_mode, model_lock


@dataclass(frozen=True)
class LayerInfo:
    """A layer that can be explained.

    Attributes:
        name: dotted module path, as in ``model.named_modules()``.
        kind: the module's class name.
        shape: output shape ``(C, h, w)`` for the traced input.
        calls: how many times the module ran in one forward pass.
    """

    name: str
    kind: str
    shape: tuple[int, int, int]
    calls: int = 1

    @property
    def label(self) -> str:
        """Human readable label, for example ``"layer4 (2048x7x7)"``."""
        c, h, w = self.shape
        return f"{self.name or '<model>'} ({c}x{h}x{w})"


@dataclass(frozen=True)
class TracedModule:
    """What one module did during a traced forward pass.

    Attributes:
        name: dotted module path.
        kind: the module's class name.
        calls: how many times its forward ran.
        shape: shape of its first output when that is a tensor (with the batch
            dimension), else ``None``.
        output_id: modules with the same ``output_id`` returned the very same tensor
            with the same contents (a ``Sequential`` and its last child, an
            ``Identity``); ``None`` when the output is not a tensor.
        passthrough: its output is its input tensor object (``Identity``, an in-place
            activation): it computes nothing new of its own.
    """

    name: str
    kind: str
    calls: int
    shape: tuple[int, ...] | None
    output_id: int | None
    passthrough: bool = False


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module of ``model`` called ``name``.

    Raises:
        LayerNotFoundError: with close matches, when no module has that name.
    """
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules:
        raise LayerNotFoundError(name, [n for n in modules if n])
    return modules[name]


def _input_device(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


@contextlib.contextmanager
def _hooked(model: nn.Module, hook_factory) -> Iterator[None]:
    """Forward hooks on every named sub-module for the duration of the block."""
    handles = []
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_factory(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def trace_modules(model: nn.Module, example: torch.Tensor) -> dict[str, TracedModule]:
    """Run one forward pass of ``example`` and report what every named module did.

    The pass runs in eval mode, without gradients, under the model's lock
    (:func:`xai_core.hooks.state.model_lock`); the hooks are removed and the
    model's mode restored on exit, also on error. ``example`` is moved to the model's
    device.

    Args:
        model: the network.
        example: an input of the shape the model expects, ``[B, C, H, W]``.

    Returns:
        Module name -> :class:`TracedModule`, in the order the modules' forwards first
        *finished* (a parent after its children). Modules that did not run are absent.
    """
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    counts: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    outputs: dict[str, tuple[int, int] | None] = {}
    passthrough: set[str] = set()
    # Tensor identity without keeping every output alive (that would hold all of the
    # pass's activations at once): id() -> (weak reference, number); an id reused by a
    # new tensor after the old one was freed gets a new number.
    seen: dict[int, tuple[weakref.ref, int]] = {}
    numbers = itertools.count()

    def tensor_number(t: torch.Tensor) -> int:
        entry = seen.get(id(t))
        if entry is None or entry[0]() is not t:
            entry = seen[id(t)] = (weakref.ref(t), next(numbers))
        return entry[1]

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] > 1:
                return
            if isinstance(output, torch.Tensor):
                if any(output is i for i in inputs):
                    passthrough.add(name)
                shapes[name] = tuple(output.shape)
                outputs[name] = (tensor_number(output), output._version)
            else:
                shapes[name] = None
                outputs[name] = None

        return hook

    device = _input_device(model)
    if device is not None:
        example = example.to(device)
    # no_grad rather than inference_mode: version counters tell in-place changes apart.
    with model_lock(model), eval_mode(model, freeze_params=False), _hooked(model, make_hook), torch.no_grad():
        model(example)
    ids: dict[tuple[int, int], int] = {}
    result = {}
    for name in counts:
        key = outputs[name]
        oid = None if key is None else ids.setdefault(key, len(ids))
        result[name] = TracedModule(name, kinds[name], counts[name], shapes[name], oid, name in passthrough)
    return result


def call_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """How many times each named module runs in one forward pass of ``example``."""
    return {name: t.calls for name, t in trace_modules(model, example).items()}


def _is_map(t: TracedModule, min_size: int) -> bool:
    return t.calls == 1 and t.shape is not None and len(t.shape) == 4 and min(t.shape[2:]) >= min_size


def candidate_layers(
    model: nn.Module,
    example: torch.Tensor,
    *,
    min_size: int = 2,
    trace: dict[str, TracedModule] | None = None,
) -> list[LayerInfo]:
    """Layers whose output is a 4-D feature map and that run exactly once per forward.

    A module reused inside one forward pass (EfficientNet-Lite's shared ReLU6, say) is
    left out: a hook on it would see several different tensors.

    Args:
        model: the network.
        example: an input of the shape the model expects, ``[1, C, H, W]``.
        min_size: smallest spatial side kept (1x1 maps explain nothing).
        trace: a :func:`trace_modules` result for ``example`` to reuse.

    Returns:
        The layers in forward order.
    """
    trace = trace_modules(model, example) if trace is None else trace
    return [LayerInfo(t.name, t.kind, t.shape[1:], t.calls) for t in trace.values() if _is_map(t, min_size)]


def final_feature_layer(
    model: nn.Module, example: torch.Tensor, *, trace: dict[str, TracedModule] | None = None
) -> str:
    """The automatic default layer: the last spatial feature map before global pooling.

    The last module (in forward order) that runs once and outputs ``[B, C, h, w]`` with
    ``h, w > 1``, adaptive pooling layers aside. Several modules often return that same tensor (a block, its stage, a
    ``Sequential`` holding the whole trunk, an ``Identity`` after it); the name chosen
    is the outermost of them that computes something (not an ``Identity``) and whose
    sub-modules all work at that final resolution (no output larger in both spatial
    dimensions; 1x1 maps such as squeeze-and-excitation do not count): ResNet's
    ``layer4`` when its first block downsamples at once, else its last block,
    MobileNet's ``features.12`` rather than ``features``. All give the same map.

    Args:
        model: the network.
        example: an input ``[1, C, H, W]`` of the size the model expects.
        trace: a :func:`trace_modules` result for ``example`` to reuse.

    Raises:
        LayerError: when no module gives a spatial feature map, or token sequences
            (``[B, L, D]``) follow the last one, as in a vision transformer: not a CNN.
    """
    trace = trace_modules(model, example) if trace is None else trace
    # The head's adaptive pooling to a fixed grid (VGG's 7x7 ``avgpool``) is pooling, not a feature map.
    maps = [t for t in trace.values() if _is_map(t, 2) and not t.kind.startswith("Adaptive")]
    if not maps:
        raise LayerError(
            f"{type(model).__name__} has no layer giving a spatial feature map [C, h, w] with h, w > 1 for an "
            f"input of shape {tuple(example.shape)}, so CAM methods cannot explain it (only CNNs can)."
        )
    last = maps[-1]
    names = list(trace)
    ancestors = {".".join(last.name.split(".")[:i]) for i in range(1, last.name.count(".") + 1)}
    tokens = [
        n
        for n in names[names.index(last.name) + 1 :]
        if n not in ancestors and trace[n].shape is not None and len(trace[n].shape) == 3
    ]
    if tokens:
        raise LayerError(
            f"{type(model).__name__} is not a CNN: token sequences follow its last 4-D output ({last.name!r}; "
            f"{tokens[0]!r} gives {list(trace[tokens[0]].shape)}), as in a vision transformer. "
            "CAM methods explain CNNs' final feature maps; choose a CNN."
        )
    same = [t for t in maps if t.output_id == last.output_id]
    hw = last.shape[2:]

    def works_at_final_resolution(name: str) -> bool:
        prefix = name + "."
        # "Larger in both dimensions" also reads channels-last tensors ([B, h, w, C],
        # ConvNeXt's blocks) right: [B, 7, 7, 768] is not larger than 7x7.
        return not any(
            t.shape is not None and len(t.shape) == 4 and t.shape[2] > hw[0] and t.shape[3] > hw[1]
            for n, t in trace.items()
            if n.startswith(prefix)
        )

    good = [t.name for t in same if not t.passthrough and works_at_final_resolution(t.name)]
    if not good:  # e.g. an in-place activation closing a Sequential that holds the whole trunk
        return same[0].name  # the innermost: the first of them to finish
    return min(good, key=lambda n: (n.count("."), list(trace).index(n)))


def linear_head(model: nn.Module, channels: int) -> torch.Tensor | None:
    """Weight ``[N, channels]`` of the model's last ``nn.Linear`` when it reads ``channels`` features.

    That is the CAM condition (global average pooling then one linear layer), checked
    loosely: the caller explains the layer whose channels feed that linear layer.
    """
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None or last.in_features != channels:
        return None
    return last.weight.detach()

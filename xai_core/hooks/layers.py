"""Layer names: the only place that turns a dotted name into a module.

Layer names are the public currency of xai_core (hashable, cacheable, listable in a
select box). ``resolve_layer`` checks a name against ``named_modules()`` and suggests
close matches; ``candidate_layers`` traces one forward pass to list the layers that give
a feature map and are called exactly once, so a hook on them is unambiguous.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import LayerNotFoundError


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


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module of ``model`` called ``name``.

    Raises:
        LayerNotFoundError: with close matches, when no module has that name.
    """
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules:
        raise LayerNotFoundError(name, [n for n in modules if n])
    return modules[name]


def _trace(model: nn.Module, example: torch.Tensor) -> tuple[Counter[str], dict[str, tuple[int, ...]]]:
    """Run one no-grad forward pass, counting calls and recording output shapes per module.

    The returned counter lists modules in the order their forward *finished* first.
    """
    counts: Counter[str] = Counter()
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            counts[name] += 1
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)

        return hook

    was_training = model.training
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return counts, shapes


def call_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """How many times each named module runs in one forward pass of ``example``."""
    counts, _ = _trace(model, example)
    return dict(counts)


def candidate_layers(model: nn.Module, example: torch.Tensor, *, min_size: int = 2) -> list[LayerInfo]:
    """Layers whose output is a 4-D feature map and that run exactly once per forward.

    A module reused inside one forward pass (EfficientNet-Lite's shared ReLU6, say) is
    left out: a hook on it would see several different tensors.

    Args:
        model: the network.
        example: an input of the shape the model expects, ``[1, C, H, W]``.
        min_size: smallest spatial side kept (1x1 maps explain nothing).

    Returns:
        The layers in forward order.
    """
    counts, shapes = _trace(model, example)
    order = list(counts)  # forward order, not registration order
    modules = dict(model.named_modules())
    layers = []
    for name in order:
        shape = shapes.get(name)
        if shape is None or len(shape) != 4 or counts[name] != 1:
            continue
        if min(shape[2], shape[3]) < min_size:
            continue
        layers.append(LayerInfo(name, type(modules[name]).__name__, tuple(shape[1:]), counts[name]))
    return layers


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

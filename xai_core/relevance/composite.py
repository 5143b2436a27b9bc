"""Attach relevance rules to standard modules by type, for one forward pass (zennit-style).

``relevance_rules(model, x, ...)`` is a context manager: on entry it applies the
canonizers (switch every ``inplace`` activation to out-of-place) and registers one
forward hook per module whose type is in :data:`RULES`; on exit (in ``finally``) it
removes the hooks and undoes the canonizers. The hooks are stateless per call (every
call wraps its own input/output in an autograd node), so a module reused within one
forward pass, like EfficientNet-Lite's shared ``_swish`` ReLU6, gets the rule at each use.

The conv rule is chosen per call: z^B when the conv's input *is* the model input tensor
(not "has 3 channels": X-ray models take 1 channel), the z+/z- rule otherwise.
Operations with no rule (additions, concatenations, functional ReLU / average pooling,
flatten) propagate by their plain gradient, which under the ``g = R / a`` convention of
:mod:`xai_core.relevance.rules` is LRP-0 (proportional split, routing, identity).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.layers import resolve_layer
from xai_core.relevance import rules

IDENTITY_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU6,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
)
POOL_TYPES: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

#: Module type -> rule name (documented in ALGORITHMS.md section 3; "linear" is z+ for LRP heads).
#: ReLU's identity rule is its plain gradient under the ``R = a * g`` convention, so it needs no hook.
RULES: dict[type[nn.Module], str] = {
    nn.ReLU: "gradient",
    **{t: "identity" for t in IDENTITY_TYPES},
    **{t: "pool" for t in POOL_TYPES},
    nn.Conv2d: "conv",
    nn.Linear: "linear",
}

# Parameter-free or parameterised leaves that may run between two rules with their plain gradient.
_PASS_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.ZeroPad2d)


def rule_for(module: nn.Module) -> str | None:
    """The rule name attached to ``module`` (by its type, subclasses included), or None."""
    for cls in type(module).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


@dataclass
class RelevancePass:
    """What one hooked forward pass produced.

    Attributes:
        start: output of the start layer with the rule graph behind it (``[1, C, h, w]``),
            or None when no start layer was given (LRP starts at the logits).
        start_leaf: the detached leaf the rest of the network ran on (for true gradients).
        target: output of the target layer (differentiate the rule graph w.r.t. it).
        bounds: ``(low, high)`` images of the z^B rule, one pair per conv that took the model input.
        calls: module name -> number of calls seen while the rules were active.
    """

    start: torch.Tensor | None = None
    start_leaf: torch.Tensor | None = None
    target: torch.Tensor | None = None
    bounds: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    active: bool = True
    calls: dict[str, int] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _no_inplace(model: nn.Module) -> Iterator[None]:
    """Canonizer: set ``inplace=False`` on every module that has the flag; undone on exit."""
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
def relevance_rules(
    model: nn.Module,
    x: torch.Tensor,
    *,
    start_layer: str | None = None,
    target_layer: str | None = None,
) -> Iterator[RelevancePass]:
    """Hook the rules for one forward pass of ``x`` (the exact tensor object passed to the model).

    Rules are active from the start of the forward pass until ``start_layer`` has run
    (or for the whole pass when ``start_layer`` is None). The start layer's output is
    kept (``state.start``) and the network continues on a detached leaf
    (``state.start_leaf``), so gradients of the logits w.r.t. it are the model's true
    gradients. The caller must hold ``model_lock`` and have the model in eval mode.

    Yields:
        The :class:`RelevancePass`, filled by the forward pass run in the block.

    Raises:
        LayerError: when the start or target layer runs more than once.
    """
    state = RelevancePass()
    start_mod = resolve_layer(model, start_layer) if start_layer is not None else None
    target_mod = resolve_layer(model, target_layer) if target_layer not in (None, "input") else None
    handles = []
    names = {m: n for n, m in model.named_modules()}

    grad_modes: list[bool] = []

    def pre_hook(_module: nn.Module, _inputs: tuple) -> None:
        # The module's own ops need no autograd record (the rule replaces their backward):
        # run them with grad off, which saves the tensors autograd would keep.
        grad_modes.append(torch.is_grad_enabled())
        if state.active:
            torch.set_grad_enabled(False)

    def rule_hook(module: nn.Module, inputs: tuple, output: object, *, kind: str) -> torch.Tensor | None:
        if grad_modes:
            torch.set_grad_enabled(grad_modes.pop())
        name = names.get(module, "?")
        if not state.active or not isinstance(output, torch.Tensor) or not inputs:
            return None
        inp = inputs[0]
        if not isinstance(inp, torch.Tensor) or not inp.requires_grad:
            return None
        state.calls[name] = state.calls.get(name, 0) + 1
        xd = inp.detach()
        if kind == "identity":
            return rules.apply_rule(functools.partial(rules.identity_grad, xd, output.detach()), output, inp)
        if kind == "pool":
            return rules.apply_rule(functools.partial(rules.pool_grad, module, xd, output.detach()), output, inp)
        if kind == "linear":
            fn = functools.partial(rules.zplus_linear_grad, module, xd, output.detach())
            return rules.apply_rule(fn, output, inp)
        if inp is x:  # the conv that takes the image: z^B with per-image global bounds
            low = torch.full_like(xd, xd.min().item()).requires_grad_(True)
            high = torch.full_like(xd, xd.max().item()).requires_grad_(True)
            state.bounds.append((low, high))
            fn = functools.partial(rules.zbox_conv_grads, module, xd, low.detach(), high.detach(), output.detach())
            return rules.apply_rule(fn, output, inp, low, high)
        return rules.apply_rule(functools.partial(rules.zplus_conv_grad, module, xd, output.detach()), output, inp)

    def leaf_hook(module: nn.Module, _inputs: tuple, _output: object) -> None:
        # A leaf with parameters and no rule between start and target would silently be
        # treated as LRP-0 on its gradient; record it so the caller can refuse.
        if state.active and next(module.parameters(recurse=False), None) is not None:
            state.unsupported.append(f"{names.get(module, '?')} ({type(module).__name__})")

    def start_hook(module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor:
        if state.start is not None:
            raise LayerError(
                f"Layer {start_layer!r} runs more than once per forward pass, so its output is ambiguous. "
                "Choose another CAM layer."
            )
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"Layer {start_layer!r} returns {type(output).__name__}, not a tensor.")
        state.start = output
        state.active = False
        leaf = output.detach().clone().requires_grad_(True)
        state.start_leaf = leaf
        return leaf.clone()

    def target_hook(module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
        if not state.active:
            return None
        if state.target is not None:
            raise LayerError(
                f"Target layer {target_layer!r} runs more than once per forward pass; choose another one "
                "(fgcam_target_layers lists valid targets)."
            )
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"Target layer {target_layer!r} returns {type(output).__name__}, not a tensor.")
        state.target = output
        return output.clone()  # later in-place ops must not rewrite the target tensor

    with _no_inplace(model):
        try:
            for module in model.modules():
                kind = rule_for(module)
                if kind == "gradient":
                    continue
                if kind is not None:
                    handles.append(module.register_forward_pre_hook(pre_hook))
                    handles.append(module.register_forward_hook(functools.partial(rule_hook, kind=kind)))
                elif not list(module.children()) and not isinstance(module, _PASS_TYPES):
                    handles.append(module.register_forward_hook(leaf_hook))
            if target_mod is not None:
                handles.append(target_mod.register_forward_hook(target_hook))
            if start_mod is not None:
                handles.append(start_mod.register_forward_hook(start_hook))
            yield state
        finally:
            for handle in handles:
                handle.remove()


def check_supported(state: RelevancePass) -> None:
    """Raise :class:`MethodError` if a parameterised module without a rule ran under the rules."""
    if state.unsupported:
        listed = ", ".join(sorted(set(state.unsupported))[:5])
        raise MethodError(
            f"No relevance rule for {listed}. FG-CAM/LRP rules cover Conv2d, Linear, BatchNorm, "
            "element-wise activations and pooling; choose a CAM layer and target inside that part of the network."
        )

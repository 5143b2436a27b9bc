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
from typing import Any

import torch
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.layers import resolve_layer
from xai_core.relevance import rules as rules_
from xai_core.relevance.canonizers import canonized, no_inplace

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
        constant: ``id(tensor) -> (tensor, mask)``: units of a hooked tensor that are constants
            of the forward pass (a convolution's output where its inputs were all zero, so it
            equals its bias; carried through element-wise activations). Canonized rules only.
        fusable: ``id(tensor) -> (tensor, rule, conv input)`` for hidden-conv outputs, so an
            element-wise activation right after (a folded BatchNorm passes the very tensor
            on) runs the conv's rule in the same autograd node. Canonized rules only.
        calls: module name -> number of calls seen while the rules were active.
    """

    start: torch.Tensor | None = None
    start_leaf: torch.Tensor | None = None
    target: torch.Tensor | None = None
    bounds: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    constant: dict[int, tuple[torch.Tensor, Any]] = field(default_factory=dict)
    fusable: dict[int, tuple[torch.Tensor, Any, torch.Tensor]] = field(default_factory=dict)
    active: bool = True
    calls: dict[str, int] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)


#: Rule sets: "canonized" folds BatchNorm into the adjacent layer and holds squeeze-excitation
#: gates constant (the default, keeps the evidence on real weights); "authors" passes
#: BatchNorm through as identity with no canonization (the official FG-CAM code).
RULE_SETS = ("canonized", "authors")


def check_rule_set(rules_name: str) -> str:
    """Return ``rules_name`` if valid, else raise :class:`MethodError` naming the choices."""
    if rules_name not in RULE_SETS:
        raise MethodError(f"Unknown rule set {rules_name!r}. Valid choices: {', '.join(RULE_SETS)}.")
    return rules_name


def gate_modules(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Squeeze-excitation blocks: ``(torchvision SqueezeExcitation modules, gate-producing convs)``.

    torchvision's ``SqueezeExcitation`` returns ``scale(input) * input``; the
    efficientnet_pytorch ``MBConvBlock`` computes ``sigmoid(_se_expand(...)) * x`` inline,
    so there the gate is held constant by detaching ``_se_expand``'s output.
    """
    try:
        from torchvision.ops.misc import SqueezeExcitation
    except ImportError:  # pragma: no cover - torchvision is a dependency
        SqueezeExcitation = ()  # type: ignore[assignment]  # noqa: N806
    se_blocks = [m for m in model.modules() if SqueezeExcitation and isinstance(m, SqueezeExcitation)]
    se_convs = [
        m._se_expand
        for m in model.modules()
        if getattr(m, "has_se", False) is True and isinstance(getattr(m, "_se_expand", None), nn.Module)
    ]
    return se_blocks, se_convs


@contextlib.contextmanager
def relevance_rules(
    model: nn.Module,
    x: torch.Tensor,
    *,
    start_layer: str | None = None,
    target_layer: str | None = None,
    rules: str = "canonized",
) -> Iterator[RelevancePass]:
    """Hook the rules for one forward pass of ``x`` (the exact tensor object passed to the model).

    Rules are active from the start of the forward pass until ``start_layer`` has run
    (or for the whole pass when ``start_layer`` is None). The start layer's output is
    kept (``state.start``) and the network continues on a detached leaf
    (``state.start_leaf``), so gradients of the logits w.r.t. it are the model's true
    gradients. The caller must hold ``model_lock`` and have the model in eval mode.

    With ``rules="canonized"`` the canonizers of :mod:`xai_core.relevance.canonizers` run
    for the block (BatchNorms folded into their convolutions, which then need no hook
    at all: a folded BatchNorm is an exact identity and its plain gradient is the
    identity rule) and squeeze-excitation gates are constants of the forward pass.
    With ``rules="authors"`` every BatchNorm takes the identity rule.

    Yields:
        The :class:`RelevancePass`, filled by the forward pass run in the block.

    Raises:
        LayerError: when the start or target layer runs more than once.
    """
    check_rule_set(rules)
    state = RelevancePass()
    start_mod = resolve_layer(model, start_layer) if start_layer is not None else None
    target_mod = resolve_layer(model, target_layer) if target_layer not in (None, "input") else None
    handles = []
    names = {m: n for n, m in model.named_modules()}
    canon = rules == "canonized"
    se_blocks, se_convs = gate_modules(model) if canon else ([], [])
    gate_convs = set(se_convs)
    se_scales: dict[nn.Module, torch.Tensor] = {}

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
        if not state.active or not isinstance(output, torch.Tensor) or not inputs:
            return None
        if module in gate_convs:  # efficientnet_pytorch SE: sigmoid(constant) * x
            return output.detach()
        inp = inputs[0]
        if not isinstance(inp, torch.Tensor) or not inp.requires_grad:
            return None
        name = names.get(module, "?")
        state.calls[name] = state.calls.get(name, 0) + 1
        xd = inp.detach()
        if kind == "identity":
            producer = state.fusable.get(id(inp)) if canon else None
            if producer is not None and producer[0] is inp:
                # conv -> (folded BatchNorm) -> activation: the identity rule gives R at the conv
                # output = R at the activation output, so one node does both steps: the conv's
                # rule with the activation's output as its relevance-carrying output.
                rule, conv_inp = producer[1], producer[2]
                fused = rule.with_output(output.detach())
                new = rules_.apply_rule(fused, output, conv_inp)
                state.constant[id(new)] = (new, fused.unsupported)
                return new
            new = rules_.apply_rule(functools.partial(rules_.identity_grad, xd, output.detach()), output, inp)
            return _carry_constant(inp, new)
        if kind == "pool":
            return rules_.apply_rule(functools.partial(rules_.pool_grad, module, xd, output.detach()), output, inp)
        if kind == "linear":
            fn = functools.partial(rules_.zplus_linear_grad, module, xd, output.detach(), weight=module.weight.detach())
            return rules_.apply_rule(fn, output, inp)
        weight = module.weight.detach()  # as used now: a canonizer may be undone before the backward
        if inp is x:  # the conv that takes the image: z^B with per-image global bounds
            low = xd.amin(dim=tuple(range(1, xd.dim())), keepdim=True).expand_as(xd).clone().requires_grad_(True)
            high = xd.amax(dim=tuple(range(1, xd.dim())), keepdim=True).expand_as(xd).clone().requires_grad_(True)
            state.bounds.append((low, high))
            fn = functools.partial(
                rules_.zbox_conv_grads, module, xd, low.detach(), high.detach(), output.detach(), weight=weight
            )
            new = rules_.apply_rule(fn, output, inp, low, high)
            _mark_constant(module, output, new)
            return new
        if not canon:
            fn = functools.partial(rules_.zplus_conv_grad, module, xd, output.detach(), weight=weight)
            return rules_.apply_rule(fn, output, inp)
        hit = state.constant.get(id(inp))
        rule = rules_.ZPlusConv(module, xd, output.detach(), weight=weight, constant=None if hit is None else hit[1])
        new = rules_.apply_rule(rule, output, inp)
        state.constant[id(new)] = (new, rule.unsupported)
        state.fusable[id(new)] = (new, rule, inp)
        return new

    def _mark_constant(module: nn.Module, output: torch.Tensor, new: torch.Tensor) -> None:
        # The first conv: a unit equal to its bias exactly has only zero inputs in its receptive field.
        if canon and module.bias is not None and output.dim() == 4:
            mask = output.detach() == module.bias.detach()[:, None, None]
            state.constant[id(new)] = (new, lambda: mask)

    def _carry_constant(inp: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        hit = state.constant.get(id(inp))
        if hit is not None and new.shape == inp.shape:  # element-wise: the same units carry no evidence
            state.constant[id(new)] = (new, hit[1])
        return new

    def relu_hook(_module: nn.Module, inputs: tuple, output: object) -> None:
        if state.active and inputs and isinstance(output, torch.Tensor) and id(inputs[0]) in state.constant:
            _carry_constant(inputs[0], output)

    def se_pre_hook(_module: nn.Module, _inputs: tuple) -> None:
        grad_modes.append(torch.is_grad_enabled())
        if state.active:
            torch.set_grad_enabled(False)

    def se_scale_hook(module: nn.Module, _inputs: tuple, output: object, *, block: nn.Module) -> None:
        if isinstance(output, torch.Tensor):
            se_scales[block] = output.detach()

    def se_hook(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor | None:
        torch.set_grad_enabled(grad_modes.pop())
        scale = se_scales.pop(module, None)
        if not state.active or scale is None or not inputs or not isinstance(inputs[0], torch.Tensor):
            return None
        return _carry_constant(inputs[0], scale * inputs[0])  # a constant gate: relevance stays on the branch

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

    canonizers = canonized(model, x) if canon else _authors(model)
    with canonizers as folded:
        folded_names = set(folded)
        try:
            for name, module in model.named_modules():
                kind = rule_for(module)
                if kind == "gradient" and canon:  # plain gradient; only follows constant units
                    handles.append(module.register_forward_hook(relu_hook))
                    continue
                if kind == "gradient" or (kind == "identity" and name in folded_names):
                    continue  # plain gradient: ReLU, and folded BatchNorms (exact identities)
                if kind is not None:
                    handles.append(module.register_forward_pre_hook(pre_hook))
                    handles.append(module.register_forward_hook(functools.partial(rule_hook, kind=kind)))
                elif not list(module.children()) and not isinstance(module, _PASS_TYPES):
                    handles.append(module.register_forward_hook(leaf_hook))
            for block in se_blocks:
                handles.append(block.register_forward_pre_hook(se_pre_hook))
                handles.append(
                    block.scale_activation.register_forward_hook(functools.partial(se_scale_hook, block=block))
                )
                handles.append(block.register_forward_hook(se_hook))
            if target_mod is not None:
                handles.append(target_mod.register_forward_hook(target_hook))
            if start_mod is not None:
                handles.append(start_mod.register_forward_hook(start_hook))
            yield state
        finally:
            for handle in handles:
                handle.remove()
            if grad_modes:  # an exception inside a hooked module: restore the grad mode it saved
                torch.set_grad_enabled(grad_modes[0])


@contextlib.contextmanager
def _authors(model: nn.Module) -> Iterator[tuple[str, ...]]:
    with no_inplace(model):
        yield ()


def check_supported(state: RelevancePass) -> None:
    """Raise :class:`MethodError` if a parameterised module without a rule ran under the rules."""
    if state.unsupported:
        listed = ", ".join(sorted(set(state.unsupported))[:5])
        raise MethodError(
            f"No relevance rule for {listed}. FG-CAM/LRP rules cover Conv2d, Linear, BatchNorm, "
            "element-wise activations and pooling; choose a CAM layer and target inside that part of the network."
        )

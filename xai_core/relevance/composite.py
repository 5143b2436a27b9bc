"""Rule sets: attach relevance rules to modules for one forward pass (zennit's ``Composite``).

A :class:`Composite` maps module types (and optionally module names) to
:class:`~xai_core.relevance.rule.Rule` objects, names a first-layer rule for the module
whose input *is* the model input tensor (not "has 3 channels": X-ray models take 1
channel) and lists the canonizers applied around the pass. Rule sets are registered by
name in :data:`RULE_SETS` (:func:`register_rule_set`): ``"crisp"`` (the default), ``"canonized"`` and
``"authors"``.

``relevance_rules(model, x, ...)`` is a context manager: on entry it applies the rule
set's canonizers and registers one forward hook per module that has a rule; on exit (in
``finally``) it removes the hooks and undoes the canonizers. The hooks are stateless per
call (every call wraps its own input/output in an autograd node), so a module reused
within one forward pass, like EfficientNet-Lite's shared ``_swish`` ReLU6, gets the rule
at each use. Operations with no rule (additions, concatenations, functional ReLU /
average pooling, flatten) propagate by their plain gradient, which under the
``g = R / a`` convention of :mod:`xai_core.relevance.rules` is LRP-0 (proportional
split, routing, identity).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.layers import resolve_layer
from xai_core.relevance.canonizers import Canonizer, MergeBatchNorm, NoInplace
from xai_core.relevance.rule import (
    ConstantGate,
    Gradient,
    Identity,
    Pool,
    RelevancePass,
    Rule,
    RuleContext,
    ZBox,
    ZPlus,
)

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

# Parameter-free or parameterised leaves that may run between two rules with their plain gradient.
_PASS_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.ZeroPad2d)


class Composite:
    """A rule set: which rule each module gets, and the canonizers around the pass.

    Args:
        layer_map: module type -> rule (subclasses match; the first type in a module's
            MRO that is mapped wins).
        first_map: module type -> rule for a module whose input is the model input
            itself (z^B at the convolution that takes the image).
        name_map: module name -> rule, before the types.
        canonizers: applied (in order) for the pass, undone (in reverse) after it.
        constant_gates: hold squeeze-excitation gates constant (torchvision's
            ``SqueezeExcitation`` and efficientnet_pytorch's inline ``_se_expand`` gate).
        description: one line for help texts.
    """

    def __init__(
        self,
        layer_map: Mapping[type[nn.Module], Rule],
        *,
        first_map: Mapping[type[nn.Module], Rule] | None = None,
        name_map: Mapping[str, Rule] | None = None,
        canonizers: Sequence[Canonizer] = (),
        constant_gates: bool = False,
        description: str = "",
    ) -> None:
        self.layer_map = dict(layer_map)
        self.first_map = dict(first_map or {})
        self.name_map = dict(name_map or {})
        self.canonizers = tuple(canonizers)
        self.constant_gates = constant_gates
        self.description = description

    def with_rules(
        self,
        layer_map: Mapping[type[nn.Module], Rule] | None = None,
        *,
        first_map: Mapping[type[nn.Module], Rule] | None = None,
        name_map: Mapping[str, Rule] | None = None,
        description: str | None = None,
    ) -> Composite:
        """A copy with some rules replaced or added (the canonizers kept)."""
        return Composite(
            {**self.layer_map, **(layer_map or {})},
            first_map={**self.first_map, **(first_map or {})},
            name_map={**self.name_map, **(name_map or {})},
            canonizers=self.canonizers,
            constant_gates=self.constant_gates,
            description=self.description if description is None else description,
        )

    @staticmethod
    def _by_type(table: Mapping[type[nn.Module], Rule], module: nn.Module) -> Rule | None:
        for cls in type(module).__mro__:
            if cls in table:
                return table[cls]
        return None

    def rule_for(self, module: nn.Module, name: str | None = None) -> Rule | None:
        """The rule ``module`` (called ``name``) gets in a hidden position, or None."""
        if name is not None and name in self.name_map:
            return self.name_map[name]
        return self._by_type(self.layer_map, module)

    def first_rule_for(self, module: nn.Module) -> Rule | None:
        """The rule ``module`` gets when its input is the model input, or None (then :meth:`rule_for`)."""
        return self._by_type(self.first_map, module)

    def module_rules(self, model: nn.Module) -> dict[nn.Module, Rule]:
        """Rules for particular modules of ``model`` (constant gates), before names and types."""
        if not self.constant_gates:
            return {}
        return {conv: ConstantGate() for conv in gate_modules(model)[1]}

    @contextlib.contextmanager
    def canonize(self, model: nn.Module, example: torch.Tensor) -> Iterator[tuple[str, ...]]:
        """Apply the canonizers for the block; yields the names of modules made identities."""
        with contextlib.ExitStack() as stack:
            identities: list[str] = []
            for canonizer in self.canonizers:
                identities.extend(stack.enter_context(canonizer.apply(model, example)).identities)
            yield tuple(identities)


def _standard_layers(*, canonized: bool, spread: bool = False) -> dict[type[nn.Module], Rule]:
    # ReLU's identity rule is its plain gradient under the ``R = a * g`` convention, so it needs no hook.
    return {
        nn.ReLU: Gradient(carry_constants=canonized),
        **{t: Identity() for t in IDENTITY_TYPES},
        **{t: Pool() for t in POOL_TYPES},
        nn.Conv2d: ZPlus(track_constants=canonized, spread=spread),
        nn.Linear: ZPlus(),
    }


#: Rule sets by name (ALGORITHMS.md section 3). "canonized" folds BatchNorm into the adjacent
#: layer and holds squeeze-excitation gates constant (keeps the evidence on real weights);
#: "crisp" (the default) adds :class:`~xai_core.relevance.rules.StrideSpread` at strided
#: convolutions (no stride checkerboard, docs/fgcam.md); "authors" passes BatchNorm through
#: as identity with no canonization (the official FG-CAM code). Add one with :func:`register_rule_set`.
RULE_SETS: dict[str, Composite] = {
    "crisp": Composite(
        _standard_layers(canonized=True, spread=True),
        first_map={nn.Conv2d: ZBox(mark_constant=True, spread=True)},
        canonizers=(MergeBatchNorm(), NoInplace()),
        constant_gates=True,
        description="canonized, and strided convolutions run at stride 1 on relevance shared over "
        "their stride-1 grid: no stride checkerboard",
    ),
    "canonized": Composite(
        _standard_layers(canonized=True),
        first_map={nn.Conv2d: ZBox(mark_constant=True)},
        canonizers=(MergeBatchNorm(), NoInplace()),
        constant_gates=True,
        description="BatchNorm folded into the layer before it, evidence kept on real weights (default)",
    ),
    "authors": Composite(
        _standard_layers(canonized=False),
        first_map={nn.Conv2d: ZBox()},
        canonizers=(NoInplace(),),
        description="the FG-CAM authors' rules (BatchNorm as identity), as in the paper's code",
    ),
}


#: The rule set FG-CAM, LRP and the explainers use unless told otherwise (docs/fgcam.md, "Crisp maps").
DEFAULT_RULES = "crisp"


def register_rule_set(name: str, composite: Composite, *, replace: bool = False) -> Composite:
    """Make ``composite`` available as ``rules=name`` to FG-CAM, LRP and :func:`relevance_rules`."""
    if name in RULE_SETS and not replace:
        raise ValueError(f"A rule set called {name!r} is already registered.")
    RULE_SETS[name] = composite
    for listener in _RULE_SET_LISTENERS:
        listener()
    return composite


def unregister_rule_set(name: str) -> None:
    """Remove the rule set registered as ``name`` (the explainers stop offering it)."""
    rule_set(name)
    del RULE_SETS[name]
    for listener in _RULE_SET_LISTENERS:
        listener()


_RULE_SET_LISTENERS: list[Callable[[], None]] = []


def on_rule_set_registered(listener: Callable[[], None]) -> None:
    """Call ``listener()`` after every :func:`register_rule_set` (the explainer registry offers the new name)."""
    _RULE_SET_LISTENERS.append(listener)


def rule_set(rules: str | Composite) -> Composite:
    """The :class:`Composite` registered as ``rules`` (or ``rules`` itself).

    Raises:
        MethodError: unknown name, naming the choices.
    """
    if isinstance(rules, Composite):
        return rules
    if rules not in RULE_SETS:
        raise MethodError(f"Unknown rule set {rules!r}. Valid choices: {', '.join(RULE_SETS)}.")
    return RULE_SETS[rules]


def check_rule_set(rules_name: str | Composite) -> str | Composite:
    """Return ``rules_name`` if it names a rule set (or is one), else raise :class:`MethodError`."""
    rule_set(rules_name)
    return rules_name


def rule_for(module: nn.Module, rules: str | Composite = DEFAULT_RULES) -> Rule | None:
    """The rule ``module`` gets by its type in the rule set ``rules`` (subclasses included), or None."""
    return rule_set(rules).rule_for(module)


def gate_modules(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Squeeze-excitation blocks: ``(torchvision SqueezeExcitation modules, gate-producing convs)``.

    torchvision's ``SqueezeExcitation`` returns ``scale(input) * input``; the
    efficientnet_pytorch ``MBConvBlock`` computes ``sigmoid(_se_expand(...)) * x`` inline,
    so there the gate is held constant by detaching ``_se_expand``'s output.
    """
    # torchvision is not imported for this (a second of start-up for every `import xai_core`):
    # a model holding torchvision's SqueezeExcitation has imported torchvision.ops.misc itself.
    se_type = getattr(sys.modules.get("torchvision.ops.misc"), "SqueezeExcitation", None)
    se_blocks = [m for m in model.modules() if se_type is not None and isinstance(m, se_type)]
    se_convs = [
        m._se_expand
        for m in model.modules()
        if getattr(m, "has_se", False) is True and isinstance(getattr(m, "_se_expand", None), nn.Module)
    ]
    return se_blocks, se_convs


#: model -> {rule set: {module name: whether its rule output may be the module's own tensor}}.
#: A module's first pass under a rule set copies its output (as every output was copied
#: before) and records whether a later operation modified the copy in place (ResNet's
#: ``out += identity``): ``False`` then, for good; else ``True``, and later passes skip the
#: copy (on EfficientNet-Lite0 about 50 copies of 1 to 6 MB per FG-CAM call).
_ALIASES: weakref.WeakKeyDictionary[nn.Module, weakref.WeakKeyDictionary[Composite, dict[str, bool]]] = (
    weakref.WeakKeyDictionary()
)
_ALIAS_ERROR = "created inside a custom Function"
"""Part of autograd's refusal of an in-place change to an aliased rule output (grad mode on)."""

#: One rule output of a pass: (module name, the tensor, its version when made, whether it is the module's own).
_Output = tuple[str, torch.Tensor, int, bool]


def _aliases(model: nn.Module, composite: Composite) -> dict[str, bool]:
    return _ALIASES.setdefault(model, weakref.WeakKeyDictionary()).setdefault(composite, {})


def _learn_aliases(known: dict[str, bool], outputs: list[_Output], *, refused: bool) -> None:
    """Record which rule outputs of a pass were modified in place (their version moved).

    ``refused``: autograd refused an in-place change to one of the pass's own tensors (it
    does not say which): none of them is used again.
    """
    for name, out, version, aliased in outputs:
        if out._version != version or (refused and aliased):
            known[name] = False
        else:
            known.setdefault(name, True)


@contextlib.contextmanager
def relevance_rules(
    model: nn.Module,
    x: torch.Tensor,
    *,
    start_layer: str | None = None,
    target_layer: str | None = None,
    rules: str | Composite = DEFAULT_RULES,
) -> Iterator[RelevancePass]:
    """Hook the rules for one forward pass of ``x`` (the exact tensor object passed to the model).

    Rules are active from the start of the forward pass until ``start_layer`` has run
    (or for the whole pass when ``start_layer`` is None). The start layer's output is
    kept (``state.start``) and the network continues on a detached leaf
    (``state.start_leaf``), so gradients of the logits w.r.t. it are the model's true
    gradients. The caller must hold ``model_lock`` and have the model in eval mode.

    With ``rules="canonized"`` the canonizers fold BatchNorms into their convolutions
    (which then need no hook at all: a folded BatchNorm is an exact identity and its
    plain gradient is the identity rule) and squeeze-excitation gates are constants of
    the forward pass. With ``rules="authors"`` every BatchNorm takes the identity rule.

    Args:
        model: the network.
        x: the input tensor the forward pass in the block receives.
        start_layer: where the rules stop (its output is kept), or None.
        target_layer: a module whose output is kept (``state.target``), ``"input"`` or None.
        rules: a registered rule set's name (:data:`RULE_SETS`) or a :class:`Composite`.

    Yields:
        The :class:`RelevancePass`, filled by the forward pass run in the block.

    Raises:
        LayerError: when the start or target layer runs more than once.
        MethodError: unknown rule set.
    """
    composite = rule_set(rules)
    state = RelevancePass()
    start_mod = resolve_layer(model, start_layer) if start_layer is not None else None
    target_mod = resolve_layer(model, target_layer) if target_layer not in (None, "input") else None
    handles = []
    names = {m: n for n, m in model.named_modules()}
    known = _aliases(model, composite)
    outputs: list[_Output] = []
    refused = False
    se_blocks = gate_modules(model)[0] if composite.constant_gates else []
    se_scales: dict[nn.Module, torch.Tensor] = {}
    grad_modes: list[bool] = []

    def pre_hook(_module: nn.Module, _inputs: tuple) -> None:
        # The module's own ops need no autograd record (the rule replaces their backward):
        # run them with grad off, which saves the tensors autograd would keep.
        grad_modes.append(torch.is_grad_enabled())
        if state.active:
            torch.set_grad_enabled(False)

    def rule_hook(
        module: nn.Module, inputs: tuple, output: object, *, rule: Rule | None, first: Rule | None, pushed: bool
    ) -> torch.Tensor | None:
        if pushed and grad_modes:
            torch.set_grad_enabled(grad_modes.pop())
        if not state.active or not isinstance(output, torch.Tensor) or not inputs:
            return None
        chosen = first if first is not None and inputs[0] is x else rule
        if chosen is None:
            return None
        name = names.get(module, "?")
        ctx.alias = known.get(name, False)
        new = chosen.forward(ctx, module, inputs[0], output)
        if isinstance(new, torch.Tensor):
            outputs.append((name, new, new._version, ctx.alias))
        return new

    def _watched(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
        # the tensor that goes on in place of the module's rule output: an in-place change to it
        # is one to the module's output in a pass without this hook (another start or target)
        outputs.append((names.get(module, "?"), out, out._version, False))
        return out

    def se_scale_hook(module: nn.Module, _inputs: tuple, output: object, *, block: nn.Module) -> None:
        if isinstance(output, torch.Tensor):
            se_scales[block] = output.detach()

    def se_hook(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor | None:
        torch.set_grad_enabled(grad_modes.pop())
        scale = se_scales.pop(module, None)
        if not state.active or scale is None or not inputs or not isinstance(inputs[0], torch.Tensor):
            return None
        return ctx.carry_constant(inputs[0], scale * inputs[0])  # a constant gate: relevance stays on the branch

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
        return _watched(module, leaf.clone())

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
        return _watched(module, output.clone())  # later in-place ops must not rewrite the target tensor

    with composite.canonize(model, x) as identities:
        ctx = RuleContext(x, state, frozenset(identities), names)
        special = composite.module_rules(model)
        try:
            for name, module in model.named_modules():
                rule = special.get(module) or composite.rule_for(module, name)
                first = composite.first_rule_for(module)
                if rule is None and first is None:
                    if not list(module.children()) and not isinstance(module, _PASS_TYPES):
                        handles.append(module.register_forward_hook(leaf_hook))
                    continue
                if first is None and not rule.hooked(ctx, name):
                    continue  # plain gradient: ReLU, and folded BatchNorms (exact identities)
                pushed = any(r is not None and r.grad_off for r in (rule, first))
                if pushed:
                    handles.append(module.register_forward_pre_hook(pre_hook))
                hook = functools.partial(rule_hook, rule=rule, first=first, pushed=pushed)
                handles.append(module.register_forward_hook(hook))
            for block in se_blocks:
                handles.append(block.register_forward_pre_hook(pre_hook))
                handles.append(
                    block.scale_activation.register_forward_hook(functools.partial(se_scale_hook, block=block))
                )
                handles.append(block.register_forward_hook(se_hook))
            if target_mod is not None:
                handles.append(target_mod.register_forward_hook(target_hook))
            if start_mod is not None:
                handles.append(start_mod.register_forward_hook(start_hook))
            try:
                yield state
            except RuntimeError as err:
                if _ALIAS_ERROR not in str(err):
                    raise
                refused = True  # an output an earlier pass saw unmodified was modified in place
                raise MethodError(
                    "A layer's output was modified in place during the forward pass, after the rules had "
                    "seen it unmodified. Run the call again: such outputs are copied from now on."
                ) from err
        finally:
            for handle in handles:
                handle.remove()
            if grad_modes:  # an exception inside a hooked module: restore the grad mode it saved
                torch.set_grad_enabled(grad_modes[0])
            _learn_aliases(known, outputs, refused=refused)
            outputs.clear()


def check_supported(state: RelevancePass) -> None:
    """Raise :class:`MethodError` if a parameterised module without a rule ran under the rules."""
    if state.unsupported:
        listed = ", ".join(sorted(set(state.unsupported))[:5])
        raise MethodError(
            f"No relevance rule for {listed}. FG-CAM/LRP rules cover Conv2d, Linear, BatchNorm, "
            "element-wise activations and pooling; choose a CAM layer and target inside that part of the network."
        )

"""Relevance rules as objects (zennit's ``BasicHook`` is the model).

A rule is what one module does under a rule set (:class:`~xai_core.relevance.composite.Composite`)
during one hooked forward pass: its :meth:`Rule.forward` receives the module, its input
and its output, and returns the output with the rule's backward attached
(:meth:`RuleContext.apply`), or ``None`` to leave the plain gradient.
The signal that flows backward is ``g = R / a`` (relevance per unit of activation, see
:mod:`xai_core.relevance.rules`), so a rule's :meth:`Rule.backward` maps the signal at the
module's output to the signal at its input.

Adding a rule is one subclass: override :meth:`Rule.backward` (what most rules need: the
forward tensors and the parameters as used in the forward pass are handed to it in a
:class:`Forward`), or :meth:`Rule.attach` for rules with more inputs than the module's
(z^B's bound images) or state shared with other layers (the canonized rules' constant units).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from xai_core.relevance import rules as maths


@dataclass
class RelevancePass:
    """What one hooked forward pass produced.

    Attributes:
        start: output of the start layer with the rule graph behind it (``[1, C, h, w]``),
            or None when no start layer was given (LRP starts at the logits).
        start_leaf: the detached leaf the rest of the network ran on (for true gradients).
        target: output of the target layer (differentiate the rule graph w.r.t. it).
        bounds: ``(low, high)`` images of the z^B rule, one pair per conv that took the model input.
        constant: ``id(tensor) -> (tensor, keep)``: ``keep()`` is a float mask, ``0`` at the
            units of a hooked tensor that are constants of the forward pass (a convolution's
            output where its inputs were all zero, so it equals its bias; carried through
            element-wise activations), else ``1``. Canonized rules only.
        fusable: ``id(tensor) -> (tensor, rule, conv input)`` for hidden-conv outputs, so an
            element-wise activation right after (a folded BatchNorm passes the very tensor
            on) runs the conv's rule in the same autograd node. Canonized rules only.
        active: False once the start layer has run (the rules stop there).
        calls: module name -> number of calls seen while the rules were active.
        unsupported: parameterised leaves with no rule that ran under the rules.
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


@dataclass
class RuleContext:
    """What the rules of one hooked forward pass share.

    Attributes:
        x: the model input (the very tensor object; a module whose input *is* it gets
            the rule set's first-layer rule).
        state: the pass's :class:`RelevancePass`.
        identities: names of modules a canonizer made exact identities (folded BatchNorms).
        names: module -> dotted name.
    """

    x: torch.Tensor
    state: RelevancePass
    identities: frozenset[str]
    names: dict[nn.Module, str]
    alias: bool = False

    def apply(self, grad_fn: Any, output: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """``output`` with the rule ``grad_fn`` attached (:func:`~xai_core.relevance.rules.apply_rule`).

        The output is the module's own tensor, not a copy, when the pass knows that no later
        operation modifies it in place (``alias``, set per module by the pass).
        """
        return maths.apply_rule(grad_fn, output, *inputs, alias=self.alias)

    def count(self, module: nn.Module) -> None:
        """Record one call of ``module`` under the rules."""
        name = self.names.get(module, "?")
        self.state.calls[name] = self.state.calls.get(name, 0) + 1

    def carry_constant(self, inp: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """An element-wise map's output keeps its input's constant units (canonized rules)."""
        hit = self.state.constant.get(id(inp))
        if hit is not None and new.shape == inp.shape:
            self.state.constant[id(new)] = (new, hit[1])
        return new


@dataclass(frozen=True)
class Forward:
    """The forward tensors a rule's backward reads, taken at forward time.

    Attributes:
        module: the module.
        x: its input (detached).
        y: its output (detached).
        params: its own parameters as the forward pass used them (detached; a canonizer
            may be undone before the backward runs).
    """

    module: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    params: dict[str, torch.Tensor]

    @property
    def weight(self) -> torch.Tensor:
        """The ``weight`` parameter as used in the forward pass."""
        return self.params["weight"]


class Rule:
    """A relevance rule for one kind of module (subclass it; see the module docstring).

    Attributes:
        grad_off: run the module's own forward without an autograd record (the rule
            replaces its backward, so nothing it would save is needed).
    """

    grad_off: ClassVar[bool] = True

    def hooked(self, ctx: RuleContext, name: str) -> bool:
        """Whether the module called ``name`` needs a hook at all (default: yes)."""
        return True

    def forward(self, ctx: RuleContext, module: nn.Module, inp: object, output: torch.Tensor) -> torch.Tensor | None:
        """The module's output with the rule attached, or None for the plain gradient.

        The default skips inputs that carry no relevance (no tensor, or one that does not
        require grad), counts the call and hands over to :meth:`attach`.
        """
        if not isinstance(inp, torch.Tensor) or not inp.requires_grad:
            return None
        ctx.count(module)
        return self.attach(ctx, module, inp, output)

    def attach(self, ctx: RuleContext, module: nn.Module, inp: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Attach :meth:`backward` to the output (default: the module's input gets the signal)."""
        params = {n: p.detach() for n, p in module.named_parameters(recurse=False)}
        fwd = Forward(module, inp.detach(), output.detach(), params)
        return ctx.apply(functools.partial(self.backward, fwd), output, inp)

    def backward(self, fwd: Forward, g_out: torch.Tensor) -> torch.Tensor:
        """Signal at the input from the signal ``g_out`` at the output (``R_in = x * g_in``).

        Only operations with vmap batching rules: K classes run in one batched backward.
        """
        raise NotImplementedError(f"{type(self).__name__} must define backward() or attach().")


class Gradient(Rule):
    """The plain gradient (ReLU: the identity rule under the ``R = a * g`` convention).

    Args:
        carry_constants: follow the canonized rules' constant units through the module
            (otherwise the module needs no hook at all).
    """

    grad_off = False

    def __init__(self, *, carry_constants: bool = False) -> None:
        self.carry_constants = carry_constants

    def hooked(self, ctx: RuleContext, name: str) -> bool:  # noqa: D102
        return self.carry_constants

    def forward(self, ctx: RuleContext, module: nn.Module, inp: object, output: torch.Tensor) -> None:  # noqa: D102
        if id(inp) in ctx.state.constant:
            ctx.carry_constant(inp, output)  # type: ignore[arg-type]


class Identity(Rule):
    """Identity rule ``R_in = R_out`` (BatchNorm, element-wise activations).

    A module a canonizer made an exact identity needs no hook. Right after a canonized
    hidden convolution (whose output tensor it receives), the convolution's z rule runs
    in the same autograd node with this module's output as the relevance-carrying output.
    """

    def hooked(self, ctx: RuleContext, name: str) -> bool:  # noqa: D102
        return name not in ctx.identities

    def attach(self, ctx: RuleContext, module: nn.Module, inp: torch.Tensor, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        producer = ctx.state.fusable.get(id(inp))
        if producer is not None and producer[0] is inp:
            conv_rule, conv_inp = producer[1], producer[2]
            fused = conv_rule.with_output(output.detach())
            new = ctx.apply(fused, output, conv_inp)
            ctx.state.constant[id(new)] = (new, fused.supported)
            return new
        fn = functools.partial(maths.identity_grad, inp.detach(), output.detach())
        return ctx.carry_constant(inp, ctx.apply(fn, output, inp))


class Pool(Rule):
    """LRP-0 on the clamped input for max/avg/adaptive pooling (:func:`~xai_core.relevance.rules.pool_grad`)."""

    def backward(self, fwd: Forward, g_out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return maths.pool_grad(fwd.module, fwd.x, fwd.y, g_out)


class ZPlus(Rule):
    """z+/z- rule, bias ignored, for ``Conv2d`` and ``Linear`` layers.

    Args:
        track_constants: (convolutions) the canonized refinement: input units that are
            constants of the forward pass take no relevance, and an identity-rule
            activation right after runs in the same node (:class:`~xai_core.relevance.rules.ZPlusConv`).
        spread: (convolutions) run strided convolutions at stride 1 after sharing each
            unit's relevance over the stride-1 grid (:class:`~xai_core.relevance.rules.StrideSpread`):
            no stride checkerboard.
    """

    def __init__(self, *, track_constants: bool = False, spread: bool = False) -> None:
        self.track_constants = track_constants
        self.spread = spread

    def attach(self, ctx: RuleContext, module: nn.Module, inp: torch.Tensor, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        xd, weight = inp.detach(), module.weight.detach()  # as used now: a canonizer may be undone before the backward
        if isinstance(module, nn.Linear):
            fn = functools.partial(maths.zplus_linear_grad, module, xd, output.detach(), weight=weight)
            return ctx.apply(fn, output, inp)
        if not self.track_constants:
            if self.spread:
                fn = maths.ZPlusConv(module, xd, output.detach(), weight=weight, spread=True)
            else:
                fn = functools.partial(maths.zplus_conv_grad, module, xd, output.detach(), weight=weight)
            return ctx.apply(fn, output, inp)
        hit = ctx.state.constant.get(id(inp))
        rule = maths.ZPlusConv(
            module, xd, output.detach(), weight=weight, constant=None if hit is None else hit[1], spread=self.spread
        )
        new = ctx.apply(rule, output, inp)
        ctx.state.constant[id(new)] = (new, rule.supported)
        ctx.state.fusable[id(new)] = (new, rule, inp)
        return new


class ZBox(Rule):
    """z^B rule for the convolution that takes the image, with per-image global bounds.

    The bounds ``low``/``high`` are images filled with each image's minimum and maximum;
    they receive relevance too (:func:`~xai_core.relevance.rules.zbox_conv_grads`).

    Args:
        mark_constant: (canonized) record the output units equal to the bias exactly
            (only zero inputs in their receptive field) as constants of the pass.
        spread: a strided first convolution runs at stride 1 after sharing each unit's
            relevance over the stride-1 grid (:class:`~xai_core.relevance.rules.StrideSpread`).
        bounds: fixed per-channel ``(low, high)`` of the normalised input (zennit's
            ``EpsilonGammaBox``: ``((0 - mean) / std, (1 - mean) / std)``) instead of each
            image's own minimum and maximum.
    """

    def __init__(
        self,
        *,
        mark_constant: bool = False,
        spread: bool = False,
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.mark_constant = mark_constant
        self.spread = spread
        self.bounds = bounds

    def attach(self, ctx: RuleContext, module: nn.Module, inp: torch.Tensor, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        xd, weight = inp.detach(), module.weight.detach()
        if self.bounds is None:
            dims = tuple(range(1, xd.dim()))
            low = xd.amin(dim=dims, keepdim=True).expand_as(xd).clone().requires_grad_(True)
            high = xd.amax(dim=dims, keepdim=True).expand_as(xd).clone().requires_grad_(True)
        else:
            shape = (1, -1) + (1,) * (xd.dim() - 2)
            lo, hi = (torch.as_tensor(b, dtype=xd.dtype, device=xd.device).reshape(shape) for b in self.bounds)
            low = lo.expand_as(xd).clone().requires_grad_(True)
            high = hi.expand_as(xd).clone().requires_grad_(True)
        ctx.state.bounds.append((low, high))
        fn = functools.partial(
            maths.zbox_conv_grads,
            module,
            xd,
            low.detach(),
            high.detach(),
            output.detach(),
            weight=weight,
            spread=self.spread,
        )
        new = ctx.apply(fn, output, inp, low, high)
        if self.mark_constant and module.bias is not None and output.dim() == 4:
            out, bias = output.detach(), module.bias.detach()[:, None, None]
            ctx.state.constant[id(new)] = (new, functools.partial(maths.differs_mask, out, bias))
        return new


class ConstantGate(Rule):
    """A gate held constant: its output is detached, so relevance stays on the gated branch.

    For the convolution producing an efficientnet_pytorch squeeze-excitation gate
    (``sigmoid(_se_expand(...)) * x``), in the canonized rule set.
    """

    def forward(self, ctx: RuleContext, module: nn.Module, inp: object, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return output.detach()

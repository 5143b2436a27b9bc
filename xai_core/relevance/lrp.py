"""LRP baselines of the FG-CAM paper's comparison: LRP, CLRP and SGLRP.

Rules: z+/z- in hidden convolutions and Linear layers (bias ignored), z^B at the
convolution that takes the image, identity for BatchNorm and element-wise activations,
LRP-0 on the clamped input for pooling (the same rule set as FG-CAM,
:mod:`xai_core.relevance.composite`). Only the starting relevance at the logits differs:

- ``lrp``: the class logit ``y_t`` at class t, 0 elsewhere.
- ``clrp`` (Gu et al. 2018): LRP of the class minus LRP of the dual target "all other
  classes", whose start is ``y_t / (N - 1)`` at every other class (same total as the
  class). Relevance is linear in its start, so this is one pass with the start
  ``y_t * (onehot - (1 - onehot) / (N - 1))``. The map is returned signed (the original
  clips it at 0 for display).
- ``sglrp`` (Iwana et al. 2019): the softmax gradient, ``p_t (1 - p_t)`` at t and
  ``-p_t p_n`` at every other class n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xai_core.errors import MethodError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.hooks.layers import resolve_layer
from xai_core.relevance.composite import DEFAULT_RULES, Composite, check_rule_set, check_supported, relevance_rules
from xai_core.relevance.fgcam import (
    ClassSpec,
    RelevanceResult,
    check_input,
    check_logits,
    propagate_pass,
    resolve_classes,
)

VARIANTS = ("lrp", "clrp", "sglrp")


def start_relevance(logits: torch.Tensor, class_idx: torch.Tensor | Sequence[int], variant: str) -> torch.Tensor:
    """Starting relevance at the logits for K classes per image.

    Args:
        logits: ``[N, n]``.
        class_idx: ``[N, K]`` LongTensor (or ``[K]``, the same classes for every image).
        variant: ``"lrp"``, ``"clrp"`` or ``"sglrp"``.

    Returns:
        ``[N, K, n]`` relevance vectors.
    """
    y = logits.detach()
    n = y.shape[1]
    idx = resolve_classes(class_idx, y)  # [N, K]
    onehot = torch.nn.functional.one_hot(idx, n).to(y.dtype)  # [N, K, n]
    y_t = y.gather(1, idx)[..., None]  # [N, K, 1]
    if variant == "lrp":
        return onehot * y_t
    if variant == "clrp":
        if n < 2:
            raise MethodError("CLRP needs at least 2 outputs (its dual target is all other classes).")
        return y_t * (onehot - (1 - onehot) / (n - 1))
    p = torch.softmax(y, dim=1)
    p_t = p.gather(1, idx)[..., None]
    return onehot * p_t * (1 - p_t) - (1 - onehot) * p_t * p[:, None, :]


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    *,
    class_idx: ClassSpec,
    variant: str = "lrp",
    target_layer: str = "input",
    rules: str | Composite = DEFAULT_RULES,
) -> RelevanceResult:
    """LRP / CLRP / SGLRP relevance of K classes per image, summed over channels.

    Args:
        model: the network (left as found, as for :func:`~xai_core.relevance.fg_cam`).
        x: input ``[N, C, H, W]``.
        class_idx: the classes (see :data:`~xai_core.relevance.fgcam.ClassSpec`; a callable
            gets the logits of the same forward pass).
        variant: ``"lrp"``, ``"clrp"`` or ``"sglrp"``.
        target_layer: module name whose output receives the relevance, or ``"input"``.
        rules: ``"crisp"`` (default), ``"canonized"`` (BatchNorm folded) or ``"authors"``
            (BatchNorm as identity); see :func:`~xai_core.relevance.fg_cam`.

    Returns:
        :class:`~xai_core.relevance.fgcam.RelevanceResult`, relevance ``[N, K, h, w]`` at
        the target's resolution.

    Raises:
        MethodError: unknown variant, bad input or class, or a parameterised layer with no rule.
        LayerNotFoundError: unknown target layer.
    """
    if variant not in VARIANTS:
        raise MethodError(f"Unknown LRP variant {variant!r}. Valid choices: {', '.join(VARIANTS)}.")
    check_rule_set(rules)
    check_input(x)
    if target_layer != "input":
        resolve_layer(model, target_layer)
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        with relevance_rules(model, x_in, target_layer=target_layer, rules=rules) as st:
            logits = model(x_in)
            check_logits(logits, x.shape[0])
            classes = resolve_classes(class_idx, logits)
            check_supported(st)
            st.start = logits
            start = start_relevance(logits, classes, variant)
            relevance = propagate_pass(st, x_in, start, target_layer, "the logits")
    return RelevanceResult(relevance, classes, logits.detach())

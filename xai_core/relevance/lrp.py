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
from xai_core.relevance.composite import check_supported, relevance_rules
from xai_core.relevance.fgcam import _check_classes, _check_inputs, _propagate

VARIANTS = ("lrp", "clrp", "sglrp")


def start_relevance(logits: torch.Tensor, class_idx: Sequence[int], variant: str) -> torch.Tensor:
    """Starting relevance at the logits for K classes.

    Args:
        logits: ``[1, N]``.
        class_idx: the K target classes.
        variant: ``"lrp"``, ``"clrp"`` or ``"sglrp"``.

    Returns:
        ``[K, N]`` relevance vectors.
    """
    y = logits.detach()[0]
    n = y.shape[0]
    idx = torch.as_tensor(list(class_idx), device=y.device)
    onehot = torch.nn.functional.one_hot(idx, n).to(y.dtype)  # [K, N]
    y_t = y[idx][:, None]
    if variant == "lrp":
        return onehot * y_t
    if variant == "clrp":
        if n < 2:
            raise MethodError("CLRP needs at least 2 outputs (its dual target is all other classes).")
        return y_t * (onehot - (1 - onehot) / (n - 1))
    p = torch.softmax(y, dim=0)
    p_t = p[idx][:, None]
    return onehot * p_t * (1 - p_t) - (1 - onehot) * p_t * p[None, :]


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    *,
    class_idx: Sequence[int],
    variant: str = "lrp",
    target_layer: str = "input",
) -> torch.Tensor:
    """LRP / CLRP / SGLRP relevance of K classes, summed over channels.

    Args:
        model: the network (left as found, as for :func:`~xai_core.relevance.fg_cam`).
        x: input ``[1, C, H, W]``.
        class_idx: the K classes.
        variant: ``"lrp"``, ``"clrp"`` or ``"sglrp"``.
        target_layer: module name whose output receives the relevance, or ``"input"``.

    Returns:
        Signed relevance ``[K, h, w]`` at the target's resolution.

    Raises:
        MethodError: unknown variant, bad input or class, or a parameterised layer with no rule.
        LayerNotFoundError: unknown target layer.
    """
    if variant not in VARIANTS:
        raise MethodError(f"Unknown LRP variant {variant!r}. Valid choices: {', '.join(VARIANTS)}.")
    classes = _check_inputs(model, x, class_idx)
    if target_layer != "input":
        resolve_layer(model, target_layer)
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        with relevance_rules(model, x_in, target_layer=target_layer) as st:
            logits = model(x_in)
        if logits.dim() != 2 or logits.shape[0] != 1:
            raise MethodError(f"The model must return logits [1, N]; got shape {tuple(logits.shape)}.")
        _check_classes(classes, logits.shape[1])
        check_supported(st)
        st.start = logits
        return _propagate(st, x_in, start_relevance(logits, classes, variant), target_layer, "the logits")

"""Perturbation CAM methods: Score-CAM and Ablation-CAM (ALGORITHMS.md section 1).

Both run many masked forward passes; they are batched, run under
``torch.inference_mode`` and skip work whose result is known exactly (a channel that is
zero everywhere gives an all-zero mask or changes nothing when ablated; identical masks
give identical scores). All K classes are scored from the same forward passes.

Exact speed-ups (the same arithmetic, so the same maps up to float rounding):
- Score-CAM feeds its masked batches in ``channels_last`` memory format (oneDNN's
  preferred layout for batched convolutions on CPU; the model is not changed) and
  builds each batch's masks only when it runs (peak memory one batch, not C masks).
- Ablation-CAM runs the part of the network before the layer once per image (see
  :func:`~xai_core.hooks.capture.rest_of_network`); each batch runs only the rest.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from xai_core.hooks.capture import ReplayMismatch, replace_output, rest_of_network
from xai_core.methods.context import CamContext
from xai_core.methods.gradient import weighted_sum

log = logging.getLogger(__name__)


def score_masks(activations: torch.Tensor, size: tuple[int, int], *, variant: str = "probability") -> torch.Tensor:
    """Upsampled, per-channel min-max scaled masks ``[C, 1, H, W]`` from ``[1, C, h, w]``.

    ``variant="probability"`` follows the Score-CAM and FG-CAM authors' code (bilinear,
    ``align_corners=False``; a constant channel gives a zero mask).
    ``variant="logit_softmax"`` follows pytorch-grad-cam (``align_corners=True``, ``+1e-8``).
    """
    align = variant == "logit_softmax"
    up = F.interpolate(activations, size=size, mode="bilinear", align_corners=align)[0]  # [C, H, W]
    flat = up.reshape(up.shape[0], -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo)[:, None, None]
    if align:
        masks = (up - lo[:, None, None]) / (span + 1e-8)
    else:
        masks = torch.where(span > 0, (up - lo[:, None, None]) / span.clamp(min=1e-30), torch.zeros_like(up))
    # A constant channel's mask is 0 in exact arithmetic (0 / (0 + 1e-8), or 0 / 0 taken
    # as 0), but bilinear weights that do not sum to exactly 1 leave ~1 ulp of ripple in
    # the upsampled constant, which the division would blow up into an arbitrary mask.
    low = activations[0].reshape(activations.shape[1], -1)
    constant = low.amax(dim=1) == low.amin(dim=1)
    masks = torch.where(constant[:, None, None], torch.zeros_like(masks), masks)
    return masks[:, None]


def _unique_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the first occurrence of each distinct row of ``t`` [C, D], and each row's group."""
    uniq, inverse = torch.unique(t, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), t.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(t.shape[0]), reduce="amin")
    return first, inverse


def score_cam(ctx: CamContext, *, batch_size: int = 32, variant: str = "probability") -> torch.Tensor:
    """Score-CAM (Wang et al., 2020): ``sum_k s_k A_k``.

    ``variant="probability"``: ``s_k`` = probability of the class for ``x * M_k`` (the
    authors' definition, default). ``variant="logit_softmax"``: the class logit on each
    masked input, softmax-ed across channels (pytorch-grad-cam's variant).

    Returns:
        ``[K, h, w]`` signed maps.
    """
    a = ctx.activations
    c = a.shape[1]
    # Identical low-resolution channels (after min-max) give identical masks and scores.
    low = a[0].reshape(c, -1)
    lo, hi = low.min(dim=1, keepdim=True).values, low.max(dim=1, keepdim=True).values
    normalised = torch.where(hi > lo, (low - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(low))
    first, inverse = _unique_rows(normalised)
    if variant not in ("probability", "logit_softmax"):
        raise ValueError(f"variant must be 'probability' or 'logit_softmax', got {variant!r}")
    size = tuple(ctx.x.shape[-2:])
    n = len(first)
    scores = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            masks = score_masks(a[:, first[start : start + batch_size]], size, variant=variant)  # per channel
            batch = (ctx.x * masks).contiguous(memory_format=torch.channels_last)
            logits = ctx.module(batch)
            out = logits if variant == "logit_softmax" else ctx.probabilities(logits)
            scores.append(out[:, ctx.class_idx])
            if ctx.progress is not None:
                ctx.progress(min(start + batch_size, n), n)
    unique_scores = torch.cat(scores)  # [U, K]
    weights = unique_scores[inverse].T.clone()  # [K, C]
    if variant == "logit_softmax":
        weights = torch.softmax(weights, dim=1)
    return weighted_sum(weights, a)


def _forward_replaced(ctx: CamContext, replacement: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, N]`` with the layer's output replaced by ``replacement`` ``[B, C, h, w]``.

    The straightforward path: the whole network runs, the layer's output is swapped by
    a hook. The part before the layer runs on the single input (B times cheaper than
    on a batch); some models take the batch size from their input (for example
    ``x.view(inputs.size(0), -1)``), and for them the input is repeated B times.
    """
    b = replacement.shape[0]
    with replace_output(ctx.module, ctx.layer_name, lambda _out: replacement):
        try:
            logits = ctx.module(ctx.x)
            if logits.shape[0] == b:
                return logits
        except RuntimeError:
            pass
        return ctx.module(ctx.x.expand(b, *ctx.x.shape[1:]))


def _ablation_batches(ctx: CamContext, active: torch.Tensor, batch_size: int):
    """``(channels, ablated outputs [B, C, h, w])`` per batch of ``active`` channels."""
    a = ctx.activations
    for start in range(0, len(active), batch_size):
        chans = active[start : start + batch_size]
        ablated = a.repeat(len(chans), 1, 1, 1)
        ablated[torch.arange(len(chans)), chans] = 0
        yield start + len(chans), chans, ablated


def ablation_cam(ctx: CamContext, *, batch_size: int = 32, upstream_once: bool = True) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy, 2020): ``w_k = (y_c - y_c^(k)) / y_c``.

    ``y_c^(k)`` is the class logit with channel k of the layer's output set to zero. The
    rest of the network runs on a batch of ablated copies of the captured output;
    channels that are zero everywhere are skipped (their weight is exactly 0).

    With ``upstream_once`` (default) the part of the network before the layer runs once
    per image, not once per batch (:func:`~xai_core.hooks.capture.rest_of_network`).
    That path is first checked to give the model's own logits for the unablated
    output; where it does not (or the model's control flow defeats it), every batch
    runs the whole network, as with ``upstream_once=False``. The maps are the same.

    Returns:
        ``[K, h, w]`` signed maps.
    """
    a = ctx.activations
    c = a.shape[1]
    base = ctx.logits[0, ctx.class_idx]  # [K]
    active = torch.nonzero(a[0].reshape(c, -1).abs().amax(dim=1) > 0).flatten()
    weights = torch.zeros(len(ctx.class_idx), c, dtype=a.dtype)
    n = len(active)

    def store(done: int, chans: torch.Tensor, logits: torch.Tensor) -> None:
        weights[:, chans] = ((base[:, None] - logits[:, ctx.class_idx].T) / base[:, None]).to(a.dtype)
        if ctx.progress is not None:
            ctx.progress(done, n)

    if upstream_once and n:
        try:
            # no_grad, not inference_mode: the rest of the network may work in place on
            # the replacement (DenseNet's relu(inplace=True)), which inference tensors forbid.
            with torch.no_grad(), rest_of_network(ctx.module, ctx.layer_name, ctx.x) as rest:
                check = rest(a.clone())
                if check.shape == ctx.logits.shape and torch.allclose(check, ctx.logits, rtol=1e-4, atol=1e-5):
                    for done, chans, ablated in _ablation_batches(ctx, active, batch_size):
                        logits = rest(ablated)
                        if logits.shape[0] != len(chans):
                            raise ReplayMismatch("the output's batch does not follow the layer's")
                        store(done, chans, logits)
                    return weighted_sum(weights, a)
                log.info("Ablation-CAM: the rest of the network alone does not reproduce the logits; running it whole")
        except (ReplayMismatch, RuntimeError, AttributeError, TypeError) as err:
            log.info("Ablation-CAM: running the whole network per batch (%s)", err)
    with torch.inference_mode():
        for done, chans, ablated in _ablation_batches(ctx, active, batch_size):
            store(done, chans, _forward_replaced(ctx, ablated))
    return weighted_sum(weights, a)

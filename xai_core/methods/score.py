"""Perturbation CAM methods: Score-CAM and Ablation-CAM (ALGORITHMS.md section 1).

Both run many masked forward passes; they are batched across channels *and* images, run
under ``torch.inference_mode`` and skip work whose result is known exactly (a channel
that is zero everywhere gives an all-zero mask or changes nothing when ablated; identical
masks give identical scores). All K classes are scored from the same forward passes.

Exact speed-ups (the same arithmetic, so the same maps up to float rounding):
- Score-CAM feeds its masked batches in ``channels_last`` memory format (oneDNN's
  preferred layout for batched convolutions on CPU; the model is not changed) and
  builds each batch's masks only when it runs (peak memory one batch, not C masks).
- Ablation-CAM runs the part of the network before the layer once for all images (see
  :func:`~xai_core.hooks.capture.rest_of_network`); each batch runs only the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from xai_core.errors import MethodError
from xai_core.hooks.capture import ReplayMismatch, replace_output, rest_of_network
from xai_core.methods.context import CamContext, Progress, batch_memo

log = logging.getLogger(__name__)


def score_masks(activations: torch.Tensor, size: tuple[int, int], *, variant: str = "probability") -> torch.Tensor:
    """Upsampled, per-channel min-max scaled masks ``[C, 1, H, W]`` from ``[1, C, h, w]``.

    (Score-CAM batches mix images: ``activations`` is then ``[1, B, h, w]`` with one
    channel of some image per position; each mask depends on its own channel only.)

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
    first = torch.full((uniq.shape[0],), t.shape[0], dtype=torch.long, device=t.device)
    first = first.scatter_reduce(0, inverse, torch.arange(t.shape[0], device=t.device), reduce="amin")
    return first, inverse


VARIANTS = ("probability", "logit_softmax")


def _unique_channels(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, the channels whose min-max scaled maps are distinct.

    Identical low-resolution channels (after min-max) give identical masks and scores,
    so each is scored once.

    Returns:
        ``(image [U], channel [U], inverse [N, C])``: the U channels to score and, for
        each image and channel, the row of its score among the U.
    """
    n, c = activations.shape[:2]
    images, channels, inverses = [], [], []
    offset = 0
    for i in range(n):
        low = activations[i].reshape(c, -1)
        lo, hi = low.min(dim=1, keepdim=True).values, low.max(dim=1, keepdim=True).values
        normalised = torch.where(hi > lo, (low - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(low))
        first, inverse = _unique_rows(normalised)
        images.append(torch.full_like(first, i))
        channels.append(first)
        inverses.append(inverse + offset)
        offset += len(first)
    return torch.cat(images), torch.cat(channels), torch.stack(inverses)


def score_cam_weights(
    module: torch.nn.Module,
    x: torch.Tensor,
    activations: torch.Tensor,
    class_idx: torch.Tensor,
    *,
    probabilities: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    progress: Progress | None = None,
    variant: str = "probability",
) -> torch.Tensor:
    """Score-CAM channel weights: the class's probability for each masked input ``x_n * M_nc``.

    ``M_nc`` is image n's channel c upsampled to the input size and min-max scaled to
    [0, 1] (:func:`score_masks`). The probability is the *model's own* (softmax for
    single-label models, sigmoid for multi-label chest X-ray models), as in the
    Score-CAM and FG-CAM authors' code. Masked inputs of all images share batches.

    Args:
        module: the network, in eval mode.
        x: prepared inputs ``[N, C_in, H, W]``.
        activations: the layer's outputs ``[N, C, h, w]``.
        class_idx: ``[N, K]`` classes per image.
        probabilities: logits ``[B, n]`` -> probabilities.
        batch_size: masked inputs per forward pass.
        progress: ``progress(done, total)`` in masked inputs, after each batch.
        variant: ``"probability"`` (the authors') or ``"logit_softmax"`` (pytorch-grad-cam:
            the class logit of each masked input, softmax-ed across channels).

    Returns:
        Weights ``[N, K, C]``.
    """
    if variant not in VARIANTS:
        raise MethodError(f"Score-CAM variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")
    if int(batch_size) < 1:
        raise MethodError(f"batch_size must be >= 1, got {batch_size}.")
    batch_size = int(batch_size)
    image, channel, inverse = _unique_channels(activations)
    size = tuple(x.shape[-2:])
    total = len(image)
    scores = []
    memo = batch_memo(progress)  # finished batches of a stopped run with these inputs
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            bi, bc = image[start : start + batch_size], channel[start : start + batch_size]
            done = ("score_cam", variant, batch_size, total, start)
            if memo is not None and done in memo:
                scores.append(memo[done].to(x.device))
            else:
                masks = score_masks(activations[bi, bc][None], size, variant=variant)  # [B, 1, H, W]
                batch = (x[bi] * masks).contiguous(memory_format=torch.channels_last)
                logits = module(batch).float()
                out = logits if variant == "logit_softmax" else probabilities(logits)
                scores.append(out.gather(1, class_idx[bi]))  # [B, K]
                if memo is not None:
                    memo[done] = scores[-1].clone()
            if progress is not None:
                progress(min(start + batch_size, total), total)
    weights = torch.cat(scores)[inverse].permute(0, 2, 1)  # [N, K, C]
    if variant == "logit_softmax":
        weights = torch.softmax(weights, dim=2)
    return weights.clone().to(activations.dtype)


def score_cam_channel_weights(ctx: CamContext, *, batch_size: int = 32, variant: str = "probability") -> torch.Tensor:
    """Score-CAM's channel weights ``[N, K, C]`` for the CAM driver (:func:`score_cam_weights`)."""
    return score_cam_weights(
        ctx.module,
        ctx.x,
        ctx.activations,
        ctx.class_idx,
        probabilities=ctx.probabilities,
        batch_size=batch_size,
        progress=ctx.progress,
        variant=variant,
    )


def _forward_replaced(ctx: CamContext, image: int, replacement: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, n]`` of image ``image`` with the layer's output replaced by ``replacement``.

    The straightforward path: the whole network runs and the layer's output is swapped
    by a hook. The part before the layer runs on the single image (B times cheaper than
    on a batch, and the same arithmetic as the capture pass); some models take the batch
    size from their input (for example ``x.view(inputs.size(0), -1)``), and for them the
    image is repeated B times.
    """
    b = replacement.shape[0]
    x = ctx.x[image : image + 1]
    with replace_output(ctx.module, ctx.layer_name, lambda _out: replacement):
        try:
            logits = ctx.module(x)
            if logits.shape[0] == b:
                return logits
        except RuntimeError:
            pass
        return ctx.module(x.expand(b, *x.shape[1:]))


def _ablation_batches(ctx: CamContext, image: torch.Tensor, channel: torch.Tensor, batch_size: int):
    """``(done, images [B], channels [B], ablated outputs [B, C, h, w])`` per batch."""
    a = ctx.activations
    for start in range(0, len(image), batch_size):
        bi, bc = image[start : start + batch_size], channel[start : start + batch_size]
        ablated = a[bi].clone()
        ablated[torch.arange(len(bi), device=a.device), bc] = 0
        yield start + len(bi), bi, bc, ablated


def ablation_cam_weights(ctx: CamContext, *, batch_size: int = 32, upstream_once: bool = True) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy, 2020): ``w_c = (y_k - y_k^(c)) / y_k``.

    ``y_k^(c)`` is the class logit with channel c of the layer's output set to zero. The
    rest of the network runs on batches of ablated copies of the captured outputs (of
    all images together); channels that are zero everywhere are skipped (their weight
    is exactly 0).

    With ``upstream_once`` (default) the part of the network before the layer runs once
    for all images, not once per batch (:func:`~xai_core.hooks.capture.rest_of_network`).
    That path is first checked to give the model's own logits for the unablated
    outputs; where it does not (or the model's control flow defeats it), every batch
    runs the whole network, as with ``upstream_once=False``. The maps are the same.

    Returns:
        Channel weights ``[N, K, C]``.
    """
    if int(batch_size) < 1:
        raise MethodError(f"batch_size must be >= 1, got {batch_size}.")
    batch_size = int(batch_size)
    a = ctx.activations
    n, c = a.shape[:2]
    base = ctx.logits.gather(1, ctx.class_idx).float()  # [N, K]
    image, channel = torch.nonzero(a.reshape(n, c, -1).abs().amax(dim=2) > 0, as_tuple=True)
    weights = torch.zeros(n, ctx.class_idx.shape[1], c, dtype=torch.float32, device=a.device)
    total = len(image)
    memo = batch_memo(ctx.progress)  # finished batches of a stopped run with these inputs

    def once(tag: tuple, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        if memo is not None and tag in memo:
            return memo[tag]
        out = run()
        if memo is not None:
            memo[tag] = out.detach().clone()
        return out

    def store(done: int, bi: torch.Tensor, bc: torch.Tensor, logits: torch.Tensor) -> None:
        after = logits.float().gather(1, ctx.class_idx[bi])  # [B, K]
        weights[bi, :, bc] = (base[bi] - after) / base[bi]
        if ctx.progress is not None:
            ctx.progress(done, total)

    if upstream_once and total:
        try:
            # no_grad, not inference_mode: the rest of the network may work in place on
            # the replacement (DenseNet's relu(inplace=True)), which inference tensors forbid.
            everyone = torch.arange(n, device=a.device)
            with torch.no_grad(), rest_of_network(ctx.module, ctx.layer_name, ctx.x) as rest:
                check = rest(a.clone(), rows=everyone)
                if check.shape == ctx.logits.shape and torch.allclose(
                    check.float(), ctx.logits.float(), rtol=1e-4, atol=1e-5
                ):
                    for done, bi, bc, ablated in _ablation_batches(ctx, image, channel, batch_size):
                        tag = ("ablation_cam", "rest", batch_size, total, done)
                        logits = once(tag, lambda ablated=ablated, bi=bi: rest(ablated, rows=bi))
                        if logits.shape[0] != len(bi):
                            raise ReplayMismatch("the output's batch does not follow the layer's")
                        store(done, bi, bc, logits)
                    return weights.to(a.dtype)
                log.info("Ablation-CAM: the rest of the network alone does not reproduce the logits; running it whole")
        except (ReplayMismatch, RuntimeError, AttributeError, TypeError, ValueError) as err:  # ValueError: token layers
            log.info("Ablation-CAM: running the whole network per batch (%s)", err)
    done = 0
    with torch.inference_mode():
        for i in range(n):  # whole-network passes: one image per batch (its upstream is run once per batch)
            mine = image == i
            for _, bi, bc, ablated in _ablation_batches(ctx, image[mine], channel[mine], batch_size):
                done += len(bi)
                tag = ("ablation_cam", "whole", batch_size, total, done)
                store(done, bi, bc, once(tag, lambda i=i, ablated=ablated: _forward_replaced(ctx, i, ablated)))
    return weights.to(a.dtype)

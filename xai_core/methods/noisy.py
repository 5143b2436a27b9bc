"""Methods that average over noisy or scaled copies of the input: Smooth Grad-CAM++, SS-CAM, IS-CAM.

Their random numbers are reproducible: image n's noise comes from its own generator,
seeded with ``seed`` (drawn on the CPU, then moved to the inputs' device), so an image
explained alone or in a batch, on any device, gets the same map, and the same draws
as torchcam gets from ``torch.manual_seed(seed)`` for a batch of one image.

SS-CAM and IS-CAM follow torchcam 0.5.0 (its Score-CAM family): channel ``k``'s mask is
the channel min-max scaled at the layer's resolution (``(A - min) / (max - min + 1e-8)``)
and then upsampled (bilinear, ``align_corners=False``); the weights are the softmax,
across channels, of the mean class logit of the masked inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xai_core.errors import MethodError
from xai_core.hooks.capture import capture
from xai_core.methods.base import class_gradients
from xai_core.methods.context import CamContext
from xai_core.methods.gradient import grad_cam_pp_weights


def image_noise(seed: int, shape: tuple[int, ...], samples: int, std: float, device: torch.device) -> torch.Tensor:
    """``samples`` draws of ``N(0, std^2)`` noise of ``shape`` from a generator seeded with ``seed``.

    Returns:
        ``[S, *shape]`` on ``device``.
    """
    g = torch.Generator().manual_seed(int(seed))
    draws = [torch.randn(shape, generator=g) * std for _ in range(samples)]
    return torch.stack(draws).to(device)


SMOOTH_EPS = 1e-8
"""torchcam's Smooth Grad-CAM++ denominator guard. It matters: Grad-CAM++'s ``g^2`` is often
of the order of 1e-8 (a gradient of ``w / (h w)`` behind global average pooling)."""


def smooth_grad_cam_pp(ctx: CamContext, *, num_samples: int = 4, std: float = 0.3, seed: int = 0) -> torch.Tensor:
    """Smooth Grad-CAM++ (Omeiza et al., 2019): Grad-CAM++ with derivatives averaged over noisy inputs.

    ``D_p = mean_s g_s^p`` over ``num_samples`` inputs ``x + N(0, std^2)`` (p = 1, 2, 3);
    ``alpha = D_2 / (2 D_2 + (sum_ab A_ab) D_3)``, ``w_c = sum_ij alpha_cij relu(D_1,cij)``;
    the map weights the clean input's activations ``A`` (``eps`` = :data:`SMOOTH_EPS`
    in the denominator, as torchcam). All noisy copies of all images
    run in one forward and one batched backward pass.

    torchcam's ``SmoothGradCAMpp`` differs in two places (``tests/test_methods_peers.py``
    shows both on a constructed case): it weights the activations of the *last noisy*
    input, not the clean one, and it uses that last sample's gradient, not the average,
    in ``relu(.)``; with one sample its map is Grad-CAM++ of a noisy image.

    Returns:
        Weights ``[N, K, C]``.
    """
    if int(num_samples) < 1 or not std >= 0:
        raise MethodError(f"num_samples must be >= 1 and std >= 0; got {num_samples}, {std}.")
    s, (n, k) = int(num_samples), ctx.class_idx.shape
    x = ctx.x.detach()
    noise = torch.stack([image_noise(seed, tuple(x.shape[1:]), s, std, x.device) for _ in range(n)], dim=1)
    noisy = (x[None] + noise.to(x.dtype)).reshape(s * n, *x.shape[1:])
    with capture(ctx.module, ctx.layer_name) as cap:
        logits = ctx.module(noisy)
        grads = class_gradients(logits.gather(1, ctx.class_idx.repeat(s, 1)), cap[ctx.layer_name])
    grads = grads.float().reshape(s, n, k, *grads.shape[2:])
    d1, d2, d3 = grads.mean(0), grads.pow(2).mean(0), grads.pow(3).mean(0)
    return grad_cam_pp_weights(ctx.activations, d1, d2, d3, eps=SMOOTH_EPS)


def torchcam_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Torchcam's Score-CAM masks ``[N, C, H, W]``: per-channel min-max at the layer's resolution, then upsampled."""
    lo = activations.amin(dim=(2, 3), keepdim=True)
    shifted = activations - lo
    scaled = shifted / (shifted.amax(dim=(2, 3), keepdim=True) + 1e-8)
    return F.interpolate(scaled, size=size, mode="bilinear", align_corners=False)


def _masked_logits(ctx: CamContext, image: int, masks: torch.Tensor, batch_size: int, scale: float = 1.0):
    """Class logits ``[C, K]`` of image ``image`` times each of ``masks`` ``[C, H, W]`` (times ``scale``)."""
    x = ctx.x[image : image + 1]
    out = []
    for start in range(0, masks.shape[0], batch_size):
        batch = x * masks[start : start + batch_size, None]
        if scale != 1.0:
            batch = batch * scale
        logits = ctx.module(batch.contiguous(memory_format=torch.channels_last)).float()
        out.append(logits[:, ctx.class_idx[image]])
    return torch.cat(out)


def _check(batch_size: int, num_samples: int) -> tuple[int, int]:
    if int(batch_size) < 1 or int(num_samples) < 1:
        raise MethodError(f"batch_size and num_samples must be >= 1; got {batch_size}, {num_samples}.")
    return int(batch_size), int(num_samples)


def ss_cam(
    ctx: CamContext, *, batch_size: int = 32, num_samples: int = 35, std: float = 2.0, seed: int = 0
) -> torch.Tensor:
    """SS-CAM (Wang et al., 2020): Score-CAM with noise added to each mask, averaged over samples.

    ``w_c = softmax_c(mean_s y(x * (M_c + noise_s)))``, the noise ``N(0, std^2)`` drawn at
    the input's resolution for every channel (torchcam's definition and defaults). Cost:
    ``num_samples x C`` forward passes per image.

    Returns:
        Weights ``[N, K, C]``.
    """
    batch_size, num_samples = _check(batch_size, num_samples)
    n, c = ctx.activations.shape[:2]
    masks = torchcam_masks(ctx.activations, tuple(ctx.x.shape[-2:]))
    weights = torch.zeros(n, c, ctx.class_idx.shape[1], device=ctx.x.device)
    total, done = n * num_samples * c, 0
    with torch.inference_mode():
        for i in range(n):
            g = torch.Generator().manual_seed(int(seed))
            for _ in range(num_samples):
                noise = (torch.randn(masks.shape[1:], generator=g) * std).to(masks.device)
                weights[i] += _masked_logits(ctx, i, masks[i] + noise, batch_size)
                done += c
                if ctx.progress is not None:
                    ctx.progress(done, total)
    return torch.softmax(weights / num_samples, dim=1).permute(0, 2, 1).clone()


def is_cam(ctx: CamContext, *, batch_size: int = 32, num_samples: int = 10) -> torch.Tensor:
    """IS-CAM (Naidu et al., 2020): Score-CAM with each mask's score integrated along a path of scales.

    Sample ``i = 1..S`` feeds ``c_i x * M_c`` with ``c_i = sum_{j<=i} j / S`` (the cumulative
    coefficient of the authors' code and torchcam); ``w_c = softmax_c(mean_i y(c_i x M_c))``.
    Cost: ``num_samples x C`` forward passes per image.

    Returns:
        Weights ``[N, K, C]``.
    """
    batch_size, num_samples = _check(batch_size, num_samples)
    n, c = ctx.activations.shape[:2]
    masks = torchcam_masks(ctx.activations, tuple(ctx.x.shape[-2:]))
    weights = torch.zeros(n, c, ctx.class_idx.shape[1], device=ctx.x.device)
    total, done = n * num_samples * c, 0
    with torch.inference_mode():
        for i in range(n):
            coeff = 0.0
            for s in range(num_samples):
                coeff += (s + 1) / num_samples
                weights[i] += _masked_logits(ctx, i, masks[i], batch_size, scale=coeff)
                done += c
                if ctx.progress is not None:
                    ctx.progress(done, total)
    return torch.softmax(weights / num_samples, dim=1).permute(0, 2, 1).clone()

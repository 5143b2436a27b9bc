"""Gradient-weighted CAM methods (ALGORITHMS.md section 1).

Each method maps the captured activations ``A`` ``[N, C, h, w]`` of N images and the
gradients of each image's K class logits w.r.t. its ``A``, ``grads`` ``[N, K, C, h, w]``,
to channel weights ``[N, K, C]`` (``*_weights``) or per-position components
``[N, K, C, h, w]`` (``*_components``); the CAM driver sums them over the channels (or,
with ``eigen_smooth``, projects them on their first principal component). The functions
without suffix (HiResCAM, EigenGrad-CAM) give the signed maps ``[N, K, h, w]`` directly
(no ReLU, no scaling: those are later, separate steps). Pure functions: new tensors
out, arguments untouched.
"""

from __future__ import annotations

import torch

from xai_core.methods.blocks import block_channels
from xai_core.methods.smoothing import principal_projection

EPS = 1e-7


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_c w[n, k, c] * A[n, c]``: weights ``[N, K, C]`` times ``[N, C, h, w]`` -> ``[N, K, h, w]``."""
    return torch.einsum("nkc,nchw->nkhw", weights, activations)


def grad_cam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017, eq. 1-2): ``alpha_c = mean_ij g_cij``, ``[N, K, C]``."""
    return grads.mean(dim=(3, 4))


def grad_cam_pp_weights(
    activations: torch.Tensor,
    grads: torch.Tensor,
    g2: torch.Tensor | None = None,
    g3: torch.Tensor | None = None,
    eps: float = EPS,
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., 2018, eq. 19), closed form for an exponential score.

    ``a_cij = g^2 / (2 g^2 + (sum_ab A_cab) g^3)`` (0 where ``g^2`` is 0),
    ``w_c = sum_ij a_cij relu(g_cij)``. ``eps`` (default ``EPS``, as pytorch-grad-cam)
    keeps the denominator away from 0. ``g2``/``g3`` replace ``g^2``/``g^3`` (Smooth
    Grad-CAM++ passes their averages over noisy inputs, and torchcam's ``eps = 1e-8``).

    Returns:
        ``[N, K, C]``.
    """
    g2 = grads.pow(2) if g2 is None else g2
    g3 = g2 * grads if g3 is None else g3
    sum_a = activations.sum(dim=(2, 3), keepdim=True)[:, None]  # [N, 1, C, 1, 1]
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(g2 != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp(min=0)).sum(dim=(3, 4))


def xgrad_cam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al., 2020, eq. 11): ``w_c = sum_ij g_cij A_cij / (sum_ij A_cij + eps)``, ``[N, K, C]``.

    Per block of channels on small CPU maps (:mod:`xai_core.methods.blocks`: no OpenMP
    region per op on a loaded CPU; the same weights).
    """
    per = block_channels(grads, dim=2)
    if per is None:
        return _xgrad_block(activations, grads)
    parts = zip(activations.split(per, dim=1), grads.split(per, dim=2))
    return torch.cat([_xgrad_block(a, g) for a, g in parts], dim=2)


def _xgrad_block(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    sum_a = activations.sum(dim=(2, 3))[:, None]  # [N, 1, C]
    return (grads * activations[:, None]).sum(dim=(3, 4)) / (sum_a + EPS)


def hires_cam_components(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): ``g_c * A_c`` per position, ``[N, K, C, h, w]``."""
    return grads * activations[:, None]


def hires_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM maps ``sum_c g_c * A_c``, element-wise, no averaging, ``[N, K, h, w]``."""
    return hires_cam_components(activations, grads).sum(dim=2)


def layer_cam_components(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Layer-CAM (Jiang et al., 2021, eq. 5-6): ``relu(g_c) * A_c`` per position, ``[N, K, C, h, w]``."""
    return grads.clamp(min=0) * activations[:, None]


def grad_cam_elementwise_components(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM element-wise (pytorch-grad-cam): ``relu(g_c * A_c)`` per position, ``[N, K, C, h, w]``.

    HiResCAM's products with each negative one dropped before the channel sum, so no
    channel can cancel another's evidence at a position.
    """
    return (grads * activations[:, None]).clamp(min=0)


def shapley_cam_weights(activations: torch.Tensor, grads: torch.Tensor, hvp: torch.Tensor) -> torch.Tensor:
    """ShapleyCAM (Cai, 2025): ``w_c = mean_ij (g_cij - 1/2 (H A)_cij)``, ``[N, K, C]``.

    The second-order Taylor estimate of each channel's Shapley value of the class score;
    ``H A`` is the Hessian of the score w.r.t. the activations times the activations. Where
    the network after the layer is piecewise linear, ``H A = 0`` and ShapleyCAM is Grad-CAM.
    """
    return (grads - 0.5 * hvp).mean(dim=(3, 4))


def eigen_grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """EigenGrad-CAM (pytorch-grad-cam): first principal component of ``g_c * A_c``, ``[N, K, h, w]``.

    Like Eigen-CAM on the gradient-weighted activations, so class-specific. The sign is
    fixed to correlate positively with HiResCAM's map ``sum_c g_c A_c``.
    """
    return principal_projection(hires_cam_components(activations, grads))


COMPARISONS = ("mean", "probability")
"""Finer-CAM references: ``"mean"`` (torchcam; the paper) or ``"probability"`` (pytorch-grad-cam)."""


def finer_target(
    logits: torch.Tensor, class_idx: torch.Tensor, *, alpha: float, references: int, comparison: str
) -> torch.Tensor:
    """Finer-CAM's contrastive score ``[N, K]`` for each image's K classes.

    The references of class ``c`` are the ``references`` other classes whose logits are
    closest to ``y_c`` (ties broken by class order). ``comparison="mean"`` (torchcam):
    ``y_c - alpha * mean_j y_j``. ``comparison="probability"`` (pytorch-grad-cam's
    ``FinerWeightedTarget``): ``sum_j p_j (y_c - alpha y_j) / (sum_j p_j + 1e-9)`` with the
    softmax probabilities ``p_j`` (differentiated too, as pytorch-grad-cam does).

    Args:
        logits: ``[N, n]`` (part of the autograd graph).
        class_idx: ``[N, K]``.
        alpha: comparison strength.
        references: number of reference classes (capped by ``n - 1``).
        comparison: one of :data:`COMPARISONS`.
    """
    n_classes = logits.shape[1]
    t = min(int(references), n_classes - 1)
    if t < 1:
        raise ValueError("Finer-CAM needs a model with at least two outputs.")
    y = logits.gather(1, class_idx)  # [N, K]
    detached = logits.detach()
    distance = (detached[:, None, :] - detached.gather(1, class_idx)[:, :, None]).abs()  # [N, K, n]
    distance.scatter_(2, class_idx[:, :, None], float("inf"))
    order = torch.sort(distance, dim=2, stable=True).indices[:, :, :t]  # [N, K, t]
    y_ref = logits[:, None, :].expand(-1, class_idx.shape[1], -1).gather(2, order)  # [N, K, t]
    if comparison == "mean":
        return y - alpha * y_ref.mean(dim=2)
    p = torch.softmax(logits, dim=1)[:, None, :].expand(-1, class_idx.shape[1], -1).gather(2, order)
    return (p * (y[:, :, None] - alpha * y_ref)).sum(dim=2) / (p.sum(dim=2) + 1e-9)

"""Gradient-weighted CAM methods (ALGORITHMS.md section 1).

Each function maps the captured activations ``A`` ``[N, C, h, w]`` of N images and the
gradients of each image's K class logits w.r.t. its ``A``, ``grads`` ``[N, K, C, h, w]``,
to signed maps ``[N, K, h, w]`` (no ReLU, no scaling: those are later, separate steps).
Pure functions: new tensors out, arguments untouched.
"""

from __future__ import annotations

import torch

EPS = 1e-7


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_c w[n, k, c] * A[n, c]``: weights ``[N, K, C]`` times ``[N, C, h, w]`` -> ``[N, K, h, w]``."""
    return torch.einsum("nkc,nchw->nkhw", weights, activations)


def grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017, eq. 1-2): ``alpha_c = mean_ij g_cij``."""
    return weighted_sum(grads.mean(dim=(3, 4)), activations)


def grad_cam_pp(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., 2018, eq. 19), closed form for an exponential score.

    ``a_cij = g^2 / (2 g^2 + (sum_ab A_cab) g^3)`` (0 where the gradient is 0),
    ``w_c = sum_ij a_cij relu(g_cij)``. ``EPS`` keeps the denominator away from 0.
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)[:, None]  # [N, 1, C, 1, 1]
    alpha = g2 / (2 * g2 + sum_a * g3 + EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return weighted_sum((alpha * grads.clamp(min=0)).sum(dim=(3, 4)), activations)


def xgrad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al., 2020, eq. 11): ``w_c = sum_ij g_cij A_cij / (sum_ij A_cij + eps)``."""
    sum_a = activations.sum(dim=(2, 3))[:, None]  # [N, 1, C]
    return weighted_sum((grads * activations[:, None]).sum(dim=(3, 4)) / (sum_a + EPS), activations)


def hires_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): ``sum_c g_c * A_c``, element-wise, no averaging."""
    return (grads * activations[:, None]).sum(dim=2)


def layer_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Layer-CAM (Jiang et al., 2021, eq. 5-6): ``sum_c relu(g_c) * A_c``."""
    return (grads.clamp(min=0) * activations[:, None]).sum(dim=2)

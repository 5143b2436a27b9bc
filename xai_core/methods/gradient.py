"""Gradient-weighted CAM methods (ALGORITHMS.md section 1).

Each function maps the captured activations ``A`` ``[1, C, h, w]`` and the gradients of
K class logits w.r.t. ``A``, ``grads`` ``[K, C, h, w]``, to K signed maps ``[K, h, w]``
(no ReLU, no scaling: those are later, separate steps). Pure functions: new tensors out,
arguments untouched.
"""

from __future__ import annotations

import torch

EPS = 1e-7


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_k w[K, k] * A[k]``: channel weights ``[K, C]`` times ``[1, C, h, w]`` -> ``[K, h, w]``."""
    return torch.einsum("kc,chw->khw", weights, activations[0])


def grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017, eq. 1-2): ``alpha_k = mean_ij g_kij``."""
    return weighted_sum(grads.mean(dim=(2, 3)), activations)


def grad_cam_pp(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., 2018, eq. 19), closed form for an exponential score.

    ``a_kij = g^2 / (2 g^2 + (sum_ab A_kab) g^3)`` (0 where the gradient is 0),
    ``w_k = sum_ij a_kij relu(g_kij)``. ``EPS`` keeps the denominator away from 0.
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)  # [1, C, 1, 1]
    alpha = g2 / (2 * g2 + sum_a * g3 + EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return weighted_sum((alpha * grads.clamp(min=0)).sum(dim=(2, 3)), activations)


def xgrad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al., 2020, eq. 11): ``w_k = sum_ij g_kij A_kij / (sum_ij A_kij + eps)``."""
    sum_a = activations.sum(dim=(2, 3))  # [1, C]
    return weighted_sum((grads * activations).sum(dim=(2, 3)) / (sum_a + EPS), activations)


def hires_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): ``sum_k g_k * A_k``, element-wise, no averaging."""
    return (grads * activations).sum(dim=1)


def layer_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Layer-CAM (Jiang et al., 2021, eq. 5-6): ``sum_k relu(g_k) * A_k``."""
    return (grads.clamp(min=0) * activations).sum(dim=1)

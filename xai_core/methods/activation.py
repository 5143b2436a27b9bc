"""Methods that need no gradient: CAM (a linear head) and Eigen-CAM (class-agnostic)."""

from __future__ import annotations

import torch

from xai_core.methods.gradient import weighted_sum


def cam(activations: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al., 2016, eq. 2): ``sum_c W[k, c] A_c``.

    Args:
        activations: ``[N, C, h, w]``, the feature map that global average pooling reads.
        class_weights: ``[N, K, C]``, the rows of the final linear layer for each image's K classes.

    Returns:
        ``[N, K, h, w]`` signed maps.
    """
    return weighted_sum(class_weights, activations)


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin, 2020): projection on the first principal direction.

    Each image's ``A`` is read as ``hw`` samples of ``C`` features, centred per channel
    (as in pytorch-grad-cam), and projected on the first right singular vector. The
    SVD's sign is arbitrary; it is fixed here so that the map correlates positively with
    the channel-summed activation (the object the network "sees" is positive).

    Args:
        activations: ``[N, C, h, w]``.

    Returns:
        ``[N, 1, h, w]`` signed maps (the same for every class).
    """
    n, c, h, w = activations.shape
    m = activations.reshape(n, c, h * w).transpose(1, 2).double()  # [N, hw, C]
    m = m - m.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = torch.einsum("npc,nc->np", m, vh[:, 0])  # [N, hw]
    reference = activations.sum(dim=1).reshape(n, -1).double()
    agree = ((proj - proj.mean(1, keepdim=True)) * (reference - reference.mean(1, keepdim=True))).sum(1)
    proj = torch.where(agree[:, None] < 0, -proj, proj)
    return proj.reshape(n, 1, h, w).to(activations.dtype)

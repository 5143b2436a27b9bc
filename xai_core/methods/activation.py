"""Methods that need no gradient: CAM (a linear head) and Eigen-CAM (class-agnostic)."""

from __future__ import annotations

import torch

from xai_core.methods.gradient import weighted_sum


def cam(activations: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al., 2016, eq. 2): ``sum_k W[c, k] A_k``.

    Args:
        activations: ``[1, C, h, w]``, the feature map that global average pooling reads.
        class_weights: ``[K, C]``, the rows of the final linear layer for the K classes.

    Returns:
        ``[K, h, w]`` signed maps.
    """
    return weighted_sum(class_weights, activations)


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin, 2020): projection on the first principal direction.

    ``A`` is read as ``hw`` samples of ``C`` features, centred per channel (as in
    pytorch-grad-cam), and projected on the first right singular vector. The SVD's sign
    is arbitrary; it is fixed here so that the map correlates positively with the
    channel-summed activation (the object the network "sees" is positive).

    Returns:
        ``[1, h, w]`` signed map (the same for every class).
    """
    _, c, h, w = activations.shape
    m = activations[0].reshape(c, h * w).T.double()  # [hw, C]
    m = m - m.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = m @ vh[0]
    reference = activations[0].sum(dim=0).reshape(-1).double()
    if torch.dot(proj - proj.mean(), reference - reference.mean()) < 0:
        proj = -proj
    return proj.reshape(1, h, w).to(activations.dtype)

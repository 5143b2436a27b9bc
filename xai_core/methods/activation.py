"""Methods that need no gradient: CAM (a linear head) and Eigen-CAM (class-agnostic)."""

from __future__ import annotations

import torch

from xai_core.methods.blocks import serial_blocks
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


def fem_weights(activations: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """FEM (Fuad et al., 2020): each channel weighted by the share of its positions above ``mean + k std``.

    The k-sigma rule (population standard deviation over the positions) marks a channel's
    unusually strong responses; channels with more of them weigh more. Class-agnostic.
    Computed per block of channels (:func:`~xai_core.methods.blocks.serial_blocks`): at a
    network's last layer (1280 x 7 x 7) the five whole-tensor ops took 60 ms on a loaded
    CPU, 0.8 ms idle; in blocks about 1 ms either way, and the same weights.

    Args:
        activations: ``[N, C, h, w]``.
        k: the number of standard deviations.

    Returns:
        ``[N, 1, C]`` weights in [0, 1].
    """
    return torch.cat([_fem_block(block, k) for block in serial_blocks(activations)], dim=2)


def _fem_block(activations: torch.Tensor, k: float) -> torch.Tensor:
    mean = activations.mean(dim=(2, 3), keepdim=True)
    std = activations.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (activations > mean + k * std).to(activations.dtype).mean(dim=(2, 3))[:, None]


def random_weights(class_idx: torch.Tensor, channels: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """RandomCAM's weights ``[N, K, C]``, uniform in [-1, 1) (a sanity-check baseline).

    Class ``c``'s weights are drawn from a generator seeded with ``(seed, c)``, on the CPU
    (so every device gives the same numbers), whatever the batch: an image explained alone
    or in a batch gets the same map, and two calls with the same seed agree.
    """
    rows = {}
    for c in class_idx.unique().tolist():
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(c))
        rows[c] = torch.rand(channels, generator=g, dtype=torch.float64) * 2 - 1
    table = torch.stack([rows[c] for c in class_idx.flatten().tolist()]).reshape(*class_idx.shape, channels)
    return table.to(device=class_idx.device, dtype=dtype)


KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")
"""Kernels of KPCA-CAM (scikit-learn's ``KernelPCA`` names and defaults)."""


def _kernel_matrix(m: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """scikit-learn's pairwise kernels of the rows of ``m`` ``[B, P, C]`` (coef0 = 1, degree = 3)."""
    dot = m @ m.transpose(1, 2)
    if kernel == "linear":
        return dot
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + 1.0)
    if kernel == "poly":
        return (gamma * dot + 1.0) ** 3
    if kernel == "rbf":
        sq = m.pow(2).sum(-1)
        return torch.exp(-gamma * (sq[:, :, None] + sq[:, None, :] - 2 * dot).clamp(min=0))
    if kernel == "cosine":
        unit = m / m.norm(dim=-1, keepdim=True).clamp(min=1e-300)
        return unit @ unit.transpose(1, 2)
    raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")


def kpca_cam(activations: torch.Tensor, *, kernel: str = "sigmoid", gamma: float = 0.0) -> torch.Tensor:
    """KPCA-CAM (Karmani et al., 2024): the first kernel principal component of the feature maps.

    As pytorch-grad-cam's ``KPCA_CAM`` (scikit-learn ``KernelPCA(n_components=1)``): the
    ``h w`` positions, centred per channel, are samples; the kernel matrix is centred in
    feature space and its leading eigenvector, times the square root of its eigenvalue,
    is the map. ``gamma = 0`` means scikit-learn's default ``1 / C``. The sign is fixed to
    correlate positively with the channel-summed activation. Batched over images in
    float64 (``torch.linalg.eigh``). Class-agnostic.

    Args:
        activations: ``[N, C, h, w]``.
        kernel: one of :data:`KERNELS`.
        gamma: kernel coefficient (``0``: ``1 / C``).

    Returns:
        ``[N, 1, h, w]`` maps.
    """
    n, c, h, w = activations.shape
    m = torch.nan_to_num(activations.reshape(n, c, h * w).transpose(1, 2).double())
    m = m - m.mean(dim=1, keepdim=True)
    gamma = float(gamma) if gamma > 0 else 1.0 / c
    k = _kernel_matrix(m, kernel, gamma)
    k = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(k)
    proj = vectors[:, :, -1] * values[:, -1:].clamp(min=0).sqrt()  # [N, hw]
    reference = activations.sum(dim=1).reshape(n, -1).double()
    agree = ((proj - proj.mean(1, keepdim=True)) * (reference - reference.mean(1, keepdim=True))).sum(1)
    proj = torch.where(agree[:, None] < 0, -proj, proj)
    return proj.reshape(n, 1, h, w).to(activations.dtype)

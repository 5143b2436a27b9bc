"""What the CAM driver does around every method: sums, smoothing and multi-layer fusion.

Principal-component smoothing, test-time augmentation smoothing and multi-layer fusion
are pytorch-grad-cam's ``eigen_smooth``, ``aug_smooth`` and list of target layers, and
torchcam's ``fuse_cams``.

A CAM-family method returns one of three things, and :func:`to_maps` turns each into maps:

* channel weights ``[N, K, C]``: the map is ``sum_c w_c A_c``;
* per-position components ``[N, K, C, h, w]``: the map is their sum over ``c``;
* finished maps ``[N, K, h, w]`` (Eigen-CAM, KPCA-CAM, EigenGrad-CAM: already a projection).

With ``eigen_smooth`` the first two are projected on their first principal component
instead of summed (:func:`principal_projection`); finished maps are left as they are (as
pytorch-grad-cam leaves Eigen-CAM and EigenGrad-CAM). All functions are pure and batched;
tensors stay on their device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xai_core.errors import MethodError

FUSIONS = ("mean", "max")
"""Multi-layer fusion: ``"mean"`` (pytorch-grad-cam) or ``"max"`` (torchcam ``fuse_cams``)."""

AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple((flip, f) for flip in (False, True) for f in (0.9, 1.0, 1.1))
"""pytorch-grad-cam's default test-time augmentations: horizontal flip x multiply by 0.9, 1, 1.1."""

SCALE_EPS = 1e-7
"""pytorch-grad-cam's ``scale_cam_image``: ``(m - min) / (max - min + 1e-7)``."""


def principal_projection(components: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Projection of each ``[C, h, w]`` stack on its first principal direction.

    As pytorch-grad-cam's ``get_2d_projection``: the ``h w`` positions are samples of ``C``
    features, centred per feature; the map is their projection on the first right
    singular vector. The SVD's sign is arbitrary (pytorch-grad-cam keeps whatever LAPACK
    returns, so its map is sometimes the negative); here it is fixed so that the map
    correlates positively with ``reference`` (default: the channel sum, i.e. the map
    without smoothing).

    Args:
        components: ``[..., C, h, w]``.
        reference: ``[..., h, w]`` or ``None``.

    Returns:
        ``[..., h, w]`` in ``components``' dtype.
    """
    *lead, c, h, w = components.shape
    m = torch.nan_to_num(components.reshape(-1, c, h * w).transpose(1, 2).double())  # [B, hw, C]
    m = m - m.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = torch.einsum("bpc,bc->bp", m, vh[:, 0])
    ref = (components.sum(dim=-3) if reference is None else reference).reshape(-1, h * w).double()
    agree = ((proj - proj.mean(1, keepdim=True)) * (ref - ref.mean(1, keepdim=True))).sum(1)
    proj = torch.where(agree[:, None] < 0, -proj, proj)
    return proj.reshape(*lead, h, w).to(components.dtype)


def to_maps(out: torch.Tensor, activations: torch.Tensor, *, eigen_smooth: bool = False) -> torch.Tensor:
    """Maps ``[N, K, h, w]`` from a method's weights, components or maps (see module docstring).

    Raises:
        MethodError: for any other shape.
    """
    n, c, h, w = activations.shape
    if out.dim() == 3 and out.shape[0] == n and out.shape[2] == c:
        if eigen_smooth:
            return principal_projection(out[..., None, None] * activations[:, None])
        return torch.einsum("nkc,nchw->nkhw", out, activations)
    if out.dim() == 5 and out.shape[0] == n and tuple(out.shape[2:]) == (c, h, w):
        return principal_projection(out) if eigen_smooth else out.sum(dim=2)
    if out.dim() == 4 and out.shape[0] == n:
        return out
    raise MethodError(
        f"A CAM method must return weights [N, K, C], components [N, K, C, h, w] or maps [N, K, h, w] for "
        f"activations {tuple(activations.shape)}; got {tuple(out.shape)}."
    )


def relu_minmax(maps: torch.Tensor) -> torch.Tensor:
    """ReLU, then ``(m - min) / (max - min + 1e-7)`` per map over the last two dims (pytorch-grad-cam)."""
    m = maps.clamp(min=0)
    lo = m.amin(dim=(-2, -1), keepdim=True)
    m = m - lo
    return m / (m.amax(dim=(-2, -1), keepdim=True) + SCALE_EPS)


def augment(x: torch.Tensor, flip: bool, factor: float) -> torch.Tensor:
    """One test-time augmentation of the inputs: optional horizontal flip, then a multiplication."""
    y = x.flip(-1) if flip else x
    return y * factor if factor != 1.0 else y


def fuse_layers(maps: list[torch.Tensor], how: str, input_size: tuple[int, int]) -> torch.Tensor:
    """One map per image and class from the maps of several layers.

    Each layer's map is ReLU'd and min-max scaled at its own resolution (as both peers do
    before fusing) and resized (bilinear, ``align_corners=False``), then either

    * ``"mean"`` (pytorch-grad-cam's list of target layers): resized to the input
      resolution, averaged and min-max scaled again; or
    * ``"max"`` (torchcam ``fuse_cams``): resized to the largest layer resolution and
      combined by the element-wise maximum.

    Each mode works at its peer's resolution, so the fused maps are the peers' (a map
    resized twice differs a little from one resized once).

    Args:
        maps: ``[N, K, h_l, w_l]`` per layer.
        how: one of :data:`FUSIONS`.
        input_size: ``(H, W)`` of the input.

    Returns:
        ``[N, K, h, w]`` in [0, 1]: at the input resolution (``"mean"``) or at the largest
        layer resolution (``"max"``).
    """
    if how not in FUSIONS:
        raise MethodError(f"layer_fusion must be one of {', '.join(FUSIONS)}; got {how!r}.")
    if how == "mean":
        size = tuple(input_size)
    else:
        size = max((tuple(m.shape[-2:]) for m in maps), key=lambda s: s[0] * s[1])
    scaled = []
    for m in maps:
        m = relu_minmax(m)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        scaled.append(m)
    stacked = torch.stack(scaled)
    if how == "max":
        return stacked.amax(dim=0)
    return relu_minmax(stacked.mean(dim=0))

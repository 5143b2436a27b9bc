"""FM-G-CAM: fused multi-class Grad-CAM (ALGORITHMS.md section 2; fm-g-cam.txt section 3).

Input: K signed per-class maps at the layer's resolution, computed by any CAM-family
base method from the *unmodified* activations (the published library's in-place defect,
which scales rank k's activations by ranks 1..k-1's weights, is not reproduced).
Steps: 1/C mean, filtering (each position keeps only its strongest class), L2
normalisation, end activation, one min-max over all K maps together, then colouring.
Everything after the maps is cheap and model-free, so display controls re-run only this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xai_core.errors import MethodError

NORMALISATIONS = ("reference", "per_class", "off")
ACTIVATIONS = ("relu", "elu", "gelu", "none")


@dataclass(frozen=True)
class FusedMap:
    """The fused map at the layer's resolution.

    Attributes:
        maps: ``[K, h, w]`` in [0, 1], class k's value where it owns the position, 0 elsewhere
            (before the activation a non-owner is exactly 0, so after ReLU/ELU/GELU and
            min-max it is the common background value).
        owner: ``[h, w]`` index in 0..K-1 of the class that owns each position.
    """

    maps: torch.Tensor
    owner: torch.Tensor


def filter_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: at each position keep only the class with the largest (signed) value.

    Ties go to the lower rank. Returns ``(filtered [K, h, w], owner [h, w])``.
    """
    owner = maps.argmax(dim=0)  # first maximum: the lower rank wins ties
    keep = F.one_hot(owner, maps.shape[0]).permute(2, 0, 1).to(maps.dtype)
    return maps * keep, owner


def l2_normalise(maps: torch.Tensor, mode: str = "reference") -> torch.Tensor:
    """Eq. 5-6, in one of three modes.

    - ``"reference"``: what the authors' library computes and what the paper's figures
      show: ``F.normalize(S, p=2, dim=1)`` on ``[K, h, w]``, i.e. every image column of
      every class map gets unit L2 norm (norms floored at 1e-12).
    - ``"per_class"``: each class map divided by its own L2 norm over all positions,
      which matches the paper's prose about balancing weak and strong classes.
    - ``"off"``: unchanged.
    """
    if mode == "reference":
        return F.normalize(maps, p=2, dim=1)
    if mode == "per_class":
        norms = maps.flatten(1).norm(p=2, dim=1).clamp(min=1e-12)
        return maps / norms[:, None, None]
    if mode == "off":
        return maps
    raise MethodError(f"normalise must be one of {', '.join(NORMALISATIONS)}; got {mode!r}.")


def end_activation(maps: torch.Tensor, name: str = "relu") -> torch.Tensor:
    """Section 4 of the paper: ReLU (default), ELU (alpha 1) or GELU (exact erf form)."""
    if name == "relu":
        return F.relu(maps)
    if name == "elu":
        return F.elu(maps)
    if name == "gelu":
        return F.gelu(maps)
    if name == "none":
        return maps
    raise MethodError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}.")


def joint_minmax(maps: torch.Tensor) -> torch.Tensor:
    """One min-max over all K maps together; a constant input gives zeros, never NaN."""
    lo, hi = maps.min(), maps.max()
    if not torch.isfinite(hi - lo) or hi - lo <= 0:
        return torch.zeros_like(maps)
    return (maps - lo) / (hi - lo)


def fm_g_cam(
    cams: torch.Tensor,
    *,
    channels: int | None = None,
    normalise: str = "reference",
    activation: str = "relu",
    filter: bool = True,  # noqa: A002 - the paper's word
) -> FusedMap:
    """Fuse K per-class maps into one FM-G-CAM map.

    Args:
        cams: ``[K, h, w]`` signed per-class maps ``sum_c alpha_c^k A_c`` from the base method.
        channels: C, for the paper's ``1/C`` (eq. 3); it matters for ELU/GELU without
            normalisation. ``None`` treats the maps as already averaged.
        normalise: ``"reference"``, ``"per_class"`` or ``"off"`` (see :func:`l2_normalise`).
        activation: ``"relu"``, ``"elu"``, ``"gelu"`` or ``"none"``.
        filter: apply eq. 4 (off only to inspect unfiltered maps).

    Returns:
        A :class:`FusedMap` with maps in [0, 1].
    """
    if cams.dim() != 3:
        raise MethodError(f"cams must be [K, h, w], got shape {tuple(cams.shape)}.")
    maps = cams / channels if channels else cams.clone()
    if filter:
        maps, owner = filter_maps(maps)
    else:
        owner = maps.argmax(dim=0)
    maps = joint_minmax(end_activation(l2_normalise(maps, normalise), activation))
    return FusedMap(maps, owner)

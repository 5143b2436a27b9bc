"""FM-G-CAM: fused multi-class Grad-CAM (ALGORITHMS.md section 2; fm-g-cam.txt section 3).

Input: K signed per-class maps at the layer's resolution, computed by any CAM-family
base method from the *unmodified* activations (the published library's in-place defect,
which scales rank k's activations by ranks 1..k-1's weights, is not reproduced).
Steps: 1/C mean, filtering (each position keeps only its strongest class), L2
normalisation, end activation, one min-max over all K maps together, then colouring.
Optionally (``brightness="probability"``, not in the paper) each class's map is then
multiplied by its probability relative to the most probable class shown, so brightness
also says how likely the class is; :func:`brightness_caption` says in words what
brightness means in each mode.
Everything after the maps is cheap and model-free, so display controls re-run only this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xai_core.errors import MethodError

NORMALISATIONS = ("reference", "per_class", "off")
ACTIVATIONS = ("relu", "elu", "gelu", "none")
#: What brightness shows in a fused map: the paper's normalised map values, or those values
#: times each class's probability relative to the most probable class shown.
BRIGHTNESS = ("normalised", "probability")


@dataclass(frozen=True)
class FusedMap:
    """The fused map at the layer's resolution.

    Attributes:
        maps: ``[K, h, w]`` in [0, 1], class k's value where it owns the position, 0 elsewhere
            (before the activation a non-owner is exactly 0, so after ReLU/ELU/GELU and
            min-max it is the common background value).
        owner: ``[h, w]`` index in 0..K-1 of the class that owns each position.
        brightness: ``"normalised"`` (the paper) or ``"probability"`` (maps scaled by
            each class's relative probability, see :func:`scale_by_probability`).
    """

    maps: torch.Tensor
    owner: torch.Tensor
    brightness: str = "normalised"


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


def scale_by_probability(maps: torch.Tensor, probs: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Multiply each class's map by its probability relative to the most probable class.

    Class k's map is scaled by ``p_k / max_j p_j``: at equal map strength a class at 0.5 %
    is drawn at 1/104 of the brightness of one at 52 %. The most probable class keeps its
    values, so maps stay in [0, 1].

    Args:
        maps: ``[K, h, w]`` fused maps in [0, 1].
        probs: the K classes' probabilities (any non-negative scores), in the maps' order.

    Returns:
        A new ``[K, h, w]`` tensor on the maps' device.

    Raises:
        MethodError: wrong number of probabilities, or negative / non-finite / all-zero ones.
    """
    p = torch.as_tensor(probs, dtype=maps.dtype, device=maps.device).flatten()
    if p.numel() != maps.shape[0]:
        raise MethodError(f"Give one probability per class map: {maps.shape[0]} maps, {p.numel()} probabilities.")
    if not torch.isfinite(p).all() or (p < 0).any() or p.max() <= 0:
        raise MethodError(f"Probabilities must be finite, >= 0 and not all 0; got {p.tolist()}.")
    return maps * (p / p.max())[:, None, None]


def fm_g_cam(
    cams: torch.Tensor,
    *,
    channels: int | None = None,
    normalise: str = "reference",
    activation: str = "relu",
    filter: bool = True,  # noqa: A002 - the paper's word
    brightness: str = "normalised",
    probs: Sequence[float] | torch.Tensor | None = None,
) -> FusedMap:
    """Fuse K per-class maps into one FM-G-CAM map.

    Args:
        cams: ``[K, h, w]`` signed per-class maps ``sum_c alpha_c^k A_c`` from the base method.
        channels: C, for the paper's ``1/C`` (eq. 3); it matters for ELU/GELU without
            normalisation. ``None`` treats the maps as already averaged.
        normalise: ``"reference"``, ``"per_class"`` or ``"off"`` (see :func:`l2_normalise`).
        activation: ``"relu"``, ``"elu"``, ``"gelu"`` or ``"none"``.
        filter: apply eq. 4 (off only to inspect unfiltered maps).
        brightness: ``"normalised"`` (the paper's maps) or ``"probability"`` (then scaled
            by :func:`scale_by_probability`; needs ``probs``).
        probs: the K classes' probabilities, for ``brightness="probability"``.

    Returns:
        A :class:`FusedMap` with maps in [0, 1].
    """
    if cams.dim() != 3:
        raise MethodError(f"cams must be [K, h, w], got shape {tuple(cams.shape)}.")
    if brightness not in BRIGHTNESS:
        raise MethodError(f"brightness must be one of {', '.join(BRIGHTNESS)}; got {brightness!r}.")
    if brightness == "probability" and probs is None:
        raise MethodError('brightness="probability" needs probs: the probability of each of the K classes.')
    maps = cams / channels if channels else cams.clone()
    if filter:
        maps, owner = filter_maps(maps)
    else:
        owner = maps.argmax(dim=0)
    maps = joint_minmax(end_activation(l2_normalise(maps, normalise), activation))
    if brightness == "probability":
        maps = scale_by_probability(maps, probs)  # type: ignore[arg-type]
    return FusedMap(maps, owner, brightness)


_NORMALISE_TEXT = {
    "reference": (
        "after the FM-G-CAM paper's normalisation (every image column of every class map scaled to unit length)"
    ),
    "per_class": "after scaling each class map to unit overall (L2) size, which makes weak and strong classes alike",
    "off": "with no normalisation (raw map values on one shared scale; classes with larger gradients look brighter)",
}


def brightness_caption(
    brightness: str = "normalised",
    *,
    normalise: str = "reference",
    probs: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
) -> str:
    """What brightness means in a fused map drawn in this mode, in one or two sentences.

    Args:
        brightness: ``"normalised"`` or ``"probability"`` (:data:`BRIGHTNESS`).
        normalise: the normalisation used (``"reference"``, ``"per_class"``, ``"off"``).
        probs: the shown classes' probabilities, most probable first (optional: adds
            the numbers to the caption).
        labels: their names (optional, with ``probs``).

    Returns:
        Plain text for a caption under the map.

    Raises:
        MethodError: unknown mode or normalisation.
    """
    if brightness not in BRIGHTNESS:
        raise MethodError(f"brightness must be one of {', '.join(BRIGHTNESS)}; got {brightness!r}.")
    if normalise not in _NORMALISE_TEXT:
        raise MethodError(f"normalise must be one of {', '.join(NORMALISATIONS)}; got {normalise!r}.")
    head = "Each colour is one class; each position shows only the class with the strongest evidence there. "
    how = _NORMALISE_TEXT[normalise]
    if brightness == "normalised":
        example = ""
        if probs is not None and len(probs) >= 2:
            example = f" (here {max(probs):.1%} and {min(probs):.1%} can look equally bright)"
        return (
            f"{head}Brightness is where that class's map is strongest, {how}, on one scale for all "
            f"classes. It does not show how likely the class is: a class the model finds unlikely can "
            f"be drawn as bright as the top class{example}. Choose brightness by probability to see that."
        )
    top = ""
    if probs is not None and len(probs) >= 1:
        p = [float(v) for v in probs]
        i = max(range(len(p)), key=p.__getitem__)
        name = f"{labels[i]}, " if labels is not None and i < len(labels) else ""
        top = f" ({name}{p[i]:.1%})"
        j = min(range(len(p)), key=p.__getitem__)
        if p[j] < p[i]:
            ratio = p[j] / p[i]
            top += f"; at equal map strength a class at {p[j]:.1%} is drawn at {ratio:.2g} of that brightness"
    return (
        f"{head}Brightness is the class's map value, {how}, multiplied by the class's probability "
        f"relative to the most probable class shown{top}. Bright means both strong evidence and a likely class."
    )

"""Faithfulness metrics: Average Drop / Increase, insertion / deletion, and seed 001's two checks.

Definitions follow ``docs/ALGORITHMS.md`` section 4 (FG-CAM's evaluation, after Chattopadhay
et al. for A.D./A.I. and Petsiuk et al. for insertion/deletion). The model enters only as
``predict(batch [B, C, H, W]) -> probabilities [B, N]``; every perturbed image is scored in
batches of at most ``batch_size`` under ``torch.inference_mode``.

"Removing" a pixel means replacing it, in all channels, by the same pixel of the Gaussian
blurred image (kernel 11, sigma 5 by default), computed on the normalised input.
Pixels are ranked by the map's value, largest first; equal values keep row-major order
(stable sort), so every result is deterministic. Signed maps are ranked by value too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.errors import XaiCoreError
from xai_core.metrics._common import (
    Predict,
    auc,
    check_blur,
    check_class_idx,
    check_fraction,
    check_image,
    check_int,
    check_saliency,
    class_probabilities,
    count_for_fraction,
    gaussian_blur,
    rank_of_pixels,
    top_mask,
)

# Petsiuk et al. / FG-CAM remove 448 pixels per step on a 224 x 224 input: H * W / 112.
PIXELS_PER_STEP_DIVISOR = 112


def default_pixels_per_step(height: int, width: int) -> int:
    """Pixels changed per insertion/deletion step: ``round(H * W / 112)``, at least 1.

    This keeps the papers' 448 pixels per step at 224 x 224 (112 steps per curve) and the
    same number of steps at any other resolution.
    """
    return max(1, int(math.floor(height * width / PIXELS_PER_STEP_DIVISOR + 0.5)))


def _relative_drop(y: np.ndarray, o: np.ndarray) -> np.ndarray:
    """``100 * max(0, y - o) / y`` per image; 0 where ``y == 0`` (nothing can drop)."""
    safe_y = np.where(y > 0, y, 1.0)
    return np.where(y > 0, 100.0 * np.maximum(0.0, y - o) / safe_y, 0.0)


# --------------------------------------------------------------------------------------
# Average Drop / Average Increase
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AverageDropIncrease:
    """Average Drop / Average Increase over ``M`` images (FG-CAM, Table 1).

    Attributes:
        y: ``[M]`` probability of the class on each original image (``Y_i^c``).
        o: ``[M]`` probability on the image keeping only the top ``keep_fraction`` of its
            map, the rest blurred (``O_i^c``).
        drop: ``[M]`` per-image drop in percent, ``100 * max(0, Y - O) / Y`` (0 when ``Y = 0``).
        increase: ``[M]`` bool, ``O > Y``.
        average_drop: A.D. = mean of ``drop`` (percent; lower is better).
        average_increase: A.I. = ``100 * mean(increase)`` (percent; higher is better).
        keep_fraction: share of pixels kept.
        kernel_size: Gaussian blur kernel size used.
        sigma: Gaussian blur sigma used.
    """

    y: np.ndarray
    o: np.ndarray
    drop: np.ndarray
    increase: np.ndarray
    average_drop: float
    average_increase: float
    keep_fraction: float
    kernel_size: int
    sigma: float


def _as_image_list(xs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(xs, torch.Tensor):
        if xs.ndim != 4:
            raise XaiCoreError(
                f"xs must be a [B, C, H, W] tensor or a list of [1, C, H, W] tensors; got shape {list(xs.shape)}."
            )
        items = [xs[i : i + 1] for i in range(xs.shape[0])]
    elif isinstance(xs, Sequence) and not isinstance(xs, (str, bytes)):
        items = list(xs)
    else:
        raise XaiCoreError(
            f"xs must be a [B, C, H, W] tensor or a list of [1, C, H, W] tensors; got {type(xs).__name__}."
        )
    if not items:
        raise XaiCoreError("xs is empty: pass at least one image.")
    return [check_image(f"xs[{i}]", x) for i, x in enumerate(items)]


def _as_map_list(saliencies: object, count: int) -> list[object]:
    if isinstance(saliencies, (torch.Tensor, np.ndarray)):
        if saliencies.ndim == 2 and count == 1:
            return [saliencies]
        if saliencies.ndim != 3:
            raise XaiCoreError(
                f"saliencies must be a [B, H, W] tensor/array or a list of [H, W] maps; "
                f"got shape {list(saliencies.shape)}."
            )
        items = [saliencies[i] for i in range(saliencies.shape[0])]
    elif isinstance(saliencies, Sequence) and not isinstance(saliencies, (str, bytes)):
        items = list(saliencies)
    else:
        raise XaiCoreError(
            f"saliencies must be a [B, H, W] tensor/array or a list of [H, W] maps; got {type(saliencies).__name__}."
        )
    if len(items) != count:
        raise XaiCoreError(f"saliencies has {len(items)} maps but xs has {count} images; give one map per image.")
    return items


def _as_class_list(class_idxs: object, count: int) -> list[int]:
    if isinstance(class_idxs, numbers.Integral) and not isinstance(class_idxs, bool):
        items: list[object] = [class_idxs] * count
    elif isinstance(class_idxs, torch.Tensor | np.ndarray):
        items = [int(c) for c in class_idxs.reshape(-1).tolist()]
    elif isinstance(class_idxs, Sequence) and not isinstance(class_idxs, (str, bytes)):
        items = list(class_idxs)
    else:
        raise XaiCoreError(f"class_idxs must be an int or a list of ints; got {type(class_idxs).__name__}.")
    if len(items) != count:
        raise XaiCoreError(f"class_idxs has {len(items)} entries but xs has {count} images; give one per image.")
    return [check_class_idx(f"class_idxs[{i}]", c) for i, c in enumerate(items)]


def average_drop_increase(
    predict: Predict,
    xs: torch.Tensor | Sequence[torch.Tensor],
    saliencies: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray],
    class_idxs: int | Sequence[int],
    keep_fraction: float = 0.5,
    *,
    positive_only: bool = False,
    kernel_size: int = 11,
    sigma: float = 5.0,
    batch_size: int = 32,
) -> AverageDropIncrease:
    """Average Drop and Average Increase (FG-CAM section "Evaluation on Faithfulness").

    For each image ``i``: keep the ``round(keep_fraction * H * W)`` most important pixels of
    its map, replace the others by the blurred image, and score both images.
    ``A.D. = mean_i 100 * max(0, Y_i - O_i) / Y_i`` and ``A.I. = 100 * mean_i [O_i > Y_i]``.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        xs: normalised inputs, a ``[M, C, H, W]`` tensor or a list of ``[1, C, H, W]``
            tensors (sizes may differ between list items).
        saliencies: maps at input resolution, ``[M, H, W]`` or a list of ``[H, W]``.
        class_idxs: the explained class, one int for all images or one per image.
        keep_fraction: share of pixels kept, in ``(0, 1]`` (papers: 0.5).
        positive_only: also drop pixels whose map value is ``<= 0`` (FG-CAM's rule for
            signed input-layer maps: "if the positive pixels do not exceed 50 %, keep only them").
        kernel_size: Gaussian blur kernel size (odd).
        sigma: Gaussian blur sigma in pixels.
        batch_size: largest batch passed to ``predict``.

    Returns:
        An :class:`AverageDropIncrease` with per-image values and both aggregates.

    Raises:
        XaiCoreError: shapes do not match, a fraction or size is out of range, or a class
            index exceeds ``predict``'s outputs.
        MethodError: ``predict`` does not return ``[B, N]`` probabilities.
    """
    keep_fraction = check_fraction("keep_fraction", keep_fraction)
    kernel_size, sigma = check_blur(kernel_size, sigma)
    batch_size = check_int("batch_size", batch_size, 1)
    images = _as_image_list(xs)
    maps = _as_map_list(saliencies, len(images))
    classes = _as_class_list(class_idxs, len(images))

    modified = []
    for i, (x, saliency) in enumerate(zip(images, maps, strict=True)):
        s = check_saliency(f"saliencies[{i}]", saliency, x.shape[2], x.shape[3], x.device)
        keep = top_mask(s, count_for_fraction(keep_fraction, s.numel()))
        if positive_only:
            keep = keep & (s > 0).view_as(keep)
        modified.append(torch.where(keep, x.detach(), gaussian_blur(x, kernel_size, sigma)))

    probs = class_probabilities(predict, [x.detach() for x in images] + modified, classes + classes, batch_size)
    y = probs[: len(images)].numpy()
    o = probs[len(images) :].numpy()
    drop = _relative_drop(y, o)
    increase = o > y
    return AverageDropIncrease(
        y=y,
        o=o,
        drop=drop,
        increase=increase,
        average_drop=float(drop.mean()),
        average_increase=float(100.0 * increase.mean()),
        keep_fraction=keep_fraction,
        kernel_size=kernel_size,
        sigma=sigma,
    )


# --------------------------------------------------------------------------------------
# Insertion / Deletion
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InsertionDeletion:
    """Insertion and deletion curves of one map (Petsiuk et al., as in FG-CAM Table 2).

    Attributes:
        fractions: ``[K]`` share of pixels changed at each point, from 0 to 1 inclusive.
        insertion: ``[K]`` class probability when the top ``fractions[k]`` pixels of the
            original are put into the blurred image (``insertion[0]`` = blurred image,
            ``insertion[-1]`` = original).
        deletion: ``[K]`` class probability when the top ``fractions[k]`` pixels of the
            original are replaced by blurred ones (``deletion[0]`` = original).
        insertion_auc: trapezoid area under ``insertion`` over ``fractions`` (higher is better).
        deletion_auc: same for ``deletion`` (lower is better).
        overall: ``insertion_auc - deletion_auc`` (higher is better).
        pixels_per_step: pixels changed between consecutive points (the last step may be smaller).
        kernel_size: Gaussian blur kernel size used.
        sigma: Gaussian blur sigma used.
    """

    fractions: np.ndarray
    insertion: np.ndarray
    deletion: np.ndarray
    insertion_auc: float
    deletion_auc: float
    overall: float
    pixels_per_step: int
    kernel_size: int
    sigma: float


def insertion_deletion(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: int,
    pixels_per_step: int | None = None,
    batch_size: int = 32,
    *,
    kernel_size: int = 11,
    sigma: float = 5.0,
) -> InsertionDeletion:
    """Insertion and deletion curves and their areas (Petsiuk et al., 2018; FG-CAM).

    With ``n = H * W`` pixels and ``s = pixels_per_step``, point ``k`` changes the
    ``c_k = min(k * s, n)`` most important pixels, ``k = 0 .. ceil(n / s)``, so both curves
    include the endpoints (0 and all pixels). Deletion replaces them by blurred pixels
    in the original; insertion puts them back into the blurred image. AUC is the
    trapezoid rule over ``c_k / n`` in ``[0, 1]``. Costs ``2 * (ceil(n / s) + 1)`` images.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        x: normalised input ``[1, C, H, W]``.
        saliency: map at input resolution ``[H, W]``.
        class_idx: the explained class.
        pixels_per_step: pixels per step; ``None`` = ``round(H * W / 112)`` (448 at 224 x 224).
        batch_size: largest batch passed to ``predict``.
        kernel_size: Gaussian blur kernel size (odd).
        sigma: Gaussian blur sigma in pixels.

    Returns:
        An :class:`InsertionDeletion` with both curves (numpy float64) and their areas.

    Raises:
        XaiCoreError: bad shapes, sizes or class index. MethodError: bad ``predict`` output.
    """
    x = check_image("x", x)
    class_idx = check_class_idx("class_idx", class_idx)
    _, _, h, w = x.shape
    s = check_saliency("saliency", saliency, h, w, x.device)
    if pixels_per_step is None:
        step = default_pixels_per_step(h, w)
    else:
        step = check_int("pixels_per_step", pixels_per_step, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    kernel_size, sigma = check_blur(kernel_size, sigma)

    n = h * w
    counts = torch.cat([torch.arange(0, n, step, device=x.device), torch.tensor([n], device=x.device)])
    rank = rank_of_pixels(s).view(1, 1, h, w)
    original = x.detach()
    blurred = gaussian_blur(original, kernel_size, sigma)

    # Jobs: every count for insertion, then every count for deletion, scored in chunks.
    job_counts = torch.cat([counts, counts])
    job_is_insertion = torch.cat(
        [torch.ones_like(counts, dtype=torch.bool), torch.zeros_like(counts, dtype=torch.bool)]
    )
    scores = torch.empty(job_counts.numel(), dtype=torch.float64)
    for start in range(0, job_counts.numel(), batch_size):
        c = job_counts[start : start + batch_size].view(-1, 1, 1, 1)
        ins = job_is_insertion[start : start + batch_size].view(-1, 1, 1, 1)
        changed = rank < c  # [b, 1, H, W]: the top c_k pixels
        keep_original = torch.where(ins, changed, ~changed)
        batch = torch.where(keep_original, original, blurred)
        scores[start : start + c.shape[0]] = class_probabilities(predict, batch, [class_idx] * c.shape[0], batch_size)

    k = counts.numel()
    fractions = counts.cpu().numpy().astype(np.float64) / n
    insertion = scores[:k].numpy()
    deletion = scores[k:].numpy()
    ins_auc, del_auc = auc(fractions, insertion), auc(fractions, deletion)
    return InsertionDeletion(
        fractions=fractions,
        insertion=insertion,
        deletion=deletion,
        insertion_auc=ins_auc,
        deletion_auc=del_auc,
        overall=ins_auc - del_auc,
        pixels_per_step=step,
        kernel_size=kernel_size,
        sigma=sigma,
    )


# --------------------------------------------------------------------------------------
# Seed 001's two checks (cam-gradcam-gradcampp-evaluation.txt, section 5)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MultipliedCheck:
    """Confidence before and after multiplying the image by the map (seed 001, method 1).

    Attributes:
        y: class probability on the original image.
        o: class probability on ``baseline + saliency01 * (x - baseline)``.
        change: ``o - y`` (positive = confidence increased).
        increased: ``o > y``.
        drop_percent: ``100 * max(0, y - o) / y`` ("drop in confidence", 0 if it increased).
    """

    y: float
    o: float
    change: float
    increased: bool
    drop_percent: float


def black_baseline(
    mean: Sequence[float], std: Sequence[float], device: torch.device | str | None = None
) -> torch.Tensor:
    """The normalised value of a black pixel, ``(0 - mean) / std`` per channel, ``[1, C, 1, 1]``.

    Passing it as ``baseline`` to :func:`confidence_change_when_multiplied` makes the check
    multiply the *un-normalised* image by the map, exactly as seed 001 describes.
    For torchxrayvision inputs (scaled to [-1024, 1024]) black is simply ``-1024.0``.
    ``device``: where the tensor is created (default the CPU; it is moved to ``x``'s device when used).
    """
    m = torch.as_tensor(mean, dtype=torch.float64, device=device).reshape(-1)
    sd = torch.as_tensor(std, dtype=torch.float64, device=device).reshape(-1)
    if m.shape != sd.shape or m.numel() == 0:
        raise XaiCoreError(
            f"mean and std must have one value per channel each; got {list(m.shape)} and {list(sd.shape)}."
        )
    if not bool((sd > 0).all()):
        raise XaiCoreError(f"std must be positive in every channel; got {sd.tolist()}.")
    return (-m / sd).view(1, -1, 1, 1)


def _check_baseline(baseline: object, x: torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(float(baseline)):
            raise XaiCoreError(f"baseline must be finite; got {baseline!r}.")
        return x.new_full((1, 1, 1, 1), float(baseline))
    if isinstance(baseline, torch.Tensor):
        ok = baseline.ndim == 0 or (
            baseline.ndim == 4
            and baseline.shape[0] == 1
            and all(b in (1, d) for b, d in zip(baseline.shape[1:], x.shape[1:], strict=True))
        )
        if not ok:
            raise XaiCoreError(
                f"baseline must be a number, a 0-d tensor, or a tensor broadcastable to x's shape "
                f"{list(x.shape)} with 4 dims (e.g. [1, C, 1, 1] per channel); got shape {list(baseline.shape)}."
            )
        if not bool(torch.isfinite(baseline).all()):
            raise XaiCoreError("baseline contains NaN or infinite values.")
        return baseline.detach().to(device=x.device, dtype=x.dtype)
    raise XaiCoreError(f"baseline must be a number or a tensor; got {type(baseline).__name__}.")


def confidence_change_when_multiplied(
    predict: Predict,
    x: torch.Tensor,
    saliency01: torch.Tensor | np.ndarray,
    class_idx: int,
    baseline: float | torch.Tensor = 0.0,
) -> MultipliedCheck:
    """Seed 001, method 1: multiply the image by the map and measure the confidence change.

    The paper multiplies the image *before* normalisation by the map, so low-scoring
    regions turn dark. In the normalised space the model sees, that is a blend toward
    the normalised value of black: ``x' = baseline + saliency01 * (x - baseline)``, with
    ``baseline = black_baseline(mean, std)``. ``baseline`` is whatever a zero map should
    turn the image into; the default ``0.0`` is the normalised dataset mean (a grey image
    for ImageNet, mid-grey for torchxrayvision), i.e. the map multiplies the normalised
    input directly. A map of ones leaves the image unchanged for any baseline.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        x: normalised input ``[1, C, H, W]``.
        saliency01: map at input resolution ``[H, W]`` with values in ``[0, 1]``.
        class_idx: the explained class.
        baseline: normalised value a zero map produces: a number, or a tensor
            ``[1, C, 1, 1]`` / ``[1, C, H, W]`` (see :func:`black_baseline`).

    Returns:
        A :class:`MultipliedCheck`.

    Raises:
        XaiCoreError: bad shapes, a map outside ``[0, 1]``, or a bad baseline.
        MethodError: bad ``predict`` output.
    """
    x = check_image("x", x)
    class_idx = check_class_idx("class_idx", class_idx)
    s = check_saliency("saliency01", saliency01, x.shape[2], x.shape[3], x.device)
    lo, hi = float(s.min()), float(s.max())
    if lo < 0.0 or hi > 1.0:
        raise XaiCoreError(
            f"saliency01 must be scaled to [0, 1] (e.g. ReLU, then divide by the maximum); "
            f"got values in [{lo:.4g}, {hi:.4g}]."
        )
    base = _check_baseline(baseline, x)
    original = x.detach()
    m = s.to(x.dtype).view(1, 1, *s.shape)
    multiplied = base + m * (original - base)
    y, o = class_probabilities(predict, [original, multiplied], [class_idx, class_idx], 2).tolist()
    return MultipliedCheck(
        y=y,
        o=o,
        change=o - y,
        increased=o > y,
        drop_percent=float(_relative_drop(np.array([y]), np.array([o]))[0]),
    )


@dataclass(frozen=True, eq=False)
class TopRemovedCheck:
    """Confidence after removing the map's top pixels (seed 001, method 2).

    Attributes:
        y: class probability on the original image.
        o: class probability with the top ``fraction`` of pixels replaced by blurred ones.
        change: ``o - y`` (seed 001's number: more negative is better).
        drop: ``y - o`` (larger is better).
        drop_percent: ``100 * (y - o) / y``, signed (negative when confidence rose; 0 when ``y = 0``).
        fraction: share of pixels removed.
        kernel_size: Gaussian blur kernel size used.
        sigma: Gaussian blur sigma used.
    """

    y: float
    o: float
    change: float
    drop: float
    drop_percent: float
    fraction: float
    kernel_size: int
    sigma: float


def confidence_drop_top_removed(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: int,
    fraction: float = 0.25,
    *,
    kernel_size: int = 11,
    sigma: float = 5.0,
) -> TopRemovedCheck:
    """Seed 001, method 2: remove the top ``fraction`` of the map and measure the drop.

    "Completely remove" is implemented as elsewhere in these metrics: the
    ``round(fraction * H * W)`` most important pixels are replaced by the blurred image
    (not zeros), so the check is comparable with deletion at the same fraction.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        x: normalised input ``[1, C, H, W]``.
        saliency: map at input resolution ``[H, W]``.
        class_idx: the explained class.
        fraction: share of pixels removed, in ``(0, 1]`` (seed 001: 0.25).
        kernel_size: Gaussian blur kernel size (odd).
        sigma: Gaussian blur sigma in pixels.

    Returns:
        A :class:`TopRemovedCheck`.

    Raises:
        XaiCoreError: bad shapes, fraction or class index. MethodError: bad ``predict`` output.
    """
    x = check_image("x", x)
    class_idx = check_class_idx("class_idx", class_idx)
    fraction = check_fraction("fraction", fraction)
    kernel_size, sigma = check_blur(kernel_size, sigma)
    s = check_saliency("saliency", saliency, x.shape[2], x.shape[3], x.device)
    original = x.detach()
    removed = top_mask(s, count_for_fraction(fraction, s.numel()))
    perturbed = torch.where(removed, gaussian_blur(original, kernel_size, sigma), original)
    y, o = class_probabilities(predict, [original, perturbed], [class_idx, class_idx], 2).tolist()
    return TopRemovedCheck(
        y=y,
        o=o,
        change=o - y,
        drop=y - o,
        drop_percent=100.0 * (y - o) / y if y > 0 else 0.0,
        fraction=fraction,
        kernel_size=kernel_size,
        sigma=sigma,
    )

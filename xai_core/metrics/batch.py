"""Every per-image metric of many maps at once: the one implementation behind the dashboard and the command.

:func:`evaluate_maps` scores ``B`` maps of ``B`` images (one map per image) with the
definitions of :mod:`xai_core.metrics.faithfulness` (and, for signed maps, the
positive-only Average Drop of the evaluation command). It builds the perturbed images of
all of them - the insertion and deletion curves, the Average Drop image, seed 001's two
checks - as one stream and scores it in forward passes of at most ``batch_size`` images,
mixing images and steps freely. Perturbed images are made on ``x``'s device, chunk by
chunk, so memory stays bounded by ``batch_size`` whatever ``B`` and the number of steps.

Inputs that are the same image (the original, the fully blurred image: both ends of both
curves and the reference ``Y``) are scored once per image. :func:`evaluate_map` is the
one-map call of it, for the dashboard's table and plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.errors import XaiCoreError
from xai_core.metrics._common import (
    Predict,
    auc,
    check_blur,
    check_fraction,
    check_image,
    check_int,
    check_saliency,
    class_probabilities,
    count_for_fraction,
    gaussian_blur,
    rank_of_pixels,
)
from xai_core.metrics.faithfulness import (
    InsertionDeletion,
    _check_baseline,
    _relative_drop,
    default_pixels_per_step,
)
from xai_core.metrics.localisation import proportion_in_box

# Kinds of perturbed image. KEEP: the top `count` pixels of the original, the rest blurred
# (insertion, Average Drop). REMOVE: the top `count` pixels blurred (deletion, top-removed
# check). KEEP_POSITIVE: KEEP restricted to positive map values (signed maps' Average Drop).
# MULTIPLY: seed 001's multiplied image.
KEEP, REMOVE, KEEP_POSITIVE, MULTIPLY = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class BatchEvaluation:
    """Scores and curves of ``B`` maps.

    Attributes:
        scores: metric name -> float64 ``[B]``, the keys of
            :attr:`~xai_core.metrics.MapEvaluation.scores` (no ``proportion``). Where
            ``positive_only`` is set, ``average_drop`` / ``average_increase`` keep only
            positive pixels among the top ``keep_fraction``.
        fractions: ``[K]`` share of pixels changed at each curve point (0 to 1).
        insertion: ``[B, K]`` insertion curves.
        deletion: ``[B, K]`` deletion curves.
        positive_only: ``[B]`` bool, which maps used the positive-only Average Drop.
        settings: the parameters used.
        forwards: images passed to ``predict`` in all.
    """

    scores: dict[str, np.ndarray]
    fractions: np.ndarray
    insertion: np.ndarray
    deletion: np.ndarray
    positive_only: np.ndarray
    settings: dict[str, object]
    forwards: int


def _check_batch(x: object, saliencies: object, class_idxs: object) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point() or x.shape[0] < 1:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise XaiCoreError(f"x must be a floating-point tensor [B, C, H, W] with B >= 1; got {shape}.")
    b, _, h, w = x.shape
    if isinstance(saliencies, np.ndarray):
        saliencies = torch.from_numpy(np.array(saliencies, dtype=np.float64, copy=True))
    if not isinstance(saliencies, torch.Tensor) or tuple(saliencies.shape) != (b, h, w):
        shape = list(saliencies.shape) if isinstance(saliencies, torch.Tensor) else type(saliencies).__name__
        raise XaiCoreError(f"saliencies must be [B, H, W] = [{b}, {h}, {w}] (one map per image); got {shape}.")
    s = saliencies.detach().to(device=x.device, dtype=torch.float64)
    if not bool(torch.isfinite(s).all()):
        raise XaiCoreError("saliencies contain NaN or infinite values; fix the maps before evaluating them.")
    classes = [int(c) for c in (class_idxs.tolist() if isinstance(class_idxs, torch.Tensor) else class_idxs)]
    if len(classes) != b or any(c < 0 for c in classes):
        raise XaiCoreError(f"class_idxs must hold {b} non-negative class indices (one per image); got {classes}.")
    return x.detach(), s, classes


def evaluate_maps(
    predict: Predict,
    x: torch.Tensor,
    saliencies: torch.Tensor | np.ndarray,
    class_idxs: Sequence[int] | torch.Tensor,
    *,
    positive_only: bool | Sequence[bool] = False,
    keep_fraction: float = 0.5,
    top_removed_fraction: float = 0.25,
    multiply_baseline: float | torch.Tensor = 0.0,
    pixels_per_step: int | None = None,
    kernel_size: int = 11,
    sigma: float = 5.0,
    batch_size: int = 64,
) -> BatchEvaluation:
    """Every per-image metric of ``B`` maps, in batched forward passes.

    Equal, image by image, to the single-metric functions of
    :mod:`~xai_core.metrics.faithfulness` (:func:`~xai_core.metrics.insertion_deletion`,
    :func:`~xai_core.metrics.average_drop_increase`, with ``positive_only=True`` for the
    maps flagged ``positive_only``, and seed 001's two checks), up to float round-off of
    batching.

    Args:
        predict: ``batch [N, C, H, W] -> probabilities [N, classes]``.
        x: normalised inputs ``[B, C, H, W]``.
        saliencies: maps at input resolution ``[B, H, W]``, one per image.
        class_idxs: the explained class of each image (``B`` ints).
        positive_only: per map (or one bool for all): Average Drop / Increase keep only
            positive pixels among the top ``keep_fraction`` (signed input-layer maps).
        keep_fraction: share kept for Average Drop / Increase (0.5).
        top_removed_fraction: share removed by seed 001's second check (0.25).
        multiply_baseline: what a zero map turns the image into in seed 001's first check.
        pixels_per_step: insertion/deletion step; ``None`` = ``round(H * W / 112)``.
        kernel_size: Gaussian blur kernel size (odd).
        sigma: Gaussian blur sigma in pixels.
        batch_size: most images per forward pass (the memory budget).

    Returns:
        A :class:`BatchEvaluation`.

    Raises:
        XaiCoreError: a bad argument (the message names it).
        MethodError: ``predict`` does not return ``[N, classes]`` probabilities.
    """
    x, s, classes = _check_batch(x, saliencies, class_idxs)
    b, _, h, w = x.shape
    n = h * w
    keep_fraction = check_fraction("keep_fraction", keep_fraction)
    top_removed_fraction = check_fraction("top_removed_fraction", top_removed_fraction)
    kernel_size, sigma = check_blur(kernel_size, sigma)
    batch_size = check_int("batch_size", batch_size, 1)
    step = (
        default_pixels_per_step(h, w) if pixels_per_step is None else check_int("pixels_per_step", pixels_per_step, 1)
    )
    positive = [bool(positive_only)] * b if isinstance(positive_only, bool) else [bool(p) for p in positive_only]
    if len(positive) != b:
        raise XaiCoreError(f"positive_only must be one bool or {b} (one per map); got {len(positive)}.")
    base = _check_baseline(multiply_baseline, x[:1])

    blurred = gaussian_blur(x, kernel_size, sigma)
    rank = torch.stack([rank_of_pixels(s[i]) for i in range(b)]).view(b, 1, h, w)
    peak = s.clamp(min=0).amax(dim=(1, 2), keepdim=True)
    unit = torch.where(peak > 0, s.clamp(min=0) / torch.where(peak > 0, peak, 1.0), 0.0)  # scale_to_unit, per map
    counts = list(range(0, n, step)) + [n]
    keep = count_for_fraction(keep_fraction, n)
    removed = count_for_fraction(top_removed_fraction, n)

    # One entry per distinct perturbed image: (image, kind, count). The original is
    # (KEEP, n); the fully blurred image is (KEEP, 0); every curve end maps onto them.
    items: dict[tuple[int, int, int], int] = {}

    def item(i: int, kind: int, count: int) -> int:
        if kind == REMOVE and count in (0, n):  # removing nothing / everything
            kind, count = KEEP, n - count
        if kind == KEEP_POSITIVE and count == 0:
            kind = KEEP
        return items.setdefault((i, kind, count), len(items))

    ins_idx = [[item(i, KEEP, c) for c in counts] for i in range(b)]
    del_idx = [[item(i, REMOVE, c) for c in counts] for i in range(b)]
    y_idx = [item(i, KEEP, n) for i in range(b)]
    o_idx = [item(i, KEEP_POSITIVE if positive[i] else KEEP, keep) for i in range(b)]
    top_idx = [item(i, REMOVE, removed) for i in range(b)]
    mul_idx = [item(i, MULTIPLY, 0) for i in range(b)]

    specs = list(items)
    probs = torch.empty(len(specs), dtype=torch.float64)
    positive_mask = s > 0
    for start in range(0, len(specs), batch_size):
        chunk = specs[start : start + batch_size]
        img = torch.tensor([c[0] for c in chunk], device=x.device)
        kind = torch.tensor([c[1] for c in chunk], device=x.device).view(-1, 1, 1, 1)
        count = torch.tensor([c[2] for c in chunk], device=x.device).view(-1, 1, 1, 1)
        top = rank[img] < count
        mask = torch.where(kind == REMOVE, ~top, top)
        mask = torch.where(kind == KEEP_POSITIVE, top & positive_mask[img].unsqueeze(1), mask)
        batch = torch.where(mask, x[img], blurred[img])
        if bool((kind == MULTIPLY).any()):
            m = unit[img].to(x.dtype).unsqueeze(1)
            multiplied = base + m * (x[img] - base)
            batch = torch.where(kind == MULTIPLY, multiplied, batch)
        probs[start : start + len(chunk)] = class_probabilities(
            predict, batch, [classes[c[0]] for c in chunk], batch_size
        )

    p = probs.numpy()
    fractions = np.asarray(counts, dtype=np.float64) / n
    insertion = p[np.asarray(ins_idx)]
    deletion = p[np.asarray(del_idx)]
    y, o = p[y_idx], p[o_idx]
    top_o, mul_o = p[top_idx], p[mul_idx]
    ins_auc = np.array([auc(fractions, insertion[i]) for i in range(b)])
    del_auc = np.array([auc(fractions, deletion[i]) for i in range(b)])
    safe_y = np.where(y > 0, y, 1.0)
    scores = {
        "probability": y,
        "average_drop": _relative_drop(y, o),
        "average_increase": np.where(o > y, 100.0, 0.0),
        "insertion_auc": ins_auc,
        "deletion_auc": del_auc,
        "overall": ins_auc - del_auc,
        "multiplied_change": mul_o - y,
        "multiplied_increased": np.where(mul_o > y, 1.0, 0.0),
        "multiplied_drop_percent": _relative_drop(y, mul_o),
        "top_removed_drop": y - top_o,
        "top_removed_drop_percent": np.where(y > 0, 100.0 * (y - top_o) / safe_y, 0.0),
    }
    settings: dict[str, object] = {
        "blur": f"Gaussian, kernel {kernel_size}, sigma {sigma:g}, on the normalised input",
        "kernel_size": kernel_size,
        "sigma": sigma,
        "keep_fraction": keep_fraction,
        "top_removed_fraction": top_removed_fraction,
        "pixels_per_step": step,
    }
    return BatchEvaluation(
        scores=scores,
        fractions=fractions,
        insertion=insertion,
        deletion=deletion,
        positive_only=np.asarray(positive),
        settings=settings,
        forwards=len(specs),
    )


@dataclass(frozen=True, eq=False)
class MapEvaluation:
    """Every per-image metric of one map.

    Attributes:
        scores: metric name -> value, for a table (keys below; ``proportion`` only with a box).
            ``probability``: class probability on the original image (``Y``).
            ``average_drop``: ``100 * max(0, Y - O) / Y`` keeping the top ``keep_fraction``
            (A.D. of this one image; lower is better).
            ``average_increase``: 100 if ``O > Y`` else 0 (A.I. of this image; higher is better).
            ``insertion_auc`` (higher better), ``deletion_auc`` (lower better),
            ``overall`` = insertion - deletion (higher better).
            ``proportion``: share of positive mass in the box (higher better).
            ``multiplied_change``: ``O - Y`` after multiplying the image by the map
            scaled to [0, 1] (higher better); ``multiplied_increased``: 1.0 or 0.0;
            ``multiplied_drop_percent``: ``100 * max(0, Y - O) / Y`` (lower better).
            ``top_removed_drop``: ``Y - O`` after blurring the top ``top_removed_fraction``
            (higher better); ``top_removed_drop_percent``: ``100 * (Y - O) / Y``.
        curves: the insertion and deletion curves, for plotting.
        settings: the parameters used (blur kernel and sigma, fractions, step, baseline),
            to be stated next to the numbers.
    """

    scores: dict[str, float]
    curves: InsertionDeletion
    settings: dict[str, object]


def scale_to_unit(saliency: torch.Tensor) -> torch.Tensor:
    """``max(S, 0) / max(max(S, 0))``, a ``[0, 1]`` map; all zeros when nothing is positive.

    Args:
        saliency: map ``[H, W]``.

    Returns:
        A new float tensor ``[H, W]`` in ``[0, 1]``.
    """
    positive = saliency.clamp(min=0)
    peak = positive.max()
    return positive / peak if float(peak) > 0 else torch.zeros_like(positive)


def evaluate_map(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: int,
    *,
    box: Sequence[int] | None = None,
    keep_fraction: float = 0.5,
    top_removed_fraction: float = 0.25,
    multiply_baseline: float | torch.Tensor = 0.0,
    pixels_per_step: int | None = None,
    kernel_size: int = 11,
    sigma: float = 5.0,
    batch_size: int = 32,
) -> MapEvaluation:
    """Every per-image metric of one map (see :class:`MapEvaluation`): :func:`evaluate_maps` with ``B = 1``.

    The multiplied-image check uses the map scaled by :func:`scale_to_unit`; the other
    metrics rank the raw map. Costs about ``2 * (H * W / pixels_per_step) + 4`` images.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        x: normalised input ``[1, C, H, W]``.
        saliency: map at input resolution ``[H, W]``.
        class_idx: the explained class.
        box: optional ground-truth box ``(x0, y0, x1, y1)`` for the proportion.
        keep_fraction: share kept for Average Drop / Increase (0.5).
        top_removed_fraction: share removed by seed 001's second check (0.25).
        multiply_baseline: what a zero map turns the image into in seed 001's first check
            (see :func:`~xai_core.metrics.faithfulness.confidence_change_when_multiplied`).
        pixels_per_step: insertion/deletion step; ``None`` = ``round(H * W / 112)``.
        kernel_size: Gaussian blur kernel size (odd).
        sigma: Gaussian blur sigma in pixels.
        batch_size: largest batch passed to ``predict``.

    Returns:
        A :class:`MapEvaluation`.

    Raises:
        XaiCoreError: any argument is invalid (the message names it).
        MethodError: ``predict`` does not return ``[B, N]`` probabilities.
    """
    x = check_image("x", x)
    s = check_saliency("saliency", saliency, x.shape[2], x.shape[3], x.device)
    proportion = None if box is None else proportion_in_box(s, box)
    ev = evaluate_maps(
        predict,
        x,
        s.unsqueeze(0),
        [class_idx],
        keep_fraction=keep_fraction,
        top_removed_fraction=top_removed_fraction,
        multiply_baseline=multiply_baseline,
        pixels_per_step=pixels_per_step,
        kernel_size=kernel_size,
        sigma=sigma,
        batch_size=batch_size,
    )
    scores = {name: float(values[0]) for name, values in ev.scores.items()}
    if proportion is not None:
        scores = {**{k: scores[k] for k in _BEFORE_PROPORTION}, "proportion": proportion, **scores}
    curves = InsertionDeletion(
        fractions=ev.fractions,
        insertion=ev.insertion[0],
        deletion=ev.deletion[0],
        insertion_auc=scores["insertion_auc"],
        deletion_auc=scores["deletion_auc"],
        overall=scores["overall"],
        pixels_per_step=int(ev.settings["pixels_per_step"]),
        kernel_size=int(ev.settings["kernel_size"]),
        sigma=float(ev.settings["sigma"]),
    )
    baseline = multiply_baseline if not isinstance(multiply_baseline, torch.Tensor) else multiply_baseline.tolist()
    settings = {**ev.settings, "multiply_baseline": baseline, "class_idx": int(class_idx)}
    return MapEvaluation(scores=scores, curves=curves, settings=settings)


# The table's column order: the proportion (with a box) follows these.
_BEFORE_PROPORTION = ("probability", "average_drop", "average_increase", "insertion_auc", "deletion_auc", "overall")

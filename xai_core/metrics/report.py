"""All per-image metrics of one map in one call, for the dashboard's table and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.metrics._common import Predict, check_fraction, check_image, check_saliency
from xai_core.metrics.faithfulness import (
    InsertionDeletion,
    average_drop_increase,
    confidence_change_when_multiplied,
    confidence_drop_top_removed,
    insertion_deletion,
)
from xai_core.metrics.localisation import proportion_in_box


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
    """Compute every per-image metric of ``saliency`` (see :class:`MapEvaluation`).

    The multiplied-image check uses the map scaled by :func:`scale_to_unit`; the other
    metrics rank the raw map. Costs about ``2 * (H * W / pixels_per_step) + 8`` images.

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
    # Checked here so that errors name evaluate_map's own arguments.
    keep_fraction = check_fraction("keep_fraction", keep_fraction)
    top_removed_fraction = check_fraction("top_removed_fraction", top_removed_fraction)
    blur = {"kernel_size": kernel_size, "sigma": sigma}

    curves = insertion_deletion(predict, x, s, class_idx, pixels_per_step, batch_size, **blur)
    adi = average_drop_increase(predict, x, [s], class_idx, keep_fraction, batch_size=batch_size, **blur)
    multiplied = confidence_change_when_multiplied(predict, x, scale_to_unit(s), class_idx, multiply_baseline)
    top = confidence_drop_top_removed(predict, x, s, class_idx, top_removed_fraction, **blur)

    scores: dict[str, float] = {
        "probability": float(adi.y[0]),
        "average_drop": float(adi.drop[0]),
        "average_increase": float(adi.average_increase),
        "insertion_auc": curves.insertion_auc,
        "deletion_auc": curves.deletion_auc,
        "overall": curves.overall,
    }
    if box is not None:
        scores["proportion"] = proportion_in_box(s, box)
    scores.update(
        {
            "multiplied_change": multiplied.change,
            "multiplied_increased": 1.0 if multiplied.increased else 0.0,
            "multiplied_drop_percent": multiplied.drop_percent,
            "top_removed_drop": top.drop,
            "top_removed_drop_percent": top.drop_percent,
        }
    )
    baseline = multiply_baseline if not isinstance(multiply_baseline, torch.Tensor) else multiply_baseline.tolist()
    settings: dict[str, object] = {
        "blur": f"Gaussian, kernel {curves.kernel_size}, sigma {curves.sigma:g}, on the normalised input",
        "kernel_size": curves.kernel_size,
        "sigma": curves.sigma,
        "keep_fraction": adi.keep_fraction,
        "top_removed_fraction": top.fraction,
        "pixels_per_step": curves.pixels_per_step,
        "multiply_baseline": baseline,
        "class_idx": int(class_idx),
    }
    return MapEvaluation(scores=scores, curves=curves, settings=settings)

"""Faithfulness and localisation metrics of saliency maps (docs/ALGORITHMS.md section 4).

Pure, model-agnostic functions: the model enters only as
``predict(batch [B, C, H, W]) -> class probabilities [B, N]``. This package never
imports ``xai_core.methods``.
"""

from xai_core.metrics._common import Predict, gaussian_blur, rank_of_pixels
from xai_core.metrics.batch import BatchEvaluation, MapEvaluation, evaluate_map, evaluate_maps, scale_to_unit
from xai_core.metrics.faithfulness import (
    PIXELS_PER_STEP_DIVISOR,
    AverageDropIncrease,
    InsertionDeletion,
    MultipliedCheck,
    TopRemovedCheck,
    average_drop_increase,
    black_baseline,
    confidence_change_when_multiplied,
    confidence_drop_top_removed,
    default_pixels_per_step,
    insertion_deletion,
)
from xai_core.metrics.localisation import Box, check_box, proportion_in_box
from xai_core.metrics.road import RoadResult, even_fractions, noisy_linear_impute, road, road_combined, road_scores
from xai_core.metrics.spectral import checkerboard_score

__all__ = [
    "PIXELS_PER_STEP_DIVISOR",
    "AverageDropIncrease",
    "BatchEvaluation",
    "Box",
    "InsertionDeletion",
    "MapEvaluation",
    "MultipliedCheck",
    "RoadResult",
    "Predict",
    "TopRemovedCheck",
    "average_drop_increase",
    "black_baseline",
    "check_box",
    "checkerboard_score",
    "confidence_change_when_multiplied",
    "confidence_drop_top_removed",
    "default_pixels_per_step",
    "even_fractions",
    "evaluate_map",
    "evaluate_maps",
    "gaussian_blur",
    "insertion_deletion",
    "proportion_in_box",
    "noisy_linear_impute",
    "rank_of_pixels",
    "road",
    "road_combined",
    "road_scores",
    "scale_to_unit",
]

"""Relevance propagation: FG-CAM and the LRP baselines (ALGORITHMS.md section 3).

Why not zennit: zennit 0.5.1 reproduces the golden conv vectors only when configured
(``zero_params='bias'`` and a zero-safe stabilizer), has no rule matching FG-CAM's
max-pool step (LRP-0 on the clamped input), keeps per-module hook state (so a module
reused within one pass, EfficientNet-Lite's shared ``_swish``, cannot carry a rule),
picks the first layer by position rather than "takes the model input", needs
canonizers for residual adds, and has had no release since 2023. The rules needed are
few, so they are written here (``rules.py``) as modified gradients with the convention
``relevance = activation * signal``: additions, concatenations and functional ops then
need no canonizer, and K classes go down in one batched backward. The hooks are
attached by module type inside a ``with`` block and removed in ``finally``
(``composite.py``); the only canonizer switches ``inplace`` activations off and back.
"""

from xai_core.relevance.canonizers import BatchNormFold, canonized, find_batchnorm_folds, fold_batchnorms
from xai_core.relevance.composite import RULE_SETS, RULES, relevance_rules, rule_for
from xai_core.relevance.fgcam import (
    BASES,
    ClassSpec,
    RelevanceResult,
    TargetLayer,
    denoise_components,
    fg_cam,
    fgcam_target_layers,
    grad_cam_components,
    propagate_relevance,
    resolve_classes,
    score_cam_weights,
)
from xai_core.relevance.lrp import VARIANTS, lrp, start_relevance

__all__ = [
    "BASES",
    "RULES",
    "RULE_SETS",
    "BatchNormFold",
    "ClassSpec",
    "RelevanceResult",
    "canonized",
    "find_batchnorm_folds",
    "fold_batchnorms",
    "resolve_classes",
    "VARIANTS",
    "TargetLayer",
    "denoise_components",
    "fg_cam",
    "fgcam_target_layers",
    "grad_cam_components",
    "lrp",
    "propagate_relevance",
    "relevance_rules",
    "rule_for",
    "score_cam_weights",
    "start_relevance",
]

"""Relevance propagation: FG-CAM and the LRP baselines (ALGORITHMS.md section 3).

Why not zennit (0.5.1 was evaluated): it reproduces the golden conv vectors only when
configured (``zero_params='bias'`` and a zero-safe stabilizer), has no rule matching
FG-CAM's max-pool step (LRP-0 on the clamped input), keeps per-module hook state (so a
module reused within one pass, EfficientNet-Lite's shared ``_swish``, cannot carry a
rule), picks the first layer by position rather than "takes the model input", and needs
canonizers for residual adds. The rules needed are few, so they are written here,
following zennit's design: the maths (``rules.py``) as modified gradients with the
convention ``relevance = activation * signal`` (additions, concatenations and functional
ops then need no canonizer, and N images x K classes go down in one batched backward);
each rule an object (``rule.py``: :class:`Rule` subclasses); a rule set a
:class:`Composite` mapping layer types to rules, with a first-layer rule, registered by
name (``composite.py``: :data:`RULE_SETS`, :func:`register_rule_set`); canonizers that
undo themselves (``canonizers.py``: BatchNorm folded into the layer before it, in-place
activations switched off). ``rules="authors"`` keeps the FG-CAM authors' identity rule
for BatchNorm (docs/fgcam.md). FG-CAM's base is any registered CAM method with
per-channel weights (:func:`fgcam_bases`).
"""

from xai_core.relevance.canonizers import (
    BatchNormFold,
    Canonized,
    Canonizer,
    MergeBatchNorm,
    NoInplace,
    canonized,
    find_batchnorm_folds,
    fold_batchnorms,
)
from xai_core.relevance.composite import (
    DEFAULT_RULES,
    RULE_SETS,
    Composite,
    on_rule_set_registered,
    register_rule_set,
    relevance_rules,
    rule_for,
    rule_set,
    unregister_rule_set,
)
from xai_core.relevance.fgcam import (
    ChannelWeights,
    ClassSpec,
    RelevanceResult,
    TargetLayer,
    WeightInputs,
    denoise_components,
    fg_cam,
    fgcam_bases,
    fgcam_target_layers,
    propagate_relevance,
    register_base,
    resolve_base,
    resolve_classes,
    unregister_base,
)
from xai_core.relevance.lrp import VARIANTS, lrp, start_relevance
from xai_core.relevance.rule import (
    ConstantGate,
    Forward,
    Gradient,
    Identity,
    Pool,
    RelevancePass,
    Rule,
    RuleContext,
    ZBox,
    ZPlus,
)

__all__ = [
    "Canonized",
    "Canonizer",
    "Composite",
    "ConstantGate",
    "Forward",
    "Gradient",
    "Identity",
    "MergeBatchNorm",
    "NoInplace",
    "Pool",
    "RelevancePass",
    "Rule",
    "RuleContext",
    "ZBox",
    "ZPlus",
    "on_rule_set_registered",
    "register_rule_set",
    "unregister_rule_set",
    "rule_set",
    "ChannelWeights",
    "WeightInputs",
    "fgcam_bases",
    "register_base",
    "resolve_base",
    "unregister_base",
    "DEFAULT_RULES",
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
    "lrp",
    "propagate_relevance",
    "relevance_rules",
    "rule_for",
    "start_relevance",
]

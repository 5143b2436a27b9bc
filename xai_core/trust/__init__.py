"""Can this map be trusted? Randomisation checks and a benchmark with known ground truth.

* :mod:`xai_core.trust.sanity`: model-parameter randomisation (cascading and independent,
  Adebayo et al. 2018) and the random-logit test (Sixt et al. 2020) for any registered
  method and any model, on a deep copy of the model.
* :mod:`xai_core.trust.similarity`: the similarity measures of those papers (Spearman
  rank correlation with and without absolute values, SSIM, HOG correlation).
* :mod:`xai_core.trust.synthetic`: seeded images whose class is decided by one object
  among distractors, with its mask; a tiny CNN trained on them; pointing game and mass
  in the object.
* :mod:`xai_core.trust.upsample`: CAM upsampling at the measured receptive-field centres.

This package sits below :mod:`xai_core.evaluate` (whose ``--sanity`` calls it) and above
:mod:`xai_core.api` in the import layers: it explains with :func:`xai_core.explain`.
"""

from __future__ import annotations

from xai_core.trust.sanity import (
    SanityResult,
    attributions,
    display_maps,
    model_randomisation,
    random_logit,
    randomisable_layers,
    step_label,
    with_module,
)
from xai_core.trust.similarity import SIMILARITIES, hog_correlation, similarity, spearman, ssim

__all__ = [
    "SIMILARITIES",
    "SanityResult",
    "attributions",
    "display_maps",
    "hog_correlation",
    "model_randomisation",
    "random_logit",
    "randomisable_layers",
    "similarity",
    "spearman",
    "ssim",
    "step_label",
    "with_module",
]

"""``--sanity``: the randomisation checks of :mod:`xai_core.trust` as two numbers per row.

For each image and (method, layer) of the evaluation, with the explained class of the row:

* ``sanity_mprt_spearman``: Spearman rank correlation between the method's signed map of
  the explained class and its map after *every* randomisable layer of a deep copy of the
  model has been re-initialised, from the output down (the last step of the cascading
  model-parameter randomisation of Adebayo et al. 2018, Quantus ``MPRT`` order, seed 42):
  :func:`xai_core.trust.model_randomisation` with ``order="cascading"`` and ``layers`` the
  last layer of the cascade.
* ``sanity_random_logit_spearman``: Spearman rank correlation between the map of the
  explained class and the map of another class, drawn as Quantus ``RandomLogit`` draws it
  for that image alone (seed 42): :func:`xai_core.trust.random_logit` on the single image.
  One image at a time, so a row's number does not depend on how the run was batched.

The maps are those :func:`xai_core.trust.attributions` compares (signed, upsampled
bilinearly to the input), not the ReLU-ed, scaled maps the faithfulness metrics score.
Values lie in ``[-1, 1]``; near 1 means the map barely depends on the model's weights
(or on the class): the method fails the check. ``nan`` where a map is constant.

The model passed in is never changed: the checks randomise a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xai_core.evaluate.methods import INPUT, Method
from xai_core.trust import model_randomisation, random_logit, randomisable_layers

#: Quantus's default seed, used by both checks.
SEED = 42


def trust_arguments(method: Method, layer: str, cam_layer: str) -> dict[str, object]:
    """The keyword arguments of the :mod:`xai_core.trust` checks for one evaluation (method, layer).

    CAM methods and fusions are explained at ``layer``; relevance methods (FG-CAM, LRP) take
    their CAM components at ``cam_layer`` and carry them to ``layer`` (``"input"`` or a layer).
    """
    kwargs: dict[str, object] = {"method": method.info.key, **method.registry_params()}
    if method.info.relevance:
        kwargs.update(layer=cam_layer, target_layer=layer if layer != INPUT else "input")
    else:
        kwargs["layer"] = layer
    return kwargs


def sanity_scores(
    model, x: torch.Tensor, method: Method, layer: str, class_idx: Sequence[int], *, cam_layer: str
) -> dict[str, np.ndarray]:
    """``{"sanity_mprt_spearman": [B], "sanity_random_logit_spearman": [B]}`` for a batch of prepared images.

    See the module docstring for the definitions; ``class_idx`` is each row's explained class.
    """
    kwargs = trust_arguments(method, layer, cam_layer)
    classes = np.asarray(class_idx, dtype=np.int64)
    last = randomisable_layers(model.module)[0]  # the cascade runs from the output down: this one comes last
    mprt = model_randomisation(
        model, x, order="cascading", layers=[last], seed=SEED, similarities=("spearman",), class_idx=classes, **kwargs
    )
    logit = [
        random_logit(model, x[i : i + 1], seed=SEED, similarities=("spearman",), class_idx=classes[i : i + 1], **kwargs)
        for i in range(len(x))
    ]
    return {
        "sanity_mprt_spearman": mprt.scores["spearman"][0],
        "sanity_random_logit_spearman": np.concatenate([r.scores["spearman"][0] for r in logit]),
    }

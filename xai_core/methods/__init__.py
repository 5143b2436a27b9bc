"""Every explainer: pure maths per method, one registry, and one CAM driver."""

from xai_core.methods.base import class_gradients, select_classes
from xai_core.methods.context import CamContext, ExplainRequest, MapResult
from xai_core.methods.registry import (
    EXPLAINERS,
    Explainer,
    Param,
    get_explainer,
    list_explainers,
    register_explainer,
    unregister_explainer,
)
from xai_core.methods.transformer import register_transformer_explainers  # registers the transformer methods

__all__ = [
    "EXPLAINERS",
    "CamContext",
    "ExplainRequest",
    "Explainer",
    "MapResult",
    "Param",
    "class_gradients",
    "get_explainer",
    "list_explainers",
    "register_explainer",
    "unregister_explainer",
    "register_transformer_explainers",
    "select_classes",
]

"""Every explainer: pure maths per method, one registry, and one CAM driver."""

from xai_core.methods.base import CamResult, class_gradients, compute_cams, run_cams, select_classes
from xai_core.methods.context import CamContext, ExplainRequest, MapResult
from xai_core.methods.registry import (
    EXPLAINERS,
    METHODS,
    Explainer,
    MethodSpec,
    Param,
    get_explainer,
    get_method,
    list_explainers,
    list_methods,
    register_explainer,
    register_method,
)
from xai_core.methods.transformer import register_transformer_explainers  # registers the transformer methods

__all__ = [
    "EXPLAINERS",
    "METHODS",
    "CamContext",
    "CamResult",
    "ExplainRequest",
    "Explainer",
    "MapResult",
    "MethodSpec",
    "Param",
    "class_gradients",
    "compute_cams",
    "get_explainer",
    "get_method",
    "list_explainers",
    "list_methods",
    "register_explainer",
    "register_method",
    "register_transformer_explainers",
    "run_cams",
    "select_classes",
]

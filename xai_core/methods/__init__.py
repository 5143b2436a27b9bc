"""CAM-family methods: pure maths per method, a registry, and one driver."""

from xai_core.methods.base import CamResult, class_gradients, compute_cams, select_classes
from xai_core.methods.context import CamContext
from xai_core.methods.registry import METHODS, MethodSpec, Param, get_method, list_methods, register_method

__all__ = [
    "METHODS",
    "CamContext",
    "CamResult",
    "MethodSpec",
    "Param",
    "class_gradients",
    "compute_cams",
    "get_method",
    "list_methods",
    "register_method",
    "select_classes",
]

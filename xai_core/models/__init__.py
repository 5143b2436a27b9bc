"""Model registry, loading and preprocessing."""

from xai_core.models.preprocess import PreparedInput, Preprocessing, prepare
from xai_core.models.registry import (
    LoadedModel,
    ModelSpec,
    build_model,
    clear_cache,
    get_spec,
    list_models,
    load_model,
    register,
)

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "PreparedInput",
    "Preprocessing",
    "build_model",
    "clear_cache",
    "get_spec",
    "list_models",
    "load_model",
    "prepare",
    "register",
]

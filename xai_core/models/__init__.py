"""Model registry, devices, loading and preprocessing."""

from xai_core.models.device import DeviceError, available_devices, default_device, resolve_device
from xai_core.models.preprocess import PreparedInput, Preprocessing, prepare
from xai_core.models.registry import (
    LoadedModel,
    ModelInfo,
    ModelSpec,
    build_model,
    clear_cache,
    get_spec,
    list_models,
    load_model,
    register,
)
from xai_core.models.weights import save_safetensors

__all__ = [
    "DeviceError",
    "LoadedModel",
    "ModelInfo",
    "ModelSpec",
    "PreparedInput",
    "Preprocessing",
    "available_devices",
    "build_model",
    "clear_cache",
    "default_device",
    "get_spec",
    "list_models",
    "load_model",
    "prepare",
    "register",
    "resolve_device",
    "save_safetensors",
]

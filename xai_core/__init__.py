"""xai_core: saliency maps for CNN image classifiers, from a notebook or the dashboard.

Grad-CAM and its family, FM-G-CAM (fused multi-class maps) and FG-CAM (fine-grained
maps), with a model registry, rendering and faithfulness metrics. See README.md.
"""

from __future__ import annotations

from xai_core.api import Explanation, explain, explain_fine
from xai_core.errors import (
    DeviceError,
    ImageError,
    LayerError,
    LayerNotFoundError,
    MethodError,
    UnknownNameError,
    WeightsError,
    XaiCoreError,
)
from xai_core.fusion import BRIGHTNESS, FusedMap, brightness_caption, fm_g_cam
from xai_core.images import read_image
from xai_core.methods import (
    EXPLAINERS,
    Explainer,
    Param,
    get_explainer,
    list_explainers,
    register_explainer,
    unregister_explainer,
)
from xai_core.models import (
    LoadedModel,
    build_model,
    default_device,
    get_spec,
    list_models,
    load_model,
    prepare,
    register,
    resolve_device,
)
from xai_core.render import (
    DEFAULT_COLORMAP,
    class_colours,
    colour_scale,
    common_classes,
    common_grid,
    compare_maps,
    dominant_class,
    legend,
    render_fused,
    render_fused_relevance,
    render_map,
    render_on_original,
)

__version__ = "0.1.0"


__all__ = [
    "DeviceError",
    "default_device",
    "resolve_device",
    "BRIGHTNESS",
    "DEFAULT_COLORMAP",
    "brightness_caption",
    "class_colours",
    "colour_scale",
    "common_classes",
    "common_grid",
    "compare_maps",
    "EXPLAINERS",
    "Explainer",
    "Param",
    "get_explainer",
    "list_explainers",
    "register_explainer",
    "unregister_explainer",
    "Explanation",
    "FusedMap",
    "ImageError",
    "LayerError",
    "LayerNotFoundError",
    "LoadedModel",
    "MethodError",
    "UnknownNameError",
    "WeightsError",
    "XaiCoreError",
    "build_model",
    "dominant_class",
    "explain",
    "explain_fine",
    "fm_g_cam",
    "get_spec",
    "legend",
    "list_models",
    "load_model",
    "prepare",
    "read_image",
    "register",
    "render_fused",
    "render_fused_relevance",
    "render_map",
    "render_on_original",
]

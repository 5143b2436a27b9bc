"""FM-G-CAM fusion of per-class maps (also used for fine-grained FG-CAM maps)."""

from xai_core.fusion.fmgcam import (
    ACTIVATIONS,
    BRIGHTNESS,
    NORMALISATIONS,
    FusedMap,
    brightness_caption,
    end_activation,
    filter_maps,
    fm_g_cam,
    joint_minmax,
    l2_normalise,
    scale_by_probability,
)

__all__ = [
    "ACTIVATIONS",
    "BRIGHTNESS",
    "NORMALISATIONS",
    "FusedMap",
    "brightness_caption",
    "end_activation",
    "filter_maps",
    "fm_g_cam",
    "joint_minmax",
    "l2_normalise",
    "scale_by_probability",
]

"""FM-G-CAM fusion of per-class maps (also used for fine-grained FG-CAM maps)."""

from xai_core.fusion.fmgcam import (
    ACTIVATIONS,
    NORMALISATIONS,
    FusedMap,
    end_activation,
    filter_maps,
    fm_g_cam,
    joint_minmax,
    l2_normalise,
)

__all__ = [
    "ACTIVATIONS",
    "NORMALISATIONS",
    "FusedMap",
    "end_activation",
    "filter_maps",
    "fm_g_cam",
    "joint_minmax",
    "l2_normalise",
]

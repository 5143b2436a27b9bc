"""Rendering: colour maps, fused colouring, overlays (numpy and Pillow; no model code)."""

from xai_core.render.colour import (
    CLASS_COLOURS,
    COLORMAPS,
    SIGNED_COLORMAPS,
    apply_colormap,
    class_colours,
    colormap,
    colourise_fused,
    minmax,
    overlay,
    place_on_original,
    resize_map,
    signed_colormap,
)

__all__ = [
    "CLASS_COLOURS",
    "COLORMAPS",
    "SIGNED_COLORMAPS",
    "apply_colormap",
    "class_colours",
    "colormap",
    "colourise_fused",
    "minmax",
    "overlay",
    "place_on_original",
    "resize_map",
    "signed_colormap",
]

"""Rendering: colour maps, palette, fused colouring, colour scales, overlays, explanations drawn (no model code)."""

from xai_core.render.colour import (
    CLASS_COLOURS,
    COLORMAPS,
    DEFAULT_COLORMAP,
    SIGNED_COLORMAPS,
    apply_colormap,
    class_colours,
    colormap,
    colourise_fused,
    hex_colour,
    minmax,
    overlay,
    place_on_original,
    resize_map,
    signed_colormap,
)
from xai_core.render.explanation import (
    dominant_class,
    legend,
    render_fused,
    render_fused_relevance,
    render_map,
    render_on_original,
)
from xai_core.render.palette import BASE_PALETTE, CVD_TYPES, class_palette, cvd_simulate, to_cam02ucs
from xai_core.render.scale import SCALE_KINDS, ColourScale, colour_scale

__all__ = [
    "dominant_class",
    "legend",
    "render_fused",
    "render_fused_relevance",
    "render_map",
    "render_on_original",
    "BASE_PALETTE",
    "CLASS_COLOURS",
    "COLORMAPS",
    "CVD_TYPES",
    "DEFAULT_COLORMAP",
    "SCALE_KINDS",
    "SIGNED_COLORMAPS",
    "ColourScale",
    "apply_colormap",
    "class_colours",
    "class_palette",
    "colormap",
    "colour_scale",
    "colourise_fused",
    "cvd_simulate",
    "hex_colour",
    "minmax",
    "overlay",
    "place_on_original",
    "resize_map",
    "signed_colormap",
    "to_cam02ucs",
]

"""Colour scales (colour bars) for every kind of map the dashboard draws.

Each map type gets a :class:`ColourScale`: a picture of the bar (``uint8``, high values at
the top) plus the data to draw one with a plotting library (colour stops and tick labels),
so a page can put a scale beside every map:

- ``"single"``: one class's map through a sequential colour map (default viridis), the
  map min-max scaled to [0, 1] as :func:`~xai_core.render.colour.apply_colormap` draws it.
- ``"signed"``: a signed map through a diverging colour map, symmetric around 0 (white),
  from ``-max|value|`` (blue: evidence against the class) to ``+max|value|`` (red: for it),
  as :func:`~xai_core.render.colour.signed_colormap` draws it.
- ``"fused"``: one bar per class, black (no evidence) to the class colour (the strongest
  value shown), as :func:`~xai_core.render.colour.colourise_fused` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xai_core.errors import MethodError, UnknownNameError
from xai_core.render.colour import (
    DEFAULT_COLORMAP,
    SIGNED_COLORMAPS,
    class_colours,
    colormap,
    hex_colour,
)

__all__ = ["SCALE_KINDS", "ColourScale", "colour_scale"]

#: The map types that have a colour scale.
SCALE_KINDS: tuple[str, ...] = ("single", "signed", "fused")


@dataclass(frozen=True)
class ColourScale:
    """A colour bar, as a picture and as data.

    Attributes:
        kind: ``"single"``, ``"signed"`` or ``"fused"``.
        title: what the colour means (for the bar's caption).
        image: ``uint8 [length, width, 3]``; row 0 is the top (the highest value). For
            ``"fused"`` the bar is split into one column band per class, left to right in
            rank order.
        ticks: ``(position, text)`` with position 0 = bottom, 1 = top.
        stops: plotly-style colour scale ``((position, "#rrggbb"), ...)`` of the bar
            (``"single"``/``"signed"``); for ``"fused"`` the stops of the top class.
        classes: for ``"fused"``: ``(label, "#rrggbb")`` per class, in rank order.
    """

    kind: str
    title: str
    image: np.ndarray
    ticks: tuple[tuple[float, str], ...]
    stops: tuple[tuple[float, str], ...]
    classes: tuple[tuple[str, str], ...] = ()


def _stops(lut: np.ndarray, n: int = 11) -> tuple[tuple[float, str], ...]:
    idx = np.linspace(0, 255, n).round().astype(int)
    return tuple((round(float(i) / 255.0, 4), hex_colour(tuple(lut[i]))) for i in idx)


def _bar(lut: np.ndarray, length: int, width: int) -> np.ndarray:
    idx = np.clip(np.round(np.linspace(255, 0, length)), 0, 255).astype(int)  # top = high
    return np.ascontiguousarray(np.repeat(lut[idx][:, None, :], width, axis=1))


def colour_scale(
    kind: str,
    *,
    colormap_name: str | None = None,
    max_abs: float | None = None,
    colours: Sequence[tuple[int, int, int]] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    length: int = 256,
    width: int = 24,
) -> ColourScale:
    """The colour scale of one map type.

    Args:
        kind: ``"single"``, ``"signed"`` or ``"fused"`` (:data:`SCALE_KINDS`).
        colormap_name: colour map (default viridis for ``"single"``, ``"RdBu_r"`` for ``"signed"``).
        max_abs: for ``"signed"``: the map's largest absolute value (tick labels show
            ``-max_abs, 0, +max_abs``); ``None`` labels the ends "strongest against/for".
        colours: for ``"fused"``: class colours (default :func:`class_colours` of ``len(labels)``).
        labels: for ``"fused"``: class names in rank order (default "class 1", ...).
        title: override the default title.
        length: bar length in pixels (>= 2).
        width: bar width in pixels (>= 1; for ``"fused"``, per class).

    Returns:
        A :class:`ColourScale`.

    Raises:
        UnknownNameError: unknown ``kind`` or colour map.
        MethodError: invalid sizes or a fused scale without classes.
    """
    if kind not in SCALE_KINDS:
        raise UnknownNameError("colour scale kind", kind, SCALE_KINDS)
    if length < 2 or width < 1:
        raise MethodError(f"A colour scale needs length >= 2 and width >= 1; got {length} x {width}.")
    if kind == "single":
        name = colormap_name or DEFAULT_COLORMAP
        lut = colormap(name)
        return ColourScale(
            kind=kind,
            title=title or "map value (0 = lowest, 1 = highest in this map)",
            image=_bar(lut, length, width),
            ticks=((0.0, "0 low"), (0.5, "0.5"), (1.0, "1 high")),
            stops=_stops(lut),
        )
    if kind == "signed":
        name = colormap_name or SIGNED_COLORMAPS[0]
        lut = colormap(name)
        if max_abs is not None and np.isfinite(max_abs) and max_abs > 0:
            ticks = ((0.0, f"-{max_abs:.3g} against"), (0.5, "0"), (1.0, f"+{max_abs:.3g} for"))
        else:
            ticks = ((0.0, "strongest against"), (0.5, "0"), (1.0, "strongest for"))
        return ColourScale(
            kind=kind,
            title=title or "signed evidence for the class (symmetric around 0)",
            image=_bar(lut, length, width),
            ticks=ticks,
            stops=_stops(lut),
        )
    # fused: one black-to-colour bar per class
    if colours is None and labels is None:
        raise MethodError("A fused colour scale needs the class colours or labels.")
    n = len(colours) if colours is not None else len(labels)  # type: ignore[arg-type]
    colours = list(colours) if colours is not None else class_colours(n)
    labels = list(labels) if labels is not None else [f"class {i + 1}" for i in range(n)]
    if len(labels) != len(colours) or not colours:
        raise MethodError(f"Got {len(colours)} colours for {len(labels)} class labels; give one colour per class.")
    ramp = np.linspace(1.0, 0.0, length)[:, None]  # top = the class colour at full strength
    bands = [np.repeat((ramp * np.asarray(c, np.float64)[None])[:, None, :], width, axis=1) for c in colours]
    image = (np.concatenate(bands, axis=1) + 0.5).astype(np.uint8)
    top = np.asarray(colours[0], np.float64)
    stops = tuple((round(t, 4), hex_colour(tuple(int(v + 0.5) for v in t * top))) for t in np.linspace(0, 1, 11))
    return ColourScale(
        kind=kind,
        title=title or "black = no evidence; full colour = the strongest value shown",
        image=image,
        ticks=((0.0, "none"), (1.0, "strongest")),
        stops=stops,
        classes=tuple((str(lbl), hex_colour(c)) for lbl, c in zip(labels, colours)),
    )

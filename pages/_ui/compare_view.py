"""The side-by-side figure: two maps on one colour scale and their difference (no model calls)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import xai_core as xc
from pages._ui.figures import FONT
from xai_core.render import overlay, render_difference, render_on_scale

#: Share of the figure's width between the panels: room for the first colour bar and its ticks.
SPACING = 0.1


def photo_under(picture: np.ndarray, comparison: xc.render.Comparison, box=None) -> np.ndarray:
    """The part of the upload both models saw (the comparison's box), on the comparison's grid, in grey.

    ``box``: the part of ``picture`` to show instead (one model on two images: each image's own crop box).
    """
    from PIL import Image

    h, w = comparison.size
    img = Image.fromarray(np.asarray(picture)).convert("L")
    box = box or comparison.box or (0, 0, img.width, img.height)
    grey = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR, box=box))
    return np.repeat(grey[..., None], 3, axis=2)


def _colour_bar(stops, lo: float, hi: float, x: float, title: str) -> go.Scatter:
    """An invisible trace that draws one colour bar (``lo``..``hi``) at ``x`` (paper coordinates)."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        showlegend=False,
        hoverinfo="skip",
        marker=dict(
            colorscale=[list(s) for s in stops],
            cmin=lo,
            cmax=hi,
            color=[lo, hi],
            showscale=True,
            colorbar=dict(x=x, xanchor="left", len=0.9, thickness=14, title=dict(text=title, side="right")),
        ),
    )


def comparison_figure(
    comparison: xc.render.Comparison,
    photo: np.ndarray | tuple[np.ndarray, np.ndarray],
    titles: tuple[str, str],
    *,
    colormap: str = xc.DEFAULT_COLORMAP,
    alpha: float = 0.6,
    height: int = 380,
    names: tuple[str, str] = ("A", "B"),
) -> go.Figure:
    """Map A, map B (one colour scale, one colour bar) and A - B (diverging, centred at 0, its own bar).

    ``photo``: one photo under all three panels (two models, one image), or one per map (one model,
    two images): then the difference is drawn over no photo (it belongs to neither image).
    ``names``: what the panels are called in the difference's title and colour bar.
    """
    c = comparison
    a, b = names
    diff = render_difference(c.diff, c.limit)
    if isinstance(photo, tuple):
        photo_a, photo_b = photo
        diff_panel = diff
    else:
        photo_a = photo_b = photo
        diff_panel = overlay(photo, diff, alpha)
    panels = [
        overlay(photo_a, render_on_scale(c.a, c.vmin, c.vmax, colormap), alpha),
        overlay(photo_b, render_on_scale(c.b, c.vmin, c.vmax, colormap), alpha),
        diff_panel,
    ]
    diff_title = f"Difference {a} − {b}<br>red: {a} stronger, blue: {b} stronger"
    fig = make_subplots(rows=1, cols=3, subplot_titles=(*titles, diff_title), horizontal_spacing=SPACING)
    values = [c.a, c.b, c.diff]
    for col, (img, v) in enumerate(zip(panels, values), start=1):
        fig.add_trace(
            go.Image(z=img, customdata=v[..., None], hovertemplate="value %{customdata[0]:.3g}<extra></extra>"),
            row=1,
            col=col,
        )
    unit = "map value (0-1 per map)" if c.values == "normalised" else "map value, both maps"
    single = xc.colour_scale("single", colormap_name=colormap).stops
    signed = xc.colour_scale("signed").stops
    domain_b = fig.layout.xaxis2.domain
    fig.add_trace(_colour_bar(single, c.vmin, c.vmax, domain_b[1] + 0.005, unit), row=1, col=2)
    fig.add_trace(_colour_bar(signed, -c.limit, c.limit, 1.005, f"{a} − {b} (0 = white)"), row=1, col=3)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="")
    fig.update_layout(
        height=height, margin=dict(l=10, r=90, t=70, b=10), font=dict(family=FONT, size=14), hovermode="closest"
    )
    return fig

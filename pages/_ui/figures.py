"""Plotly figures and downloadable files built from xai_core results (no model calls)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

import xai_core as xc
from xai_core.render.colour import apply_colormap
from xai_core.trust import SanityResult, display_maps, step_label

FONT = "Arial, Helvetica, sans-serif"
HOVER_GRID = 56  # hover cells per side on the interactive fused map


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=dict(family=FONT, size=15))
    return fig


def predictions_chart(exp: xc.Explanation, k: int, title: str = "Top predictions") -> go.Figure:
    """Horizontal bars of the explained classes; the first ``k`` (the fused ones) in their legend colour."""
    coloured = [r["colour"] for r in xc.legend(exp, k)]
    labels = list(exp.labels)[::-1]
    probs = [100 * p for p in exp.probs][::-1]
    colours = [coloured[i] if i < k else "#c9ced6" for i in range(exp.k_max)][::-1]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            marker_color=colours,
            text=[f"{p:.1f}%" for p in probs],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
        )
    )
    fig.update_xaxes(title="probability (%)", range=[0, max(probs) * 1.2 + 1])
    fig.update_layout(title=title)
    return _layout(fig, 60 + 34 * exp.k_max)


def xray_outputs_chart(
    model: xc.LoadedModel, probs: Sequence[float], flagged: Sequence[bool | None], *, watermark: str = ""
) -> go.Figure:
    """Every named pathology output, flagged where the operating threshold is known and exceeded.

    ``watermark`` (weights that give no result) replaces the title and is written across the plot.
    """
    thresholds = model.spec.thresholds or (float("nan"),) * len(model.labels)
    rows = [(name, 100 * float(p), t, f) for name, p, t, f in zip(model.labels, probs, thresholds, flagged) if name]
    rows.sort(key=lambda r: r[1])
    colour = {True: "#d62728", False: "#2a6fdb", None: "#8c8c8c"}
    fig = go.Figure(
        go.Bar(
            x=[r[1] for r in rows],
            y=[r[0] for r in rows],
            orientation="h",
            marker_color=[colour[r[3]] for r in rows],
            text=[f"{r[1]:.1f}%" for r in rows],
            textposition="outside",
            cliponaxis=False,
            customdata=[("unknown" if np.isnan(r[2]) else f"{100 * r[2]:.1f}%") for r in rows],
            hovertemplate="%{y}: %{x:.1f}% (operating threshold %{customdata})<extra></extra>",
            name="output",
        )
    )
    known = [(r[0], 100 * r[2]) for r in rows if not np.isnan(r[2])]
    if known:
        fig.add_trace(
            go.Scatter(
                x=[t for _, t in known],
                y=[n for n, _ in known],
                mode="markers",
                marker=dict(symbol="line-ns-open", size=18, color="black", line=dict(width=2)),
                name="operating threshold",
                hovertemplate="threshold %{x:.1f}%<extra></extra>",
            )
        )
    fig.update_xaxes(title="output (%)", range=[0, 118])
    if watermark:
        fig.add_annotation(
            text=watermark,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            textangle=-20,
            font=dict(size=30, color="rgba(198,40,40,0.35)"),
        )
    fig.update_layout(
        title=f"All pathology outputs: {watermark.lower()}"
        if watermark
        else "All pathology outputs (red: above the model's operating threshold)",
        # The legend sits above the plot, clear of the x axis title below it.
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    _layout(fig, 120 + 28 * len(rows))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def fused_hover_figure(exp: xc.Explanation, fused: xc.FusedMap, picture: np.ndarray, k: int) -> go.Figure:
    """The fused map as an image; hovering shows the dominant class and its value there."""
    h, w = picture.shape[:2]
    grid = (HOVER_GRID, HOVER_GRID)
    owner, value = xc.dominant_class(fused, grid)  # model-free
    names = [f"{r['label']} ({100 * r['probability']:.1f}%)" for r in xc.legend(exp, k)]
    text = np.where(value > 1e-3, np.asarray(names, dtype=object)[owner], "no class")
    fig = go.Figure(go.Image(z=picture, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=value,
            customdata=text,
            x0=w / grid[1] / 2 - 0.5,
            dx=w / grid[1],
            y0=h / grid[0] / 2 - 0.5,
            dy=h / grid[0],
            opacity=0.0,
            showscale=False,
            colorscale="Greys",
            hovertemplate="dominant class: %{customdata}<br>fused value: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(title="Hover: dominant class and its fused value")
    return _layout(fig, 520)


def curves_figure(results: dict[str, object], kind: str) -> go.Figure:
    """Insertion or deletion curves (``kind``) of several methods' MapEvaluation results."""
    fig = go.Figure()
    seen: list[np.ndarray] = []
    for i, (label, ev) in enumerate(results.items()):
        c = ev.curves
        y = np.asarray(c.insertion if kind == "insertion" else c.deletion, dtype=float)
        auc = c.insertion_auc if kind == "insertion" else c.deletion_auc
        # A curve equal to one drawn before is dashed: the two stay visible on top of each other.
        repeats = sum(1 for s in seen if s.shape == y.shape and np.allclose(s, y, atol=1e-6))
        seen.append(y)
        fig.add_trace(
            go.Scatter(
                x=100 * np.asarray(c.fractions),
                y=y,
                mode="lines",
                name=f"{label} (AUC {auc:.3f})",
                line=dict(color=LINE_COLOURS[i % len(LINE_COLOURS)], dash=DASHES[min(repeats, len(DASHES) - 1)]),
            )
        )
    better = "higher is better" if kind == "insertion" else "lower is better"
    fig.update_xaxes(title=f"pixels {'inserted' if kind == 'insertion' else 'deleted'} (%)")
    fig.update_yaxes(title="class probability", range=[0, 1.02])
    fig.update_layout(title=f"{kind.capitalize()} ({better})")
    return _legend_below(fig, len(results))


#: 20 distinguishable line colours (Plotly's Dark24 without its near-duplicates): no two methods share one.
LINE_COLOURS = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
    "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
)  # fmt: skip
#: Dash styles of a curve identical to one, two, three... curves drawn before it.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
PLOT_HEIGHT = 330  # px of plotting area of a curves figure; its legend goes below, clear of the x axis title


def _legend_below(fig: go.Figure, entries: int) -> go.Figure:
    """One legend entry per line under the plot and its x-axis title, the figure made tall enough for it."""
    legend_h = 22 * entries + 10
    top, axis = 50, 60  # title above; tick labels and the x-axis title below the plot
    fig.update_layout(
        height=top + PLOT_HEIGHT + axis + legend_h,
        margin=dict(l=10, r=10, t=top, b=axis + legend_h),
        font=dict(family=FONT, size=15),
        legend=dict(orientation="v", yanchor="top", y=-axis / PLOT_HEIGHT, xanchor="left", x=0.0),
    )
    return fig


def road_figure(results: dict[str, dict], order: str) -> go.Figure:
    """ROAD curves of one order (``"morf"`` or ``"lerf"``) of several maps' ``{order: RoadResult}``.

    Each curve starts at the unperturbed image's probability (0 % removed).
    """
    fig = go.Figure()
    for label, by_order in results.items():
        r = by_order[order]
        x = [0.0, *(100 * np.asarray(r.fractions))]
        y = [float(r.base[0]), *np.asarray(r.scores[0], dtype=float)]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"{label} (mean {float(r.mean[0]):.3f})",
                line=dict(color=LINE_COLOURS[len(fig.data) % len(LINE_COLOURS)]),
            )
        )
    name, better = ("MoRF", "lower is better") if order == "morf" else ("LeRF", "higher is better")
    first = "most" if order == "morf" else "least"
    fig.update_xaxes(title=f"pixels removed and imputed, {first} relevant first (%)")
    fig.update_yaxes(title="class probability", range=[0, 1.02])
    fig.update_layout(title=f"ROAD {name} ({better})")
    return _legend_below(fig, len(results))


# ----------------------------------------------------------------------------- sanity check

SANITY_CELL = 84  # px per map in the randomisation figure


def _png_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _columns(steps: Sequence[str]) -> list[str]:
    return ["original"] + [f"→ {step_label(name)}" for name in steps]


def sanity_maps_figure(picture: np.ndarray, results: dict[str, SanityResult], colormap: str) -> go.Figure:
    """The paper's figure: one row per method; the input, the trained model's map, then the map after each step.

    The steps are those of the cascading randomisation (layers re-initialised from the output
    down); cells of steps not run (a stopped check) are blank.
    """
    cell, gap = SANITY_CELL, 4
    steps = next(iter(results.values())).steps
    cols = 2 + len(steps)
    rows = len(results)
    canvas = np.full((rows * (cell + gap), cols * (cell + gap), 3), 255, np.uint8)

    def put(r: int, c: int, rgb: np.ndarray) -> None:
        y, x = r * (cell + gap), c * (cell + gap)
        canvas[y : y + cell, x : x + cell] = np.asarray(Image.fromarray(rgb).resize((cell, cell), Image.BILINEAR))

    view = np.asarray(Image.fromarray(picture).convert("RGB"))
    for r, result in enumerate(results.values()):
        put(r, 0, view)
        for c, m in enumerate(display_maps(result)[:, 0]):
            put(r, 1 + c, apply_colormap(m, colormap))
        for c in range(1 + result.completed, 1 + len(steps)):
            put(r, 1 + c, np.full((cell, cell, 3), 235, np.uint8))
    fig = go.Figure(go.Image(source=_png_uri(canvas), hoverinfo="skip"))
    centre = cell / 2
    fig.update_xaxes(
        tickvals=[c * (cell + gap) + centre for c in range(cols)],
        ticktext=["input", *_columns(steps)],
        side="top",
        showgrid=False,
        tickangle=0,
        tickfont=dict(size=12),
    )
    fig.update_yaxes(tickvals=[r * (cell + gap) + centre for r in range(rows)], ticktext=list(results), showgrid=False)
    fig.update_layout(
        height=rows * (cell + gap) + 80,
        margin=dict(l=10, r=10, t=70, b=5),
        font=dict(family=FONT, size=13),
        title=dict(text="Maps as the layers are randomised, from the output down (absolute values)", y=0.99),
    )
    return fig


def sanity_curves_figure(results: dict[str, SanityResult]) -> go.Figure:
    """Spearman rank correlation of each method's absolute map with the trained model's, per randomisation step."""
    fig = go.Figure()
    steps = next(iter(results.values())).steps
    ticks = _columns(steps)
    for i, (label, result) in enumerate(results.items()):
        curve = [1.0, *result.mean("spearman_abs")[: result.completed]]
        fig.add_trace(
            go.Scatter(
                x=ticks[: len(curve)],
                y=curve,
                mode="lines+markers",
                name=label + (" (stopped)" if result.stopped else ""),
                line=dict(color=LINE_COLOURS[i % len(LINE_COLOURS)]),
                hovertemplate=label + ", %{x}: %{y:.3f}<extra></extra>",
            )
        )
    fig.update_xaxes(title="layers randomised, from the output down to", categoryorder="array", categoryarray=ticks)
    low = min([-0.25, *(min(t.y) - 0.05 for t in fig.data)])
    fig.update_yaxes(title="Spearman, absolute maps", range=[low, 1.05], zeroline=True)
    fig.update_layout(
        title="Similarity to the trained model's map",
        height=max(280, 22 * len(results) + 100),
        margin=dict(l=10, r=10, t=50, b=10),
        font=dict(family=FONT, size=14),
        legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02),
    )
    return fig


# ----------------------------------------------------------------------------- downloads


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def figure_png(
    panels: list[tuple[np.ndarray, str]],
    title: str,
    legend_rows: list[dict],
    columns: int = 6,
    *,
    watermark: str = "",
) -> bytes:
    """Panels (``uint8 [H, W, 3]`` + caption) in a grid, with a title and a colour legend, as PNG.

    ``watermark`` (e.g. "RANDOM WEIGHTS - NOT A RESULT") is written in a red band under the
    title and diagonally across the panels, so that the figure cannot pass for a result.
    """
    tile = 224
    pad, cap_h = 12, 40
    band_h = 34 if watermark else 0
    title_h = 44 + band_h
    legend_h = 30 * len(legend_rows) + (10 if legend_rows else 0)
    n = len(panels)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    width = pad + cols * (tile + pad)
    height = title_h + rows * (tile + cap_h + pad) + legend_h + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 10), title, fill="black", font=_font(20))
    if watermark:
        draw.rectangle([0, 40, width, 40 + band_h - 4], fill="#c62828")
        draw.text((pad, 44), watermark, fill="white", font=_font(20))
    small = _font(14)
    for i, (img, caption) in enumerate(panels):
        x = pad + (i % cols) * (tile + pad)
        y = title_h + (i // cols) * (tile + cap_h + pad)
        canvas.paste(Image.fromarray(img).convert("RGB").resize((tile, tile)), (x, y))
        for j, line in enumerate(_wrap(caption, 30)[:2]):
            draw.text((x, y + tile + 3 + 17 * j), line, fill="black", font=small)
    y = title_h + rows * (tile + cap_h + pad)
    for r in legend_rows:
        draw.rectangle([pad, y + 4, pad + 20, y + 24], fill=r["colour"], outline="black")
        draw.text((pad + 30, y + 5), f"{r['label']}  {100 * r['probability']:.1f}%", fill="black", font=_font(16))
        y += 30
    if watermark:
        canvas = _diagonal_text(canvas, watermark, top=title_h)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _diagonal_text(canvas: Image.Image, text: str, top: int) -> Image.Image:
    """``canvas`` with ``text`` repeated diagonally in translucent red below ``top`` (a watermark)."""
    w, h = canvas.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    font = _font(max(18, min(w, h) // 14))
    stamp = Image.new("RGBA", (int(font.getlength(text)) + 20, font.size + 20), (0, 0, 0, 0))
    ImageDraw.Draw(stamp).text(
        (10, 5), text, fill=(198, 40, 40, 170), font=font, stroke_width=2, stroke_fill=(255, 255, 255, 140)
    )
    stamp = stamp.rotate(25, expand=True)
    step_x, step_y = stamp.width + 40, stamp.height + 20
    for y in range(top, h, step_y):
        for x in range(step_x // 2 if ((y - top) // step_y) % 2 else 0, w, step_x):
            layer.alpha_composite(stamp, (x, y))
    return Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def predictions_records(exp: xc.Explanation) -> list[dict]:
    """One row per explained class: rank, class index, label, probability."""
    return [
        {"rank": i + 1, "class_idx": c, "label": name, "probability": round(float(p), 6)}
        for i, (c, name, p) in enumerate(exp.predictions)
    ]


def predictions_json(exp: xc.Explanation, settings: dict) -> str:
    return json.dumps({"predictions": predictions_records(exp), "settings": settings}, indent=2, default=str)


def predictions_csv(exp: xc.Explanation, settings: dict) -> str:
    """Predictions as CSV, every row carrying the settings that produced it."""
    buf = io.StringIO()
    fields = ["rank", "class_idx", "label", "probability", *settings]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in predictions_records(exp):
        writer.writerow(
            {**row, **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in settings.items()}}
        )
    return buf.getvalue()

"""The comparison page's faithfulness table and curves: insertion/deletion, and ROAD on request.

No maths here: the scores come from :mod:`xai_core.metrics` (``evaluate_map`` through
:func:`pages._ui.compute.compute_metrics`, ``road_scores`` through
:func:`pages._ui.compute.road_work`). ROAD is slow (an iterative solve per imputed
image), so it runs as slow work of :mod:`pages._ui.running`: off by default, a Compute
button with an estimate, progress with time left, a working Stop, and each map's result
kept in the shared store (across reruns and sessions).
"""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures
from pages._ui.jobs import MISSING, STORE
from pages._ui.running import Work, attempt, obtain
from pages._ui.state import key
from xai_core.metrics import even_fractions
from xai_core.metrics.road import DEFAULT_NOISE

SCORE_LABELS = {
    "insertion_auc": "Insertion AUC ↑",
    "deletion_auc": "Deletion AUC ↓",
    "overall": "Insertion − deletion ↑",
    "average_drop": "Drop, map kept % ↓",
    "average_increase": "Rose, map kept (this image: 0 or 100) ↑",
    "multiplied_change": "Change when multiplied ↑",
    "top_removed_drop": "Drop, top 25% blurred ↑",
}
#: What each column measures and why its arrow points the way it does (shown under the table).
SCORE_HELP = {
    "insertion_auc": "area under the insertion curve: the class probability as the map's pixels are put back into "
    "a blurred image, most relevant first. High: the map found what the model needs.",
    "deletion_auc": "area under the deletion curve: the probability as the map's pixels are blurred, most relevant "
    "first. Low: removing what the map points at hurts at once.",
    "overall": "the two together (Insertion AUC minus Deletion AUC).",
    "average_drop": "Average Drop (Grad-CAM++ paper) for one image: the share of the class probability lost when "
    "only the map's region is kept (the image multiplied by the map, the rest blurred). Low is better: "
    "the map kept what mattered.",
    "average_increase": "Increase in Confidence (Grad-CAM++ paper) is a share of images; for one image it is a "
    "yes/no indicator: 100 when keeping only the map's region raised the probability, else 0. "
    "Many methods reach 100 on one image; it tells them apart only over many images (the evaluation command).",
    "multiplied_change": "the probability of the image multiplied by the normalised map, minus the original's "
    "(as the FG-CAM paper's Table 2). Higher is better.",
    "top_removed_drop": "the probability lost when the map's top 25% of pixels are blurred. High is better: this "
    "removes the map's region, where the Drop, map kept column keeps it, hence the opposite arrows.",
}
ROAD_LABELS = {"morf": "ROAD MoRF ↓", "lerf": "ROAD LeRF ↑"}
ROAD_POINTS = [1, 3, 9]
NOT_YET = "–"


def road_controls(page: str, column) -> tuple[float, ...] | None:
    """The ROAD toggle (off by default) and, when on, its number of points: the shares removed, or None."""
    on = column.toggle(
        "ROAD",
        value=False,
        key=key(page, "road"),
        help="Remove and debias (Rong et al., ICML 2022): pixels removed in the map's order are filled by noisy "
        "linear imputation, which leaks less of the removed shape to the model than a blur. Slow (an iterative "
        "solve per imputed image): computed after you press its button, with progress and Stop.",
    )
    points = column.select_slider(  # always drawn (disabled when off), so its choice survives the toggle
        "ROAD points",
        ROAD_POINTS,
        value=ROAD_POINTS[-1],
        key=key(page, "road_points"),
        disabled=not on,
        help="Shares of pixels removed, evenly spaced: 1 is 50 %; 3 is 25, 50, 75 %; 9 is 10 % to 90 % (as the "
        "evaluation command's --road). Each point imputes two images (MoRF and LeRF) per method.",
    )
    if not on:
        return None
    return even_fractions(points)


def table_rows(scored: dict, roads: dict, with_road: bool) -> list[dict]:
    """One row per scored method; ROAD columns (``NOT_YET`` until computed) when ROAD is on."""
    rows = []
    for label, ev in scored.items():
        row = {"method": label, **{SCORE_LABELS[k]: round(ev.scores[k], 4) for k in SCORE_LABELS}}
        if with_road:
            for order, column in ROAD_LABELS.items():
                row[column] = round(float(roads[label][order].mean[0]), 4) if label in roads else NOT_YET
        rows.append(row)
    return rows


def road_slow_work(
    model: xc.LoadedModel, model_id: str, todo: list[tuple[tuple, xc.Explanation]], cls: int, fractions: tuple
) -> Work:
    """The slow work computing ROAD for the maps in ``todo``, with its estimate from the last run here."""
    images = 2 * len(fractions) * len(todo)
    rate = STORE.rates.get((model_id, "road"))
    return Work(
        ("road-run", *(k for k, _ in todo)),
        compute.road_work(model, todo, cls, fractions),
        f"ROAD of {len(todo)} map{'s' if len(todo) > 1 else ''}",
        slow=True,
        unit="imputed images",
        estimate=images * rate if rate else None,
        how=f"{images} imputed images at {rate:.1f} s each, measured on the last ROAD run here" if rate else "",
        rate_key=(model_id, "road"),
    )


def show(
    page: str,
    scored: dict,
    maps: dict[str, xc.Explanation],
    model: xc.LoadedModel,
    model_id: str,
    digest: str,
    cls: int,
    road_fractions: tuple[float, ...] | None,
) -> None:
    """The table, the insertion/deletion curves and, when ``road_fractions`` is set, ROAD's columns and curves."""
    with_road = road_fractions is not None
    keys = (
        {label: compute.road_key(digest, model_id, maps[label], cls, road_fractions) for label in scored}
        if with_road
        else {}
    )

    def stored() -> dict:
        found = {label: STORE.get(k) for label, k in keys.items()}
        return {label: r for label, r in found.items() if r is not MISSING}

    table = st.empty()
    table.table(table_rows(scored, stored(), with_road))  # a static table wraps its headers: no column is cut
    left, right = st.columns(2)
    left.plotly_chart(figures.curves_figure(scored, "insertion"), key=key(page, "insertion"))
    right.plotly_chart(figures.curves_figure(scored, "deletion"), key=key(page, "deletion"))
    st.caption(
        "**How to read the columns** (↑ higher is better, ↓ lower is better). "
        + " ".join(f"**{SCORE_LABELS[k]}**: {SCORE_HELP[k]}" for k in SCORE_LABELS)
    )
    settings = readable_settings(next(iter(scored.values())).settings)
    if with_road:
        todo = [(keys[label], maps[label]) for label in scored if label not in stored()]
        if todo:
            work = road_slow_work(model, model_id, todo, cls, road_fractions)
            note = st.empty()  # cleared once every map is scored
            if work.estimate is None:
                note.caption(
                    f"{work.label}: {2 * len(road_fractions) * len(todo)} imputed images (MoRF and LeRF at "
                    f"{len(road_fractions)} share{'s' if len(road_fractions) > 1 else ''} each), each filled by an "
                    "iterative solve; the first run here measures how long one takes. Results are kept."
                )
            attempt(obtain, work, button="Compute ROAD")
            if len(stored()) == len(keys):
                note.empty()
        roads = stored()
        table.table(table_rows(scored, roads, with_road))
        if roads:
            left, right = st.columns(2)
            left.plotly_chart(figures.road_figure(roads, "morf"), key=key(page, "road_morf"))
            right.plotly_chart(figures.road_figure(roads, "lerf"), key=key(page, "road_lerf"))
            settings += (
                f" ROAD: {', '.join(f'{100 * q:.0f} %' for q in road_fractions)} of the pixels removed and filled by "
                f"noisy linear imputation (noise {DEFAULT_NOISE}); its score is the mean class probability over those "
                "shares."
            )
    st.caption(settings)


def readable_settings(settings: dict) -> str:
    """The scoring settings in a sentence (``MapEvaluation.settings``), for the caption under the table."""
    parts = []
    if "blur" in settings:
        parts.append(f"Removed pixels are blurred ({settings['blur']})")
    if "pixels_per_step" in settings:
        parts.append(f"each curve point moves {settings['pixels_per_step']:,} pixels")
    if "keep_fraction" in settings and settings["keep_fraction"] is not None:
        parts.append(f"'map kept' keeps the map's top {100 * float(settings['keep_fraction']):.0f}%")
    if "top_removed_fraction" in settings:
        parts.append(f"'top blurred' blurs the map's top {100 * float(settings['top_removed_fraction']):.0f}%")
    return ("; ".join(parts) + ".") if parts else ""

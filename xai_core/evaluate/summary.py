"""The summary of a results folder (or several: shards, partial runs) as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import numpy as np

SUMMARY_METRICS = (
    ("A.D.", "average_drop", "{:.2f}"),
    ("A.I.", "average_increase", "{:.2f}"),
    ("Insertion", "insertion_auc", "{:.4f}"),
    ("Deletion", "deletion_auc", "{:.4f}"),
    ("Overall", "overall", "{:.4f}"),
    ("Mult. incr. %", "multiplied_increased", "{:.1f}"),
    ("Top-25% drop %", "top_removed_drop_percent", "{:.2f}"),
    ("ROAD MoRF", "road_morf", "{:.4f}"),
    ("ROAD LeRF", "road_lerf", "{:.4f}"),
)
HEAD = ("model", "method", "layer", "images", "errors", "top-1 acc. %", *(h for h, _, _ in SUMMARY_METRICS))


def summary_rows(rows: Iterable[dict]) -> list[list[str]]:
    """Mean of each metric per model, method and layer, with counts (one list of cells per group).

    ``A.I.`` and ``Mult. incr. %`` are percentages of images; the others are means.
    """
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["method"], row["layer"]), []).append(row)
    out = []
    for (model, method, layer), items in groups.items():
        ok = [r for r in items if not r["error"]]
        labelled = [r for r in ok if r["correct"] is not None]
        acc = f"{100 * np.mean([bool(r['correct']) for r in labelled]):.1f}" if labelled else ""
        cells = [model, method, layer, str(len(ok)), str(len(items) - len(ok)), acc]
        for _, column, fmt in SUMMARY_METRICS:
            values = [float(r[column]) for r in ok if r[column] is not None]
            scale = 100.0 if column == "multiplied_increased" else 1.0
            cells.append(fmt.format(scale * float(np.mean(values))) if values else "")
        out.append(cells)
    return out


def summarise(rows: list[dict]) -> str:
    """Markdown table of :func:`summary_rows`, with the notes that say how to read it."""
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cells) + " |" for cells in summary_rows(rows)]
    steps = sorted({str(r["pixels_per_step"]) for r in rows if r["pixels_per_step"]})
    notes = [
        "",
        "A.D. / A.I.: Average Drop / Increase in % (keep the top 50 % of the map, blur the rest; lower A.D., "
        "higher A.I. are better). Insertion / Deletion: AUC of the class probability (higher insertion, lower "
        "deletion are better); Overall = Insertion - Deletion. Mult. incr. %: images whose class probability "
        "rose when the image was multiplied by the map. Top-25% drop %: relative drop when the top 25 % is blurred.",
        "Blur: Gaussian, kernel 11, sigma 5, on the normalised input. Pixels per insertion/deletion step: "
        + (", ".join(steps) if steps else "-")
        + ". Signed input-layer maps (FG-CAM, LRP at 'input'): A.D./A.I. keep only positive pixels of the top 50 %.",
    ]
    return "\n".join(lines + notes) + "\n"


def summary_csv(rows: list[dict]) -> str:
    """The same table as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEAD)
    writer.writerows(summary_rows(rows))
    return buffer.getvalue()

"""The chest X-ray page's PDF report: gathers what the page shows into :class:`xai_core.report.XrayReport`.

No layout or PDF code here: :func:`xai_core.report.xray_report_pdf` writes the file.
"""

from __future__ import annotations

import math

import numpy as np

import xai_core as xc
from pages._ui.views import full_image, horizontal
from pages._ui.widgets import Display
from xai_core.report import Figure, Finding, WeightsStatus, XrayReport, xray_report_pdf


def build_report(
    *,
    title: str,
    xray,
    model: xc.LoadedModel,
    probs,
    exp: xc.Explanation,
    view: dict,
    display: Display,
    settings: dict,
    status: WeightsStatus,
) -> XrayReport:
    """The report's content: the image as read, every finding, the maps as the page draws them."""
    thresholds = model.spec.thresholds or (math.nan,) * len(model.labels)
    findings = [
        Finding(name, float(p), None if math.isnan(t) else float(t))
        for name, p, t in zip(model.labels, list(map(float, probs)), thresholds)
        if name
    ]
    rec = getattr(xray, "record", None)
    k = view["k"]
    fused_scale = xc.colour_scale("fused", colours=xc.class_colours(k), labels=list(exp.labels))
    kind = "signed" if display.signed else "single"
    single = xc.colour_scale(kind, colormap_name=None if display.signed else display.colormap, length=320, width=14)
    ticks = "  -  ".join(text for _, text in single.ticks)
    return XrayReport(
        title=title,
        image=full_image(xray.pixels),
        reading=rec.rows() if rec is not None else [("Format", xray.source_format)],
        reading_notes=list(xray.notes or ("read as is",)),
        findings=findings,
        fused=Figure(
            np.asarray(view["fused"]),
            f"FM-G-CAM fused map of the top {k} pathologies ({exp.method} at "
            f"{exp.layer}): each region in the colour of the pathology whose evidence dominates there.",
        ),  # fmt: skip
        legend=view["legend"],
        fused_scale=Figure(horizontal(fused_scale.image), f"Colour scale: {fused_scale.title}"),
        maps=[Figure(np.asarray(img), cap) for img, cap in view["panels"][2:]],
        map_scale=Figure(horizontal(single.image), f"Colour scale of the per-pathology maps: {single.title} ({ticks})"),
        model=model.spec.label,
        status=status,
        settings=settings,
    )


def report_pdf(**kwargs) -> bytes:
    """:func:`build_report` written as PDF bytes."""
    return xray_report_pdf(build_report(**kwargs))

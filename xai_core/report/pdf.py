"""The clinician's PDF report of a chest X-ray explanation, written with fpdf2.

fpdf2 was chosen because it is a real PDF writer in pure Python (no system library, no
browser, no LaTeX), embeds PNG images losslessly, and supports rotated, translucent text
(the watermark on every page) and tables; reportlab would do as well but is larger and
not otherwise needed, and printing a web page to PDF would need a browser on the server.

The report holds only what it is given: the image as read and how it was read, every
finding with its probability and the model's operating threshold, the fused and
per-pathology maps with their colour scales, the model, its weights and every setting,
the date, and the notice that this is a research tool. With weights that give no result
(random, or a file of unknown provenance) every page carries a watermark and no finding
is flagged.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from xai_core.report.status import WeightsStatus

NOTICE = (
    "Research tool, not a diagnostic device. The outputs and maps show what a research model responds to; "
    "they are not a diagnosis and must not be used for patient care."
)


@dataclass(frozen=True)
class Finding:
    """One pathology output: its name, the model's output, its operating threshold (None: unknown)."""

    name: str
    probability: float
    threshold: float | None = None


@dataclass(frozen=True)
class Figure:
    """An image for the report: ``uint8 [H, W, 3]`` (or ``[H, W]``) and its caption."""

    image: np.ndarray
    caption: str


@dataclass
class XrayReport:
    """Everything the report shows (plain data; no model, no Streamlit).

    Attributes:
        title: the report's title (the file name, for example).
        image: the X-ray as read.
        reading: ``(label, value)`` rows of how the file was read (format, size, windowing...).
        reading_notes: the reader's notes.
        findings: every named output.
        fused: the fused map, its legend rows ``{"label", "colour", "probability"}`` and colour scale.
        maps: the per-pathology maps with their captions, and their colour scale.
        model: the model's name; status: what its weights allow (see :func:`weights_status`).
        settings: every setting that produced the maps.
        created: when the report was made (default: now, UTC).
    """

    title: str
    image: np.ndarray
    reading: Sequence[tuple[str, str]]
    reading_notes: Sequence[str]
    findings: Sequence[Finding]
    fused: Figure
    legend: Sequence[dict]
    fused_scale: Figure | None
    maps: Sequence[Figure]
    map_scale: Figure | None
    model: str
    status: WeightsStatus
    settings: dict
    created: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))


def _text(value: object) -> str:
    """``value`` as text the PDF's core font can write (Latin-1; other characters approximated)."""
    s = str(value)
    for a, b in {"\u2014": "-", "\u2013": "-", "\u2192": "->", "\u2191": "(higher better)", "\u2193": "(lower better)",
                 "\u2019": "'", "\u00b7": "-", "\u2212": "-"}.items():  # fmt: skip
        s = s.replace(a, b)
    return s.encode("latin-1", "replace").decode("latin-1")


def _png(image: np.ndarray) -> io.BytesIO:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    buf.seek(0)
    return buf


def xray_report_pdf(report: XrayReport) -> bytes:
    """The report as PDF bytes (A4 portrait).

    Raises:
        ImportError: fpdf2 is not installed (``pip install fpdf2``).
    """
    from fpdf import FPDF

    status = report.status
    flags = status.flags_allowed

    class _Pdf(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "B", 9)
            self.set_text_color(90, 90, 90)
            self.cell(0, 5, _text(f"Chest X-ray explanation report - {report.title}"), align="L")
            self.ln(6)
            self.set_text_color(0, 0, 0)
            if status.banner:  # the watermark, on every page, under the content drawn after it
                with self.local_context(fill_opacity=0.18, text_color=(198, 40, 40)):
                    self.set_font("Helvetica", "B", 44)
                    with self.rotation(35, x=self.w / 2, y=self.h / 2):
                        width = self.get_string_width(status.banner)
                        self.text(self.w / 2 - width / 2, self.h / 2, status.banner)
                self.set_font("Helvetica", "B", 11)
                self.set_fill_color(198, 40, 40)
                self.set_text_color(255, 255, 255)
                self.cell(0, 7, _text(status.banner), align="C", fill=True)
                self.ln(9)
                self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Helvetica", "", 7)
            self.set_text_color(90, 90, 90)
            self.multi_cell(0, 3.2, _text(f"{NOTICE} Page {self.page_no()}/{{nb}}."), align="C")
            self.set_text_color(0, 0, 0)

    pdf = _Pdf(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_title(_text(f"Chest X-ray explanation report - {report.title}"))
    pdf.set_creator("xai_core")
    pdf.add_page()

    def heading(text: str) -> None:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 13)
        pdf.cell(0, 7, _text(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9.5)

    def para(text: str, size: float = 9.5, style: str = "") -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, 4.6, _text(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, _text(report.title), new_x="LMARGIN", new_y="NEXT")
    para(f"Created {report.created:%Y-%m-%d %H:%M} UTC. Model: {report.model}. Weights: {status.explanation}")
    pdf.set_text_color(150, 0, 0)
    para(NOTICE, style="B")
    pdf.set_text_color(0, 0, 0)

    heading("The image and how it was read")
    top = pdf.get_y()
    pdf.image(_png(report.image), x=pdf.l_margin, y=top, w=62)
    h_img = 62 * report.image.shape[0] / report.image.shape[1]
    pdf.set_xy(pdf.l_margin + 66, top)
    with pdf.table(
        col_widths=(40, 80), width=120, align="LEFT", text_align="LEFT", line_height=4.4, first_row_as_headings=False
    ) as table:
        for label, value in report.reading:
            row = table.row()
            row.cell(_text(label))
            row.cell(_text(value))
    for note in report.reading_notes:
        pdf.set_x(pdf.l_margin + 66)
        pdf.multi_cell(120, 4.4, _text(f"- {note}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + h_img) + 3)

    heading("Findings")
    if flags:
        para("Each output is an independent (sigmoid) score; 'above' marks an output over the model's published "
             "operating threshold.")  # fmt: skip
    else:
        para(f"No output is flagged: {status.explanation}")
    with pdf.table(col_widths=(60, 30, 40, 40), width=170, text_align=("LEFT", "RIGHT", "RIGHT", "CENTER"),
                   line_height=4.6) as table:  # fmt: skip
        head = table.row()
        for name in ("Pathology", "Output", "Operating threshold", "Above threshold"):
            head.cell(name)
        for f in sorted(report.findings, key=lambda f: -f.probability):
            row = table.row()
            row.cell(_text(f.name))
            row.cell(f"{100 * f.probability:.1f}%")
            row.cell("unknown" if f.threshold is None else f"{100 * f.threshold:.1f}%")
            if not flags or f.threshold is None:
                row.cell("not flagged" if not flags else "-")
            else:
                row.cell("ABOVE" if f.probability > f.threshold else "below")

    if pdf.get_y() + 90 > pdf.h - 20:  # the heading stays with its map
        pdf.add_page()
    heading("FM-G-CAM fused map")
    top = pdf.get_y()
    pdf.image(_png(report.fused.image), x=pdf.l_margin, y=top, w=75)
    pdf.set_xy(pdf.l_margin + 80, top)
    para(report.fused.caption, size=8.5)
    for row in report.legend:
        pdf.set_x(pdf.l_margin + 80)
        r, g, b = _rgb(row["colour"])
        pdf.set_fill_color(r, g, b)
        pdf.cell(5, 5, "", fill=True, border=1)
        pdf.cell(0, 5, _text(f"  {row['label']}  {100 * row['probability']:.1f}%"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_fill_color(255, 255, 255)
    if report.fused_scale is not None:
        pdf.set_x(pdf.l_margin + 80)
        pdf.image(_png(report.fused_scale.image), x=pdf.l_margin + 80, w=60, h=4 * len(report.legend) + 2)
        pdf.set_x(pdf.l_margin + 80)
        para(report.fused_scale.caption, size=8)
    pdf.set_y(max(pdf.get_y(), top + 75 * report.fused.image.shape[0] / report.fused.image.shape[1]) + 3)

    if pdf.get_y() + 60 > pdf.h - 20:
        pdf.add_page()
    heading("Each pathology's own map")
    per_row, w = 4, 42
    for start in range(0, len(report.maps), per_row):
        top = pdf.get_y()
        if top + w + 12 > pdf.h - 20:
            pdf.add_page()
            top = pdf.get_y()
        for i, fig in enumerate(report.maps[start : start + per_row]):
            x = pdf.l_margin + i * (w + 3)
            pdf.image(_png(fig.image), x=x, y=top, w=w, h=w)
            pdf.set_xy(x, top + w + 0.5)
            pdf.set_font("Helvetica", "", 7.5)
            pdf.multi_cell(w, 3.4, _text(fig.caption))
        pdf.set_y(top + w + 9)
    if report.map_scale is not None:
        pdf.image(_png(report.map_scale.image), x=pdf.l_margin, w=80, h=4)
        para(report.map_scale.caption, size=8)

    heading("Model, weights and settings")
    with pdf.table(col_widths=(50, 120), width=170, text_align="LEFT", line_height=4.4,
                   first_row_as_headings=False) as table:  # fmt: skip
        for k, v in [("model", report.model), ("weights", status.kind), *report.settings.items()]:
            row = table.row()
            row.cell(_text(k))
            row.cell(_text(v))
    return bytes(pdf.output())


def _rgb(colour: object) -> tuple[int, int, int]:
    """``(r, g, b)`` of a ``"#rrggbb"`` string or an RGB tuple."""
    if isinstance(colour, str) and colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    r, g, b = colour  # type: ignore[misc]
    return int(r), int(g), int(b)

"""What a result may claim, and the clinician's PDF report of the chest X-ray page.

:func:`weights_status` says whether a model's outputs are a result at all (published
weights) or not (random weights, or a weights file of unknown provenance whose
calibration the published operating thresholds do not describe). The dashboard and the
PDF report use it to withhold threshold flags and to watermark what they produce.
:func:`coinciding_groups` finds the methods whose maps are the same (a comparison then
says so, rather than drawing one curve over another). :func:`xray_report_pdf` writes the
chest X-ray page's report (fpdf2; see :mod:`xai_core.report.pdf` for why).
"""

from __future__ import annotations

from xai_core.report.coincide import coinciding_groups
from xai_core.report.pdf import Figure, Finding, XrayReport, xray_report_pdf
from xai_core.report.status import WeightsStatus, weights_status

__all__ = ["Figure", "Finding", "WeightsStatus", "XrayReport", "coinciding_groups", "weights_status", "xray_report_pdf"]

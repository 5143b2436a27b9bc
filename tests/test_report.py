"""xai_core.report: what a model's weights let a result claim, and the clinician's PDF."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from xai_core.report import weights_status


def test_weights_status_only_published_weights_are_a_result():
    assert weights_status("default").is_result and weights_status("default").banner == ""
    for source in ("random", "random (no default weights)"):
        status = weights_status(source)
        assert status.kind == "random" and not status.flags_allowed
        assert "NOT A RESULT" in status.banner
    unknown = weights_status("/tmp/xai-weights-1/mine.pt")
    assert unknown.kind == "unknown" and not unknown.flags_allowed and unknown.banner


def test_figure_png_watermark_is_drawn():
    from pages._ui import figures

    panels = [(np.full((40, 40, 3), 30, np.uint8), "map")] * 3
    legend = [{"colour": "#1f77b4", "label": "a", "probability": 0.5}]
    plain = np.asarray(Image.open(io.BytesIO(figures.figure_png(panels, "t", legend))))
    marked = np.asarray(
        Image.open(io.BytesIO(figures.figure_png(panels, "t", legend, watermark="RANDOM WEIGHTS - NOT A RESULT")))
    )
    band = marked[45:65]
    assert ((band[..., 0] > 180) & (band[..., 1] < 80)).mean() > 0.5, "a red band under the title"
    assert marked.shape[0] > plain.shape[0]
    red = (marked[..., 0].astype(int) - marked[..., 2].astype(int)) > 50
    assert red[80:].mean() > 0.005, "the diagonal watermark crosses the panels"


def test_coinciding_groups_up_to_scale_only():
    from xai_core.report import coinciding_groups

    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    maps = {"Grad-CAM": a, "CAM": 49 * a, "Grad-CAM++": a + 0.1 * rng.normal(size=(7, 7)), "HiResCAM": a.copy()}
    assert coinciding_groups(maps) == [["Grad-CAM", "CAM", "HiResCAM"]]
    assert coinciding_groups({"x": a, "y": -a}) == [], "a sign flip is a different map"

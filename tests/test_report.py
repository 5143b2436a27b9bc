"""xai_core.report: what a model's weights let a result claim, and the clinician's PDF."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
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


def test_fused_map_default_shows_the_top_class_colour_on_a_red_object():
    """Issue 23 item 9: at the default display the top class's colour reads on a red object."""
    import xai_core as xc
    from pages._ui.views import fused_picture
    from pages._ui.widgets import Display

    rng = np.random.default_rng(0)
    red = np.zeros((224, 224, 3), np.uint8)
    red[..., 0] = 200 + rng.integers(0, 40, (224, 224))
    exp = xc.explain("efficientnet_lite0", Image.fromarray(red), top_k=3)
    fused = exp.fused(3)
    from xai_core.render.colour import resize_map

    strength = resize_map(fused.maps.max(0).values.numpy(), exp.input_size)
    owner = resize_map((fused.maps.argmax(0) == 0).numpy().astype(np.float32), exp.input_size) > 0.5
    claimed = owner & (strength > 0.6 * strength.max())
    assert claimed.mean() > 0.01
    top_hue = float(np.asarray(Image.new("RGB", (1, 1), xc.class_colours(3)[0]).convert("HSV"))[0, 0, 0])

    def hue_error(picture):
        """How far the top class's region is from the top class's hue (PIL's 0-255 hue circle)."""
        hue = np.asarray(Image.fromarray(picture).convert("HSV"))[..., 0].astype(float)[claimed]
        d = np.abs(hue - top_hue)
        return float(np.minimum(d, 256 - d).mean())

    new = hue_error(fused_picture(exp, fused, Display(3, "relu", "reference", "viridis", 0.5, False)))
    old = hue_error(xc.render_fused(exp, fused, alpha=0.5))  # round 2's default: opacity 0.5 on the colour photo
    assert new < 0.5 * old, (new, old)


def _report(source: str):
    from xai_core.report import Figure, Finding, XrayReport, weights_status

    rng = np.random.default_rng(1)
    pic = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return XrayReport(
        title="nih_00000001_000.png: DenseNet-121 (torchxrayvision)",
        image=rng.random((80, 60)),
        reading=[("Format", "PNG"), ("Size", "60x80"), ("Window", "none")],
        reading_notes=["read as is"],
        findings=[Finding("Atelectasis", 0.93, 0.31), Finding("Effusion", 0.12, 0.4), Finding("Hernia", 0.5, None)],
        fused=Figure(pic, "FM-G-CAM fused map, top 2"),
        legend=[{"label": "Atelectasis", "colour": (213, 94, 0), "probability": 0.93}],
        fused_scale=Figure(pic[:8], "Colour scale: dominant pathology"),
        maps=[Figure(pic, f"{i + 1}. map") for i in range(5)],
        map_scale=Figure(pic[:8], "Colour scale: 0 to 1"),
        model="DenseNet-121",
        status=weights_status(source),
        settings={"layer": "features.norm5", "method": "grad_cam", "k": 2},
    )


def _pdf_text(data: bytes, tmp_path) -> tuple[str, int]:
    import shutil
    import subprocess

    import pytest

    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) not installed")
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text, text.count("\f")


def test_report_pdf_with_random_weights_is_watermarked_on_every_page_and_flags_nothing(tmp_path):
    from xai_core.report import xray_report_pdf

    data = xray_report_pdf(_report("random"))
    assert data.startswith(b"%PDF-")
    text, pages = _pdf_text(data, tmp_path)
    per_page = [p for p in text.split("\f") if p.strip()]
    assert len(per_page) >= 1 and all("NOT A RESULT" in p for p in per_page), "the watermark on every page"
    assert "ABOVE" not in text and "not flagged" in text
    for needed in ("Atelectasis", "93.0%", "31.0%", "features.norm5", "not a diagnostic device", "UTC", "60x80"):
        assert needed in text, needed


def test_report_pdf_with_published_weights_flags_above_threshold(tmp_path):
    from xai_core.report import xray_report_pdf

    text, _ = _pdf_text(xray_report_pdf(_report("default")), tmp_path)
    assert "NOT A RESULT" not in text
    assert "ABOVE" in text and "below" in text


@pytest.mark.slow  # timing: run on a machine that is not saturated
def test_first_explanation_time_excludes_the_warm_up():
    """Issue 23 item 11: the first map timed on a fresh model is not inflated by one-off warm-up costs."""
    import xai_core as xc
    from pages._ui import compute

    model = xc.build_model("efficientnet_lite0")  # fresh, never run in this process
    image = Image.open(Path(__file__).resolve().parents[1] / "samples" / "imagenet" / "cat_dog.png").convert("RGB")
    layer = model.spec.default_layer
    times = []
    for method in ("grad_cam", "xgrad_cam", "grad_cam"):
        exp = compute.explanation_work(model, image, layer, method, (), (281,))(lambda done, total: None)
        times.append(exp.seconds)
    assert times[0] < 4 * min(times[1:]) + 0.1, times


def test_text_file_as_weights_is_not_called_a_pickle(tmp_path):
    """Issue 23 item 14: a text file uploaded as weights was "a pickled Python object"."""
    import pytest

    from xai_core import WeightsError
    from xai_core.models.weights import read_state_dict

    path = tmp_path / "notes.pt"
    path.write_text("config = a text file, not weights\n")
    with pytest.raises(WeightsError) as info:
        read_state_dict(path)
    assert "pickled" not in str(info.value) and "not a PyTorch weights file" in str(info.value)

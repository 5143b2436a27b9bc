"""Dashboard smoke tests with Streamlit's AppTest (no browser, offline).

Every page renders without an exception and processes a sample. Display-only changes
(K, activation, colour map) change the output without running the model again, counted
by ``pages._ui.state.model_runs()``. The X-ray page runs with its clearly labelled
"random weights" source, since no chest X-ray weights can be downloaded offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from pages._ui import state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180


def _open(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    _no_errors(at)
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _image_by_caption(at: AppTest, prefix: str):
    for img in at.image:
        if any(c.startswith(prefix) for c in img.captions):
            return img
    raise AssertionError(f"no image captioned {prefix!r}: {[i.captions for i in at.image]}")


def _fused(at: AppTest) -> str:
    return _image_by_caption(at, "FM-G-CAM fused map").value[0]


def _first_class_map(at: AppTest) -> str:
    return _image_by_caption(at, "1. ").value[0]


# ----------------------------------------------------------------------------- home


def test_home_lists_methods_and_samples():
    import xai_core as xc

    at = _open()
    text = " ".join(m.value for m in at.markdown)
    for spec in xc.list_methods():
        assert spec.label in text and spec.paper in text
    assert "FM-G-CAM" in text and "FG-CAM" in text
    assert any(b.key == "home.open.imagenet.dogs.png" for b in at.button)


def test_home_sample_opens_classification_page():
    at = _open()
    next(b for b in at.button if b.key == "home.open.imagenet.dogs.png").click().run()
    _no_errors(at)
    assert at.title[0].value.startswith("Classification")
    assert at.selectbox(key="cls.sample").value == "dogs.png"
    assert _fused(at)


# ----------------------------------------------------------------------------- classification


def test_classification_sample_and_display_changes_reuse_maps():
    at = _open("pages/classification.py")
    assert at.title[0].value.startswith("Classification")
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    assert at.get("plotly_chart"), "predictions chart missing"
    assert len(at.get("download_button")) == 3
    captions = [c for img in at.image for c in img.captions]
    assert sum(c[:3] in {"1. ", "2. ", "3. "} for c in captions) == 3  # K = 3 per-class maps
    runs = state.model_runs()
    fused, single = _fused(at), _first_class_map(at)

    at.sidebar.slider(key="cls.k").set_value(5).run()
    _no_errors(at)
    assert _fused(at) != fused, "changing K must change the fused map"
    assert any(c.startswith("5. ") for img in at.image for c in img.captions)
    fused = _fused(at)

    at.sidebar.selectbox(key="cls.activation").set_value("gelu").run()
    _no_errors(at)
    assert _fused(at) != fused, "changing the activation must change the fused map"

    at.sidebar.selectbox(key="cls.colormap").set_value("viridis").run()
    _no_errors(at)
    assert _first_class_map(at) != single, "changing the colour map must change the per-class maps"

    at.sidebar.slider(key="cls.alpha").set_value(0.8).run()
    at.sidebar.selectbox(key="cls.normalise").set_value("per_class").run()
    _no_errors(at)
    assert state.model_runs() == runs, "display-only changes must not run the model"

    at.sidebar.selectbox(key="cls.method").set_value("grad_cam_pp").run()
    _no_errors(at)
    assert state.model_runs() == runs + 1, "a new method runs the model once"


def test_classification_upload_and_fgcam():
    at = _open("pages/classification.py")
    data = (ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG").read_bytes()
    at.file_uploader(key="cls.upload").set_value(("snake.jpg", data, "image/jpeg")).run()
    _no_errors(at)
    assert "sea snake" in _image_by_caption(at, "1. ").captions[0]

    at.selectbox(key="cls.fg_target.efficientnet_lite0._head_act").set_value("_blocks.4")
    at.sidebar.slider(key="cls.k").set_value(2)
    at.button(key="cls.run_fg").click().run()
    _no_errors(at)
    fine = _image_by_caption(at, "FG-CAM fused, top 2")
    assert fine.value[0]
    assert any(c.startswith("FG-CAM 2. ") for img in at.image for c in img.captions)


def test_classification_bad_upload_shows_message():
    at = _open("pages/classification.py")
    at.file_uploader(key="cls.upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    assert not at.exception
    assert at.error and "PNG" in at.error[0].value


# ----------------------------------------------------------------------------- chest X-ray


def test_xray_without_weights_says_so_and_offers_upload():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    assert not at.exception
    assert any("not a diagnostic device" in w.value for w in at.warning)
    if at.error:  # offline: the WeightsError names the file and folder
        assert "weights" in at.error[0].value.lower()
        assert any("local weights file" in i.value for i in at.info)
        at.sidebar.radio(key="xray.weights").set_value("file").run()
        assert any(u.key == "xray.weights_file" for u in at.sidebar.get("file_uploader"))


def test_xray_random_weights_dicom_sample():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    at.sidebar.radio(key="xray.weights").set_value("random").run()
    _no_errors(at)
    assert any("Random weights" in w.value for w in at.warning)
    assert _fused(at)
    assert at.get("plotly_chart"), "outputs chart missing"

    at.selectbox(key="xray.sample").set_value("fake_monochrome1.dcm").run()
    _no_errors(at)
    notes = " ".join(m.value for m in at.markdown)
    assert "MONOCHROME1" in notes
    runs = state.model_runs()
    at.sidebar.slider(key="xray.k").set_value(6).run()
    _no_errors(at)
    assert _image_by_caption(at, "FM-G-CAM fused map, top 6")
    assert any(c.startswith("6. ") for img in at.image for c in img.captions)
    assert state.model_runs() == runs


# ----------------------------------------------------------------------------- comparison


def test_comparison_grid_and_faithfulness():
    import xai_core as xc

    at = _open("pages/comparison.py")
    captions = [c for img in at.image for c in img.captions]
    for spec in xc.list_methods():
        if not spec.slow:
            assert any(c.startswith(f"{spec.label}: ") and c.endswith(" s") for c in captions), spec.label
    assert any(c.startswith("FG-CAM → input") for c in captions)

    at.multiselect(key="cmp.score").set_value(["Grad-CAM"])
    at.select_slider(key="cmp.steps").set_value(14)
    at.button(key="cmp.run_metrics").click().run()
    _no_errors(at)
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Grad-CAM"]
    assert 0.0 <= float(table["Insertion AUC ↑"][0]) <= 1.0
    assert len(at.get("plotly_chart")) == 2

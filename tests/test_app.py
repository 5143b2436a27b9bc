"""Dashboard smoke tests with Streamlit's AppTest (no browser, offline).

Every page renders without an exception and processes a sample. Display-only changes
(K, activation, colour map) change the output without running the model again, counted
by ``pages._ui.state.model_runs()``. The X-ray page runs with its clearly labelled
"random weights" source, since no chest X-ray weights can be downloaded offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._ui import state

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
    for spec in xc.list_explainers():
        assert spec.label in text and spec.paper in text
    assert "FM-G-CAM" in text and "FG-CAM" in text
    assert any(b.key == "home.open.imagenet.dogs.png" for b in at.button)


@pytest.mark.slow
def test_home_sample_opens_classification_page():
    at = _open()
    next(b for b in at.button if b.key == "home.open.imagenet.dogs.png").click().run()
    _no_errors(at)
    assert at.title[0].value.startswith("Classification")
    assert at.selectbox(key="cls.sample").value == "dogs.png"
    assert _fused(at)


# ----------------------------------------------------------------------------- classification


@pytest.mark.slow
def test_classification_sample_and_display_changes_reuse_maps():
    at = _open("pages/classification.py")
    assert at.title[0].value.startswith("Classification")
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    assert at.get("plotly_chart"), "predictions chart missing"
    assert len(at.get("download_button")) == 3
    assert any("Running on the CPU" in c.value for c in at.sidebar.caption), "the sidebar names the device"
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

    at.sidebar.selectbox(key="cls.colormap").set_value("jet").run()
    _no_errors(at)
    assert _first_class_map(at) != single, "changing the colour map must change the per-class maps"

    at.sidebar.slider(key="cls.alpha").set_value(0.8).run()
    at.sidebar.selectbox(key="cls.normalise").set_value("per_class").run()
    _no_errors(at)
    assert state.model_runs() == runs, "display-only changes must not run the model"

    at.sidebar.selectbox(key="cls.method").set_value("grad_cam_pp").run()
    _no_errors(at)
    assert state.model_runs() == runs + 1, "a new method runs the model once"


@pytest.mark.slow
def test_classification_upload_and_fgcam():
    at = _open("pages/classification.py")
    data = (ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG").read_bytes()
    at.file_uploader(key="cls.upload").set_value(("snake.jpg", data, "image/jpeg")).run()
    _no_errors(at)
    assert "sea snake" in _image_by_caption(at, "1. ").captions[0]

    at.selectbox(key="cls.fg_target.efficientnet_lite0._head_act").set_value("_blocks.4")
    at.sidebar.slider(key="cls.k").set_value(2).run()
    _button(at, "Compute FG-CAM").click().run()
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_comparison_grid_and_faithfulness():
    import xai_core as xc
    from pages._ui.widgets import cam_methods

    at = _open("pages/comparison.py")
    captions = [c for img in at.image for c in img.captions]
    assert {m.key for m in cam_methods()} < {m.key for m in xc.list_explainers()}
    for spec in cam_methods():
        if not spec.slow:
            assert any(c.startswith(f"{spec.label}: ") and c.endswith(" s") for c in captions), spec.label
    assert any(c.startswith("FG-CAM → input") for c in captions)

    at.multiselect(key="cmp.score").set_value(["Grad-CAM"])
    at.select_slider(key="cmp.steps").set_value(14)
    at.button(key="cmp.run_metrics").click().run()
    _no_errors(at)
    table = at.table[0].value
    assert list(table["method"]) == ["Grad-CAM"]
    assert 0.0 <= float(table["Insertion AUC ↑"].iloc[0]) <= 1.0
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.slow
def test_comparison_road_on_request_in_the_table():
    """ROAD is off by default; switched on it offers Compute, then its MoRF/LeRF means fill two table columns."""
    import xai_core as xc
    from pages._ui.faithfulness import NOT_YET
    from xai_core.metrics import road_scores

    at = _open("pages/comparison.py")
    at.multiselect(key="cmp.score").set_value(["Grad-CAM"])
    at.select_slider(key="cmp.steps").set_value(14)
    at.button(key="cmp.run_metrics").click().run()
    _no_errors(at)
    assert not any(c.startswith("ROAD") for c in at.table[0].value.columns), "ROAD is off by default"

    at.toggle(key="cmp.road").set_value(True).run()
    at.select_slider(key="cmp.road_points").set_value(1).run()  # 50 % removed: 2 imputed images, a few seconds
    _no_errors(at)
    assert at.table[0].value["ROAD MoRF ↓"].iloc[0] == NOT_YET, "nothing is computed before the button"
    assert any("imputed images" in c.value for c in at.caption)
    runs = state.model_runs()
    _button(at, "Compute ROAD").click().run()
    _no_errors(at)
    assert state.model_runs() == runs + 1
    table = at.table[0].value
    morf, lerf = float(table["ROAD MoRF ↓"].iloc[0]), float(table["ROAD LeRF ↑"].iloc[0])
    assert len(at.get("plotly_chart")) == 4, "ROAD MoRF and LeRF curves beside insertion and deletion"

    model = xc.load_model("efficientnet_lite0")
    exp = xc.explain(model, xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png"), method="grad_cam", top_k=1)
    want = road_scores(model.predict, exp.prepared.tensor, exp.saliency(0), [exp.class_idx[0]], fractions=(0.5,))
    assert morf == pytest.approx(float(want["morf"].mean[0]), abs=1e-4)
    assert lerf == pytest.approx(float(want["lerf"].mean[0]), abs=1e-4)

    at.toggle(key="cmp.road").set_value(False).run()
    at.toggle(key="cmp.road").set_value(True).run()
    _no_errors(at)
    assert float(at.table[0].value["ROAD MoRF ↓"].iloc[0]) == morf, "the result is kept"
    assert state.model_runs() == runs + 1


@pytest.mark.slow
def test_road_work_stops_and_keeps_the_maps_finished_before():
    """Stop ends a ROAD job at the next solver iteration; maps scored before stay in the shared store."""
    import time

    import xai_core as xc
    from pages._ui import compute
    from pages._ui.jobs import MISSING, STORE, JobStore

    model = xc.load_model("efficientnet_lite0")
    image = xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png")
    maps = [xc.explain(model, image, method=m, top_k=1) for m in ("grad_cam", "layer_cam")]
    cls = maps[0].class_idx[0]
    keys = [compute.road_key("test-digest", "test-model", e, cls, (0.5,)) for e in maps]
    store = JobStore()
    job = store.submit(
        "road", compute.road_work(model, list(zip(keys, maps)), cls, (0.5,)), label="ROAD", unit="imputed images"
    )
    deadline = time.monotonic() + 120
    while STORE.get(keys[0]) is MISSING and job.running and time.monotonic() < deadline:
        time.sleep(0.02)  # the first map is stored; the second is being imputed
    stopped_at = time.monotonic()
    store.stop("road")
    assert job.finished.wait(30)
    assert job.stopped and job.total == 4 and 2 <= job.done < 4
    assert time.monotonic() - stopped_at < 5.0  # one solver iteration, on a busy shared CPU
    assert STORE.get(keys[0]) is not MISSING and STORE.get(keys[1]) is MISSING


# ----------------------------------------------------------------------------- issue 14


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.mark.slow
def test_image_and_choices_follow_the_session_across_pages():
    """Issue 14 item 2: an upload and K set on Classification survive a visit to Comparison and back."""
    at = _open("pages/classification.py")
    data = (ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG").read_bytes()
    at.file_uploader(key="cls.upload").set_value(("snake.jpg", data, "image/jpeg")).run()
    at.sidebar.slider(key="cls.k").set_value(5).run()
    at.sidebar.selectbox(key="cls.activation").set_value("gelu").run()
    _no_errors(at)
    assert "sea snake" in _image_by_caption(at, "1. ").captions[0]

    at.switch_page("pages/comparison.py").run()
    _no_errors(at)
    assert any("snake.jpg" in c.value for c in at.caption), "the comparison page uses the uploaded image"
    assert "sea snake" in at.subheader[0].value

    at.switch_page("pages/classification.py").run()
    _no_errors(at)
    assert at.sidebar.slider(key="cls.k").value == 5
    assert at.sidebar.selectbox(key="cls.activation").value == "gelu"
    assert _image_by_caption(at, "FM-G-CAM fused map, top 5")
    assert "sea snake" in _image_by_caption(at, "1. ").captions[0]


def test_explain_a_class_outside_the_top_ten():
    """Issue 14 item 3: a cat class outside the top 10 on the dog-and-cat sample, in one pass,
    joining or replacing the top K. (With EfficientNet-Lite0 "tabby" is 9th; "Egyptian cat" is not
    in the top 10.)
    """
    import xai_core as xc

    at = _open("pages/classification.py")
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    model = xc.load_model("efficientnet_lite0")
    top10 = xc.explain(model, xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png"), top_k=10).class_idx
    cat = model.labels.index("Egyptian cat")
    tabby = model.labels.index("tabby")
    assert cat not in top10
    runs = state.model_runs()
    picker = at.sidebar.multiselect(key="cls.classes.efficientnet_lite0")
    picker.set_value([cat, tabby]).run()
    _no_errors(at)
    assert state.model_runs() == runs + 1, "the chosen classes join the top K in one pass"
    caps = _captions(at)
    assert any(c.startswith("4. Egyptian cat (") for c in caps), caps
    assert any(c.startswith("5. tabby (") for c in caps), caps
    assert _image_by_caption(at, "FM-G-CAM fused map, top 5")

    at.sidebar.radio(key="cls.class_mode").set_value("replace").run()
    _no_errors(at)
    caps = [c for c in _captions(at) if c[:1].isdigit()]
    assert [c.split(" (")[0] for c in caps] == ["1. Egyptian cat", "2. tabby"], caps
    assert state.model_runs() == runs + 1, "choosing what to show reuses the computed maps"


@pytest.mark.slow
def test_slow_result_shows_again_after_switching_method():
    """Issue 14 defect 1: a Score-CAM result is shown again (not an error) after moving away and back."""
    at = _open("pages/classification.py")
    at.sidebar.selectbox(key="cls.layer.efficientnet_lite0").set_value("_blocks.0").run()
    at.sidebar.selectbox(key="cls.method").set_value("score_cam").run()
    _no_errors(at)
    warning = " ".join(w.value for w in at.warning)
    assert "on this machine" in warning and "masks" in warning, warning
    _button(at, "Compute Score-CAM").click().run()
    _no_errors(at)
    fused = _fused(at)
    runs = state.model_runs()

    at.sidebar.selectbox(key="cls.method").set_value("grad_cam").run()
    _no_errors(at)
    at.sidebar.selectbox(key="cls.method").set_value("score_cam").run()
    _no_errors(at)
    assert _fused(at) == fused
    at.sidebar.selectbox(key="cls.colormap").set_value("jet").run()
    at.sidebar.slider(key="cls.k").set_value(4).run()
    _no_errors(at)
    assert _image_by_caption(at, "FM-G-CAM fused map, top 4 (Score-CAM")
    assert state.model_runs() == runs, "both results came from the store (Grad-CAM at this layer ran before)"

    fresh = _open("pages/classification.py")  # a new session with the same image and choices
    fresh.sidebar.selectbox(key="cls.layer.efficientnet_lite0").set_value("_blocks.0").run()
    fresh.sidebar.selectbox(key="cls.method").set_value("score_cam").run()
    _no_errors(fresh)
    assert _fused(fresh) == fused, "a new session shows the stored Score-CAM result at once"


def test_fgcam_only_for_the_classes_on_screen_and_extended():
    """Issue 12 item 4: FG-CAM runs for the K classes shown; moving K up computes only the new ones."""
    at = _open("pages/classification.py")
    at.selectbox(key="cls.fg_target.efficientnet_lite0._head_act").set_value("_blocks.15").run()
    at.sidebar.slider(key="cls.k").set_value(2).run()
    runs = state.model_runs()
    _button(at, "Compute FG-CAM").click().run()
    _no_errors(at)
    assert _image_by_caption(at, "FG-CAM fused, top 2")
    assert state.model_runs() == runs + 1
    at.sidebar.slider(key="cls.k").set_value(3).run()
    _no_errors(at)
    assert _image_by_caption(at, "FG-CAM fused, top 3"), "FG-CAM is extended without another button press"
    assert state.model_runs() == runs + 2
    at.sidebar.slider(key="cls.k").set_value(2).run()
    assert _image_by_caption(at, "FG-CAM fused, top 2")
    assert state.model_runs() == runs + 2


def test_small_items_downloads_tiny_image_end_activation():
    """Issue 14 item 7: downloads named after the image, tiny images warned, End activation explained."""
    import io

    from PIL import Image

    from pages._ui.views import download_stem

    assert download_stem({"image": "cat_dog.png", "method": "grad_cam", "k": 3}) == "cat_dog_grad_cam_k3"
    assert download_stem(
        {"image": "../x y.jpg", "method": "score_cam", "k": 2, "fg_cam": {"target_layer": "input"}}
    ) == ("x_y_score_cam_fg_cam_input_k2")
    at = _open("pages/classification.py")
    at.sidebar.selectbox(key="cls.activation").set_value("elu").run()
    assert any("ELU draws what ReLU draws here" in c.value for c in at.caption)
    at.sidebar.toggle(key="cls.on_original").set_value(True).run()
    _no_errors(at)
    assert _image_by_caption(at, "What the model saw (full image)")

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    at.file_uploader(key="cls.upload").set_value(("tiny.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert any("only 8x8 pixels" in w.value for w in at.warning)


def test_xray_shows_the_image_and_how_it_was_read_without_weights():
    """Issue 14 item 6: no weights, yet the uploaded image and the reading record are shown."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    at.selectbox(key="xray.sample").set_value("fake_monochrome1.dcm").run()
    assert not at.exception
    if at.error:  # offline: no weights
        assert _image_by_caption(at, "fake_monochrome1.dcm as read")
        assert any("How the file was read" in m.value for m in at.markdown)
        assert "MONOCHROME1" in " ".join(m.value for m in at.markdown)


def test_job_stop_keeps_finished_results():
    """Issue 14 item 5: Stop ends a Score-CAM run within a second of the next batch; finished results stay."""
    import time

    import xai_core as xc
    from pages._ui.jobs import JobStore

    store = JobStore()
    model = xc.load_model("efficientnet_lite0")
    image = xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png")
    store.put("done", "a finished result")

    def work(progress):
        return xc.explain(model, image, method="score_cam", layer="_head_act", top_k=2, batch_size=8, progress=progress)

    job = store.submit("slow", work, label="Score-CAM of 2 classes", unit="masks")
    deadline = time.monotonic() + 120
    while job.done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.total > 100 and "masks" in job.status() and "left" in job.status()
    stopped_at = time.monotonic()
    store.stop("slow")
    assert job.finished.wait(30)
    assert job.stopped and job.done < job.total
    assert time.monotonic() - stopped_at < 5.0  # one batch of 8 masks, on a busy shared CPU
    assert store.get("done") == "a finished result"
    assert store.job("slow") is None


def test_xray_warns_about_a_non_chest_modality():
    """Issue 14 item 6: the reader's modality warning is shown on the page (with or without weights)."""
    import io

    import pydicom

    ds = pydicom.dcmread(ROOT / "samples" / "xray" / "fake_monochrome1.dcm")
    ds.Modality = "US"
    buf = io.BytesIO()
    ds.save_as(buf)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    at.file_uploader(key="xray.upload").set_value(("probe.dcm", buf.getvalue(), "application/dicom")).run()
    assert not at.exception
    assert any("Modality is US (ultrasound)" in w.value for w in at.warning), [w.value for w in at.warning]
    assert _image_by_caption(at, "probe.dcm as read")


# ----------------------------------------------------------------------------- issue 23 walkthrough


def test_xray_random_weights_say_not_a_result_and_flag_nothing():
    """Item 1: with random weights the page says so beside the result and flags no output red."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    at.sidebar.radio(key="xray.weights").set_value("random").run()
    _no_errors(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "not a result" in warnings.lower(), warnings
    text = " ".join(m.value for m in at.markdown)
    assert "Above the model's operating threshold" not in text
    assert any("No output is flagged" in c.value for c in at.caption)
    chart = next(c.proto.spec for c in at.get("plotly_chart") if "pathology outputs" in c.proto.spec)
    assert "not a result" in chart.lower() and "#d62728" not in chart  # no red bar, the banner on the chart
    assert any(b.proto.label == "Clinician's report (PDF)" for b in at.get("download_button"))


def _layer_box(at: AppTest, page: str):
    return next(s for s in at.sidebar.selectbox if s.key.startswith(f"{page}.layer."))


def test_comparison_leaves_cam_out_away_from_the_head_layer():
    """Item 7: CAM is not a default at a layer where it cannot run; the sidebar says why; no red box."""
    at = _open("pages/comparison.py")
    assert "cam" in at.sidebar.multiselect(key="cmp.methods").value  # at the head layer it runs
    box = _layer_box(at, "cmp")
    box.set_value("_blocks.5").run()
    _no_errors(at)
    assert "cam" not in at.sidebar.multiselect(key="cmp.methods").value
    assert "CAM" not in at.sidebar.multiselect(key="cmp.methods").options
    assert any("CAM applies only to the layer" in c.value for c in at.sidebar.caption)


def test_layer_list_leaves_out_padding_layers():
    """Item 15: the layer list has no padding-only module (EfficientNet's ``static_padding``)."""
    at = _open("pages/classification.py")
    options = _layer_box(at, "cls").options
    assert options and not any("static_padding" in o for o in options), options
    assert any(o.startswith("_blocks.5 (") for o in options) and any(o.startswith("_head_act (") for o in options)


def test_comparison_names_coinciding_methods_and_keeps_their_curves_apart():
    """Item 2: identical maps are named with the reason; curves have their own colour, repeats dashed."""
    import json

    at = _open("pages/comparison.py")
    notes = " ".join(i.value for i in at.info)
    assert "give the same map here" in notes and "global average pooling" in notes, notes
    group = notes.split("**")[1].split(", ")
    assert {"Grad-CAM", "CAM"} <= set(group), group
    at.multiselect(key="cmp.score").set_value(group[:2])
    at.select_slider(key="cmp.steps").set_value(14)
    at.button(key="cmp.run_metrics").click().run()
    _no_errors(at)
    fig = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if "Deletion" in c.proto.spec))
    lines = [t["line"] for t in fig["data"]]
    assert lines[0]["color"] != lines[1]["color"]
    assert lines[0]["dash"] == "solid" and lines[1]["dash"] != "solid", "the identical curve is dashed"
    layout = fig["layout"]
    plot_h = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    assert layout["legend"]["y"] * plot_h <= -55, "the legend starts below the x axis title"
    # Item 10: the per-image indicator and the opposite arrows are explained; no raw settings line.
    columns = list(at.table[0].value.columns)
    assert "Rose, map kept (this image: 0 or 100) ↑" in columns, columns
    captions = " ".join(c.value for c in at.caption)
    assert "yes/no indicator" in captions and "hence the opposite arrows" in captions
    assert "pixels_per_step" not in captions and "class_idx" not in captions


def test_class_search_finds_wordnet_synonyms():
    """Item 4: "tabby cat" is found (ImageNet's synset n02123045 is "tabby, tabby cat")."""
    from xai_core.models.imagenet_classes import IMAGENET_CLASSES, class_synonyms, class_wnid

    assert class_wnid(281) == "n02123045" and class_synonyms(281) == ("tabby", "tabby cat")
    at = _open("pages/classification.py")
    options = at.sidebar.multiselect(key="cls.classes.efficientnet_lite0").options
    assert len(options) == len(IMAGENET_CLASSES)
    assert [o for o in options if "tabby cat" in o] == ["tabby (also: tabby cat)"]
    assert any("ATM" in o for o in options) and "Egyptian cat" in options


def test_imagenet_synsets_match_timm_lemmas():
    """The synonym data in xai_core is WordNet's, as timm ships it, in class order."""
    import timm.data

    from xai_core.models.imagenet_classes import IMAGENET_SYNSETS

    info = timm.data.ImageNetInfo()
    for i, line in enumerate(IMAGENET_SYNSETS):
        wnid, names = line.split(" ", 1)
        assert info.index_to_label_name(i) == wnid
        assert info.label_name_to_description(wnid) == names, i


def test_xray_reading_table_is_two_columns_wide():
    """Item 5: the "How the file was read" table runs down (field, value), not 978 px across a 596 px column."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/xray.py").run()
    at.selectbox(key="xray.sample").set_value("fake_monochrome1.dcm").run()
    assert not at.exception
    table = at.table[0].value
    assert list(table.columns) == ["Field", "Value"], list(table.columns)
    fields = list(table["Field"])
    assert len(fields) >= 8 and "Format" in fields, fields
    assert any("window" in f.lower() for f in fields) and any("modality" in f.lower() for f in fields), fields


def test_fused_colour_scale_caption_is_not_squeezed_under_the_narrow_scale():
    """Item 15: the fused scale's caption wraps at the column's width, not at the 108 px scale image's."""
    at = _open("pages/classification.py")
    assert not any(c.startswith("Colour scale: black = no evidence") for img in at.image for c in img.captions)
    assert any(c.value.startswith("Colour scale: black = no evidence") for c in at.caption)

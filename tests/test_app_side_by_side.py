"""AppTest of the side-by-side page and presenter mode (issue 23 items 3 and 5), offline."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 240


def _open(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _radio(at: AppTest, label: str, nth: int = 0):
    return [r for r in at.sidebar.radio if r.label == label][nth]


def _figure(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1, "one side-by-side figure"
    return json.loads(charts[0].proto.spec)


def test_two_models_share_one_colour_scale_and_show_their_difference():
    at = _open("pages/side_by_side.py")
    # Model B opens offline-usable (issue 23 leftovers): ResNet50 with random weights, said as such,
    # not "weights not available" (no weights but Lite0's ship offline).
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _radio(at, "Weights").value == "random"
    said = [w.value for w in at.warning if "andom weights" in w.value]
    assert len(said) == 1 and said[0].startswith("**Model B (ResNet50): random weights — not a result.**"), said
    fig = _figure(at)
    titles = json.dumps(fig["layout"]["annotations"], ensure_ascii=False)
    assert "ResNet50 (random weights)" in titles and "EfficientNet-Lite0 (offline)<br>" in titles, titles
    kinds = [d["type"] for d in fig["data"]]
    assert kinds.count("image") == 3
    bars = [d["marker"] for d in fig["data"] if d["type"] == "scatter"]
    assert [b["showscale"] for b in bars] == [True, True], "one bar for both maps, one for A - B"
    assert bars[1]["cmin"] == -bars[1]["cmax"], "the difference's scale is centred at 0"
    assert "Difference A − B" in json.dumps(fig["layout"]["annotations"], ensure_ascii=False)
    caption = " ".join(c.value for c in at.caption)
    assert "share one colour scale" in caption and "224×224 grid" in caption

    # Each map scaled to 0-1: the shared scale runs 0..1.
    _radio(at, "Colour scale").set_value("normalised").run()
    bars = [d["marker"] for d in _figure(at)["data"] if d["type"] == "scatter"]
    assert (bars[0]["cmin"], bars[0]["cmax"]) == (0.0, 1.0)


def _image_values(fig: dict) -> list[np.ndarray]:
    """Hover values (``customdata``) of the figure's image traces: map 1, map 2, their difference."""
    out = []
    for d in fig["data"]:
        if d["type"] != "image":
            continue
        data = d["customdata"]
        if isinstance(data, dict) and "bdata" in data:
            dtype = {"f4": np.float32, "f8": np.float64}[data["dtype"]]
            arr = np.frombuffer(base64.b64decode(data["bdata"]), dtype=dtype)
            out.append(arr.reshape([int(v) for v in str(data["shape"]).split(",")])[..., 0])
        else:
            out.append(np.asarray(data, dtype=np.float64)[..., 0])
    return out


def test_two_images_one_model():
    """One model (Lite0, real weights), two samples: each image explained, one scale, their difference."""
    at = _open("pages/side_by_side.py")
    at.main.radio(key="sbs.mode").set_value("images").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [h.value for h in at.sidebar.header][:1] == ["Model"], "one model in the sidebar"
    assert at.main.selectbox(key="sbs.sample").value == "cat_dog.png"
    assert at.main.selectbox(key="sbs_2.sample").value == "dogs.png", "image 2 defaults to another sample"
    fig = _figure(at)
    assert [d["type"] for d in fig["data"]].count("image") == 3
    assert "Difference 1 − 2" in json.dumps(fig["layout"]["annotations"], ensure_ascii=False)
    caption = " ".join(c.value for c in at.caption)
    both = r"\d+\.\d% in image 1 \(\*\*cat_dog\.png\*\*\), \d+\.\d% in image 2 \(\*\*dogs\.png\*\*\)"
    assert re.search(both, caption), caption
    assert "224×224 input grid" in caption and "over no photo" in caption
    one, two, diff = _image_values(fig)
    np.testing.assert_allclose(diff, one - two, atol=1e-5)
    assert np.abs(diff).max() > 1e-3, "two different images: two different maps"

    # The same image twice: the same map, no difference; image 1 is left as it was.
    at.main.selectbox(key="sbs_2.sample").set_value("cat_dog.png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.main.selectbox(key="sbs.sample").value == "cat_dog.png"
    one, two, diff = _image_values(_figure(at))
    np.testing.assert_allclose(one, two)
    assert not np.abs(diff).any()
    probs = re.findall(r"(\d+\.\d)% in image [12]", " ".join(c.value for c in at.caption))
    assert len(probs) == 2 and probs[0] == probs[1], probs


def test_models_of_different_class_sets_are_refused():
    at = _open("pages/side_by_side.py")
    _radio(at, "Family", 1).set_value("xray").run()
    assert not at.exception
    assert any("predict different classes" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("plotly_chart")


def test_presenter_mode_from_the_address_and_back():
    at = _open("pages/classification.py", {"present": "1"})
    assert not at.error, [e.value for e in at.error]
    assert not any("Classification: why" in t.value for t in at.title), "no title in presenter mode"
    main_labels = [s.label for s in at.main.selectbox] + [s.label for s in at.main.slider]
    assert {"Image", "Method", "K: classes fused"} <= set(main_labels), main_labels
    assert any(img.captions and img.captions[0].startswith("FM-G-CAM fused map") for img in at.main.image)
    assert any("presenter_fused" in m.value for m in at.markdown if "<style>" in m.value)

    # K and method in the row change the map (display-only K; a new method runs the model).
    at.main.slider(key="cls.present_k").set_value(2).run()
    assert any(c.startswith("FM-G-CAM fused map, top 2") for img in at.main.image for c in img.captions)
    at.main.selectbox(key="cls.present_method").set_value("grad_cam_pp").run()
    assert any("Grad-CAM++" in c for img in at.main.image for c in img.captions)

    at.main.button(key="cls.exit").click().run()
    assert any("Classification: why" in t.value for t in at.title)
    assert "present" not in at.query_params


@pytest.mark.parametrize("value", ["1", "0"])
def test_presenter_toggle_in_the_sidebar(value):
    at = _open("pages/classification.py", {"present": value} if value == "0" else None)
    toggle = at.sidebar.toggle(key="cls.presenter")
    assert toggle.value is False
    toggle.set_value(True).run()
    assert at.query_params.get("present") in ("1", ["1"])
    assert not any("Classification: why" in t.value for t in at.title)


def test_two_xray_models_of_different_input_sizes_meet_on_the_finer_grid():
    """DenseNet121 (224 pixels) against ResNet50 (512 pixels), random weights: one 512x512 grid."""
    at = _open("pages/side_by_side.py")
    _radio(at, "Family", 0).set_value("xray")
    _radio(at, "Family", 1).set_value("xray").run()
    at.sidebar.selectbox(key="sbs_b.model").set_value("xrv-resnet50-res512-all").run()
    for radio in [r for r in at.sidebar.radio if r.label == "Weights"]:
        radio.set_value("random")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    fig = _figure(at)
    images = [d for d in fig["data"] if d["type"] == "image"]
    assert len(images) == 3
    caption = " ".join(c.value for c in at.caption)
    assert "512×512 grid" in caption, caption
    classes = at.main.selectbox(key="sbs.class.xrv-densenet121-res224-all.xrv-resnet50-res512-all")
    assert len(classes.options) >= 10, "the pathologies both models name"


def test_xray_presenter_mode_with_random_weights():
    at = _open("pages/xray.py", {"present": "1"})
    assert any("No usable model" in e.value for e in at.error), "no weights: said in the page"
    [r for r in at.sidebar.radio if r.label == "Weights"][0].set_value("random").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = " ".join(w.value for w in at.main.warning)
    assert "not a diagnostic device" in warnings and "not a result" in warnings.lower()
    assert any(c.startswith("FM-G-CAM fused map, top") for img in at.main.image for c in img.captions)


def test_slow_method_waits_for_compute_for_each_model():
    """Score-CAM (slow) runs only after Compute, with progress and Stop, as on the other pages."""
    at = _open("pages/side_by_side.py")
    _radio(at, "Weights").set_value("random").run()
    at.sidebar.selectbox(key="sbs.method").set_value("score_cam").run()
    assert not at.exception
    labels = [b.label for b in at.main.button]
    assert "Compute Score-CAM for model A" in labels, labels
    assert not at.get("plotly_chart"), "nothing drawn before Compute"

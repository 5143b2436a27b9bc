"""The comparison page's randomisation check (issue 22) with Streamlit's AppTest, and its job's Stop."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

import xai_core as xc
from pages._ui import compute
from pages._ui.jobs import MISSING, STORE, JobStore
from xai_core.models.preprocess import prepare
from xai_core.trust import attributions

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 300


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _fingerprint(model: xc.LoadedModel) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.module.state_dict().values()]


def test_comparison_sanity_check_draws_the_figure_and_leaves_the_model_alone():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/comparison.py").run()
    at.multiselect(key="cmp.methods").set_value(["grad_cam", "eigen_cam"]).run()
    fg = next(w for w in at.multiselect if w.key.startswith("cmp.fg_targets."))
    fg.set_value([]).run()
    _no_errors(at)
    assert any(w.value.startswith("Sanity check of 2 methods takes about") for w in at.warning), [
        w.value for w in at.warning
    ]
    charts = len(at.get("plotly_chart"))
    model = compute.load_model(compute.ModelChoice("efficientnet_lite0"))  # the page's cached instance
    before = _fingerprint(model)

    _button(at, "Run the sanity check").click().run()
    _no_errors(at)
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(figures) == charts + 2
    curves = next(f for f in figures if "Similarity to the trained" in f["layout"]["title"]["text"])
    grid = next(f for f in figures if "Maps as the layers are randomised" in f["layout"]["title"]["text"])
    assert [t["name"] for t in curves["data"]] == ["Grad-CAM", "Eigen-CAM"]
    assert all(len(t["y"]) == 1 + 6 for t in curves["data"]), "the original and 6 steps"
    ticks = grid["layout"]["xaxis"]["ticktext"]
    assert ticks[:3] == ["input", "original", "→ _fc"] and len(ticks) == 2 + 6, ticks
    assert grid["layout"]["yaxis"]["ticktext"] == ["Grad-CAM", "Eigen-CAM"]
    assert any("a method that explains the model passes" in m.value for m in at.markdown)

    grad_cam, eigen_cam = curves["data"][0]["y"], curves["data"][1]["y"]
    # Grad-CAM weighs the feature maps by the class score's gradient: random classifier weights change it.
    assert grad_cam[1] < 0.8, grad_cam
    # Eigen-CAM never looks at the classifier: the same map until layers below it are random.
    assert eigen_cam[1] > 0.999, eigen_cam

    after = _fingerprint(model)
    assert all(torch.equal(a, b) for a, b in zip(before, after)), "the page's model is left untouched"
    cls = next(k for k in STORE._results if k[0] == "sanity" and k[4] == "grad_cam")[6]
    picture = xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png")
    result = next(v for k, v in STORE._results.items() if k[0] == "sanity" and k[4] == "grad_cam")
    x = prepare(picture, model.spec.preprocessing).tensor
    want = attributions(xc.load_model("efficientnet_lite0"), x, "grad_cam", [cls])
    np.testing.assert_allclose(result.maps[0], want, atol=1e-5)

    runs_before = len(STORE._results)
    at.run()  # shown again from the store, nothing recomputed
    _no_errors(at)
    assert len(at.get("plotly_chart")) == charts + 2 and len(STORE._results) == runs_before
    at.multiselect(key="cmp.methods").set_value(["grad_cam", "eigen_cam", "layer_cam"]).run()
    _no_errors(at)
    assert any(c.value.startswith("2 of the 3 methods on screen are checked") for c in at.caption)
    assert not any(i.value.startswith("Stopped") for i in at.info), "nothing was stopped"
    assert any(w.value.startswith("Sanity check of 1 method takes about") for w in at.warning)

    for k in [k for k in STORE._results if k[0] in ("sanity", "sanity-partial")]:
        del STORE._results[k]  # the other page tests of this process count the page's charts


def test_sanity_job_stop_keeps_the_methods_and_steps_finished_before():
    """Stop during the second method: the first is stored whole, the second keeps its finished steps."""
    model = xc.load_model("efficientnet_lite0")
    image = xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png")
    layer = model.spec.default_layer
    keys = [compute.sanity_key("test-digest", "test-model", layer, m, (), 281, 6) for m in ("grad_cam", "layer_cam")]
    for k in keys:
        STORE._results.pop(k, None)
        STORE._results.pop(compute.sanity_partial_key(k), None)
    todo = [(keys[0], "grad_cam", ()), (keys[1], "layer_cam", ())]
    store = JobStore()
    job = store.submit("sanity", compute.sanity_work(model, image, layer, todo, 281, 6), label="check", unit="maps")
    deadline = time.monotonic() + 180
    while job.done < 7 + 3 and job.running and time.monotonic() < deadline:
        time.sleep(0.01)  # the first method is stored; the second has its original map and two steps
    store.stop("sanity")
    assert job.finished.wait(60)
    assert job.stopped and job.total == 14 and 10 <= job.done < 14
    first = STORE.get(keys[0])
    assert first is not MISSING and first.completed == 6 and not first.stopped
    assert STORE.get(keys[1]) is MISSING, "a stopped method is not stored as done"
    partial = STORE.get(compute.sanity_partial_key(keys[1]))
    assert partial is not MISSING and partial.stopped and 2 <= partial.completed < 6
    assert np.isnan(partial.scores["spearman_abs"][partial.completed :]).all()

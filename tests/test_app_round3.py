"""Issue 23 (the dashboard, round 3), walkthrough items checked without a browser.

Item 12 (Stop, then Compute, goes on: the finished batches of a stopped slow job are kept)
and item 13 (the sample box and an upload: the box never names a sample that is not shown,
any sample replaces the upload and its file chip). The browser versions are in
tests/test_browser_walkthrough.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.test_app import _no_errors, _open

ROOT = Path(__file__).resolve().parents[1]
SNAKE = ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG"
LAYER = "_blocks.0"  # 16 feature maps: a slow method in a few seconds


@pytest.fixture(scope="module")
def lite0():
    import xai_core as xc

    return xc.load_model("efficientnet_lite0"), xc.read_image(ROOT / "samples" / "imagenet" / "cat_dog.png")


class _Forwards:
    """Counts the network's whole forward passes (a hook on the top module)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


# Ablation-CAM's case is slow on a shared CPU (about 70 s when loaded); Score-CAM's stays in the fast loop.
@pytest.mark.parametrize("method", ["score_cam", pytest.param("ablation_cam", marks=pytest.mark.slow)])
def test_stop_then_compute_goes_on_from_the_finished_batches(lite0, method):
    """Item 12: a stopped Score-CAM/Ablation-CAM job, computed again, skips the batches it finished."""
    import xai_core as xc
    from pages._ui.jobs import JobStore

    model, image = lite0

    def work(progress):
        return xc.explain(model, image, method=method, layer=LAYER, top_k=2, batch_size=2, progress=progress)

    whole = work(None)
    store = JobStore()
    first = store.submit("slow", work, label=method, unit="masks")
    deadline = time.monotonic() + 120
    while first.done < 6 and first.running and time.monotonic() < deadline:
        time.sleep(0.005)
    store.stop("slow")
    assert first.finished.wait(60)
    assert first.stopped and 6 <= first.done < first.total, (first.done, first.total)
    assert first.resumable

    forwards = _Forwards(model.module)
    try:
        again = store.submit("slow", work, label=method, unit="masks")
        assert again.finished.wait(120) and again.error is None and not again.stopped
    finally:
        forwards.handle.remove()
    batches = -(-again.total // 2)
    kept = first.done // 2
    # The explanation's own passes (its forward; Ablation-CAM's capture and check of the rest of the
    # network) are at most 3; an uninterrupted run makes 10 (Score-CAM) or 11 (Ablation-CAM) here.
    assert forwards.n <= batches - kept + 3, (forwards.n, batches, kept)
    torch.testing.assert_close(again.result.cams, whole.cams)
    assert again.resumed and again.result.seconds >= again.spent > 0  # item 11: the time of both runs
    assert store.get("slow") is again.result


def _caption_of(at: AppTest, prefix: str) -> str:
    return next(c for img in at.image for c in img.captions if c.startswith(prefix))


@pytest.mark.slow
def test_sample_box_is_empty_while_an_upload_is_shown_and_any_sample_replaces_it():
    """Item 13: with an upload shown the box names no sample; choosing the earlier sample shows it, chip gone."""
    at = _open("pages/classification.py")
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    at.file_uploader(key="cls.upload").set_value(("snake.jpg", SNAKE.read_bytes(), "image/jpeg")).run()
    _no_errors(at)
    assert "sea snake" in _caption_of(at, "1. ")
    boxes = [b for b in at.selectbox if b.label == "...or use a sample"]
    assert len(boxes) == 1 and boxes[0].value is None, [(b.key, b.value) for b in boxes]
    assert boxes[0].placeholder == "(your upload is shown)"

    boxes[0].set_value("cat_dog.png").run()  # the sample shown before the upload: now a change
    _no_errors(at)
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    assert "sea snake" not in _caption_of(at, "1. ")
    uploaders = [u.key for u in at.get("file_uploader")]
    assert uploaders == ["cls.upload.1"], uploaders  # a new, empty uploader: the old file chip is gone

    # A second upload through the new uploader is shown, and the box is empty again.
    at.file_uploader(key="cls.upload.1").set_value(("snake.jpg", SNAKE.read_bytes(), "image/jpeg")).run()
    _no_errors(at)
    assert "sea snake" in _caption_of(at, "1. ")
    assert [b.value for b in at.selectbox if b.label == "...or use a sample"] == [None]

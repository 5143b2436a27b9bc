"""Issue 23, item 6: a reload (a new session) or a shared link restores the page's choices and upload.

The pages mirror their main choices in the address (``pages/_ui/url_state.py``) and keep
uploaded images in a bounded server-side store (``pages/_ui/upload_store.py``). Here: the
store's round trip and eviction (unit tests), and fresh AppTest sessions opened with query
parameters, as a reload or a link gives them. The browser test of the reload itself is in
tests/test_browser_walkthrough.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._ui.upload_store import STORE, UploadStore, token_of
from xai_core.images import image_digest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 240
SNAKE = ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG"
DICOM = ROOT / "samples" / "xray" / "siim_sample.dcm"


# ----------------------------------------------------------------------------- the upload store


def test_store_round_trip_keeps_name_bytes_and_digest():
    store = UploadStore(1_000)
    data = b"\x89PNG not really an image"
    token = store.put("cat.png", data)
    assert token == image_digest(data)[:16] and len(token) == 16
    kept = store.get(token)
    assert kept.name == "cat.png" and kept.data == data and kept.digest == image_digest(data)
    assert store.put("cat.png", data) == token and len(store) == 1 and store.total_bytes == len(data)


def test_store_forgets_the_least_recently_used_first_and_stays_under_its_size():
    store = UploadStore(250)
    a, b, c = (bytes([i]) * 100 for i in range(3))
    ta, tb = store.put("a", a), store.put("b", b)
    assert store.get(ta) is not None  # a is now more recent than b
    tc = store.put("c", c)  # 300 bytes > 250: the least recently used (b) goes
    assert store.get(tb) is None and store.get(ta).data == a and store.get(tc).data == c
    assert store.total_bytes == 200 <= store.max_bytes


def test_store_refuses_what_it_cannot_hold_or_read():
    store = UploadStore(10)
    token = store.put("big", b"x" * 11)
    assert store.get(token) is None and len(store) == 0 and store.total_bytes == 0
    for bad in ("", "zz" * 8, "0123456789abcdef0", "../../etc/passwd", None, 12):
        assert store.get(bad) is None


# ----------------------------------------------------------------------------- fresh sessions with an address


def _open(page: str, params: dict[str, str]) -> AppTest:
    """A new session (a reload, a link) opening ``page`` with ``params`` in its address."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _notice(at: AppTest) -> str:
    return " ".join(i.value for i in at.info if "From the address" in i.value)


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


@pytest.mark.slow
def test_address_restores_the_classification_settings_and_follows_changes():
    params = {"method": "grad_cam_pp", "k": "5", "cmap": "viridis", "alpha": "0.3", "sample": "dogs.png"}
    at = _open("pages/classification.py", params)
    assert at.selectbox(key="cls.method").value == "grad_cam_pp"
    assert at.slider(key="cls.k").value == 5
    assert at.selectbox(key="cls.colormap").value == "viridis"
    assert at.slider(key="cls.alpha").value == pytest.approx(0.3)
    assert at.selectbox(key="cls.sample").value == "dogs.png"
    assert any(c.startswith("FM-G-CAM fused map, top 5 (Grad-CAM++") for c in _captions(at))
    assert not _notice(at)
    at.slider(key="cls.k").set_value(2).run()
    at.selectbox(key="cls.activation").set_value("elu").run()
    at.slider(key="cls.alpha").set_value(0.1 + 0.25).run()  # 0.35000000000000003
    assert at.query_params["k"] == "2" and at.query_params["activation"] == "elu"
    assert at.query_params["alpha"] == "0.35"
    assert at.query_params["method"] == "grad_cam_pp" and at.query_params["sample"] == "dogs.png"


@pytest.mark.slow
def test_bad_values_in_the_address_are_ignored_with_a_notice():
    params = {"method": "no_such_cam", "k": "99", "alpha": "x", "layer": "_blocks.99", "cmap": "viridis"}
    params["activation"] = "`[a link](http://example.com)`"
    at = _open("pages/classification.py", params)
    notice = _notice(at)
    for name in ("method=no_such_cam", "k=99", "alpha=x", "layer=_blocks.99", "activation=?"):
        assert name in notice, notice
    assert "](" not in notice and "http://" not in notice  # a value is echoed as plain code, never as markup
    assert at.selectbox(key="cls.method").value == "grad_cam"  # the defaults instead
    assert at.slider(key="cls.k").value == 3
    assert at.selectbox(key="cls.colormap").value == "viridis"  # the valid value is kept
    assert dict(at.query_params) == {"cmap": "viridis"}  # the refused ones left the address
    at.slider(key="cls.k").set_value(4).run()  # a change: the notice has been read
    assert not _notice(at)


@pytest.mark.slow
def test_an_uploaded_image_comes_back_from_the_server_store():
    data = SNAKE.read_bytes()
    token = STORE.put("my snake.JPEG", data)
    at = _open("pages/classification.py", {"image": token, "method": "eigen_cam"})
    assert any("Showing **my snake.JPEG**" in c.value for c in at.caption)
    assert any(c.startswith("FM-G-CAM fused map, top 3 (Eigen-CAM") for c in _captions(at))
    assert any("sea snake" in c for c in _captions(at))
    assert at.query_params["image"] == token_of(image_digest(data))


@pytest.mark.slow
def test_an_image_the_server_no_longer_has_gives_the_sample_and_a_notice():
    at = _open("pages/classification.py", {"image": "0123456789abcdef", "k": "4"})
    assert "The uploaded image is no longer on the server; upload it again" in _notice(at)
    assert at.selectbox(key="cls.sample").value == "cat_dog.png"
    assert at.slider(key="cls.k").value == 4
    assert "image" not in at.query_params


@pytest.mark.slow
def test_a_dicom_upload_and_the_random_weights_come_back_on_the_xray_page():
    token = STORE.put("patient.dcm", DICOM.read_bytes())
    at = _open("pages/xray.py", {"image": token, "weights": "random", "k": "2"})
    assert any("Showing **patient.dcm**" in c.value for c in at.caption)
    assert any(c.startswith("FM-G-CAM fused map, top 2") for c in _captions(at))
    assert at.query_params["weights"] == "random"


@pytest.mark.slow
def test_a_weights_file_is_not_restored_and_the_notice_says_so():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["weights"] = "file"
    at.run()
    at.switch_page("pages/xray.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "A weights file is not kept across a reload: upload it again" in _notice(at)
    assert any("Upload a weights file in the sidebar" in i.value for i in at.info)


@pytest.mark.slow
def test_a_sample_opened_from_the_home_page_is_in_the_address_at_once():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    next(b for b in at.button if b.key == "home.open.imagenet.dogs.png").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="cls.sample").value == "dogs.png"
    assert at.query_params["sample"] == "dogs.png"

"""End-to-end test in a real browser: the served app, Chromium, an upload and the K slider.

Starts ``streamlit run app.py`` on a free port, drives Debian's Chromium through the
``playwright`` package, and saves screenshots to ``artifacts/`` (ignored by git). With
``UPDATE_SCREENSHOTS=1`` the screenshots are also copied to ``docs/screenshots/`` for
the README. Skipped when Chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from benchmarks import load_test

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
DOCS = ROOT / "docs" / "screenshots"
CHROMIUM, CHROMIUM_ARGS = load_test.CHROMIUM, load_test.CHROMIUM_ARGS  # one launch recipe for both

if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (set CHROMIUM=/path/to/chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)


@pytest.fixture(scope="module")
def server():
    """``streamlit run app.py`` on a free local port (the load test's helpers), always stopped."""
    port = load_test.free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    proc = load_test.start_server(port, ARTIFACTS / "streamlit.log")
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            load_test.wait_healthy(url, proc, timeout_s=90)
        except RuntimeError as err:
            pytest.fail(f"{err}; see {ARTIFACTS / 'streamlit.log'}")
        yield url
    finally:
        load_test.stop_server(proc)


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 950})
            pg = context.new_page()
            pg.set_default_timeout(120_000)
            yield pg
        finally:
            browser.close()


def _settle(page, quiet_s: float = 1.5, timeout_s: float = 240) -> None:
    """Wait until the app has stopped running for ``quiet_s`` seconds."""
    deadline, quiet_since = time.time() + timeout_s, None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_s:
            return
        time.sleep(0.25)
    raise AssertionError("the app kept running")


def _image(page, caption: str):
    return page.locator('[data-testid="stImage"]', has_text=caption).locator("img").first


def _wait_src_change(locator, old: str, timeout_s: float = 180) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            src = locator.get_attribute("src", timeout=2_000)
        except Exception:  # noqa: BLE001 - the element is being replaced during a rerun
            src = None
        if src and src != old:
            return src
        time.sleep(0.3)
    raise AssertionError("the image did not change")


def _shot(page, name: str, height: int = 2100) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    _settle(page, quiet_s=1.0)
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=60_000)
    time.sleep(1.0)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path


def test_home(page, server):
    page.goto(server)
    page.get_by_text("Explaining CNN image classifiers").wait_for()
    _settle(page)
    assert page.get_by_text("Start from a sample").is_visible()
    _shot(page, "home.png", height=1500)


def test_classification_upload_and_k_slider(page, server):
    page.goto(f"{server}/classification")
    fused = _image(page, "FM-G-CAM fused map")
    fused.wait_for(timeout=180_000)
    _settle(page)
    before = fused.get_attribute("src")

    upload = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
    upload.set_input_files(str(ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000911.JPEG"))
    after_upload = _wait_src_change(fused, before)
    _settle(page)
    assert page.get_by_text("hen").first.is_visible()

    slider = page.locator('[data-testid="stSlider"]', has_text="K: classes fused").locator('input[type="range"]')
    slider.focus()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    after_k = _wait_src_change(fused, after_upload)
    _settle(page)
    assert after_k != after_upload
    assert slider.input_value() == "5"
    assert page.locator('[data-testid="stImage"]', has_text="5. ").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    _shot(page, "classification.png")


def test_xray_random_weights(page, server):
    page.goto(f"{server}/xray")
    page.get_by_text("not a diagnostic device").first.wait_for()
    _settle(page)
    page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
    _image(page, "FM-G-CAM fused map").wait_for(timeout=180_000)
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    _shot(page, "xray.png")


def test_comparison(page, server):
    page.goto(f"{server}/comparison")
    page.locator('[data-testid="stImage"]', has_text="FG-CAM → input").first.wait_for(timeout=240_000)
    _settle(page)
    page.get_by_role("button", name="Compute faithfulness").click()
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=300_000)
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    _shot(page, "comparison.png", height=2050)

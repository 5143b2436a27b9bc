"""End-to-end tests in a real browser: the served app driven through Debian's Chromium.

Starts ``streamlit run app.py`` on a free port, drives Chromium through the
``playwright`` package and saves screenshots to ``artifacts/`` (ignored by git). With
``UPDATE_SCREENSHOTS=1`` they are also copied to ``docs/screenshots/`` for the README.
Every wait is for the thing checked (an image caption, a button, a message), never for
a fixed time. Skipped when Chromium or playwright is missing.

Covers issue 14: slow results shown again after switching away and back, in a new
session and after a display change, on both the classification and comparison pages
(item 1); the image and choices kept across pages (2); a class outside the top 10
explained on request (3); Stop, the disabled Compute button and progress with unit and
time left (5); the fused map above the fold at 1366x768 and 1920x1080 (7).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from benchmarks import load_test

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
DOCS = ROOT / "docs" / "screenshots"
CHROMIUM, CHROMIUM_ARGS = load_test.CHROMIUM, load_test.CHROMIUM_ARGS  # one launch recipe for both
LAPTOP = {"width": 1366, "height": 768}
WAIT_MS = 240_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (set CHROMIUM=/path/to/chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)


@contextlib.contextmanager
def _serve():
    """``streamlit run app.py`` on a free local port (the load test's helpers), always stopped."""
    port = load_test.free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    proc = load_test.start_server(port, ARTIFACTS / f"streamlit-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            load_test.wait_healthy(url, proc, timeout_s=90)
        except RuntimeError as err:
            pytest.fail(f"{err}; see {ARTIFACTS / f'streamlit-{port}.log'}")
        yield url
    finally:
        load_test.stop_server(proc)


@pytest.fixture(scope="module")
def server():
    """One server for the module's tests."""
    with _serve() as url:
        yield url


@pytest.fixture
def own_server():
    """A server of its own, for a test that times the server's answers (no other test's work left running)."""
    with _serve() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser, request):
    """A factory of pages, each in its own browser context (its own Streamlit session). When the test
    fails, each page's screen is saved as ``artifacts/failed_<test>_<n>.png``."""
    contexts = []

    def make(viewport: dict = LAPTOP):
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        return pg

    yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for n, c in enumerate(contexts):
            for pg in c.pages:
                try:
                    pg.screenshot(path=str(ARTIFACTS / f"failed_{request.node.name}_{n}.png"), full_page=True)
                except Exception as e:  # a closed or crashed page: the failure itself is what matters
                    print(f"no screenshot of page {n}: {e}")
    for c in contexts:
        c.close()


# ----------------------------------------------------------------------------- helpers


def _image(page, caption: str):
    return page.locator('[data-testid="stImage"]', has_text=caption).locator("img").first


def _idle(page, timeout_s: float = 240) -> None:
    """Wait until no script runs (the status widget is gone) and no element is stale."""
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')""",
        timeout=timeout_s * 1000,
    )


def _no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).first.inner_text()
    bad = page.get_by_text("Something went wrong while computing this")
    assert bad.count() == 0


def _select(page, label: str, option: str, *, type_text: str | None = None) -> None:
    """Choose ``option`` in the select box labelled ``label`` (typing ``type_text`` to filter)."""
    box = page.locator('[data-testid="stSelectbox"]', has_text=label).first
    # In the middle of its scroll area first: at the window's bottom edge (the sidebar's presenter
    # toggle pushes "Base method" there at 1366x768) the click does not open the list.
    box.evaluate("e => e.scrollIntoView({block: 'center'})")
    box.click()
    if type_text:
        page.keyboard.type(type_text)
    page.get_by_role("option", name=option, exact=True).first.click()


def _slider_to(page, label: str, value: int) -> None:
    slider = page.locator('[data-testid="stSlider"]', has_text=label).locator('input[type="range"]').first
    slider.focus()
    current = int(slider.input_value())
    for _ in range(abs(value - current)):
        slider.press("ArrowRight" if value > current else "ArrowLeft")
    assert slider.input_value() == str(value)


def _choose_class(page, typed: str, name: str) -> None:
    """Add ``name`` in the "Explain classes I choose" picker, found by typing ``typed``."""
    picker = page.locator('[data-testid="stMultiSelect"]', has_text="Explain classes I choose").first
    picker.click()
    page.keyboard.type(typed)
    page.get_by_role("option", name=name, exact=True).first.click()
    page.keyboard.press("Escape")


def _go(page, title: str) -> None:
    """Move to another page through the sidebar navigation (same session)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()


def _shot(page, name: str, *, at: str | None = None) -> Path:
    """Screenshots once every image has loaded: ``<name>_full.png``, the whole page at the viewport's
    width, and ``name`` at the viewport itself, scrolled to the top (what a laptop shows first) or,
    with ``at``, to the heading with that text."""
    ARTIFACTS.mkdir(exist_ok=True)
    _idle(page)
    # Chromium loads images lazily: with a viewport as tall as the page, all of them load.
    loaded = """() => [...document.querySelectorAll('[data-testid="stImage"]')].every(e => {
        const i = e.querySelector('img'); return i && i.complete && i.naturalWidth > 0; })"""
    states = """() => [...document.querySelectorAll('[data-testid="stImage"]')].map(e => {
        const i = e.querySelector('img');
        return i ? [i.src.slice(-60), i.complete, i.naturalWidth, i.loading, e.innerText.slice(0, 40)] : 'no img'; })"""
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(document.body.scrollHeight,
                 ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]')]
                 .map(e => e.scrollHeight))"""
    )
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 5000)})
    _idle(page)
    try:
        page.wait_for_function(loaded)
    except Exception:
        print("image states:", page.evaluate(states), "height", height)
        page.screenshot(path=str(ARTIFACTS / name.replace(".png", "_failed.png")))
        raise
    full = ARTIFACTS / name.replace(".png", "_full.png")
    page.screenshot(path=str(full))
    page.set_viewport_size(size)
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
    if at is not None:
        page.get_by_role("heading", name=at).first.scroll_into_view_if_needed()
        page.evaluate(
            """(text) => [...document.querySelectorAll('h1, h2, h3')].find(h => h.innerText.includes(text))
                       .scrollIntoView({block: 'start'})""",
            at,
        )
    _idle(page)
    page.wait_for_function(loaded)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / name)
        shutil.copyfile(full, DOCS / full.name)
    return path


def _above_fold(page, locator) -> dict:
    """The element's bounding box; asserts that all of it lies within the viewport."""
    page.evaluate("() => window.scrollTo(0, 0)")
    box = locator.bounding_box()
    view = page.viewport_size
    assert box is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= view["height"], (box, view)
    assert box["x"] >= 0 and box["x"] + box["width"] <= view["width"], (box, view)
    return box


# ----------------------------------------------------------------------------- tests


def test_home(new_page, server):
    page = new_page()
    page.goto(server)
    page.get_by_text("A research and teaching tool", exact=False).wait_for()  # the last element: all drawn
    _idle(page)
    _no_errors(page)
    _shot(page, "home.png")


def test_classification_layout_upload_k_and_shared_state(new_page, server):
    """Fused map above the fold at 1366x768 and 1920x1080; upload and K survive a page round trip."""
    page = new_page()
    page.goto(f"{server}/classification")
    fused = _image(page, "FM-G-CAM fused map, top 3")
    fused.wait_for()
    _idle(page)
    _above_fold(page, fused)
    page.set_viewport_size({"width": 1920, "height": 1080})
    _above_fold(page, fused)
    page.set_viewport_size(LAPTOP)

    upload = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
    upload.set_input_files(str(ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000911.JPEG"))
    page.locator('[data-testid="stImage"]', has_text="1. hen (").wait_for()
    _slider_to(page, "K: classes fused", 5)
    _image(page, "FM-G-CAM fused map, top 5").wait_for()
    _idle(page)
    _no_errors(page)
    _shot(page, "classification.png")

    _go(page, "Method comparison")
    page.get_by_text("ILSVRC2012_val_00000911.JPEG", exact=False).first.wait_for()
    page.locator("h3", has_text="Explaining hen").wait_for()
    _go(page, "Classification")
    _image(page, "FM-G-CAM fused map, top 5").wait_for()
    page.locator('[data-testid="stImage"]', has_text="1. hen (").wait_for()
    _no_errors(page)


def test_fgcam_per_class_maps_at_the_input(new_page, server):
    """Issue 12: the fine-grained fused map and each class's FG-CAM map at the input, drawn and shot
    (the three dog classes of the sample and the cat, chosen by name)."""
    page = new_page()
    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    _select(page, "...or use a sample", "cat_dog.png")
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    _choose_class(page, "Egyptian", "Egyptian cat")
    _image(page, "FM-G-CAM fused map, top 4").wait_for()
    _idle(page)
    page.get_by_role("button", name="Compute FG-CAM").click()
    _image(page, "FG-CAM fused, top 4, at input").wait_for()
    for rank in (1, 2, 3, 4):
        page.locator('[data-testid="stImage"]', has_text=f"FG-CAM {rank}. ").wait_for()
    page.get_by_text("Per-class FG-CAM maps:", exact=False).wait_for()
    _idle(page)
    _no_errors(page)
    _shot(page, "classification_fgcam.png", at="Fine-grained: FG-CAM")


def test_class_outside_the_top_ten(new_page, server):
    """Search-as-you-type: 'Egyptian cat' on the dog-and-cat sample joins the fused map."""
    page = new_page()
    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    _choose_class(page, "Egyptian", "Egyptian cat")
    page.locator('[data-testid="stImage"]', has_text="4. Egyptian cat (").wait_for()
    _image(page, "FM-G-CAM fused map, top 4").wait_for()
    _idle(page)
    _no_errors(page)


def _slow_setup(page, server, path: str) -> None:
    page.goto(f"{server}/{path}")
    page.get_by_text("Layer").first.wait_for()
    _idle(page)
    _select(page, "Layer", "_blocks.0 (16x112x112)", type_text="_blocks.0 ")
    _idle(page)


def test_slow_method_shown_again_on_classification(new_page, server):
    """Issue 14 defect 1 on the classification page: compute, away and back, new session, display change."""
    page = new_page()
    _slow_setup(page, server, "classification")
    _select(page, "Base method", "Score-CAM (slow)")
    page.get_by_text("on this machine", exact=False).first.wait_for()
    page.get_by_role("button", name="Compute Score-CAM").click()
    fused = _image(page, "(Score-CAM at _blocks.0)")
    fused.wait_for()
    _idle(page)
    _no_errors(page)

    _select(page, "Base method", "Grad-CAM")
    _image(page, "(Grad-CAM at _blocks.0)").wait_for()
    _select(page, "Base method", "Score-CAM (slow)")
    fused.wait_for()
    _idle(page)
    _no_errors(page)
    assert page.get_by_role("button", name="Compute Score-CAM").count() == 0

    _select(page, "Colour map (single-class maps)", "jet", type_text="jet")
    _idle(page)
    fused.wait_for()
    _no_errors(page)

    fresh = new_page()  # a new browser session: the stored result shows at once
    _slow_setup(fresh, server, "classification")
    _select(fresh, "Base method", "Score-CAM (slow)")
    _image(fresh, "(Score-CAM at _blocks.0)").wait_for()
    _idle(fresh)
    _no_errors(fresh)


def test_slow_method_shown_again_on_comparison(new_page, server):
    """Issue 14 defect 1 on the comparison page."""
    page = new_page()
    _slow_setup(page, server, "comparison")
    page.get_by_text("Include slow methods", exact=False).first.click()
    page.get_by_role("button", name="Compute Score-CAM").click()
    score = page.locator('[data-testid="stImage"]', has_text="Score-CAM: ")
    score.first.wait_for()
    _idle(page)
    _no_errors(page)

    def one_score_map() -> None:
        # during a rerun the old map (stale) and the new one can both be in the page: wait for one
        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="stImage"]')]
                     .filter(e => e.innerText.includes('Score-CAM: ')).length === 1""",
            timeout=WAIT_MS,
        )

    one_score_map()
    _select(page, "Colour map (single-class maps)", "jet", type_text="jet")
    _idle(page)
    score.first.wait_for()
    one_score_map()
    _no_errors(page)
    _go(page, "Classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _go(page, "Method comparison")
    score.first.wait_for()
    _idle(page)
    one_score_map()
    _no_errors(page)

    fresh = new_page()
    _slow_setup(fresh, server, "comparison")
    fresh.get_by_text("Include slow methods", exact=False).first.click()
    fresh.locator('[data-testid="stImage"]', has_text="Score-CAM: ").first.wait_for()
    _idle(fresh)
    _no_errors(fresh)

    page.get_by_role("button", name="Compute faithfulness").click()
    page.locator('[data-testid="stTable"]').first.wait_for()
    _idle(page)
    table = page.locator('[data-testid="stTable"]').first
    box = table.bounding_box()
    assert box["x"] + box["width"] <= page.viewport_size["width"], "the faithfulness table is cut"
    _no_errors(page)
    _shot(page, "comparison.png")


def test_road_on_the_comparison_page(new_page, server):
    """Issue 13: ROAD, off by default, computed on request; its columns and MoRF/LeRF curves join the table."""
    page = new_page()
    page.goto(f"{server}/comparison")
    page.get_by_role("button", name="Compute faithfulness").wait_for()
    _idle(page)
    page.get_by_role("button", name="Compute faithfulness").click()
    table = page.locator('[data-testid="stTable"]').first
    table.wait_for()
    _idle(page)
    assert "ROAD" not in table.inner_text(), "ROAD is off by default"
    page.locator('[data-testid="stCheckbox"]').filter(has=page.get_by_role("switch", name="ROAD", exact=True)).click()
    points = page.locator('[data-testid="stSlider"]', has_text="ROAD points").locator('input[type="range"]:enabled')
    points.wait_for()
    _idle(page)
    points.focus()
    points.press("Home")  # 1 point: 50 % removed, two imputed images per map
    assert points.input_value() == "0"
    # The slider sends its value after a short debounce, so an idle page does not yet mean the app
    # has it: a Compute click before then asks for the 9-point run, and the rerun the slider starts
    # afterwards offers the 1-point button again (the CI failure of this test on a loaded machine).
    # Wait for the page to state the 1-point workload instead: two imputed images per method.
    maps = table.locator("tbody tr").count()
    page.get_by_text(re.compile(rf"\b{2 * maps} imputed images")).first.wait_for()
    _idle(page)
    page.get_by_role("button", name="Compute ROAD").click()
    page.locator(".js-plotly-plot", has_text="ROAD LeRF").first.wait_for()
    _idle(page)
    _no_errors(page)
    text = table.inner_text()
    assert "ROAD MoRF" in text and "ROAD LeRF" in text and "–" not in text, text
    assert page.get_by_text("the first run here measures", exact=False).count() == 0, "the estimate note is gone"
    _shot(page, "comparison_road.png", at="Faithfulness")


def test_stop_within_a_second_and_compute_disabled(new_page, own_server):
    """Issue 14 item 5: progress names its unit and time left; Compute is disabled; Stop answers fast."""
    page = new_page()
    page.goto(f"{own_server}/classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    _select(page, "Base method", "Score-CAM (slow)")
    warning = page.locator('[data-testid="stAlert"]', has_text="on this machine").first
    warning.wait_for()
    assert "masks" in warning.inner_text()
    page.get_by_role("button", name="Compute Score-CAM").click()
    progress = page.locator('[data-testid="stProgress"]', has_text="left").first
    progress.wait_for()
    assert " masks" in progress.inner_text()
    assert page.get_by_role("button", name="Compute Score-CAM").is_disabled()
    t0 = time.monotonic()
    # The page's own Stop (the toolbar has Streamlit's Stop too while the script runs).
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped after", exact=False).first.wait_for(timeout=30_000)
    seconds = time.monotonic() - t0
    print(f"Stop answered in {seconds:.2f} s")
    assert seconds < 5.0, f"Stop took {seconds:.1f} s"
    assert page.get_by_role("button", name="Compute Score-CAM").is_enabled()
    _no_errors(page)


def test_xray_page(new_page, server):
    page = new_page()
    page.goto(f"{server}/xray")
    page.get_by_text("not a diagnostic device").first.wait_for()
    _image(page, "as read (bright = dense)").wait_for()  # shown with or without weights
    page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    _no_errors(page)
    _shot(page, "xray.png")

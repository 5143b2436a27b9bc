"""Browser tests of issue 23 items 3 and 5: the side-by-side page and presenter mode.

Same server and browser helpers as tests/test_browser.py (a free port, waits for what is
checked, never a fixed sleep). With ``UPDATE_SCREENSHOTS=1`` the screenshots are also
copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import base64
import json
import os
import shutil

import numpy as np
import pytest

from tests.test_browser import (  # noqa: F401
    ARTIFACTS,
    DOCS,
    WAIT_MS,
    _above_fold,
    _idle,
    _image,
    _no_errors,
    browser,
    server,
)

pytestmark = pytest.mark.slow

LOADED = """() => [...document.querySelectorAll('[data-testid="stImage"] img')].every(
    i => i.complete && i.naturalWidth > 0)"""


def _context(browser, width: int, height: int, scheme: str = "light"):  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return context, page


def _save(page, name: str) -> None:
    """The viewport as it is (scrolled to the top), once every image has loaded."""
    ARTIFACTS.mkdir(exist_ok=True)
    _idle(page)
    page.wait_for_function(LOADED)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / name)


def _background(page) -> int:
    colour = page.evaluate("() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
    return sum(int(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])


def _values(data) -> np.ndarray:
    """Hover values of an image trace: a nested list, or plotly's typed-array encoding."""
    if isinstance(data, dict) and "bdata" in data:
        dtype = {"f4": np.float32, "f8": np.float64}[data["dtype"]]
        arr = np.frombuffer(base64.b64decode(data["bdata"]), dtype=dtype)
        shape = data.get("shape")
        return arr.reshape([int(v) for v in str(shape).split(",")] if shape else -1)[..., 0]
    return np.asarray(data, dtype=np.float64)[..., 0]


def _figure(page) -> dict:
    """The side-by-side plotly figure's data and layout, as drawn in the page."""
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    chart.wait_for()
    return json.loads(chart.evaluate("e => JSON.stringify({data: e.data, layout: e.layout})"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_side_by_side_two_models_one_colour_scale(browser, server, scheme):  # noqa: F811
    """Lite0 vs ResNet50 (random weights: none ship offline) on one image: two maps, one shared colour
    bar, the difference with its own bar centred at 0."""
    context, page = _context(browser, 1366, 768, scheme)
    try:
        page.goto(f"{server}/side_by_side")
        page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
        page.get_by_text("Difference A − B").first.wait_for()
        _idle(page)
        _no_errors(page)
        fig = _figure(page)
        images = [d for d in fig["data"] if d["type"] == "image"]
        bars = [d["marker"] for d in fig["data"] if d["type"] == "scatter" and d["marker"].get("showscale")]
        assert len(images) == 3, "map A, map B and their difference"
        assert len(bars) == 2, "one colour bar for both maps, one for the difference"
        maps, diff = bars
        assert maps["cmin"] < maps["cmax"] and diff["cmin"] == -diff["cmax"] < 0, (maps, diff)
        # The maps' bar spans both maps' values: each map's own values lie inside it, and it is
        # exactly their joint min/max (neither map's own range).
        a, b, d = (_values(i["customdata"]) for i in images)
        both = np.concatenate([a.ravel(), b.ravel()])
        assert both.min() == pytest.approx(maps["cmin"], abs=1e-6)
        assert both.max() == pytest.approx(maps["cmax"], rel=1e-5)
        assert a.max() < maps["cmax"] or b.max() < maps["cmax"], "the bar is the joint range, not one map's"
        assert np.abs(d).max() == pytest.approx(diff["cmax"], rel=1e-5)
        np.testing.assert_allclose(d, a - b, atol=1e-5)
        assert page.locator(".colorbar").count() == 2, "two colour bars drawn"
        assert (_background(page) < 240) == (scheme == "dark")
        page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
        _save(page, "side_by_side.png" if scheme == "light" else "side_by_side_dark.png")
    finally:
        context.close()


def test_side_by_side_refuses_models_of_different_class_sets(browser, server):  # noqa: F811
    context, page = _context(browser, 1366, 768)
    try:
        page.goto(f"{server}/side_by_side")
        page.get_by_text("Model B", exact=True).first.wait_for()
        page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]', has_text="Family").nth(1).get_by_text(
            "Chest X-ray"
        ).click()
        page.get_by_text("These two models predict different classes", exact=False).wait_for()
        _idle(page)
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()


@pytest.mark.parametrize(
    ("width", "height", "scheme", "name"),
    [
        (1366, 768, "light", "presenter_1366.png"),
        (1366, 768, "dark", None),
        (1920, 1080, "light", None),
        (1920, 1080, "dark", "presenter_1920_dark.png"),
    ],
)
def test_presenter_mode_fused_map_and_legend_above_the_fold(browser, server, width, height, scheme, name):  # noqa: F811
    context, page = _context(browser, width, height, scheme)
    try:
        page.goto(f"{server}/classification?present=1")
        fused = _image(page, "FM-G-CAM fused map, top")
        fused.wait_for()
        legend = page.locator(".st-key-presenter_legend .fmgcam-legend")
        legend.wait_for()
        _idle(page)
        page.wait_for_function(LOADED)
        _no_errors(page)
        page.screenshot(path=str(ARTIFACTS / f"presenter_{width}_{scheme}_check.png"))
        assert not page.locator('[data-testid="stSidebar"]').is_visible(), "the sidebar is hidden"
        main = page.get_by_test_id("stMainBlockContainer")
        for label in ("Image", "K: classes fused", "Method"):
            main.get_by_text(label, exact=True).first.wait_for()
        fused_box = _above_fold(page, fused)
        _above_fold(page, legend)
        _above_fold(page, page.get_by_role("button", name="Exit presenter mode"))
        assert fused_box["height"] >= 0.55 * height, ("the fused map fills the screen", fused_box)
        size = page.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert size >= 20, "large type"
        assert (_background(page) < 240) == (scheme == "dark")
        if name:
            _save(page, name)
        # One control row: the three controls and the exit button share a line.
        tops = [
            main.locator('[data-testid="stSelectbox"]', has_text="Image").first.bounding_box()["y"],
            main.locator('[data-testid="stSlider"]', has_text="K: classes fused").first.bounding_box()["y"],
            main.locator('[data-testid="stSelectbox"]', has_text="Method").first.bounding_box()["y"],
        ]
        assert max(tops) - min(tops) < 20, tops
        page.get_by_role("button", name="Exit presenter mode").click()
        page.get_by_text("Classification: why did the model say that?").wait_for()
        assert "present" not in page.url
    finally:
        context.close()


def test_presenter_controls_change_the_map(browser, server):  # noqa: F811
    context, page = _context(browser, 1366, 768)
    try:
        page.goto(f"{server}/classification?present=1")
        _image(page, "FM-G-CAM fused map, top 3").wait_for()
        _idle(page)
        main = page.get_by_test_id("stMainBlockContainer")
        main.locator('[data-testid="stSelectbox"]', has_text="Method").first.click()
        page.get_by_role("option", name="Grad-CAM++", exact=True).first.click()
        _image(page, "FM-G-CAM fused map, top 3 (Grad-CAM++").wait_for()
        _no_errors(page)
    finally:
        context.close()


def test_presenter_mode_on_the_xray_page_keeps_its_warnings_in_view(browser, server):  # noqa: F811
    """X-ray page, random weights: the research-use and not-a-result notices sit beside the map, in view."""
    context, page = _context(browser, 1366, 768)
    try:
        page.goto(f"{server}/xray")
        page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
        _image(page, "FM-G-CAM fused map, top").wait_for()
        _idle(page)
        page.get_by_text("Presenter mode", exact=True).first.click()
        fused = page.locator(".st-key-presenter_fused img").first
        fused.wait_for()
        _idle(page)
        page.wait_for_function(LOADED)
        _no_errors(page)
        _above_fold(page, fused)
        _above_fold(page, page.locator(".st-key-presenter_legend .fmgcam-legend"))
        legend = page.locator(".st-key-presenter_legend")
        _above_fold(page, legend.get_by_text("Research tool, not a diagnostic device."))
        _above_fold(page, legend.get_by_text("Random weights - not a result", exact=False))
        _save(page, "presenter_xray.png")
    finally:
        context.close()

"""Browser tests of issue 23's walkthrough items, in Debian's Chromium through playwright.

Same server and browser helpers as tests/test_browser.py (a free port, waits for what is
checked, never a fixed sleep). Items already driven in a browser elsewhere: 3 (dark theme,
tests/test_browser_round3.py) and the random-weights PDF of item 1 (same file). Here: the
random-weights page and figure (1), coinciding methods and the curves' legend (2), the class
search's synonyms (4), the X-ray reading table (5), reloading the tab (6), CAM away from the
head layer (7), the fused map's opacity and grey photo (9), Stop then Compute going on (12),
the sample box and an upload (13), and the layout at 1366x768 (15).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    LAPTOP,
    ROOT,
    _idle,
    _image,
    _no_errors,
    _select,
    _shot,
    _slider_to,
    browser,
    new_page,
    own_server,
    server,
)

pytestmark = pytest.mark.slow

SNAKE = ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG"


def _random_xray(page, server: str) -> None:  # noqa: F811
    page.goto(f"{server}/xray")
    page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)


def _snake_uploaded(page, server: str):  # noqa: F811
    """The classification page with the sea snake uploaded over its default sample, idle."""
    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(SNAKE))
    page.locator('[data-testid="stImage"]', has_text="1. sea snake").wait_for()
    _idle(page)
    return page


def _sample_box_shows(page, name: str) -> None:
    """Wait until the sample box shows ``name`` (a select box shows its value in its input)."""
    page.wait_for_function(
        """(name) => [...document.querySelectorAll('[data-testid="stSelectbox"]')]
                     .some(b => b.innerText.includes('or use a sample') && b.querySelector('input').value === name)""",
        arg=name,
    )


def test_random_weights_xray_says_not_a_result_and_its_downloads_say_so(new_page, server, tmp_path):  # noqa: F811
    """Item 1: beside the maps a "not a result" warning, nothing flagged, the downloads marked random."""
    page = new_page()
    _random_xray(page, server)
    _no_errors(page)
    page.locator('[data-testid="stAlert"]', has_text="Random weights - not a result").first.wait_for()
    assert page.get_by_text("Above the model's operating threshold").count() == 0
    page.get_by_text("No output is flagged", exact=False).first.wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Predictions + settings (JSON)").click()
    path = tmp_path / "x.json"
    info.value.save_as(path)
    settings = json.loads(path.read_text())
    flat = json.dumps(settings)
    assert '"weights_status": "random"' in flat and '"above_threshold": []' in flat, flat[:400]
    with page.expect_download() as info:
        page.get_by_role("button", name="Figure (PNG)").click()
    png = tmp_path / "x.png"
    info.value.save_as(png)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_comparison_names_coinciding_methods_and_the_legend_clears_the_axis(new_page, server):  # noqa: F811
    """Item 2: the identical maps are named with the reason; the curves' legend sits below the x-axis title."""
    page = new_page()
    page.goto(f"{server}/comparison")
    note = page.locator('[data-testid="stAlert"]', has_text="give the same map here").first
    note.wait_for()
    assert "global average pooling" in note.inner_text()
    page.get_by_role("button", name="Compute faithfulness").click()
    chart = page.locator(".js-plotly-plot", has_text="Deletion").first
    chart.locator(".legend").wait_for()
    _idle(page)
    title = chart.locator(".g-xtitle").first.bounding_box()
    legend = chart.locator(".legend").first.bounding_box()
    assert legend["y"] >= title["y"] + title["height"] - 1, (legend, title)


def test_class_search_finds_tabby_cat(new_page, server):  # noqa: F811
    """Item 4: typing "tabby cat" offers ImageNet's "tabby" (also: tabby cat)."""
    page = new_page()
    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    picker = page.locator('[data-testid="stMultiSelect"]', has_text="Explain classes I choose").first
    picker.click()
    page.keyboard.type("tabby cat")
    page.get_by_role("option", name="tabby (also: tabby cat)", exact=True).first.wait_for()
    page.keyboard.press("Escape")


def test_xray_reading_table_is_not_clipped(new_page, server):  # noqa: F811
    """Item 5: "How the file was read" fits its column: nothing to scroll sideways, nothing cut off."""
    page = new_page()
    page.goto(f"{server}/xray")
    page.locator('[data-testid="stSelectbox"]', has_text="...or use a sample").first.wait_for()
    _select(page, "...or use a sample", "fake_monochrome1.dcm")
    table = page.locator('[data-testid="stTable"]').first
    table.wait_for()
    _idle(page)
    fits = table.evaluate(
        """t => [t, ...t.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth + 1
                 || getComputedStyle(e).overflowX === 'visible')"""
    )
    box, column = table.bounding_box(), page.get_by_test_id("stMain").bounding_box()
    assert fits and box["x"] + box["width"] <= column["x"] + column["width"], (box, column)


def test_reloading_keeps_the_upload_and_the_settings_as_the_readme_says(new_page, server):  # noqa: F811
    """Item 6: after a reload the uploaded image, the method and K are shown again, with their map (README)."""
    page = _snake_uploaded(new_page(), server)
    _select(page, "Base method", "Grad-CAM++")
    _image(page, "FM-G-CAM fused map, top 3 (Grad-CAM++").wait_for()
    _idle(page)
    _slider_to(page, "K: classes fused", 5)
    _image(page, "FM-G-CAM fused map, top 5 (Grad-CAM++").wait_for()
    _idle(page)
    page.wait_for_function("""() => ['image=', 'method=grad_cam_pp', 'k=5'].every(p => location.search.includes(p))""")
    page.reload()
    page.get_by_text(f"Showing {SNAKE.name}, uploaded earlier", exact=False).first.wait_for()
    _image(page, "FM-G-CAM fused map, top 5 (Grad-CAM++").wait_for()
    page.locator('[data-testid="stImage"]', has_text="1. sea snake").wait_for()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stSelectbox"]')]
                 .some(b => b.innerText.includes('Base method') && b.querySelector('input').value === 'Grad-CAM++')"""
    )
    _idle(page)
    _no_errors(page)
    assert page.locator('[data-testid="stAlert"]', has_text="From the address").count() == 0
    _shot(page, "reload_restored.png")
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Reloading the tab shows the same image, settings and maps again" in readme


def test_cam_left_out_away_from_the_head_layer(new_page, server):  # noqa: F811
    """Item 7: at _blocks.5 CAM is neither chosen nor offered, the sidebar says why, and no error shows."""
    page = new_page()
    page.goto(f"{server}/comparison")
    page.locator("h3", has_text="Explaining").wait_for()
    _idle(page)
    _select(page, "Layer", re.compile(r"^_blocks\.5 \("), type_text="_blocks.5 (")
    page.get_by_text("CAM applies only to the layer", exact=False).first.wait_for()
    page.locator("h3", has_text="at `_blocks.5`").or_(page.locator("h3", has_text="at _blocks.5")).first.wait_for()
    _idle(page)
    _no_errors(page)
    assert page.locator('[data-testid="stAlert"]').filter(has_text="CAM").filter(has_text="error").count() == 0
    methods = page.locator('[data-testid="stMultiSelect"]', has_text="Methods").first.inner_text()
    assert not re.search(r"(^|\n)CAM(\n|$)", methods), methods


def test_fused_map_opacity_and_grey_photo_defaults(new_page, server):  # noqa: F811
    """Item 9: the fused map is drawn at 0.85 opacity over the photo in grey by default."""
    page = new_page()
    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    slider = page.locator('[data-testid="stSlider"]', has_text="Fused map opacity").first
    assert "0.85" in slider.inner_text(), slider.inner_text()
    toggle = page.locator('[data-testid="stCheckbox"]', has_text="Photo in grey under the fused map").first
    assert toggle.locator("input").is_checked()


def test_stop_then_compute_goes_on_from_where_it_stopped(new_page, own_server):  # noqa: F811
    """Item 12: Score-CAM stopped after N masks; Compute again shows progress from N on, never from zero."""
    page = new_page()
    page.goto(f"{own_server}/classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    _select(page, "Base method", "Score-CAM (slow)")
    page.get_by_role("button", name="Compute Score-CAM").click()
    progress = page.locator('[data-testid="stProgress"]', has_text=re.compile(r"[1-9]\d* of \d+ masks")).first
    progress.wait_for()
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    note = page.locator('[data-testid="stAlert"]', has_text="Stopped after").first
    note.wait_for()
    stopped = int(re.search(r"Stopped after (\d+) of", note.inner_text()).group(1))
    assert stopped > 0 and "the button goes on from there" in note.inner_text(), note.inner_text()
    page.get_by_role("button", name="Compute Score-CAM").click()
    again = page.locator('[data-testid="stProgress"]', has_text=re.compile(r"\d+ of \d+ masks")).first
    again.wait_for()
    first = int(re.search(r"(\d+) of \d+ masks", again.inner_text()).group(1))
    assert first >= stopped, f"Compute started again at {first} masks after Stop at {stopped}"
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()  # do not wait it out
    note.wait_for()
    _no_errors(page)


def test_sample_box_and_upload_do_not_fight(new_page, server):  # noqa: F811
    """Item 13: with an upload shown the box names it, not a sample; choosing cat_dog.png shows it, chip gone."""
    page = _snake_uploaded(new_page(), server)
    box = page.locator('[data-testid="stSelectbox"]', has_text="...or use a sample").locator("input").first
    assert box.input_value() == "" and box.get_attribute("placeholder") == "(your upload is shown)"
    assert page.locator('[data-testid="stFileChip"]').count() == 1
    _select(page, "...or use a sample", "cat_dog.png")
    _sample_box_shows(page, "cat_dog.png")
    page.wait_for_function(
        """() => ![...document.querySelectorAll('[data-testid="stImage"]')].some(e => e.innerText.includes('sea snake'))
                 && !document.querySelector('[data-testid="stFileChip"]')"""
    )
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    _idle(page)
    _no_errors(page)


def test_layout_at_1366x768(new_page, server):  # noqa: F811
    """Item 15: the X-ray fused map above the fold, the model name whole in the sidebar, no padding layers,
    the colour scale's caption at the column's width."""
    page = new_page()
    _random_xray(page, server)
    model = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]', has_text="Model").first
    box = model.locator("input").first  # a select box shows its value in its input
    cut = box.evaluate("i => i.scrollWidth > i.clientWidth + 1")
    assert not cut, box.input_value()
    fused = _image(page, "FM-G-CAM fused map")
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
    fused_box = fused.bounding_box()
    assert fused_box["y"] + fused_box["height"] <= LAPTOP["height"], fused_box

    page.goto(f"{server}/classification")
    _image(page, "FM-G-CAM fused map").wait_for()
    _idle(page)
    caption = page.get_by_text("Colour scale: black = no evidence", exact=False).first
    assert caption.bounding_box()["width"] > 200, caption.bounding_box()
    layer = page.locator('[data-testid="stSelectbox"]', has_text="Layer").first
    layer.click()
    page.get_by_role("option").first.wait_for()
    options = page.get_by_role("listbox").first.inner_text()
    page.keyboard.press("Escape")
    assert "_head_act" in options or "_blocks" in options, options[:200]
    assert "static_padding" not in options

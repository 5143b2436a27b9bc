"""Browser test of the comparison page's sanity check (issue 22), in Debian's Chromium through playwright.

Same server and browser helpers as tests/test_browser.py (a free port, waits for what is
checked, never a fixed sleep): the check is run, stopped midway (what finished is shown,
the page keeps working), run again to the end, and its figure kept as
``docs/screenshots/comparison_sanity.png`` (with ``UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.test_browser import ARTIFACTS, DOCS, _idle, _no_errors, browser, new_page, server  # noqa: F401

pytestmark = pytest.mark.slow

FIGURE = ".js-plotly-plot"


def test_sanity_check_runs_stops_and_draws_the_figure(new_page, server):  # noqa: F811
    page = new_page()
    page.goto(f"{server}/comparison")
    run = page.get_by_role("button", name="Run the sanity check")
    run.wait_for()
    _idle(page)
    steps = page.locator('[data-testid="stSlider"]', has_text="Randomisation steps").locator('input[type="range"]')
    steps.focus()
    steps.press("End")  # 12 steps: a run long enough to stop midway on any machine
    estimate = page.get_by_text(re.compile(r"Sanity check of \d+ methods takes about .* \(\d+ maps, 13 per method"))
    estimate.first.wait_for()
    _idle(page)
    run.click()

    progress = page.locator('[data-testid="stProgress"]', has_text="left").first
    progress.wait_for()
    page.wait_for_function(  # a few methods finished, many to go
        """() => { const p = document.querySelector('[data-testid="stProgress"]');
                   const m = p && p.innerText.match(/(\\d+) of (\\d+) maps/);
                   return m && +m[1] >= 30; }"""
    )
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    stopped = page.get_by_text(re.compile(r"Stopped: \d+ of \d+ methods finished"))
    stopped.first.wait_for()
    _idle(page)
    _no_errors(page)
    text = stopped.first.inner_text()
    finished, total = (int(v) for v in re.search(r"Stopped: (\d+) of (\d+)", text).groups())
    assert 2 <= finished < total, text
    curves = page.locator(FIGURE, has_text="Similarity to the trained model's map").first
    curves.wait_for()
    page.locator(FIGURE, has_text="Maps as the layers are randomised").first.wait_for()
    assert page.get_by_role("button", name="Run the sanity check").is_enabled(), "the page keeps working"

    page.get_by_role("button", name="Run the sanity check").click()  # the rest: finished methods are not redone
    rest = re.compile(rf"of {13 * (total - finished)} maps")
    page.locator('[data-testid="stProgress"]', has_text=rest).first.wait_for()
    page.get_by_text("How to read it").first.wait_for()
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stProgress"]')
                 && ![...document.querySelectorAll('[data-testid="stAlert"]')]
                     .some(a => a.innerText.includes('Stopped:'))"""
    )
    _idle(page)
    _no_errors(page)
    assert "(stopped)" not in curves.inner_text()
    page.locator(FIGURE, has_text="Maps as the layers are randomised").first.wait_for()

    # The figure for the README: two methods (one that passes, one that ignores the classifier) and FG-CAM's
    # deepest target (the input), at the default 6 steps, the curves and the maps in one laptop screen.
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.locator('[data-testid="stMultiSelect"]', has_text="Methods").get_by_label("Clear all").click()
    _idle(page)
    for name in ("Grad-CAM", "Eigen-CAM"):
        sidebar.locator('[data-testid="stMultiSelect"]', has_text="Methods").click()
        page.get_by_role("option", name=name, exact=True).first.click()
        page.keyboard.press("Escape")
        _idle(page)
    targets = page.locator('[data-testid="stMultiSelect"]', has_text="FG-CAM target layers")
    targets.get_by_label("Clear all").click()
    _idle(page)
    targets.click()
    page.get_by_role("option", name=re.compile(r"^input")).first.click()
    page.keyboard.press("Escape")
    _idle(page)
    steps = page.locator('[data-testid="stSlider"]', has_text="Randomisation steps").locator('input[type="range"]')
    steps.focus()
    steps.press("Home")
    steps.press("ArrowRight")  # 6 steps, the default
    page.get_by_text(re.compile(r"Sanity check of 3 methods .*\(21 maps, 7 per method")).first.wait_for()
    _idle(page)
    page.get_by_role("button", name="Run the sanity check").click()
    page.get_by_text("How to read it").first.wait_for()
    grid = page.locator(FIGURE, has_text="Maps as the layers are randomised").first
    grid.wait_for()
    _idle(page)
    _no_errors(page)
    assert page.get_by_text("Stopped:").count() == 0
    shot(page, "comparison_sanity.png", at="How to read it")


def shot(page, name: str, *, at: str) -> None:
    """A 1366x768 screenshot with the paragraph starting with ``at`` at the top, in artifacts/ (and docs/screenshots/
    with ``UPDATE_SCREENSHOTS=1``)."""
    page.evaluate(
        """(text) => [...document.querySelectorAll('p')].find(p => p.innerText.startsWith(text))
                   .scrollIntoView({block: 'start'})""",
        at,
    )
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop -= 60; })")
    _idle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, DOCS / name)

"""Browser tests of issue 23 (the dashboard, round 3), in Debian's Chromium through playwright.

Same server and browser helpers as tests/test_browser.py (a free port, waits for what is
checked, never a fixed sleep). Covers the clinician's PDF report with random weights:
downloaded, converted with ``pdftoppm``, checked for the watermark text with
``pdftotext``; its first page is kept as ``docs/report_first_page.png``.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.test_browser import ARTIFACTS, ROOT, _idle, _image, _no_errors, browser, new_page, server  # noqa: F401

pytestmark = pytest.mark.slow


def test_xray_report_pdf_with_random_weights_is_watermarked(new_page, server, tmp_path):  # noqa: F811
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("poppler-utils (pdftoppm, pdftotext) not installed")
    page = new_page()
    page.goto(f"{server}/xray")
    page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    page.get_by_text("Random weights - not a result", exact=False).first.wait_for()
    _idle(page)
    _no_errors(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Clinician's report (PDF)").click()
    pdf = tmp_path / "report.pdf"
    info.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [p for p in text.split("\f") if p.strip()]
    assert pages and all("RANDOM WEIGHTS - NOT A RESULT" in p for p in pages), "watermark on every page"
    assert "not a diagnostic device" in text and "ABOVE" not in text and "Atelectasis" in text
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")], check=True)
    first = sorted(tmp_path.glob("p*.png"))[0]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(first, ARTIFACTS / "report_first_page.png")
    shutil.copyfile(first, ROOT / "docs" / "report_first_page.png")
    shutil.copyfile(pdf, ARTIFACTS / "report.pdf")


def _background(page) -> tuple[int, ...]:
    colour = page.evaluate("() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
    return tuple(int(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])


def test_dark_preference_is_followed_and_a_theme_control_is_offered(browser, server):  # noqa: F811
    """Item 3: a browser preferring dark gets the dark theme; the menu offers the theme choice."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, color_scheme="dark")
    try:
        page = context.new_page()
        page.set_default_timeout(90_000)
        page.goto(server)
        page.get_by_text("A research and teaching tool", exact=False).wait_for()
        assert sum(_background(page)) < 3 * 80, _background(page)
        page.locator('[data-testid="stMainMenuButton"]').click()
        menu = page.locator('[data-testid="stMainMenuPopover"]')
        menu.wait_for()
        items = menu.inner_text()
        assert all(word in items for word in ("System", "Light", "Dark")), items  # the theme control
    finally:
        context.close()

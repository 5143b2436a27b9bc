"""Browser test of the gallery page (issue 23 item 2), in Debian's Chromium through playwright.

Uploads 10 of the ImageNet samples, explains them, sorts them by top-1 probability (both
orders, read from the thumbnails' captions) and opens one on the classification page.
Screenshots at 1366x768 in the light and the dark theme (``UPDATE_SCREENSHOTS=1`` copies
them to docs/screenshots/gallery.png and gallery_dark.png).
"""

from __future__ import annotations

import re

import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    LAPTOP,
    ROOT,
    WAIT_MS,
    _idle,
    _no_errors,
    _select,
    _shot,
    browser,
    new_page,
    server,
)

pytestmark = pytest.mark.slow

SAMPLES = ROOT / "samples" / "imagenet"
FILES = sorted(p for p in SAMPLES.iterdir() if p.name.startswith("ILSVRC2012_val_"))[:10]
_CAPTION = re.compile(r"^(.+): (.+) \((\d+(?:\.\d+)?)%\)$")


def _thumbnails(page) -> list[tuple[str, str, float]]:
    """``(file, top class, percent)`` of every thumbnail, in the page's order."""
    texts = page.locator('[data-testid="stMainBlockContainer"] [data-testid="stImage"]').all_inner_texts()
    out = []
    for text in texts:
        m = _CAPTION.match(text.strip())
        if m:
            out.append((m.group(1), m.group(2), float(m.group(3))))
    return out


def _wait_thumbnails(page, n: int) -> None:
    page.wait_for_function(
        """(n) => [...document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stImage"]')]
                 .filter(e => /\\(\\d+(\\.\\d+)?%\\)$/.test((e.innerText || '').trim())).length === n
                 && !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')""",
        arg=n,
        timeout=WAIT_MS,
    )


def _upload_and_explain(page, url: str) -> None:
    page.goto(f"{url}/gallery")
    page.get_by_text("Upload images or a ZIP archive to start").wait_for()
    upload = page.locator('[data-testid="stFileUploader"]', has_text="Upload images").locator('input[type="file"]')
    upload.set_input_files([str(p) for p in FILES])
    button = page.get_by_role("button", name="Explain 10 images")
    if button.count() or _wait_either(page):
        button.click()
    _wait_thumbnails(page, 10)


def _wait_either(page) -> bool:
    """Wait for the Explain button, or for the thumbnails (results another session computed); True for the button."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Explain 10 images'))
                 || document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stImage"]').length"""
    )
    return page.get_by_role("button", name="Explain 10 images").count() > 0


def test_gallery_ten_images_sorted_and_one_opened(new_page, server, browser):  # noqa: F811
    page = new_page()
    _upload_and_explain(page, server)
    _no_errors(page)
    shown = _thumbnails(page)
    assert sorted(f for f, _, _ in shown) == sorted(p.name for p in FILES)
    percents = [p for _, _, p in shown]
    assert percents == sorted(percents, reverse=True), shown  # the default: top-1 probability, largest first
    _shot(page, "gallery.png")

    _select(page, "Sort by", "Top-1 probability (smallest first)")
    page.wait_for_function(
        """(first) => {
            const e = document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stImage"]');
            return e && !(e.innerText || '').startsWith(first)
                               && !document.querySelector('[data-testid="stStatusWidget"]'); }""",
        arg=shown[0][0],
    )
    _idle(page)
    ascending = _thumbnails(page)
    assert [p for _, _, p in ascending] == sorted(percents), ascending

    name = ascending[0][0]
    page.locator('[data-testid="stButton"] button', has_text="Open").first.click()
    page.get_by_text(f"Showing {name}, uploaded earlier", exact=False).first.wait_for()
    # The address names the page and the opened image (kept on the server for a reload).
    assert page.url.split("?")[0].endswith("/classification") and "image=" in page.url, page.url
    page.get_by_role("heading", name=re.compile(f"Top class: {re.escape(ascending[0][1])}")).wait_for()
    _idle(page)
    _no_errors(page)

    # The dark theme, in a session of its own (the results are reused from the server's store).
    context = browser.new_context(viewport=LAPTOP, color_scheme="dark")
    try:
        dark = context.new_page()
        dark.set_default_timeout(WAIT_MS)
        _upload_and_explain(dark, server)
        _no_errors(dark)
        _shot(dark, "gallery_dark.png")
    finally:
        context.close()

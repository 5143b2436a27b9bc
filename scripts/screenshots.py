"""README screenshots of every page at 1366x768, in the light and the dark theme.

Starts ``streamlit run app.py`` on a free local port (the load test's helpers), opens each
page in Debian's Chromium through playwright with the browser preferring light, then dark
(the app follows the preference), waits for the page's result (never a fixed time), and
writes ``docs/screenshots/<page>.png`` and ``<page>_dark.png``: what a laptop shows first
(and, in the light theme, ``<page>_full.png``: the whole page at that width).

    python -m scripts.screenshots                   # every page, both themes
    python -m scripts.screenshots --pages home xray --themes dark
    python -m scripts.screenshots --out /tmp/shots  # elsewhere than docs/screenshots

Bounded: every wait has a timeout and the server is always stopped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks import load_test

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1366, "height": 768}
WAIT_MS = 300_000


def _idle(page) -> None:
    """No script running, no stale element or placeholder, every image loaded."""
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')
                 && !document.querySelector('[data-testid="stSkeleton"]')
                 && [...document.querySelectorAll('[data-testid="stImage"] img')]
                    .every(i => i.complete && i.naturalWidth > 0)""",
        timeout=WAIT_MS,
    )


def _image(page, caption: str):
    return page.locator('[data-testid="stImage"]', has_text=caption).locator("img").first


def home(page, url: str) -> None:
    """Home, once its last paragraph is drawn."""
    page.goto(url)
    page.get_by_text("A research and teaching tool", exact=False).wait_for()


def classification(page, url: str) -> None:
    """Classification with its default sample, once the fused map and the downloads are drawn."""
    page.goto(f"{url}/classification")
    _image(page, "FM-G-CAM fused map, top 3").wait_for()
    page.get_by_role("button", name="Figure (PNG)").wait_for()  # the page's last part


def comparison(page, url: str) -> None:
    """Method comparison with its default sample, once the maps and the faithfulness button are drawn."""
    page.goto(f"{url}/comparison")
    page.locator("h3", has_text="Explaining").wait_for()
    _image(page, "input").wait_for()
    page.get_by_role("button", name="Compute faithfulness").wait_for()  # the page's last part


def xray(page, url: str) -> None:
    """The X-ray page with its sample and random weights (no chest X-ray weights offline): watermarked."""
    page.goto(f"{url}/xray")
    page.get_by_text("not a diagnostic device").first.wait_for()
    page.get_by_text("Random weights (demo/testing only", exact=False).first.click()
    _image(page, "FM-G-CAM fused map").wait_for()
    page.get_by_role("button", name="Clinician's report (PDF)").wait_for()  # the page's last part


def _full_page(page, path: Path) -> Path:
    """The whole page at the viewport's width.

    Streamlit scrolls inside its main block, so the viewport is made as tall as the page (up to 5000 px).
    """
    height = page.evaluate(
        """() => Math.max(document.body.scrollHeight,
                 ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]')]
                 .map(e => e.scrollHeight))"""
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 40, 5000)})
    _idle(page)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)
    return path


PAGES = {"home": home, "classification": classification, "comparison": comparison, "xray": xray}


def shoot(url: str, names: list[str], themes: list[str], out: Path) -> list[Path]:
    """Screenshots of ``names`` (keys of :data:`PAGES`) in each theme, from the server at ``url``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=load_test.CHROMIUM, args=load_test.CHROMIUM_ARGS)
        try:
            for theme in themes:
                for name in names:
                    context = browser.new_context(viewport=VIEWPORT, color_scheme=theme)
                    try:
                        page = context.new_page()
                        page.set_default_timeout(WAIT_MS)
                        t0 = time.monotonic()
                        PAGES[name](page, url)
                        _idle(page)
                        page.evaluate("() => window.scrollTo(0, 0)")
                        path = out / (f"{name}.png" if theme == "light" else f"{name}_{theme}.png")
                        page.screenshot(path=str(path))
                        written.append(path)
                        if theme == "light":  # the whole page too, at the same width
                            written.append(_full_page(page, out / f"{name}_full.png"))
                        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
                    finally:
                        context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: start a server, take the screenshots, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--themes", nargs="+", choices=["light", "dark"], default=["light", "dark"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    port = load_test.free_port()
    log = Path(tempfile.gettempdir()) / f"screenshots-streamlit-{port}.log"
    proc = load_test.start_server(port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        load_test.wait_healthy(url, proc, timeout_s=180)
        shoot(url, args.pages, args.themes, args.out)
    finally:
        load_test.stop_server(proc)


if __name__ == "__main__":
    main()

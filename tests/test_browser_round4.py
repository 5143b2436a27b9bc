"""Browser tests of the issue 23 leftovers, in Debian's Chromium through playwright.

Same server and browser helpers as tests/test_browser.py (a free port, waits for what is
checked, never a fixed sleep): the gallery's Stop (finished thumbnails kept, a message, then
the rest on the next press), the side-by-side page's "two images, one model" mode, and the
presenter mode's fused map centred in its column.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.test_browser import ARTIFACTS, ROOT, WAIT_MS, _idle, _image, _no_errors, browser, server  # noqa: F401
from tests.test_browser_gallery import _thumbnails, _wait_thumbnails
from tests.test_browser_side_by_side import LOADED, _context, _figure, _values

pytestmark = pytest.mark.slow

SAMPLES = ROOT / "samples" / "imagenet"


def _gallery_images(folder, n: int) -> list[str]:
    """``n`` distinct small images made from the samples (each as it is and mirrored), as PNG files."""
    sources = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in {".png", ".jpeg", ".jpg"})
    paths = []
    for i in range(n):
        src = sources[(i // 2) % len(sources)]
        image = Image.open(src).convert("RGB")
        image.thumbnail((320, 320))
        if i % 2:
            image = ImageOps.mirror(image)
        if i >= 2 * len(sources):
            image = ImageOps.flip(image)
        path = folder / f"g{i:02d}_{src.stem}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def _progress_done(page, total: int) -> int:
    """Waits until the gallery's progress bar shows finished images (at least one chunk, not all); how many."""
    handle = page.wait_for_function(
        """(total) => {
            const bar = [...document.querySelectorAll('[data-testid="stProgress"]')]
                .find(e => (e.innerText || '').includes(` of ${total} images`));
            if (!bar) return 0;
            const m = bar.innerText.match(/: (\\d+) of (\\d+) images/);
            const done = m ? parseInt(m[1]) : 0;
            return done > 0 && done < total ? done : 0; }""",
        arg=total,
        timeout=WAIT_MS,
    )
    return int(handle.json_value())


def test_gallery_stop_keeps_the_finished_thumbnails_then_goes_on(browser, server, tmp_path):  # noqa: F811
    """30 images, explained 10 per pass on the CPU: Stop after the first pass keeps those thumbnails, says so,
    and the next press explains only the rest."""
    total = 30
    files = _gallery_images(tmp_path, total)
    context, page = _context(browser, 1366, 768)
    try:
        page.goto(f"{server}/gallery")
        page.get_by_text("Upload images or a ZIP archive to start").wait_for()
        upload = page.locator('[data-testid="stFileUploader"]', has_text="Upload images").locator('input[type="file"]')
        upload.set_input_files(files)
        page.get_by_role("button", name=f"Explain {total} images").click()
        done = _progress_done(page, total)
        page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
        message = page.get_by_text("Stopped after", exact=False).first
        message.wait_for()
        text = message.inner_text()
        stated = re.search(r"Stopped after (\d+) of", text)
        assert stated, text
        # The note can be drawn before the thumbnails below it in the same run: wait for them.
        _wait_thumbnails(page, int(stated.group(1)))
        _idle(page)
        _no_errors(page)
        kept = len(_thumbnails(page))
        page.screenshot(path=str(ARTIFACTS / "gallery_stopped.png"))
        assert done <= kept < total, (done, kept, text)
        assert f"{kept} of {total} images" in text, text
        rest = total - kept
        again = page.get_by_role("button", name=f"Explain {rest} images")
        assert again.is_enabled()
        assert f"{kept} of {total} images explained" in page.get_by_test_id("stMainBlockContainer").inner_text()

        again.click()
        _wait_thumbnails(page, total)
        _no_errors(page)
        shown = _thumbnails(page)
        assert sorted(f for f, _, _ in shown) == sorted(p.rsplit("/", 1)[-1] for p in files)
        assert page.get_by_text("Stopped after", exact=False).count() == 0, "the message goes once all are done"
    finally:
        context.close()


def _sample_box(page, nth: int):
    main = page.get_by_test_id("stMainBlockContainer")
    return main.locator('[data-testid="stSelectbox"]', has_text="use a sample").nth(nth)


def _choose_sample(page, nth: int, name: str) -> None:
    box = _sample_box(page, nth)
    box.evaluate("e => e.scrollIntoView({block: 'center'})")
    box.click()
    page.keyboard.type(name)  # the list shows a few options at a time: filter it to the one
    page.get_by_role("option", name=name, exact=True).first.click()
    _idle(page)


def test_side_by_side_two_images_one_model_on_one_scale(browser, server):  # noqa: F811
    """Two images chosen by hand, one model (Lite0): both maps on one colour bar spanning exactly their
    joint range, and their difference 1 - 2 on its own bar centred at 0."""
    first, second = "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000015.JPEG"
    context, page = _context(browser, 1366, 768)
    try:
        page.goto(f"{server}/side_by_side")
        page.get_by_text("Two images, one model", exact=True).first.click()
        page.get_by_text("Side by side: two images, one model").wait_for()
        _sample_box(page, 1).wait_for()
        _idle(page)
        _choose_sample(page, 0, first)
        _choose_sample(page, 1, second)
        # the caption names both images: wait for the run that drew both choices
        caption = page.get_by_text(
            re.compile(rf"in image 1 \({re.escape(first)}\).*in image 2 \({re.escape(second)}\)")
        ).first
        caption.wait_for()
        _idle(page)
        _no_errors(page)
        said = caption.inner_text()
        fig = _figure(page)
        annotations = " ".join(a.get("text", "") for a in fig["layout"]["annotations"])
        assert "Difference 1 − 2" in annotations, annotations
        # Long names are cut in the middle so that "1:" and "2:" stay inside the figure.
        assert "<b>1</b>: ILSVRC2012_va…001.JPEG" in annotations and "<b>2</b>: ILSVRC2012_va…015.JPEG" in annotations
        images = [d for d in fig["data"] if d["type"] == "image"]
        bars = [d["marker"] for d in fig["data"] if d["type"] == "scatter" and d["marker"].get("showscale")]
        assert len(images) == 3, "map 1, map 2 and their difference"
        assert len(bars) == 2, "one colour bar for both maps, one for the difference"
        maps, diff = bars
        a, b, d = (_values(i["customdata"]) for i in images)
        assert a.shape == b.shape == d.shape
        both = np.concatenate([a.ravel(), b.ravel()])
        assert both.min() == pytest.approx(maps["cmin"], abs=1e-6), "one scale: the joint minimum"
        assert both.max() == pytest.approx(maps["cmax"], rel=1e-5), "one scale: the joint maximum"
        assert a.max() < maps["cmax"] or b.max() < maps["cmax"], "the bar is the joint range, not one map's"
        assert diff["cmin"] == -diff["cmax"] < 0 and np.abs(d).max() == pytest.approx(diff["cmax"], rel=1e-5)
        np.testing.assert_allclose(d, a - b, atol=1e-5)
        assert np.abs(d).max() > 1e-3, (
            f"two images, two different maps: |1| {np.abs(a).max():.3g}, |2| {np.abs(b).max():.3g}; {said}"
        )
        assert page.locator(".colorbar").count() == 2, "two colour bars drawn"
        caption = caption.inner_text()
        assert "Maps 1 and 2 share one colour scale" in caption, caption
        both = rf"% in image 1 \({re.escape(first)}\), .*% in image 2 \({re.escape(second)}\)"
        assert re.search(both, caption), caption
        page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "side_by_side_two_images.png"))
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failed_side_by_side_two_images.png"), full_page=True)
        raise
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1920, 1080)])
def test_presenter_fused_map_is_centred_in_its_column(browser, server, width, height):  # noqa: F811
    context, page = _context(browser, width, height)
    try:
        page.goto(f"{server}/classification?present=1")
        fused = page.locator(".st-key-presenter_fused img").first
        fused.wait_for()
        _idle(page)
        page.wait_for_function(LOADED)
        _no_errors(page)
        column = page.locator('[data-testid="stColumn"]', has=page.locator(".st-key-presenter_fused")).last
        img, col = fused.bounding_box(), column.bounding_box()
        assert img["width"] < col["width"] - 40, ("the map is narrower than its column here", img, col)
        left_gap = img["x"] - col["x"]
        right_gap = col["x"] + col["width"] - (img["x"] + img["width"])
        assert abs(left_gap - right_gap) <= 4, ("centred", left_gap, right_gap)
        caption = page.locator(".st-key-presenter_fused [data-testid='stImageCaption']").first
        cap = caption.bounding_box()
        assert abs((cap["x"] + cap["width"] / 2) - (img["x"] + img["width"] / 2)) <= 4 or cap["width"] > img["width"], (
            "the caption sits under the map",
            cap,
            img,
        )
        page.screenshot(path=str(ARTIFACTS / f"presenter_centred_{width}.png"))
    finally:
        context.close()

"""Load test: many concurrent browser sessions on one dashboard server.

Starts ``streamlit run app.py`` on a free port (127.0.0.1 only), opens ``--sessions``
(default 8) separate Playwright browser contexts in one Chromium (separate cookies and
websockets: separate Streamlit sessions), and has each one upload a *different* sample
image on the classification page, then keep changing K, the end activation and the base
method and re-uploading its image for ``--duration`` seconds (default 180). Every fourth
session (2 of 8) works on the gallery page instead: it uploads its image and the next two
sessions' images at once, explains them, then keeps changing the classes fused per image
(which explains the three again, as a batch), the sort key and the sort order.

After every step a session records what its page shows: errors (``stException`` elements
and alert boxes, which a healthy page never shows in this flow), the top class, the
per-class captions ("1. label (p%)"), the fused map's caption and the media URLs of
"What the model saw" and the fused map. Streamlit names media files by a hash of their
content, so those URLs identify the exact pixels. Checks:

- errors: none (a step that times out counts as an error);
- mismatches: the top-K labels and probabilities must equal a single run of xai_core on
  that image in this process (``xai_core.explain``, the function the page calls); the
  input view must be the session's own (its URL never changes and no other session ever
  shows it); a given (image, method, K, activation) must always render the same fused
  map, and never one another session rendered;
- gallery sessions: each thumbnail's top class and probability must equal xai_core's run
  on that file, the thumbnails must show the K classes asked for, in the order asked for
  (probability or file name, either way);
- the server's memory: resident set size of the server and its children (psutil),
  sampled every second.

It prints a table and exits non-zero when any error or mismatch was seen. Bounded: every
wait has a timeout, the whole run a hard limit, and the server is always terminated.

    python -m benchmarks.load_test                    # 8 sessions, 180 s
    python -m benchmarks.load_test --sessions 12 --duration 300
    python -m benchmarks.load_test --quick            # 8 sessions, 60 s (what tests/test_load.py runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "imagenet"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
MODEL = "efficientnet_lite0"  # the page's default model: offline weights
K_MAX = 10
ACTIVATIONS = {"relu": "ReLU", "elu": "ELU", "gelu": "GELU"}
METHODS = {"grad_cam": "Grad-CAM", "grad_cam_pp": "Grad-CAM++", "layer_cam": "Layer-CAM"}
STEP_TIMEOUT_S = 180.0


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - owned by the process object below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc._log = log  # type: ignore[attr-defined]
    return proc


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("streamlit did not become healthy")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    log = getattr(proc, "_log", None)
    if log is not None:
        log.close()


# ----------------------------------------------------------------------------- memory


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (psutil); 0 once the server is gone."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a child exited between the listing and the reading
            pass
    return total


class MemorySampler(threading.Thread):
    """Samples the server's RSS every ``period`` seconds until stopped."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic() - start, rss_bytes(self.pid)))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# ----------------------------------------------------------------------------- expectations


def pick_images(n: int, tmp: Path) -> list[Path]:
    """``n`` different images: the samples, then mirrored copies of them (new content)."""
    from PIL import Image, ImageOps

    files = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    out = []
    for i in range(n):
        src = files[i % len(files)]
        if i < len(files):
            out.append(src)
        else:
            dst = tmp / f"mirrored{i // len(files)}_{src.stem}.png"
            ImageOps.mirror(Image.open(src).convert("RGB")).rotate(90 * (i // len(files) - 1)).save(dst)
            out.append(dst)
    return out


def expected_predictions(images: list[Path]) -> dict[str, list[tuple[str, float]]]:
    """Top-K_MAX (label, percent) per image from xai_core directly: a single-session result."""
    import xai_core as xc

    model = xc.load_model(MODEL)
    out = {}
    for path in images:
        exp = xc.explain(model, xc.read_image(path), method="grad_cam", top_k=K_MAX)
        out[path.name] = [(str(label), 100 * float(p)) for _, label, p in exp.predictions]
    return out


# ----------------------------------------------------------------------------- a session


@dataclass
class Observation:
    step: str
    seconds: float
    top1: str
    captions: list[str]
    fused_caption: str
    view_src: str
    fused_src: str
    config: tuple  # method, K, activation (classification); "gallery", K, sort key, largest first (gallery)
    #: gallery sessions: (file, top class, percent, classes in the colour key) per thumbnail, in page order.
    thumbnails: list[tuple[str, str, float, int]] = field(default_factory=list)
    #: gallery sessions: what the page's "Sort by" box showed.
    shown_sort: str | None = None


@dataclass
class SessionResult:
    index: int
    image: str
    observations: list[Observation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    #: complete-looking reads that changed within the confirmation delay (not observations).
    transients: list[str] = field(default_factory=list)


_CAPTION = re.compile(r"^(\d+)\. (.+) \((\d+(?:\.\d+)?)%\)$")


async def _settle(page, quiet_s: float = 0.6, timeout_s: float = STEP_TIMEOUT_S) -> None:
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        running = await page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        await asyncio.sleep(0.15)
    raise TimeoutError("the app kept running")


async def _read_state(page) -> dict:
    """Everything a check needs, in one round trip to the page."""
    return await page.evaluate(
        """() => {
        const imgs = [...document.querySelectorAll('[data-testid="stImage"]')].map(e => ({
            caption: (e.innerText || '').trim(), src: (e.querySelector('img') || {}).src || ''}));
        const top = [...document.querySelectorAll('h3')].map(h => h.innerText)
            .find(t => t.startsWith('Top class:')) || '';
        // A healthy classification page (offline model, fast methods) shows no alert at
        // all, so every st.error/st.warning/st.info box counts, as does an exception.
        const bad = '[data-testid="stException"], [data-testid="stAlert"]';
        const errors = [...document.querySelectorAll(bad)].map(e => e.innerText.slice(0, 300));
        const body = document.body.innerText;
        const stale = document.querySelectorAll('[data-stale="true"]').length;
        return {imgs, top, errors, hasActivation: body, stale};
    }"""
    )


def _view_src(state: dict) -> str:
    return next((i["src"] for i in state["imgs"] if i["caption"].startswith("What the model saw")), "")


#: A complete-looking page is read again after this delay (the app idle throughout); only a
#: page that reads the same twice is observed. Streamlit's browser client marks elements of
#: an older run as stale only while a run is in progress, and removes them in a later React
#: update after the run ends: in between, an idle page can briefly hold elements of two runs.
CONFIRM_S = 0.8


def _digest(state: dict) -> tuple:
    return (state["top"], tuple((i["caption"], i["src"]) for i in state["imgs"]))


def _complete(state: dict, want: tuple[str, int, str], not_view: str | None) -> bool:
    method, k, activation = want
    fused_prefix = f"FM-G-CAM fused map, top {k} ({METHODS[method]} at "
    fused = [i for i in state["imgs"] if i["caption"].startswith(fused_prefix)]
    n_maps = sum(1 for i in state["imgs"] if _CAPTION.match(i["caption"]))
    return bool(
        fused
        and fused[0]["src"]
        and not state["stale"]
        and n_maps == k
        and state["top"]
        and f"end activation: {activation};" in state["hasActivation"].lower()  # the fused map's caption
        and (not_view is None or _view_src(state) not in ("", not_view))
    )


async def _wait_for(
    page,
    want: tuple[str, int, str],
    *,
    not_view: str | None = None,
    timeout_s: float = STEP_TIMEOUT_S,
    transients: list[str] | None = None,
) -> dict:
    """Wait until the page is idle, complete for ``want`` (method, K, activation) and stable.

    Complete: no stale element left from the previous run, the fused map captioned for
    ``want``, K per-class maps, the top class, and (``not_view``) an input view other
    than the one shown before an upload. Stable: the same again :data:`CONFIRM_S` later
    with the app idle in between. A complete read that changes is recorded in
    ``transients`` (what it showed), never taken as an observation.
    """
    deadline = time.monotonic() + timeout_s
    await asyncio.sleep(0.3)  # let the rerun start (the status widget shows up)
    while time.monotonic() < deadline:
        await _settle(page, timeout_s=max(1.0, deadline - time.monotonic()))
        state = await _read_state(page)
        if state["errors"]:
            return state
        if _complete(state, want, not_view):
            await asyncio.sleep(CONFIRM_S)
            running = await page.locator('[data-testid="stStatusWidget"]').count() > 0
            again = await _read_state(page)
            if not running and _digest(again) == _digest(state):
                return again
            if transients is not None and not running:
                first = [i["caption"] for i in state["imgs"] if _CAPTION.match(i["caption"])][:1]
                transients.append(
                    f"{want}: read {state['top']!r} / {first} with view {_view_src(state)[-40:]}, "
                    f"{CONFIRM_S} s later {again['top']!r} with view {_view_src(again)[-40:]}"
                )
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the page did not show {want}")


async def _select(page, label: str, option: str) -> None:
    """Open the select box and pick ``option``; a menu closed by a rerun is opened again."""
    box = page.locator('[data-testid="stSelectbox"]', has_text=label).first
    for attempt in range(3):
        await box.click()
        choice = page.get_by_role("option", name=option, exact=True).first
        try:
            await choice.wait_for(timeout=20_000 if attempt < 2 else STEP_TIMEOUT_S * 1000)
            await choice.click()
            return
        except Exception:  # noqa: BLE001 - the menu closed (a rerun redrew the box): open it again
            if attempt == 2:
                raise
            await page.keyboard.press("Escape")


async def _move_slider(page, label: str, current: int, target: int) -> None:
    """Move the slider labelled ``label`` from ``current`` to ``target`` with the arrow keys."""
    slider = page.locator('[data-testid="stSlider"]', has_text=label).locator('input[type="range"]')
    await slider.focus()
    for _ in range(abs(target - current)):
        await slider.press("ArrowRight" if target > current else "ArrowLeft")


async def run_session(
    browser,
    url: str,
    index: int,
    image: Path,
    duration: float,
    max_steps: int,
    results: dict,
    ready: list[int],
    n_sessions: int,
    start_deadline: float,
) -> SessionResult:
    res = SessionResult(index, image.name)
    results[index] = res
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        page = await context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_S * 1000)
        await page.goto(f"{url}/classification")
        config = ["grad_cam", 3, "relu"]
        sample_view = _view_src(await _wait_for(page, tuple(config)))
        upload = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
        steps = ["upload", "k", "activation", "method", "k", "upload", "activation", "method"]
        step_no = 0
        ready.append(index)
        while len(ready) < n_sessions and time.monotonic() < start_deadline:
            await asyncio.sleep(0.2)  # every session starts its timed steps together
        end_at = time.monotonic() + duration
        while time.monotonic() < end_at and step_no < max_steps:
            step = "upload" if step_no == 0 else steps[step_no % len(steps)]
            t0 = time.monotonic()
            not_view = None
            try:
                if step == "upload":
                    not_view = sample_view if step_no == 0 else None
                    await upload.set_input_files(str(image))
                elif step == "k":
                    k = config[1] + 1 if config[1] < 6 else 2
                    await _move_slider(page, "K: classes fused", config[1], k)
                    config[1] = k
                elif step == "activation":
                    names = list(ACTIVATIONS)
                    config[2] = names[(names.index(config[2]) + 1) % len(names)]
                    await _select(page, "End activation", ACTIVATIONS[config[2]])
                else:
                    names = list(METHODS)
                    config[0] = names[(names.index(config[0]) + 1) % len(names)]
                    await _select(page, "Base method", METHODS[config[0]])
                state = await _wait_for(page, tuple(config), not_view=not_view, transients=res.transients)
            except Exception as err:  # noqa: BLE001 - recorded, the session goes on
                res.errors.append(f"step {step_no} ({step}): {type(err).__name__}: {str(err)[:200]}")
                step_no += 1
                continue
            seconds = time.monotonic() - t0
            step_no += 1
            if state["errors"]:
                res.errors += [f"step {step_no} ({step}): {e}" for e in state["errors"]]
                continue
            imgs = state["imgs"]
            view = next((i["src"] for i in imgs if i["caption"].startswith("What the model saw")), "")
            fused = next((i for i in imgs if i["caption"].startswith("FM-G-CAM fused map")), {"caption": "", "src": ""})
            captions = [i["caption"] for i in imgs if _CAPTION.match(i["caption"])]
            res.observations.append(
                Observation(
                    step,
                    seconds,
                    state["top"].removeprefix("Top class:").strip(),
                    captions,
                    fused["caption"],
                    view,
                    fused["src"],
                    (config[0], config[1], config[2]),
                )
            )
    finally:
        await context.close()
    return res


# ----------------------------------------------------------------------------- a gallery session

GALLERY_EVERY = 4  # sessions 3, 7, ... work on the gallery page
GALLERY_IMAGES = 3
_THUMB = re.compile(r"^(.+): (.+) \((\d+(?:\.\d+)?)%\)$")


def _order_option(by: str, largest: bool) -> str:
    """The gallery's "Sort by" option for a key and a direction."""
    if by == "file":
        return f"File name ({'Z to A' if largest else 'A to Z'})"
    return f"Top-1 probability ({'largest' if largest else 'smallest'} first)"


def is_gallery(index: int) -> bool:
    return index % GALLERY_EVERY == GALLERY_EVERY - 1


async def _gallery_state(page) -> dict:
    return await page.evaluate(
        r"""() => {
        const main = document.querySelector('[data-testid="stMainBlockContainer"]') || document.body;
        const cols = [...main.querySelectorAll('[data-testid="stColumn"]')]
            .filter(c => c.querySelector('[data-testid="stImage"]'));
        const thumbs = cols.map(c => ({
            caption: (c.querySelector('[data-testid="stImage"]').innerText || '').trim(),
            keys: ((c.innerText || '').match(/■/g) || []).length}));
        const bad = '[data-testid="stException"], [data-testid="stAlert"]';
        // The page's "upload to start" note is not an error: it shows until the upload reaches the server.
        const errors = [...document.querySelectorAll(bad)].map(e => e.innerText.slice(0, 300))
            .filter(t => !t.startsWith('Upload images or a ZIP archive to start'));
        const explain = [...main.querySelectorAll('button')]
            .some(b => !b.disabled && /^Explain \d+ image/.test(b.innerText.trim()));
        const stale = document.querySelectorAll('[data-stale="true"]').length;
        // What the server sorted by, from the summary under the controls ("... Sorted by: X.").
        const line = [...main.querySelectorAll('[data-testid="stCaptionContainer"]')]
            .map(e => e.innerText || '').find(t => t.includes('Sorted by: ')) || '';
        const sort = line.includes('Sorted by: ') ? line.split('Sorted by: ')[1].replace(/\.$/, '').trim() : null;
        return {thumbs, errors, explain, stale, sort};
    }"""
    )


async def _gallery_wait(page, n: int, k: int, order: str, timeout_s: float = STEP_TIMEOUT_S) -> dict:
    """Wait until the gallery shows ``n`` thumbnails of ``k`` classes each, sorted by ``order`` (the server's
    summary says so), idle and stable; press Explain when offered."""
    deadline = time.monotonic() + timeout_s
    await asyncio.sleep(0.3)
    while time.monotonic() < deadline:
        await _settle(page, timeout_s=max(1.0, deadline - time.monotonic()))
        state = await _gallery_state(page)
        if state["errors"]:
            return state
        if state["explain"]:
            explain = page.locator("button:not([disabled])", has_text=re.compile(r"^Explain \d+ image"))
            await explain.first.click(timeout=20_000)
            await asyncio.sleep(0.5)
            continue
        thumbs = [t for t in state["thumbs"] if _THUMB.match(t["caption"])]
        complete = len(thumbs) == n and all(t["keys"] == k for t in thumbs) and state["sort"] == order
        if not state["stale"] and complete:
            await asyncio.sleep(CONFIRM_S)
            again = await _gallery_state(page)
            if again == state:
                return state
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the gallery did not show {n} images with {k} classes sorted by {order}")


async def run_gallery_session(
    browser,
    url: str,
    index: int,
    files: list[Path],
    duration: float,
    max_steps: int,
    results: dict,
    ready: list[int],
    n_sessions: int,
    start_deadline: float,
) -> SessionResult:
    """Upload ``files`` on the gallery page, explain them, then keep changing K, the sort key and the order."""
    res = SessionResult(index, files[0].name)
    results[index] = res
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        page = await context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_S * 1000)
        await page.goto(f"{url}/gallery")
        await page.get_by_text("Upload images or a ZIP archive to start").wait_for()
        ready.append(index)
        while len(ready) < n_sessions and time.monotonic() < start_deadline:
            await asyncio.sleep(0.2)
        config = ["gallery", 3, "probability", True]
        steps = ["k", "order", "sort", "k", "order", "sort"]
        step_no = 0
        end_at = time.monotonic() + duration
        while time.monotonic() < end_at and step_no < max_steps:
            step = "upload" if step_no == 0 else steps[step_no % len(steps)]
            t0 = time.monotonic()
            try:
                if step == "upload":
                    uploader = page.locator('[data-testid="stFileUploader"]', has_text="Upload images")
                    await uploader.locator('input[type="file"]').set_input_files([str(f) for f in files])
                elif step == "k":
                    k = config[1] + 1 if config[1] < 4 else 2
                    await _move_slider(page, "Classes fused per image", config[1], k)
                    config[1] = k
                else:
                    if step == "order":
                        config[3] = not config[3]
                    else:  # another sort key, in its natural order
                        config[2] = "file" if config[2] == "probability" else "probability"
                        config[3] = config[2] == "probability"
                    await _select(page, "Sort by", _order_option(config[2], config[3]))
                state = await _gallery_wait(page, len(files), config[1], _order_option(config[2], config[3]))
            except Exception as err:  # noqa: BLE001 - recorded, the session goes on
                res.errors.append(f"step {step_no} ({step}): {type(err).__name__}: {str(err)[:200]}")
                step_no += 1
                continue
            step_no += 1
            if state["errors"]:
                res.errors += [f"step {step_no} ({step}): {e}" for e in state["errors"]]
                continue
            thumbs = []
            for t in state["thumbs"]:
                m = _THUMB.match(t["caption"])
                if m:
                    thumbs.append((m.group(1), m.group(2), float(m.group(3)), t["keys"]))
            own = next((t for t in thumbs if t[0] == files[0].name), ("", "", 0.0, 0))
            res.observations.append(
                Observation(
                    f"gallery-{step}",
                    time.monotonic() - t0,
                    own[1],
                    [t[0] for t in thumbs],
                    "",
                    "",
                    "",
                    tuple(config),
                    thumbs,
                    state.get("sort"),
                )
            )
    finally:
        await context.close()
    return res


def check_gallery(r: SessionResult, expected: dict[str, list[tuple[str, float]]]) -> None:
    """A gallery session's mismatches: every thumbnail as xai_core computes it, K classes each, in order."""
    for n, o in enumerate(r.observations):
        where = f"obs {n} ({o.step}, {o.config})"
        _, k, by, largest = o.config
        for file, label, pct, keys in o.thumbnails:
            want_label, want_pct = expected[file][0]
            if label != want_label or abs(pct - want_pct) > 0.15:
                r.mismatches.append(
                    f"{where}: {file} shows {label!r} ({pct}%), expected {want_label!r} ({want_pct:.1f}%)"
                )
            if keys != k:
                r.mismatches.append(f"{where}: {file} shows {keys} classes, expected {k}")
        values = [t[2] for t in o.thumbnails] if by == "probability" else [t[0].casefold() for t in o.thumbnails]
        if values != sorted(values, reverse=largest):
            r.mismatches.append(
                f"{where}: not in order (the page's Sort by shows {o.shown_sort!r}): {[t[:3] for t in o.thumbnails]}"
            )


# ----------------------------------------------------------------------------- checks


def check(results: list[SessionResult], expected: dict[str, list[tuple[str, float]]]) -> None:
    """Fill in each session's mismatches."""
    view_owner: dict[str, int] = {}
    fused_owner: dict[str, int] = {}
    for r in results:
        if is_gallery(r.index):
            continue
        for o in r.observations:
            view_owner.setdefault(o.view_src, r.index)
            fused_owner.setdefault(o.fused_src, r.index)
    for r in results:
        if is_gallery(r.index):
            check_gallery(r, expected)
            continue
        exp = expected[r.image]
        views = {o.view_src for o in r.observations}
        if len(views) > 1:
            r.mismatches.append(f"the input view changed: {len(views)} different images")
        fused_by_config: dict[tuple, set[str]] = {}
        for n, o in enumerate(r.observations):
            where = f"obs {n} ({o.step}, {o.config})"
            if o.top1 != exp[0][0]:
                r.mismatches.append(f"{where}: top class {o.top1!r}, expected {exp[0][0]!r}")
            if view_owner.get(o.view_src) != r.index:
                r.mismatches.append(f"{where}: shows session {view_owner.get(o.view_src)}'s input")
            if fused_owner.get(o.fused_src) != r.index:
                r.mismatches.append(f"{where}: shows session {fused_owner.get(o.fused_src)}'s fused map")
            k = o.config[1]
            if len(o.captions) != k:
                r.mismatches.append(f"{where}: {len(o.captions)} class maps for K={k}")
            for i, cap in enumerate(o.captions[:k]):
                m = _CAPTION.match(cap)
                label, pct = exp[i]
                if not m or int(m.group(1)) != i + 1 or m.group(2) != label or abs(float(m.group(3)) - pct) > 0.15:
                    r.mismatches.append(f"{where}: caption {cap!r}, expected '{i + 1}. {label} ({pct:.1f}%)'")
            fused_by_config.setdefault(o.config, set()).add(o.fused_src)
        for config, srcs in fused_by_config.items():
            if len(srcs) > 1:
                r.mismatches.append(f"{config}: {len(srcs)} different fused maps for the same settings")


# ----------------------------------------------------------------------------- main


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


async def _drive(url: str, images: list[Path], duration: float, max_steps: int) -> list[SessionResult]:
    from playwright.async_api import async_playwright

    results: dict[int, SessionResult] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ready: list[int] = []
            start_deadline = time.monotonic() + STEP_TIMEOUT_S  # the first page load, all sessions
            tasks = []
            for i, img in enumerate(images):
                if is_gallery(i):
                    files = [images[(i + j) % len(images)] for j in range(min(GALLERY_IMAGES, len(images)))]
                    work = run_gallery_session(
                        browser, url, i, files, duration, max_steps, results, ready, len(images), start_deadline
                    )
                else:
                    work = run_session(
                        browser, url, i, img, duration, max_steps, results, ready, len(images), start_deadline
                    )
                tasks.append(asyncio.create_task(work))
            done, pending = await asyncio.wait(tasks, timeout=duration + 3 * STEP_TIMEOUT_S + 60)
            for t in pending:  # hard limit: cancel what is still running
                t.cancel()
                i = tasks.index(t)
                res = results.setdefault(i, SessionResult(i, images[i].name))
                res.errors.append("cancelled at the hard time limit")
            for t in done:
                if t.exception() is not None:
                    i = tasks.index(t)
                    results.setdefault(i, SessionResult(i, images[i].name)).errors.append(
                        f"session failed: {type(t.exception()).__name__}: {str(t.exception())[:300]}"
                    )
        finally:
            await browser.close()
    return [results.get(i, SessionResult(i, img.name, errors=["never started"])) for i, img in enumerate(images)]


def run(sessions: int = 8, duration: float = 180, max_steps: int = 10_000, log_dir: Path | None = None) -> dict:
    """Run the load test; return the summary (also printed)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM} (set CHROMIUM=/path/to/chromium)")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="xai-load-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xai-load-images-") as tmp:
        images = pick_images(sessions, Path(tmp))
        t0 = time.monotonic()
        expected = expected_predictions(images)
        print(f"expected results from xai_core for {len(images)} images in {time.monotonic() - t0:.1f} s", flush=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(port, log_dir / "streamlit.log")
        sampler = None
        try:
            wait_healthy(url, proc)
            sampler = MemorySampler(proc.pid)
            sampler.start()
            time.sleep(1.0)
            print(f"server up at {url} (pid {proc.pid}); {sessions} sessions for {duration:.0f} s", flush=True)
            t_run = time.monotonic()
            results = asyncio.run(_drive(url, images, duration, max_steps))
            wall = time.monotonic() - t_run
            time.sleep(1.0)
        finally:
            if sampler is not None:
                sampler.stop()
            server_alive = proc.poll() is None
            stop_server(proc)
    check(results, expected)
    rss = [s for _, s in (sampler.samples if sampler else [])] or [0]
    latencies = [o.seconds for r in results for o in r.observations]
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [latencies[0] if latencies else 0.0] * 19
    summary = {
        "sessions": sessions,
        "duration_s": round(wall, 1),
        "iterations": len(latencies),
        "errors": sum(len(r.errors) for r in results),
        "mismatches": sum(len(r.mismatches) for r in results),
        "transients": sum(len(r.transients) for r in results),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(q[18], 2) if latencies else None,
        "rss_start_mb": round(rss[0] / 2**20),
        "rss_peak_mb": round(max(rss) / 2**20),
        "rss_end_mb": round(rss[-1] / 2**20),
        "server_alive_at_end": server_alive,
        "log": str(log_dir / "streamlit.log"),
    }
    print()
    print(f"{'session':>7}  {'image':32} {'iter':>5} {'err':>4} {'mism':>5} {'p50 s':>6} {'p95 s':>6}  top-1")
    for r in results:
        lat = sorted(o.seconds for o in r.observations)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        top = r.observations[0].top1 if r.observations else "-"
        print(
            f"{r.index:>7}  {r.image[:32]:32} {len(r.observations):>5} {len(r.errors):>4} {len(r.mismatches):>5} "
            f"{p50:>6.2f} {p95:>6.2f}  {top}"
        )
    print()
    print(
        f"sessions {summary['sessions']} | iterations {summary['iterations']} | errors {summary['errors']} | "
        f"mismatches {summary['mismatches']} | transient reads {summary['transients']} | "
        f"latency p50 {summary['p50_s']} s, p95 {summary['p95_s']} s | "
        f"server RSS start {summary['rss_start_mb']} MB, peak {summary['rss_peak_mb']} MB, "
        f"end {summary['rss_end_mb']} MB | {summary['duration_s']} s"
    )
    for r in results:
        for e in (r.errors + r.mismatches)[:5]:
            print(f"  session {r.index} ({r.image}): {e}")
        for t in r.transients[:5]:
            print(f"  session {r.index} ({r.image}): transient (not observed): {t}")
    summary["per_session"] = [
        {
            "image": r.image,
            "iterations": len(r.observations),
            "errors": r.errors[:20],
            "mismatches": r.mismatches[:20],
            "transients": r.transients[:20],
        }
        for r in results
    ]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions (default 8)")
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    parser.add_argument("--quick", action="store_true", help="8 sessions for 60 s")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--log-dir", type=Path, help="where the server log goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.duration = 8, 60
    summary = run(args.sessions, args.duration, log_dir=args.log_dir)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["errors"] == 0 and summary["mismatches"] == 0 and summary["iterations"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

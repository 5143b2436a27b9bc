"""Hardening: bad and odd uploads, broken weights, configuration, file-system reach.

Everything runs through the dashboard's real pages with Streamlit's AppTest (offline, no
browser). What is covered, precisely:

1. **Corpus through the upload path** (``tests/corpus.py``, 60 generated files).
   - Classification page: *every* file of kind ``image``/``both`` (41 files) is uploaded
     through ``cls.upload`` in one shared session (the page's full path: read, model,
     FM-G-CAM, rendering).
   - Chest X-ray page (its clearly labelled random-weights source, since no X-ray weights
     exist offline): every ``error`` file (23) and a representative set of ``ok`` files
     (``XRAY_PAGE_OK``, 13) through ``xray.upload``; the other ``ok`` files go through the
     page's reader (``xai_core.images.read_xray``, what ``compute.read_xray`` calls) only,
     because each DenseNet-121 run costs seconds on 2 cores. ``XAI_FULL_CORPUS=1`` sends
     every file through the full X-ray page too.
   - Each upload: no uncaught exception; ``error`` files show an ``st.error`` whose text
     names the problem (``EXPECTED_MESSAGE``) and says what to do, and no result; ``ok``
     files show the fused map and no error; then a good upload in the same session works.
2. **Weights through the pages**: default weights missing with no network, a download
   failing half-way, a damaged file in the weights cache, and uploaded weights files that
   are empty, truncated, of the wrong architecture, text, or a pickle crafted to run code
   (a marker file must not appear). Each gives a clear message; afterwards the default
   offline model (classification) / the random-weights demo (X-ray) still works in the
   same session.
3. **Configuration** (``.streamlit/config.toml``): no usage statistics, XSRF protection,
   headless, upload limit equal to ``xai_core.images.MAX_UPLOAD_BYTES``.
4. **File system**: a whole page session under a ``sys.addaudithook`` audit; see
   ``test_page_session_writes_only_to_temp_and_cache_dirs`` for exactly what is checked.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import threading
import tomllib
import urllib.error
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.corpus import CorpusFile, build_corpus

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 240
FULL = os.environ.get("XAI_FULL_CORPUS") == "1"

with tempfile.TemporaryDirectory() as _tmp:  # the bytes stay in memory; the folder goes
    CORPUS: list[CorpusFile] = build_corpus(Path(_tmp))
BY_NAME = {f.name: f for f in CORPUS}

GOOD_IMAGE = ROOT / "samples" / "imagenet" / "ILSVRC2012_val_00000001.JPEG"  # "sea snake"
GOOD_XRAY = ROOT / "samples" / "xray" / "nih_00027426_000.png"

# What each refused file's message must say (a fragment, case-insensitive).
EXPECTED_MESSAGE = {
    "empty.png": "empty (0 bytes)",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "header_only.png": "not a recognised image format",
    "notes.png": "text file",
    "page.png": "HTML",
    "drawing.png": "SVG",
    "document.png": "PDF",
    "payload.png": "pickle",
    "archive.png": "ZIP",
    "noise.jpg": "not a recognised image format",
    "icon.ico": "ICO",
    "eps_header.png": "EPS",
    "huge_10000x10000.png": "limit is 40 megapixels",
    "bomb_50000x50000.png": "limit is 40 megapixels",
    "no_pixels.dcm": "without an image",
    "truncated_pixels.dcm": "could not be decoded",
    "garbage_after_magic.dcm": "DICOM",
    "zero_rows.dcm": "invalid image size",
    "declares_60000.dcm": "limit is 40 megapixels",
    "jpegls.dcm": "JPEG-LS",
    "deflated.dcm": "Deflate",
    "notes.dcm": "text file",
}
# A clear message says what to do: one of these words.
ACTIONS = (
    "upload",
    "export",
    "downscale",
    "accepted",
    "save",
    "install",
    "convert",
    "open",
    "choose",
    "delete",
    "download",
    "check that",
)

# Chest X-ray page: the "ok" files that also take the full page path (each runs DenseNet-121).
XRAY_PAGE_OK = (
    "siim_sample.dcm",  # JPEG-compressed DICOM, 1024 x 1024
    "fake_monochrome1.dcm",
    "mono1_16bit.dcm",
    "windowed.dcm",
    "slope_text.dcm",
    "rgb.dcm",
    "multiframe.dcm",
    "no_preamble",  # no extension at all
    "png_named.dcm",
    "colour_photo_xray.jpg",  # a colour image on the X-ray page
    "grey16.png",
    "tall_3x5000.png",
    "animated.gif",
)


# The tests marked slow below run whole pages in AppTest with real model runs (seconds each on
# 2 cores): the full suite only. The readers behind them are checked file by file in the fast
# loop (test_xray_reader_rest_of_corpus, tests/test_images.py).


def _files(kinds: tuple[str, ...]) -> list[CorpusFile]:
    return [f for f in CORPUS if f.kind in kinds]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def _has_fused(at: AppTest) -> bool:
    return any(c.startswith("FM-G-CAM fused map") for c in _captions(at))


def _check_clear(message: str, fragment: str | None = None) -> None:
    """A message a user can act on: says what is wrong (``fragment``) and what to do."""
    low = message.lower()
    assert len(message) > 40, message
    if fragment:
        assert fragment.lower() in low, (fragment, message)
    assert any(a in low for a in ACTIONS), f"no action in: {message}"
    assert "traceback" not in low and "exception" not in low, message


def _upload(at: AppTest, key: str, name: str, data: bytes) -> AppTest:
    return at.file_uploader(key=key).set_value((name, data, "application/octet-stream")).run()


def _open(page: str, **widgets: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    for widget_key, value in widgets.items():
        at.sidebar.radio(key=widget_key).set_value(value).run()
    _no_exception(at)
    return at


# ----------------------------------------------------------------------------- 1. corpus


@pytest.fixture(scope="module")
def cls_app() -> AppTest:
    return _open("pages/classification.py")


@pytest.fixture(scope="module")
def xray_app() -> AppTest:
    return _open("pages/xray.py", **{"xray.weights": "random"})


def _check_page_upload(at: AppTest, key: str, f: CorpusFile, good: Path) -> None:
    _upload(at, key, f.name, f.data)
    _no_exception(at)
    if f.expect == "error":
        errors = _errors(at)
        assert len(errors) == 1, errors
        _check_clear(errors[0], EXPECTED_MESSAGE[f.name])
        assert f"'{f.name}'" in errors[0], f"the message should name the file: {errors[0]}"
        assert not _has_fused(at), "a refused file must not show a result"
    else:
        assert not _errors(at), _errors(at)
        assert _has_fused(at), _captions(at)
    # The session keeps working: the next good upload gives a result.
    _upload(at, key, good.name, good.read_bytes())
    _no_exception(at)
    assert not _errors(at), _errors(at)
    assert _has_fused(at)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("f", _files(("image", "both")), ids=lambda f: f.name)
def test_classification_page_corpus(cls_app: AppTest, f: CorpusFile) -> None:
    _check_page_upload(cls_app, "cls.upload", f, GOOD_IMAGE)
    if f.expect == "ok":
        _upload(cls_app, "cls.upload", f.name, f.data)  # cached now
        assert any(m.value.startswith("### Top class:") for m in cls_app.markdown)


@pytest.mark.slow
def test_classification_good_upload_result(cls_app: AppTest) -> None:
    _upload(cls_app, "cls.upload", GOOD_IMAGE.name, GOOD_IMAGE.read_bytes())
    assert any(c.startswith("1. sea snake") for c in _captions(cls_app)), _captions(cls_app)


_XRAY_PAGE = [f for f in _files(("xray", "both")) if FULL or f.expect == "error" or f.name in XRAY_PAGE_OK]
_XRAY_READER_ONLY = [f for f in _files(("xray", "both")) if f not in _XRAY_PAGE]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("f", _XRAY_PAGE, ids=lambda f: f.name)
def test_xray_page_corpus(xray_app: AppTest, f: CorpusFile) -> None:
    _check_page_upload(xray_app, "xray.upload", f, GOOD_XRAY)
    if f.expect == "ok":
        _upload(xray_app, "xray.upload", f.name, f.data)  # cached now: shows how it was read
        assert not _errors(xray_app)
        notes = " ".join(m.value for m in xray_app.markdown)
        if f.note:
            assert f.note in notes, (f.note, notes)
        assert any("Random weights" in w.value for w in xray_app.warning)


@pytest.mark.parametrize("f", _XRAY_READER_ONLY, ids=lambda f: f.name)
def test_xray_reader_rest_of_corpus(f: CorpusFile) -> None:
    """The X-ray page's reader on the ``ok`` files not sent through the whole page."""
    from xai_core.images import read_xray

    assert f.expect == "ok"
    x = read_xray(f.data, filename=f.name)
    assert x.pixels.ndim == 2 and 0.0 <= float(x.pixels.min()) <= float(x.pixels.max()) <= 1.0
    if f.note:
        assert any(f.note in n for n in x.notes), (f.note, x.notes)


def test_corpus_coverage() -> None:
    """The issue's list is in the corpus, and >= 25 files take each page's full path."""
    names = set(BY_NAME)
    for required in (
        "empty.png", "truncated.jpg", "truncated.png", "notes.png", "page.png", "drawing.png", "grey16.png",
        "rgba.png", "palette_transparent.png", "cmyk.jpg", "exif_rotated.jpg", "one_pixel.png", "tall_3x5000.png",
        "huge_10000x10000.png", "bomb_50000x50000.png", "animated.gif", "multipage.tif", "no_pixels.dcm",
        "fake_monochrome1.dcm", "mono1_16bit.dcm", "siim_sample.dcm", "slope_text.dcm", "colour_photo_xray.jpg",
        "grey.png",
    ):  # fmt: skip
        assert required in names, required
    assert len(_files(("image", "both"))) >= 25
    assert len(_XRAY_PAGE) >= 25
    assert set(EXPECTED_MESSAGE) == {f.name for f in CORPUS if f.expect == "error"}


# ----------------------------------------------------------------------------- 2. weights


class _Exploit:
    """Unpickling this touches ``marker``: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.marker),))


def _fail_download(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("no network in this test")


def _half_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
    Path(dst).write_bytes(b"PK\x03\x04 half a file")
    raise ConnectionResetError("connection reset by peer")


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, bytes]:
    """Bad weights files, as a user would upload them."""
    import xai_core as xc

    tmp = tmp_path_factory.mktemp("weights")
    marker = tmp / "pwned"
    _Exploit.marker = str(marker)
    lite0 = tmp / "lite0.pt"
    torch.save(xc.get_spec("efficientnet_lite0").build().state_dict(), lite0)
    good = lite0.read_bytes()
    evil_zip, evil_pickle = tmp / "evil.pt", tmp / "evil_plain.pth"
    torch.save({"weight": _Exploit()}, evil_zip)
    with open(evil_pickle, "wb") as fh:
        pickle.dump({"weight": _Exploit()}, fh)
    assert not marker.exists()
    return {
        "marker": str(marker).encode(),
        "empty.pt": b"",
        "truncated.pt": good[:5000],
        "wrong_architecture.pt": good,  # EfficientNet-Lite0 weights for another model
        "notes.pt": b"these are my notes, not weights\n" * 10,
        "evil.pt": evil_zip.read_bytes(),
        "evil_plain.pth": evil_pickle.read_bytes(),
    }


WEIGHT_MESSAGES = {
    "empty.pt": "empty",
    "truncated.pt": "truncated",
    "wrong_architecture.pt": "do not fit",
    "notes.pt": "not a PyTorch weights file",
    "evil.pt": "could run code",
    "evil_plain.pth": "could run code",
}


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No network and empty weight caches: every download fails, deterministically."""
    import torchxrayvision as xrv

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path / "xrv") + "/")
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    return tmp_path


def _default_model_works(at: AppTest) -> None:
    at.sidebar.selectbox(key="cls.model").set_value("efficientnet_lite0").run()
    _no_exception(at)
    assert not _errors(at), _errors(at)
    assert _has_fused(at)


def _missing_weights_message(at: AppTest, file_name: str, folder: Path) -> None:
    _no_exception(at)
    errors = _errors(at)
    assert len(errors) == 1, errors
    assert "weights are not available" in errors[0]
    assert file_name in errors[0] and str(folder) in errors[0], errors[0]
    assert "put the file at" in errors[0]
    assert any("local weights file" in i.value and "MB" in i.value for i in at.info)
    assert not list(folder.glob("*.part")), "a half-downloaded file was left behind"


@pytest.mark.slow
def test_classification_weights_missing_download_and_damaged_cache(offline, monkeypatch) -> None:
    at = _open("pages/classification.py")
    folder = offline / "torch" / "hub" / "checkpoints"
    name = "resnet50-11ad3fa6.pth"

    at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()  # default weights, no network
    _missing_weights_message(at, name, folder)
    _default_model_works(at)

    monkeypatch.setattr(torch.hub, "download_url_to_file", _half_download)  # fails half-way
    at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()
    _missing_weights_message(at, name, folder)
    assert not (folder / name).exists()
    _default_model_works(at)

    folder.mkdir(parents=True, exist_ok=True)  # a damaged file where the download goes
    (folder / name).write_bytes(b"PK\x03\x04 not really")
    at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()
    _no_exception(at)
    errors = _errors(at)
    assert len(errors) == 1 and name in errors[0], errors
    _check_clear(errors[0], "truncated")
    assert str(folder / name) in errors[0] and "delete" in errors[0].lower(), errors[0]
    _default_model_works(at)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["classification", "xray"])
def test_bad_weights_uploads(offline, weight_files: dict[str, bytes], page: str) -> None:
    marker = Path(weight_files["marker"].decode())
    if page == "classification":
        at = _open("pages/classification.py")
        at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()
        p = "cls"
    else:
        at = _open("pages/xray.py")
        _missing_weights_message(at, "", offline / "xrv")  # the default X-ray weights: missing offline
        p = "xray"
    for name, fragment in WEIGHT_MESSAGES.items():
        if page == "classification":
            at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()
        at.sidebar.radio(key=f"{p}.weights").set_value("file").run()
        _upload(at, f"{p}.weights_file", name, weight_files[name])
        _no_exception(at)
        errors = _errors(at)
        assert len(errors) == 1, (name, errors)
        assert name in errors[0], errors[0]  # the message names the user's file...
        assert "xai-weights-" not in errors[0] and tempfile.gettempdir() not in errors[0], errors[0]  # ...no temp path
        _check_clear(errors[0], fragment)
        assert not _has_fused(at)
        assert not marker.exists(), f"{name}: code in the weights file ran"
        # afterwards the default offline model (X-ray: the random-weights demo) still works
        if page == "classification":
            _default_model_works(at)
        else:
            at.sidebar.radio(key="xray.weights").set_value("random").run()
            _no_exception(at)
            assert not _errors(at) and _has_fused(at), _errors(at)
    assert not marker.exists()


# ----------------------------------------------------------------------------- 3. configuration


def test_streamlit_config() -> None:
    from xai_core.images import MAX_PIXELS, MAX_UPLOAD_BYTES

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["headless"] is True
    assert config["server"]["enableCORS"] is True  # no cross-origin access
    assert config["server"].get("fileWatcherType") == "none"
    assert config["client"]["showErrorDetails"] is False  # no tracebacks in the browser
    from pages._ui.widgets import IMAGE_UPLOAD_MB, WEIGHTS_UPLOAD_MB

    # the server admits weights files; image uploaders and the readers keep the image limit
    assert IMAGE_UPLOAD_MB * 1024 * 1024 == MAX_UPLOAD_BYTES
    assert config["server"]["maxUploadSize"] == WEIGHTS_UPLOAD_MB >= IMAGE_UPLOAD_MB
    assert WEIGHTS_UPLOAD_MB <= 200
    assert 1_000_000 <= MAX_PIXELS <= 89_478_485  # below Pillow's own bomb warning


# ----------------------------------------------------------------------------- 4. file system

_AUDIT: list[tuple[str, str, str]] | None = None
_AUDIT_LOCK = threading.Lock()
_HOOKED = False
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {
    "os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.symlink", "os.link", "os.chmod",
    "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
}  # fmt: skip


def _audit_hook(event: str, args: tuple) -> None:
    if _AUDIT is None or not (event == "open" or event in _CHANGES):
        return
    try:
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            kind = "write" if writes else "read"
        else:
            path, kind = args[0], event
            if event in ("os.remove", "os.rmdir", "os.mkdir") and args[-1] is not None and not os.path.isabs(path):
                return  # relative to a folder descriptor: shutil.rmtree's own event names the folder
            if event == "os.rename":
                with _AUDIT_LOCK:
                    _AUDIT.append((kind, os.path.abspath(os.fsdecode(args[1])), event))
        if isinstance(path, int):
            return  # an already open descriptor
        path = os.fsdecode(path)
        with _AUDIT_LOCK:
            _AUDIT.append((kind, os.path.abspath(path), event))
    except Exception:  # noqa: BLE001,S110 - an audit hook must never raise
        pass


def _under(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)


@pytest.mark.slow
def test_page_session_writes_only_to_temp_and_cache_dirs(offline, weight_files: dict[str, bytes]) -> None:
    """Audit every Python-level file access of a full dashboard session.

    Checked: every ``open`` audit event (``open()``, ``io.open``, ``os.open``, also from
    Streamlit, Pillow's Python side, pydicom and torch's Python side) that can write
    (mode with w/a/x/+, or O_WRONLY/O_RDWR/O_CREAT/O_APPEND/O_TRUNC flags) and every
    mkdir/remove/rmdir/rename(replace)/truncate/link/chmod/utime/rmtree/copy/move event,
    from any thread, while the session runs: home page, classification (sample, upload,
    K change, resnet50 default weights that cannot be downloaded, an uploaded weights
    file), chest X-ray (random weights, DICOM upload, an uploaded weights file) and the
    method comparison grid. They must all be under the temporary folder
    (``tempfile.gettempdir()``), the weight caches (torch hub, torchxrayvision), Streamlit's
    ``~/.streamlit`` or a ``__pycache__`` folder (Python's own bytecode cache). Reads
    outside the repository, the Python installation, those folders and the system folders
    (/etc, /usr, /proc, /sys, /dev) are refused too. Not seen: file access from C/C++ code
    that does not go through Python (libtorch, libjpeg, zlib), and child processes (none
    are started). A removal relative to a folder descriptor (how ``shutil.rmtree`` empties
    a folder) is judged by rmtree's own event, which names the folder.
    """
    global _AUDIT, _HOOKED
    import torchxrayvision as xrv

    if not _HOOKED:
        sys.addaudithook(_audit_hook)  # stays for the process; records only while _AUDIT is a list
        _HOOKED = True
    home = os.path.expanduser("~")
    caches = [
        os.path.realpath(tempfile.gettempdir()),
        os.path.realpath(torch.hub.get_dir()),
        os.path.realpath(os.path.expanduser(xrv.utils.get_cache_dir())),
        os.path.realpath(os.path.join(home, ".streamlit")),
    ]
    reads_ok = caches + [
        os.path.realpath(p)
        for p in (
            str(ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, "/etc", "/usr", "/proc",
            "/sys", "/dev", os.path.join(home, ".cache"), os.path.join(home, ".config"),
        )
        if p
    ]  # fmt: skip
    events: list[tuple[str, str, str]] = []
    _AUDIT = events
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        _no_exception(at)
        at.switch_page("pages/classification.py").run()
        _upload(at, "cls.upload", GOOD_IMAGE.name, GOOD_IMAGE.read_bytes())
        at.sidebar.slider(key="cls.k").set_value(4).run()
        at.sidebar.selectbox(key="cls.model").set_value("resnet50").run()
        at.sidebar.radio(key="cls.weights").set_value("file").run()
        _upload(at, "cls.weights_file", "mine.pt", weight_files["wrong_architecture.pt"])
        _no_exception(at)
        assert any("do not fit" in e for e in _errors(at))
        at.switch_page("pages/xray.py").run()
        at.sidebar.radio(key="xray.weights").set_value("random").run()
        _upload(at, "xray.upload", "sample.dcm", BY_NAME["mono1_16bit.dcm"].data)
        _no_exception(at)
        assert _has_fused(at)
        at.sidebar.radio(key="xray.weights").set_value("file").run()
        _upload(at, "xray.weights_file", "xray.pt", weight_files["truncated.pt"])
        _no_exception(at)
        at.switch_page("pages/comparison.py").run()
        _no_exception(at)
    finally:
        _AUDIT = None
    assert events, "the audit hook saw nothing"
    seen = sorted({(k, os.path.dirname(p)) for k, p, _ in events if k != "read"})
    print(f"audited {len(events)} events; changes in: {seen}")  # shown with pytest -s
    changes = [(k, p) for k, p, _ in events if k != "read"]
    outside = [(k, p) for k, p in changes if not _under(p, caches) and "__pycache__" not in Path(p).parts]
    assert not outside, outside
    assert any(k == "write" and "xai-weights-" in p for k, p in changes), "the uploaded weights went elsewhere"
    reads_outside = sorted({p for k, p, _ in events if k == "read" and not _under(p, reads_ok)})
    assert not reads_outside, reads_outside


# ----------------------------------------------------------------------------- 5. concurrency


def test_model_registry_is_filled_once_for_concurrent_first_callers(monkeypatch) -> None:
    """Regression: two sessions starting at once saw an empty registry ("Unknown model None").

    The load test found it: the first caller set the "loaded" flag before the (slow) zoo
    import had registered anything, so a second session's ``list_models`` returned [].
    Specs are now made per model on first use: concurrent first callers of ``get_spec``
    wait for one maker and all get the same spec, while ``list_models`` is never empty.
    """
    import time as _time

    from xai_core.models import registry

    key = "efficientnet_lite0"
    real = registry._MAKERS[key]
    made: list[int] = []

    def slow_make():
        made.append(1)
        _time.sleep(0.3)
        return real()

    monkeypatch.setitem(registry._MAKERS, key, slow_make)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    seen: list[tuple[int, int]] = []
    barrier = threading.Barrier(8)

    def first_call() -> None:
        barrier.wait()
        seen.append((len(registry.list_models("imagenet")), id(registry.get_spec(key))))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(seen) == 8 and min(n for n, _ in seen) > 0 and len(set(seen)) == 1, seen
    assert len(made) == 1

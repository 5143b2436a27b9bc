"""The gallery page with Streamlit's AppTest: upload several images, explain, sort, filter, open one."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SAMPLES = ROOT / "samples" / "imagenet"
TIMEOUT = 300


def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/gallery.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def _percent(caption: str) -> float:
    return float(re.search(r"\((\d+(?:\.\d+)?)%\)$", caption).group(1))


def test_gallery_upload_explain_sort_filter_and_open():
    at = _open()
    assert any("Upload images" in i.value for i in at.info)
    names = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000025.JPEG", "ILSVRC2012_val_00000911.JPEG"]
    files = [(n, (SAMPLES / n).read_bytes(), "image/jpeg") for n in names]
    # A label in the file name (the evaluation command's convention): the snake is labelled "hen", so wrong.
    files[0] = ("snake__hen.jpg", files[0][1], "image/jpeg")
    files.append(("notes.png", b"not an image at all", "image/png"))
    at.file_uploader(key="gal.uploads").set_value(files).run()
    assert not at.exception
    _button(at, "Explain 4 images").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    captions = _captions(at)
    assert len(captions) == 3, captions
    probs = [_percent(c) for c in captions]
    assert probs == sorted(probs, reverse=True)  # by top-1 probability, largest first
    assert any(c.startswith("snake__hen.jpg: sea snake") for c in captions)
    assert "1 file left out" in " ".join(e.label for e in at.expander)
    assert "notes.png" in " ".join(m.value for m in at.markdown)

    at.selectbox(key="gal.sort").set_value("probability.asc").run()
    assert [_percent(c) for c in _captions(at)] == sorted(probs)

    at.toggle(key="gal.wrong").set_value(True).run()
    assert [c.split(":")[0] for c in _captions(at)] == ["snake__hen.jpg"]
    at.toggle(key="gal.wrong").set_value(False).run()

    at.selectbox(key="gal.sort").set_value("disagreement.desc").run()
    assert not at.exception and len(_captions(at)) == 3

    first = _captions(at)[0].split(":")[0]
    _button(at, "Open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    assert f"Showing **{first}**" in text, text


def test_gallery_zip_leaves_out_what_is_not_an_image():
    at = _open()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("photos/vulture.jpg", (SAMPLES / "ILSVRC2012_val_00001391.JPEG").read_bytes())
        z.writestr("../evil.jpg", (SAMPLES / "ILSVRC2012_val_00000911.JPEG").read_bytes())
        z.writestr("readme.txt", "hello")
    at.file_uploader(key="gal.zip").set_value(("photos.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception
    left_out = " ".join(e.label for e in at.expander)
    assert "2 files left out" in left_out, left_out
    text = " ".join(m.value for m in at.markdown)
    assert "../evil.jpg: a path outside" in text and "readme.txt: a text file, not an image" in text, text
    _button(at, "Explain 1 image").click().run()
    assert not at.exception and not at.error
    assert [c.split(" (")[0] for c in _captions(at)] == ["vulture.jpg: vulture"]


def test_gallery_bad_zip_says_so():
    at = _open()
    at.file_uploader(key="gal.zip").set_value(("photos.zip", b"PK not really", "application/zip")).run()
    assert not at.exception
    assert at.error and "ZIP" in at.error[0].value


def test_gallery_folder_from_the_command_line_or_the_environment(tmp_path, monkeypatch):
    from pages._ui.gallery import FOLDER_ENV, server_folder

    assert server_folder(["--server.port", "1", "--gallery-folder", "/data/x"]) == "/data/x"
    monkeypatch.delenv(FOLDER_ENV, raising=False)
    assert server_folder([]) is None
    (tmp_path / "harvester__harvester.jpg").write_bytes((SAMPLES / "ILSVRC2012_val_00000015.JPEG").read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.setenv(FOLDER_ENV, str(tmp_path))
    at = _open()
    assert at.toggle(key="gal.folder").value is True
    assert "notes.txt: not an image file name" in " ".join(m.value for m in at.markdown)
    _button(at, "Explain 1 image").click().run()
    assert not at.exception and not at.error
    assert [c.split(" (")[0] for c in _captions(at)] == ["harvester__harvester.jpg: harvester"]
    assert "top-1 correct on 1 of 1 labelled images" in " ".join(c.value for c in at.caption)

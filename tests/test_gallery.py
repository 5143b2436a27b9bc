"""xai_core.gallery: safe archive and folder reading, batched explanation, scores, sorting, export."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xai_core as xc
from xai_core import gallery as g
from xai_core.metrics import average_drop_increase

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "imagenet"
JPEG = (SAMPLES / "ILSVRC2012_val_00000911.JPEG").read_bytes()


def _png(colour=(200, 10, 10), size=(8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- reading


def test_read_zip_keeps_images_by_base_name_and_explains_the_rest():
    data = _zip(
        {
            "a/b/one.png": _png(),
            "../climb.png": _png(),
            "/abs.png": _png(),
            "C:/drive.png": _png(),
            "notes.txt": b"hello there",
            "fake.jpg": b"%PDF-1.4 not an image",
            "__MACOSX/._one.png": _png(),
            "two.jpg": JPEG,
        }
    )
    found = g.read_zip(data)
    assert [n for n, _ in found.files] == ["one.png", "two.jpg"]
    assert found.files[1][1] == JPEG
    text = "\n".join(found.skipped)
    for name in ("../climb.png", "/abs.png", "C:/drive.png"):
        assert f"{name}: a path outside" in text
    assert "notes.txt: a text file, not an image" in text
    assert "fake.jpg: a PDF document, not an image" in text
    assert "__MACOSX/._one.png: a hidden or system file" in text


def test_read_zip_limits_files_and_bytes():
    data = _zip({f"{i}.png": _png((i, 0, 0)) for i in range(5)})
    found = g.read_zip(data, max_files=3)
    assert len(found.files) == 3 and sum("more than 3 images" in s for s in found.skipped) == 2
    big = _zip({"big.png": _png(size=(300, 300)) + b"\0" * 5000, "small.png": _png()})
    found = g.read_zip(big, max_file_bytes=4000)
    assert [n for n, _ in found.files] == ["small.png"] and "big.png:" in found.skipped[0]
    found = g.read_zip(_zip({"a.png": _png(), "b.png": _png((1, 2, 3))}), max_total_bytes=len(_png()) + 10)
    assert len(found.files) == 1 and "in all" in found.skipped[0]


def test_read_zip_refuses_what_is_not_a_zip():
    with pytest.raises(xc.ImageError, match="ZIP"):
        g.read_zip(b"PK\x03\x04 truncated")


def test_read_folder(tmp_path):
    (tmp_path / "b.png").write_bytes(_png())
    (tmp_path / "a.jpg").write_bytes(JPEG)
    (tmp_path / "c.txt").write_text("x")
    (tmp_path / "d.png").write_bytes(b"<svg></svg>")
    (tmp_path / "sub").mkdir()
    found = g.read_folder(tmp_path)
    assert [n for n, _ in found.files] == ["a.jpg", "b.png"]
    assert any(s.startswith("c.txt:") for s in found.skipped)
    assert any(s.startswith("d.png: an SVG drawing") for s in found.skipped)
    with pytest.raises(xc.ImageError, match="not a folder"):
        g.read_folder(tmp_path / "missing")


def test_decode_names_the_file():
    with pytest.raises(xc.ImageError, match="notes.png"):
        g.decode("notes.png", b"just text")


# ----------------------------------------------------------------------------- scores and ranking


def test_disagreement_is_one_minus_spearman():
    a = np.arange(16, dtype=float).reshape(1, 4, 4)
    assert g.disagreement(a, a * 3 + 1)[0] == pytest.approx(0.0)
    assert g.disagreement(a, -a)[0] == pytest.approx(2.0)
    assert math.isnan(g.disagreement(a, np.zeros_like(a))[0])


def _result(cls: int, p: float, drop: float = math.nan, gap: float = math.nan) -> g.GalleryResult:
    return g.GalleryResult(
        cls, f"class {cls}", p, ((cls, f"class {cls}", p),), np.zeros((4, 4, 3), np.uint8),
        {"average_drop": drop, "disagreement": gap}, 0.0,
    )  # fmt: skip


LABELS = [f"class {i}" for i in range(10)]


def test_rows_take_labels_from_file_names():
    rows = g.gallery_rows(
        ["a__3.jpg", "b__class_4.jpg", "c.jpg", "d__99.jpg"],
        [_result(3, 0.5), _result(3, 0.6), _result(1, 0.7), _result(2, 0.8)],
        LABELS,
    )
    assert [r.label for r in rows] == [3, 4, None, None]
    assert [r.correct for r in rows] == [True, False, None, None]
    assert rows[1].label_name == "class 4"


def test_sort_rows():
    rows = g.gallery_rows(
        ["w__1.jpg", "x.jpg", "y__2.jpg", "z.jpg"],
        [_result(0, 0.2, 10, 0.5), _result(1, 0.9, 30), _result(2, 0.5, math.nan, 0.1), _result(3, 0.5, 5, 0.9)],
        LABELS,
    )

    def files(*args, **kw):
        return [r.file for r in g.sort_rows(rows, *args, **kw)]

    assert files("probability") == ["x.jpg", "y__2.jpg", "z.jpg", "w__1.jpg"]  # ties keep the file order
    assert files("probability", descending=False) == ["w__1.jpg", "y__2.jpg", "z.jpg", "x.jpg"]
    assert files("average_drop") == ["z.jpg", "w__1.jpg", "x.jpg", "y__2.jpg"]  # NaN last
    assert files("disagreement") == ["z.jpg", "w__1.jpg", "y__2.jpg", "x.jpg"]
    assert files("wrong") == ["w__1.jpg", "y__2.jpg", "x.jpg", "z.jpg"]  # wrong, right, then unlabelled
    assert files("file", descending=True) == ["z.jpg", "y__2.jpg", "x.jpg", "w__1.jpg"]
    assert files("probability", wrong_only=True) == ["w__1.jpg"]
    with pytest.raises(xc.MethodError, match="sort key"):
        g.sort_rows(rows, "colour")


def test_export_zip_has_the_csv_and_every_map():
    rows = g.gallery_rows(
        ["a/dog__1.jpg", "dog__1.png", "cat.jpg"], [_result(1, 0.5, 12.5), _result(2, 0.25), _result(3, 1.0)], LABELS
    )
    with zipfile.ZipFile(io.BytesIO(g.export_zip(rows))) as z:
        names = z.namelist()
        table = list(csv.DictReader(io.StringIO(z.read("gallery.csv").decode())))
        assert Image.open(io.BytesIO(z.read("maps/dog__1.png"))).size == (4, 4)
    assert names == ["gallery.csv", "maps/dog__1.png", "maps/dog__1-2.png", "maps/cat.png"]
    assert list(table[0]) == [*g.CSV_COLUMNS, "map"]
    assert table[0] == {
        "file": "a/dog__1.jpg", "top_class": "class 1", "probability": "0.5", "average_drop": "12.5",
        "disagreement": "", "label": "class 1", "correct": "true", "map": "maps/dog__1.png",
    }  # fmt: skip
    assert table[1]["correct"] == "false" and table[2]["label"] == "" and table[2]["correct"] == ""


# ----------------------------------------------------------------------------- explaining (real weights)


@pytest.fixture(scope="module")
def model():
    return xc.load_model("efficientnet_lite0")


NAMES = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000025.JPEG", "cat_dog.png"]


@pytest.fixture(scope="module")
def images():
    return [xc.read_image(SAMPLES / n) for n in NAMES]


def test_explain_gallery_batched_equals_one_by_one(model, images):
    calls, seen = [], []
    out = g.explain_gallery(
        model,
        images,
        top_k=2,
        compare=("grad_cam", "grad_cam"),
        max_batch=2,
        progress=lambda d, t: calls.append((d, t)),
        on_result=lambda i, r: seen.append(i),
    )
    assert calls == [(0, 3), (2, 3), (3, 3)] and seen == [0, 1, 2]
    for image, res in zip(images, out):
        one = xc.explain(model, image, method="grad_cam", top_k=2)
        assert res.class_idx == one.class_idx[0] and res.label == one.labels[0]
        assert res.probability == pytest.approx(one.probs[0], abs=1e-4)
        assert [c for c, _, _ in res.predictions] == list(one.class_idx)
        assert res.fused.dtype == np.uint8 and res.fused.shape == (*one.input_size, 3)
        drop = average_drop_increase(model.predict, one.prepared.tensor, one.saliency(0)[None], [one.class_idx[0]])
        assert res.scores["average_drop"] == pytest.approx(float(drop.drop[0]), abs=0.5)
        assert res.scores["disagreement"] == pytest.approx(0.0, abs=1e-9)  # a method against itself
    assert out[1].label == "vulture" and out[1].probability > 0.9


def test_explain_gallery_disagreement_and_stop_keeps_finished(model, images):
    out = g.explain_gallery(model, images[:2], compare=("grad_cam", "eigen_cam"), faithfulness=False, max_batch=2)
    assert all(0.0 < r.scores["disagreement"] <= 2.0 for r in out)
    assert all(math.isnan(r.scores["average_drop"]) for r in out)

    class Stop(Exception):
        pass

    kept = {}

    def progress(done, total):
        if done >= 1:
            raise Stop

    with pytest.raises(Stop):
        g.explain_gallery(model, images, max_batch=1, progress=progress, on_result=kept.__setitem__)
    assert list(kept) == [0] and kept[0].label == "sea snake"

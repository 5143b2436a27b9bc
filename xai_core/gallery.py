"""Many images at once: read them safely, explain them in batches, score, rank and export.

The dashboard's gallery page is a thin layer over this module:

- :func:`read_zip` and :func:`read_folder` collect ``(name, bytes)`` image files from a
  ZIP archive or a folder, with limits (file count, bytes per file, bytes in all), no
  path ever followed out of the archive (only base names are kept, nothing is written
  to disk) and a message for every entry left out (folders, non-images, too large).
- :func:`explain_gallery` explains every image in one batched pass per chunk on the
  model's device (chunk size from the memory budget, :func:`xai_core.api.images_per_pass`),
  renders each image's FM-G-CAM overlay (:func:`xai_core.render.render_fused`), and
  scores the top-1 map: a cheap faithfulness score (Average Drop, two forward passes per
  image, batched) and, for two chosen methods, their disagreement
  (``1 - Spearman`` between their top-1 maps). ``progress(done, total)`` counts images
  after each chunk and ``on_result(i, result)`` hands each finished image over as soon
  as its chunk ends, so a caller that stops the run keeps what was done.
- :func:`gallery_rows`, :func:`sort_rows` and :func:`export_zip` attach labels (from the
  file name, the evaluation command's convention ``<anything>__<class>.<ext>``,
  :func:`xai_core.evaluate.jobs.label_from_name`), order the images and write the maps
  and a CSV into one archive.
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xai_core.api import Explanation, explain, images_per_pass
from xai_core.errors import ImageError, MethodError
from xai_core.evaluate.jobs import IMAGE_SUFFIXES, label_from_name
from xai_core.images import MAX_UPLOAD_BYTES, read_image
from xai_core.images.sniff import describe, looks_like_image
from xai_core.metrics import average_drop_increase
from xai_core.models.registry import LoadedModel
from xai_core.render import render_fused
from xai_core.trust.similarity import spearman

#: Most images one gallery takes (uploads, archive and folder together).
MAX_FILES = 200
#: Most bytes of images one archive or folder may hold in all (uncompressed).
MAX_TOTAL_BYTES = 1024 * 1024 * 1024

#: Sort keys: ``key -> (label, larger first by default)``.
SORTS: dict[str, tuple[str, bool]] = {
    "probability": ("Top-1 probability", True),
    "average_drop": ("Faithfulness (Average Drop)", False),
    "disagreement": ("Disagreement of A and B", True),
    "wrong": ("Model wrong first (labels)", True),
    "file": ("File name", False),
}

#: Opacity of the fused map over the grey photo (the classification page's default).
FUSED_ALPHA = 0.85

CSV_COLUMNS = ("file", "top_class", "probability", "average_drop", "disagreement", "label", "correct")


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Collected:
    """Image files gathered from an archive or a folder.

    Attributes:
        files: ``(name, bytes)`` per image, in the archive's (or the folder's sorted) order.
        skipped: one message per entry left out, naming it and why.
    """

    files: tuple[tuple[str, bytes], ...]
    skipped: tuple[str, ...]


def _unsafe(name: str) -> bool:
    """An archive path that is absolute, climbs with ``..`` or names a drive."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) is not None or ".." in norm.split("/")


def _kind(data: bytes) -> str | None:
    """``None`` for an image the readers accept; else what the bytes look like."""
    if looks_like_image(data):
        return None
    return describe(data) or "not an accepted image format"


def read_zip(
    data: bytes,
    *,
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_UPLOAD_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Collected:
    """The images inside a ZIP archive, read in memory and never extracted to disk.

    Entries are kept by base name only. Left out, each with a message: folders, paths
    that are absolute or climb out with ``..``, encrypted entries, files over
    ``max_file_bytes`` (checked against the header, then while reading, so a header
    that lies cannot make it read more), files that are not PNG/JPEG/WebP/BMP/TIFF/GIF,
    and everything after ``max_files`` images or ``max_total_bytes`` bytes.

    Raises:
        ImageError: the bytes are not a readable ZIP archive.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ImageError(
            f"The archive could not be opened as a ZIP file ({exc}). Upload a .zip of images, or the images themselves."
        ) from exc
    files: list[tuple[str, bytes]] = []
    skipped: list[str] = []
    total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir():
                continue
            base = posixpath.basename(name.replace("\\", "/"))
            if _unsafe(name):
                skipped.append(f"{name}: a path outside the archive's folder (left out)")
                continue
            if base.startswith(".") or name.startswith("__MACOSX/"):
                skipped.append(f"{name}: a hidden or system file (left out)")
                continue
            if info.flag_bits & 0x1:
                skipped.append(f"{name}: encrypted (left out)")
                continue
            if len(files) >= max_files:
                skipped.append(f"{name}: more than {max_files} images in all (left out)")
                continue
            if info.file_size > max_file_bytes:
                skipped.append(f"{name}: {info.file_size / 2**20:.1f} MB, over {max_file_bytes / 2**20:.0f} MB")
                continue
            try:
                with archive.open(info) as handle:
                    content = handle.read(max_file_bytes + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                skipped.append(f"{name}: could not be read from the archive ({exc})")
                continue
            if len(content) > max_file_bytes:
                skipped.append(f"{name}: over {max_file_bytes / 2**20:.0f} MB")
                continue
            if total + len(content) > max_total_bytes:
                skipped.append(f"{name}: the archive's images pass {max_total_bytes / 2**20:.0f} MB in all (left out)")
                continue
            kind = _kind(content)
            if kind is not None:
                skipped.append(f"{name}: {kind}, not an image (left out)")
                continue
            total += len(content)
            files.append((base, content))
    return Collected(tuple(files), tuple(skipped))


def read_folder(
    folder: str | Path,
    *,
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_UPLOAD_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Collected:
    """The images of a folder (not recursive, sorted by name), with the limits of :func:`read_zip`.

    Raises:
        ImageError: ``folder`` is not a folder.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ImageError(f"{str(path)!r} is not a folder. Give a folder of images.")
    files: list[tuple[str, bytes]] = []
    skipped: list[str] = []
    total = 0
    for entry in sorted(path.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{entry.name}: not an image file name (left out)")
            continue
        if len(files) >= max_files:
            skipped.append(f"{entry.name}: more than {max_files} images in all (left out)")
            continue
        size = entry.stat().st_size
        if size > max_file_bytes:
            skipped.append(f"{entry.name}: {size / 2**20:.1f} MB, over {max_file_bytes / 2**20:.0f} MB")
            continue
        if total + size > max_total_bytes:
            skipped.append(f"{entry.name}: the folder's images pass {max_total_bytes / 2**20:.0f} MB in all")
            continue
        content = entry.read_bytes()[: max_file_bytes + 1]
        kind = _kind(content)
        if kind is not None:
            skipped.append(f"{entry.name}: {kind}, not an image (left out)")
            continue
        total += len(content)
        files.append((entry.name, content))
    return Collected(tuple(files), tuple(skipped))


def decode(name: str, data: bytes) -> Image.Image:
    """One gallery file decoded by the project's safe reader (messages name the file). Raises ImageError."""
    source = io.BytesIO(data)
    source.name = name
    return read_image(source)


# ----------------------------------------------------------------------------- explaining


@dataclass(frozen=True, eq=False)
class GalleryResult:
    """One image of a gallery, explained.

    Attributes:
        class_idx, label, probability: the top-1 class.
        predictions: ``(class, name, probability)`` of the classes fused.
        fused: the FM-G-CAM overlay of those classes over the view the model saw in grey, ``uint8 [H, W, 3]``.
        scores: ``"average_drop"`` (percent drop of the top-1 probability when only the top
            half of the map's pixels is kept, the rest blurred: lower is more faithful)
            and ``"disagreement"`` (``1 - Spearman`` between the two compared methods'
            top-1 maps, 0 to 2; NaN when not asked for or a map is constant).
        seconds: this image's share of the explanation time.
    """

    class_idx: int
    label: str
    probability: float
    predictions: tuple[tuple[int, str, float], ...]
    fused: np.ndarray
    scores: dict[str, float]
    seconds: float


def disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - Spearman`` per pair of maps ``[N, ...]``: 0 same ranking, 1 unrelated, 2 reversed (NaN: a constant map)."""
    return 1.0 - spearman(a, b)


def _saliencies(exps: Sequence[Explanation]) -> np.ndarray:
    return np.stack([e.saliency(0) for e in exps])


def _grey(exp: Explanation) -> Explanation:
    """``exp`` with its view in grey, so that each class's colour stays readable (as on the classification page)."""
    if exp.prepared.view is None:
        return exp
    grey = exp.prepared.view.astype(np.float32).mean(axis=2, keepdims=True)
    view = np.repeat(grey + 0.5, 3, axis=2).astype(np.uint8)
    return replace(exp, prepared=replace(exp.prepared, view=view))


def explain_gallery(
    model: LoadedModel,
    images: Sequence[Image.Image],
    *,
    method: str = "grad_cam",
    layer: str | None = None,
    params: dict | None = None,
    top_k: int = 3,
    compare: tuple[str, str] | None = None,
    faithfulness: bool = True,
    max_batch: int | None = None,
    memory_budget: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[int, GalleryResult], None] | None = None,
) -> list[GalleryResult]:
    """Explain, render and score every image, a chunk of images per pass on the model's device.

    Args:
        model: the loaded model.
        images: the images (PIL).
        method: the CAM method (registry key) whose top-``top_k`` maps are fused.
        layer: the layer explained (default the model's ``default_layer``).
        params: that method's parameters.
        top_k: classes fused in each overlay.
        compare: two method keys whose top-1 maps are compared (``"disagreement"``);
            a method equal to ``method`` reuses its maps.
        faithfulness: compute Average Drop of the top-1 map (two batched forward passes per image).
        max_batch: images per pass (default from ``memory_budget``, see :func:`~xai_core.api.images_per_pass`).
        memory_budget: bytes one pass may use (default from the model's device).
        progress: ``progress(done, total)`` in images, after each chunk (it may raise to stop the run).
        on_result: ``on_result(index, result)`` for each image as soon as its chunk is done.

    Returns:
        One :class:`GalleryResult` per image, in order.

    Raises:
        MethodError: an unknown method or a bad parameter (from :func:`xai_core.explain`).
    """
    n = len(images)
    if n == 0:
        return []
    params = dict(params or {})
    layer = layer or model.spec.default_layer
    top_k = max(1, int(top_k))
    chunk = int(max_batch) if max_batch else images_per_pass(model, top_k, memory_budget)
    if chunk < 1:
        raise MethodError(f"max_batch must be at least 1, got {max_batch}.")
    out: list[GalleryResult] = []
    if progress is not None:
        progress(0, n)
    for start in range(0, n, chunk):
        part = list(images[start : start + chunk])
        exps = explain(model, part, method=method, layer=layer, top_k=top_k, max_batch=len(part), **params)
        x = torch.cat([e.prepared.tensor for e in exps])
        classes = [e.class_idx[0] for e in exps]
        sal = _saliencies(exps)
        drop = np.full(len(part), np.nan)
        if faithfulness:
            drop = average_drop_increase(model.predict, x, sal, classes, batch_size=2 * len(part)).drop
        gap = np.full(len(part), np.nan)
        if compare is not None:
            maps = []
            for other in compare:
                if other == method:
                    maps.append(sal)
                else:
                    rows = [[c] for c in classes]
                    again = explain(model, x, method=other, layer=layer, class_idx=rows, max_batch=len(part))
                    maps.append(_saliencies(again))
            gap = disagreement(maps[0], maps[1])
        for j, exp in enumerate(exps):
            fused = render_fused(_grey(exp), exp.fused(exp.k_max), alpha=FUSED_ALPHA)
            result = GalleryResult(
                class_idx=int(exp.class_idx[0]),
                label=exp.labels[0],
                probability=float(exp.probs[0]),
                predictions=tuple(exp.predictions),
                fused=fused,
                scores={"average_drop": float(drop[j]), "disagreement": float(gap[j])},
                seconds=exp.seconds,
            )
            out.append(result)
            if on_result is not None:
                on_result(start + j, result)
        if progress is not None:
            progress(len(out), n)
    return out


# ----------------------------------------------------------------------------- ranking


@dataclass(frozen=True, eq=False)
class GalleryRow:
    """One image in the gallery's table: its file, its result, and its label when the file name gives one."""

    file: str
    result: GalleryResult
    label: int | None = None
    label_name: str | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the top-1 class is the label (``None`` without a label)."""
        return None if self.label is None else self.result.class_idx == self.label


def gallery_rows(files: Sequence[str], results: Sequence[GalleryResult], labels: Sequence[str]) -> list[GalleryRow]:
    """Rows with the labels the file names carry (``dog__207.jpg``, ``dog__golden_retriever.jpg``)."""
    rows = []
    for name, result in zip(files, results, strict=True):
        label = label_from_name(Path(name), labels)
        rows.append(GalleryRow(name, result, label, None if label is None else labels[label]))
    return rows


def _value(row: GalleryRow, by: str) -> float:
    if by == "probability":
        return row.result.probability
    if by in ("average_drop", "disagreement"):
        return row.result.scores.get(by, math.nan)
    if by == "wrong":
        return math.nan if row.correct is None else float(not row.correct)
    raise MethodError(f"Unknown sort key {by!r}; choose one of {', '.join(SORTS)}.")


def sort_rows(
    rows: Sequence[GalleryRow], by: str = "probability", *, descending: bool | None = None, wrong_only: bool = False
) -> list[GalleryRow]:
    """``rows`` ordered by ``by`` (a key of :data:`SORTS`), missing values (NaN, no label) last.

    ``descending`` defaults to the key's natural order (larger first for probability,
    disagreement and "wrong"; smaller first for Average Drop and the file name). Ties
    keep the file order. ``wrong_only`` keeps only rows whose label is known and differs
    from the top-1 class.
    """
    if by not in SORTS:
        raise MethodError(f"Unknown sort key {by!r}; choose one of {', '.join(SORTS)}.")
    descending = SORTS[by][1] if descending is None else bool(descending)
    kept = [r for r in rows if not wrong_only or r.correct is False]
    if by == "file":
        return sorted(kept, key=lambda r: r.file.casefold(), reverse=descending)
    present = [r for r in kept if not math.isnan(_value(r, by))]
    missing = [r for r in kept if math.isnan(_value(r, by))]
    present.sort(key=lambda r: _value(r, by), reverse=descending)
    return present + missing


# ----------------------------------------------------------------------------- export


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def table(rows: Sequence[GalleryRow]) -> list[dict[str, str]]:
    """The CSV rows (:data:`CSV_COLUMNS`), as text."""
    out = []
    for r in rows:
        res = r.result
        out.append(
            {
                "file": r.file,
                "top_class": res.label,
                "probability": _number(res.probability),
                "average_drop": _number(res.scores.get("average_drop", math.nan)),
                "disagreement": _number(res.scores.get("disagreement", math.nan)),
                "label": "" if r.label_name is None else r.label_name,
                "correct": "" if r.correct is None else str(r.correct).lower(),
            }
        )
    return out


def map_names(files: Sequence[str]) -> list[str]:
    """A distinct, harmless PNG name per file (``maps/<stem>.png``; repeated stems get ``-2``, ``-3``...)."""
    seen: dict[str, int] = {}
    out = []
    for name in files:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(posixpath.basename(name.replace("\\", "/"))).stem)[:100] or "image"
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        out.append(f"maps/{stem}{'' if count == 1 else f'-{count}'}.png")
    return out


def export_zip(rows: Sequence[GalleryRow]) -> bytes:
    """One archive of the gallery: ``gallery.csv`` and every fused map as ``maps/<file stem>.png``.

    The CSV has a row per image, in the rows' order: :data:`CSV_COLUMNS` and ``map``, the PNG's name.
    """
    buffer = io.BytesIO()
    names = map_names([r.file for r in rows])
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*CSV_COLUMNS, "map"], lineterminator="\n")
    writer.writeheader()
    for values, name in zip(table(rows), names, strict=True):
        writer.writerow({**values, "map": name})
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("gallery.csv", text.getvalue())
        for row, name in zip(rows, names, strict=True):
            png = io.BytesIO()
            Image.fromarray(row.result.fused).save(png, format="PNG")
            archive.writestr(name, png.getvalue())
    return buffer.getvalue()

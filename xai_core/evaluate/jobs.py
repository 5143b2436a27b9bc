"""What to compute: the (method, layer) jobs, the images, their labels and the resume keys."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xai_core.errors import UnknownNameError
from xai_core.evaluate.methods import INPUT, Method, UsageError, parse_method
from xai_core.hooks.layers import resolve_layer

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".dcm", ".dicom")


@dataclass(frozen=True)
class Job:
    """One method at one layer, evaluated on every image."""

    method: Method
    layer: str

    @property
    def name(self) -> str:
        """``method@layer``, for messages."""
        return f"{self.method.key}@{self.layer}"


def parse_jobs(methods: Sequence[str], layers: Sequence[str] | None, model, cam_layer: str) -> list[Job]:
    """Turn ``--methods`` and ``--layers`` into jobs, checking every layer name.

    ``method@layer`` pins the layer for that method; otherwise each method runs at every
    ``--layers`` entry, or at its default (the model's default layer for CAM methods and
    FM-G-CAM; ``input`` for relevance methods).

    Raises:
        UsageError: unknown method or layer, or a CAM method asked for at ``input``.
    """
    jobs: list[Job] = []
    before: set[str] | None = None
    for entry in methods:
        name, _, pinned = entry.partition("@")
        method = parse_method(name)
        if pinned:
            wanted = [pinned.strip()]
        elif layers:
            wanted = list(layers)
        else:
            wanted = [INPUT if method.info.relevance else model.spec.default_layer]
        for layer in wanted:
            if layer == INPUT:
                if not method.info.relevance:
                    raise UsageError(
                        f"{method.key} cannot be evaluated at 'input': it needs a feature layer. Pin another "
                        f"layer with {method.key}@LAYER, or use a relevance method (fg_cam, lrp) at the input."
                    )
            else:
                try:
                    resolve_layer(model.module, layer)
                except UnknownNameError as exc:
                    raise UsageError(f"--layers: {exc}") from None
                if method.info.relevance and method.has("base") and layer != cam_layer:
                    before = modules_before(model, cam_layer) if before is None else before
                    if layer not in before:
                        raise UsageError(
                            f"{method.key}: layer {layer!r} does not run before the CAM layer {cam_layer!r}; "
                            "it brings the explanation down to a shallower layer or 'input'."
                        )
            job = Job(method, layer)
            if job not in jobs:
                jobs.append(job)
    if not jobs:
        raise UsageError("--methods is empty; give at least one method.")
    return jobs


def modules_before(model, layer: str) -> set[str]:
    """Names of the modules whose forward runs before ``layer``'s forward ends."""
    order: list[str] = []
    handles = []
    for name, module in model.module.named_modules():
        if name:
            handles.append(module.register_forward_hook(lambda _m, _i, _o, n=name: order.append(n)))
    try:
        with torch.inference_mode():
            model.module(model.example_input().to(next(model.module.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return set(order[: order.index(layer)]) if layer in order else set()


# ----------------------------------------------------------------------------- images and labels


def list_images(folder: Path) -> list[Path]:
    """Files in ``folder`` (not recursive) with an image suffix, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UsageError(f"--shard must look like i/n (for example 0/4); got {text!r}.")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need n >= 1 and 0 <= i < n (shards are numbered from 0).")
    return i, n


def parse_class(value: str, labels: Sequence[str], where: str) -> int:
    """A class index from an integer or a class name (case-insensitive, ``_`` = space).

    Raises:
        UsageError: out of range, unknown or ambiguous name (the message lists matches).
    """
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        idx = int(text)
        if not 0 <= idx < len(labels):
            raise UsageError(
                f"{where}: class index {idx} is out of range (the model has classes 0..{len(labels) - 1})."
            )
        return idx
    wanted = text.replace("_", " ").casefold()
    hits = [i for i, name in enumerate(labels) if name.casefold() == wanted]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise UsageError(f"{where}: class name {text!r} is ambiguous (classes {hits}); give the index instead.")
    raise UsageError(f"{where}: " + str(UnknownNameError("class name", text, labels, hint="Or give the class index.")))


def label_from_name(path: Path, labels: Sequence[str]) -> int | None:
    """The label a file name carries: ``<anything>__<class index or class name>.<ext>``.

    ``dog__207.jpg`` and ``dog__golden_retriever.jpg`` both mean class 207. A suffix after
    ``__`` that is neither an index in range nor a class name gives no label.
    """
    stem = path.stem
    if "__" not in stem:
        return None
    try:
        return parse_class(stem.rsplit("__", 1)[1], labels, path.name)
    except UsageError:
        return None


def read_labels(csv_path: Path, labels: Sequence[str]) -> dict[str, int]:
    """``--labels``: a CSV with columns ``file`` (file name) and ``label`` (index or class name).

    Raises:
        UsageError: missing file or columns, a bad label, or a file listed twice with two labels.
    """
    if not csv_path.is_file():
        raise UsageError(f"--labels: no such file: {str(csv_path)!r}.")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "file" not in fields or "label" not in fields:
            raise UsageError(f"--labels: {str(csv_path)!r} must have the columns 'file' and 'label'; found {fields}.")
        out: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "") for k, v in row.items()}
            name = Path(row["file"].strip()).name
            if not name:
                continue
            idx = parse_class(row["label"], labels, f"--labels {csv_path.name} line {line}")
            if out.get(name, idx) != idx:
                raise UsageError(f"--labels: {name!r} is listed with two labels ({out[name]} and {idx}).")
            out[name] = idx
    return out


def row_key(model: str, file: str, method: str, layer: str, target: str, label: int | None) -> tuple[str, ...]:
    """Resume key of a row: model, file, method, layer, target and class (the label, or none for top-1)."""
    cls = str(label) if target == "label" and label is not None else ""
    return (model, file, method, layer, target, cls)

r"""Batch faithfulness evaluation over a folder of images: ``python -m xai_core.evaluate``.

For every image, every method and every layer asked for, compute the map of one class
(the top-1 prediction by default, ALGORITHMS.md section 4; or the true label) and score
it with :func:`xai_core.metrics.evaluate_map`. Results go to a CSV, one row per
(image, method, layer, class), written and flushed row by row, so an interrupted run
resumes where it stopped; a Markdown summary (means per method and layer) is written
next to the CSV and printed.

Example::

    python -m xai_core.evaluate samples/imagenet --methods grad_cam,layer_cam,fg_cam@input \\
        --out results/eval.csv

Methods (``--methods``, comma-separated; ``key@layer`` pins a layer for one method):

- any key of ``xai_core.METHODS`` (``grad_cam``, ``layer_cam``, ``score_cam``, ...): the
  CAM map at ``layer`` (ReLU, bilinear upsampling; the saliency of :class:`~xai_core.Explanation`).
- ``fm_g_cam:K`` or ``fm_g_cam:K:BASE``: FM-G-CAM over K classes - the explained class
  first, then the K-1 most probable other classes - with base method BASE (default
  ``grad_cam``); the map evaluated is the explained class's channel of the fused map
  (after filtering, L2 "reference" normalisation, ReLU and joint scaling), i.e. what the
  fused picture shows for that class. ``fm_g_cam:1`` is the single-class map.
- ``fg_cam`` (FG-Grad-CAM), ``fg_cam_d`` (with denoising), ``fg_score_cam``,
  ``fg_score_cam_d``: FG-CAM from ``--cam-layer`` (default the model's default layer)
  down to ``layer`` (a module below it, or ``input``; default ``input``).
- ``lrp``, ``clrp``, ``sglrp``: the LRP baselines at ``layer`` (default ``input``).

Maps at a hidden layer are ReLU-ed and upsampled (the FG-CAM paper's Table 1 to 3
setting). Relevance maps at the input (FG-CAM, LRP) stay signed, as in the paper's
input-layer comparison: pixels are ranked by signed value, and Average Drop keeps only
positive pixels among the top 50 % ("if the positive pixels do not exceed 50 %, keep
only them"); the ``ad_positive_only`` column says when that rule applied.

Exit status: 0 done; 1 done but some rows hold errors (unreadable images, a method that
cannot run); 2 bad arguments; 130 interrupted (rows written so far are kept).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xai_core.errors import UnknownNameError, XaiCoreError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".dcm", ".dicom")
FG_VARIANTS: dict[str, tuple[str, bool]] = {
    "fg_cam": ("grad_cam", False),
    "fg_cam_d": ("grad_cam", True),
    "fg_score_cam": ("score_cam", False),
    "fg_score_cam_d": ("score_cam", True),
}
LRP_VARIANTS = ("lrp", "clrp", "sglrp")
INPUT = "input"

# Metric columns, in the order of MapEvaluation.scores (see xai_core.metrics.evaluate).
METRIC_COLUMNS = (
    "probability",
    "average_drop",
    "average_increase",
    "insertion_auc",
    "deletion_auc",
    "overall",
    "multiplied_change",
    "multiplied_increased",
    "multiplied_drop_percent",
    "top_removed_drop",
    "top_removed_drop_percent",
)
COLUMNS = (
    "model",
    "file",
    "method",
    "layer",
    "target",
    "class_idx",
    "class_name",
    "label",
    "predicted",
    "correct",
    *METRIC_COLUMNS,
    "ad_positive_only",
    "pixels_per_step",
    "map_seconds",
    "metric_seconds",
    "error",
)
EXIT_OK, EXIT_ROW_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

OnRow = Callable[[dict[str, str]], None]


class UsageError(XaiCoreError):
    """A bad command-line argument (exit status 2)."""


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodChoice:
    """One entry of ``--methods``.

    Attributes:
        key: the name written in the CSV (``grad_cam``, ``fm_g_cam:3``, ``fg_cam_d``, ...).
        family: ``"cam"``, ``"fm_g_cam"``, ``"fg_cam"`` or ``"lrp"``.
        base: CAM method key (cam, fm_g_cam), FG-CAM base, or LRP variant.
        k: classes fused (fm_g_cam only).
        denoise: FG-CAM_D.
    """

    key: str
    family: str
    base: str
    k: int = 1
    denoise: bool = False

    @property
    def relevance(self) -> bool:
        """FG-CAM and LRP: signed relevance maps, possible at the input."""
        return self.family in ("fg_cam", "lrp")


def method_keys() -> list[str]:
    """Every method name ``--methods`` accepts (``fm_g_cam`` takes ``:K``)."""
    from xai_core.methods import METHODS

    return [*METHODS, "fm_g_cam:K", *FG_VARIANTS, *LRP_VARIANTS]


def parse_method(text: str) -> MethodChoice:
    """Parse one method name (see the module docstring).

    Raises:
        UsageError: unknown method or a malformed ``fm_g_cam:K[:BASE]``.
    """
    from xai_core.methods import METHODS

    key = text.strip()
    if key in METHODS:
        return MethodChoice(key, "cam", key)
    if key in FG_VARIANTS:
        base, denoise = FG_VARIANTS[key]
        return MethodChoice(key, "fg_cam", base, denoise=denoise)
    if key in LRP_VARIANTS:
        return MethodChoice(key, "lrp", key)
    if key == "fm_g_cam" or key.startswith("fm_g_cam:"):
        parts = key.split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
            raise UsageError(
                f"--methods: {key!r} must be 'fm_g_cam:K' or 'fm_g_cam:K:BASE' with K >= 1 classes fused "
                "(for example fm_g_cam:3 or fm_g_cam:3:layer_cam)."
            )
        base = parts[2] if len(parts) == 3 else "grad_cam"
        if base not in METHODS:
            raise UsageError(str(UnknownNameError("FM-G-CAM base method", base, list(METHODS), hint=f"(in {key!r})")))
        spec = METHODS[base]
        if not spec.class_specific:
            raise UsageError(
                f"--methods: {key!r}: {spec.label} gives the same map for every class; fusing it means nothing."
            )
        canonical = f"fm_g_cam:{int(parts[1])}" + (f":{base}" if base != "grad_cam" else "")
        return MethodChoice(canonical, "fm_g_cam", base, k=int(parts[1]))
    raise UsageError("--methods: " + str(UnknownNameError("method", key, method_keys())))


@dataclass(frozen=True)
class Job:
    """One method at one layer (evaluated on every image)."""

    method: MethodChoice
    layer: str


def parse_jobs(methods: Sequence[str], layers: Sequence[str] | None, model, cam_layer: str) -> list[Job]:
    """Turn ``--methods`` and ``--layers`` into jobs, checking every layer name.

    ``method@layer`` pins the layer for that method; otherwise each method runs at every
    ``--layers`` entry, or at its default (the model's default layer for CAM methods and
    FM-G-CAM; ``input`` for FG-CAM and LRP).

    Raises:
        UsageError: unknown method or layer, or a CAM method asked for at ``input``.
    """
    from xai_core.hooks.layers import resolve_layer

    jobs: list[Job] = []
    for entry in methods:
        name, _, pinned = entry.partition("@")
        choice = parse_method(name)
        if pinned:
            wanted = [pinned.strip()]
        elif layers:
            wanted = list(layers)
        else:
            wanted = [INPUT if choice.relevance else model.spec.default_layer]
        for layer in wanted:
            if layer == INPUT:
                if not choice.relevance:
                    raise UsageError(
                        f"{choice.key} cannot be evaluated at 'input': CAM methods need a feature layer. "
                        f"Pin another layer with {choice.key}@LAYER, or use fg_cam / lrp for input-resolution maps."
                    )
            else:
                try:
                    resolve_layer(model.module, layer)
                except UnknownNameError as exc:
                    raise UsageError(f"--layers: {exc}") from None
                if choice.family == "fg_cam" and layer != cam_layer and layer not in _modules_before(model, cam_layer):
                    raise UsageError(
                        f"{choice.key}: layer {layer!r} does not run before the CAM layer {cam_layer!r}; "
                        "FG-CAM brings the explanation down to a shallower layer or 'input'."
                    )
            job = Job(choice, layer)
            if job not in jobs:
                jobs.append(job)
    if not jobs:
        raise UsageError("--methods is empty; give at least one method.")
    return jobs


def _modules_before(model, layer: str) -> set[str]:
    """Names of the modules whose forward runs before ``layer``'s forward ends."""
    order: list[str] = []
    handles = []
    for name, module in model.module.named_modules():
        if name:
            handles.append(module.register_forward_hook(lambda _m, _i, _o, n=name: order.append(n)))
    try:
        with torch.inference_mode():
            model.module(model.example_input())
    finally:
        for handle in handles:
            handle.remove()
    return set(order[: order.index(layer)]) if layer in order else set()


# ----------------------------------------------------------------------------- images and labels


def list_images(folder: Path) -> list[Path]:
    """Files in ``folder`` (not recursive) with an image suffix, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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


def read_pixels(path: Path, family: str):
    """The image as the model's preprocessing expects it (PIL image, or X-ray pixels)."""
    if family == "xray":
        from xai_core.images import read_xray

        return read_xray(path).pixels
    from xai_core.images import read_image

    return read_image(path)


# ----------------------------------------------------------------------------- maps


class MapMaker:
    """Computes the map of one (method, layer, class) on one image, caching per image.

    FG-Score-CAM's channel weights (one masked forward pass per channel of the CAM
    layer) are computed once per image and class, then shared by every target layer and
    by the denoised variant.
    """

    def __init__(self, model, cam_layer: str, batch_size: int) -> None:
        self.model = model
        self.cam_layer = cam_layer
        self.batch_size = batch_size
        self._score_components: dict[tuple[str, int], torch.Tensor] = {}

    def new_image(self) -> None:
        """Forget the previous image's cached FG-Score-CAM components."""
        self._score_components.clear()

    def __call__(
        self, image, x: torch.Tensor, job: Job, class_idx: int, top: Sequence[int]
    ) -> tuple[torch.Tensor, bool]:
        """Returns ``(map [H, W], signed)``; signed maps are relevance at the input."""
        from xai_core.render.colour import resize_map

        size = tuple(x.shape[-2:])
        m = job.method
        if m.family == "cam":
            from xai_core.api import explain

            exp = explain(
                self.model, image, method=m.base, layer=job.layer, class_idx=[class_idx], **self._params(m.base)
            )
            return torch.from_numpy(np.asarray(exp.saliency(0), dtype=np.float64)), False
        if m.family == "fm_g_cam":
            from xai_core.api import explain

            classes = [class_idx] + [c for c in top if c != class_idx][: m.k - 1]
            exp = explain(self.model, image, method=m.base, layer=job.layer, class_idx=classes, **self._params(m.base))
            fused = exp.fused(len(classes))
            return torch.from_numpy(np.asarray(resize_map(fused.maps[0], size), dtype=np.float64)), False
        if m.family == "fg_cam":
            relevance = self._fg_cam(x, m, job.layer, class_idx)
        else:
            from xai_core.relevance import lrp

            relevance = lrp(
                self.model.module, x, class_idx=[class_idx], variant=m.base, target_layer=job.layer
            ).relevance[0, 0]
        relevance = relevance.detach().to(torch.float64)
        if job.layer == INPUT:
            return relevance, True
        return torch.from_numpy(np.asarray(resize_map(relevance.clamp(min=0), size), dtype=np.float64)), False

    def _params(self, method: str) -> dict[str, object]:
        from xai_core.methods import METHODS

        names = {p.name for p in METHODS[method].params}
        return {"batch_size": self.batch_size} if "batch_size" in names else {}

    def _fg_cam(self, x: torch.Tensor, m: MethodChoice, layer: str, class_idx: int) -> torch.Tensor:
        from xai_core.relevance import denoise_components, fg_cam, propagate_relevance, score_cam_weights

        module = self.model.module
        if m.base == "grad_cam":
            return fg_cam(
                module, x, cam_layer=self.cam_layer, target_layer=layer, class_idx=[class_idx], denoise=m.denoise
            ).relevance[0, 0]
        key = ("d" if m.denoise else "", class_idx)
        if key not in self._score_components:
            plain = ("", class_idx)
            if plain not in self._score_components:
                from xai_core.hooks.capture import capture

                with capture(module, self.cam_layer, grad=False) as cap, torch.inference_mode():
                    module(x)
                acts = cap[self.cam_layer]
                weights = score_cam_weights(
                    module,
                    x,
                    acts,
                    torch.tensor([[class_idx]], device=x.device),
                    probabilities=self.model.probabilities,
                    batch_size=self.batch_size,
                )[0]
                self._score_components[plain] = weights[:, :, None, None] * acts
            if m.denoise:
                self._score_components[key] = denoise_components(self._score_components[plain])
        comps = self._score_components[key]
        if layer == self.cam_layer:
            return comps.sum(dim=1)[0]
        rel = propagate_relevance(module, x, comps[None], start_layer=self.cam_layer, target_layer=layer).relevance
        return rel[0].sum(dim=1)[0]


# ----------------------------------------------------------------------------- CSV


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """Resume key: model, file, method, layer and class (the label, or ``top1``)."""
    cls = row["class_idx"] if row["target"] == "label" else ""
    return (row["model"], row["file"], row["method"], row["layer"], row["target"], cls)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of an evaluation CSV; a last line cut short by an interruption is dropped from the file.

    Raises:
        UsageError: the file is not an evaluation CSV of this version (other columns).
    """
    if not path.exists() or path.stat().st_size == 0:
        return []
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        # Killed in the middle of a row: forget the partial row so it is computed again.
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(cut)
        if cut == 0:
            return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UsageError(
                f"--out {str(path)!r} exists but is not an evaluation CSV with the expected columns "
                f"(found {reader.fieldnames}); choose another --out or delete it."
            )
        return list(reader)


class RowWriter:
    """Appends rows to the CSV, flushing each one (header first when the file is new)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._handle = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, row: dict[str, str]) -> None:
        """Append one row and flush it to disk."""
        self._writer.writerow(row)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------- progress


class ProgressPrinter:
    """Plain-text progress on stderr: one line per row, with rate and time left."""

    def __init__(self, total: int, stream=None, enabled: bool = True) -> None:
        self.total, self.done = total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.start = time.monotonic()

    def step(self, what: str) -> None:
        """Count one finished row and print a line about it."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done)
        width = len(str(self.total))
        pct = 100 * self.done // max(1, self.total)
        print(
            f"[{self.done:>{width}}/{self.total}] {pct:3d}%  {what}  "
            f"elapsed {_duration(elapsed)}, left ~{_duration(left)}",
            file=self.stream,
            flush=True,
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- summary


SUMMARY_METRICS = (
    ("A.D.", "average_drop", "{:.2f}"),
    ("A.I.", "average_increase", "{:.2f}"),
    ("Insertion", "insertion_auc", "{:.4f}"),
    ("Deletion", "deletion_auc", "{:.4f}"),
    ("Overall", "overall", "{:.4f}"),
    ("Mult. incr. %", "multiplied_increased", "{:.1f}"),
    ("Top-25% drop %", "top_removed_drop_percent", "{:.2f}"),
)


def summarise(rows: Iterable[dict[str, str]]) -> str:
    """Markdown table: mean of each metric per model, method and layer, with counts.

    ``A.I.`` and ``Mult. incr. %`` are percentages of images; the others are means.
    """
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["method"], row["layer"]), []).append(row)
    head = ["model", "method", "layer", "images", "errors", "top-1 acc. %", *(h for h, _, _ in SUMMARY_METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, method, layer), items in groups.items():
        ok = [r for r in items if not r["error"]]
        labelled = [r for r in ok if r["correct"] != ""]
        acc = f"{100 * np.mean([r['correct'] == '1' for r in labelled]):.1f}" if labelled else ""
        cells = [model, method, layer, str(len(ok)), str(len(items) - len(ok)), acc]
        for _, column, fmt in SUMMARY_METRICS:
            values = [float(r[column]) for r in ok if r[column] != ""]
            scale = 100.0 if column == "multiplied_increased" else 1.0
            cells.append(fmt.format(scale * float(np.mean(values))) if values else "")
        lines.append("| " + " | ".join(cells) + " |")
    steps = sorted({r["pixels_per_step"] for r in (x for g in groups.values() for x in g) if r["pixels_per_step"]})
    notes = [
        "",
        "A.D. / A.I.: Average Drop / Increase in % (keep the top 50 % of the map, blur the rest; lower A.D., "
        "higher A.I. are better). Insertion / Deletion: AUC of the class probability (higher insertion, lower "
        "deletion are better); Overall = Insertion - Deletion. Mult. incr. %: images whose class probability "
        "rose when the image was multiplied by the map. Top-25% drop %: relative drop when the top 25 % is blurred.",
        "Blur: Gaussian, kernel 11, sigma 5, on the normalised input. Pixels per insertion/deletion step: "
        + (", ".join(steps) if steps else "-")
        + ". Signed input-layer maps (FG-CAM, LRP at 'input'): A.D./A.I. keep only positive pixels of the top 50 %.",
    ]
    return "\n".join(lines + notes) + "\n"


# ----------------------------------------------------------------------------- the run


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UsageError(f"--shard must look like i/n (for example 0/4); got {text!r}.")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need n >= 1 and 0 <= i < n (shards are numbered from 0).")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m xai_core.evaluate",
        description="Score saliency maps of every image in a folder with the faithfulness metrics "
        "(Average Drop/Increase, insertion/deletion, seed 001's checks). Rows go to a CSV as they are "
        "computed; rerunning the same command resumes.",
        epilog="Methods: CAM keys (grad_cam, layer_cam, score_cam, ...), fm_g_cam:K[:BASE], fg_cam, fg_cam_d, "
        "fg_score_cam, fg_score_cam_d, lrp, clrp, sglrp; METHOD@LAYER pins a layer. Labels: --labels CSV "
        "(columns file,label; label = class index or name) or file names NAME__<index or class_name>.EXT. "
        "Exit status: 0 ok, 1 some rows hold errors, 2 bad arguments, 130 interrupted.",
    )
    parser.add_argument("folder", type=Path, help="folder of images (not searched recursively)")
    parser.add_argument("--model", default="efficientnet_lite0", help="model registry key (default efficientnet_lite0)")
    parser.add_argument(
        "--weights", default="default", help="'default', 'random' (untrained) or a state_dict file for --model"
    )
    parser.add_argument("--methods", default="grad_cam", help="comma-separated methods (default grad_cam)")
    parser.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers for every method without @LAYER (default: the model's default layer for "
        "CAM methods, 'input' for FG-CAM and LRP)",
    )
    parser.add_argument("--cam-layer", default=None, help="FG-CAM's CAM layer L (default the model's default layer)")
    parser.add_argument(
        "--target",
        choices=("top1", "label"),
        default="top1",
        help="explain the top-1 prediction (default) or the true label (files without one become error rows)",
    )
    parser.add_argument("--labels", type=Path, default=None, help="CSV with columns file,label")
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N images (sorted by name), before sharding"
    )
    parser.add_argument("--shard", default="0/1", help="i/n: evaluate images i, i+n, i+2n, ... of the sorted list")
    parser.add_argument(
        "--out", type=Path, default=Path("evaluation.csv"), help="CSV of results (summary: same name, .md)"
    )
    parser.add_argument(
        "--pixels-per-step",
        type=int,
        default=None,
        help="insertion/deletion step (default round(H*W/112): the papers' 448 at 224x224)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass in metrics and Score-CAM")
    parser.add_argument("--summary-only", action="store_true", help="only (re)write the summary of --out")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: Sequence[str] | None = None, *, on_row: OnRow | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring).

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
        on_row: called with each row right after it is written (progress hooks, tests).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error
        return int(exc.code or 0)
    try:
        return _run(args, on_row)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\nInterrupted; rows written so far are in {args.out}. Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, on_row: OnRow | None) -> int:
    out: Path = args.out
    summary_path = out.with_suffix(".md")
    if args.summary_only:
        if not out.is_file():
            raise UsageError(f"--summary-only: no CSV at {str(out)!r}.")
        return _write_summary(read_rows(out), summary_path)

    if not args.folder.is_dir():
        raise UsageError(f"folder {str(args.folder)!r} does not exist or is not a directory.")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1; got {args.limit}.")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1; got {args.batch_size}.")
    if args.pixels_per_step is not None and args.pixels_per_step < 1:
        raise UsageError(f"--pixels-per-step must be >= 1; got {args.pixels_per_step}.")
    shard, shards = parse_shard(args.shard)
    methods = [m for m in (s.strip() for s in args.methods.split(",")) if m]
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None

    from xai_core.models.registry import get_spec, load_model

    try:
        get_spec(args.model)
    except UnknownNameError as exc:
        raise UsageError(f"--model: {exc}") from None
    weights = None if args.weights == "random" else args.weights
    if weights not in ("default", None) and not Path(weights).is_file():
        raise UsageError(f"--weights: no such file {weights!r} (or use 'default').")
    try:
        model = load_model(args.model, weights=weights)
    except XaiCoreError as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    cam_layer = args.cam_layer or model.spec.default_layer
    if args.cam_layer:
        from xai_core.hooks.layers import resolve_layer

        try:
            resolve_layer(model.module, cam_layer)
        except UnknownNameError as exc:
            raise UsageError(f"--cam-layer: {exc}") from None
    jobs = parse_jobs(methods, layers, model, cam_layer)
    labels_by_file = read_labels(args.labels, model.labels) if args.labels else {}

    images = list_images(args.folder)
    if not images:
        raise UsageError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(args.folder)!r}.")
    if args.limit is not None:
        images = images[: args.limit]
    images = images[shard::shards]

    existing = read_rows(out)
    step = args.pixels_per_step or _default_step(model)
    other_steps = {r["pixels_per_step"] for r in existing if r["model"] == model.key and r["pixels_per_step"]} - {
        str(step)
    }
    if other_steps:
        raise UsageError(
            f"{str(out)!r} holds rows computed with --pixels-per-step {', '.join(sorted(other_steps))}, not {step}; "
            "use the same setting to resume, or another --out."
        )
    done = {row_key(r) for r in existing}

    plan = []
    for path in images:
        label = labels_by_file.get(path.name)
        if label is None:
            label = label_from_name(path, model.labels)
        todo = [job for job in jobs if _key(model.key, path.name, job, args.target, label) not in done]
        if todo:
            plan.append((path, label, todo))
    total = sum(len(t) for _, _, t in plan)
    skipped = len(images) * len(jobs) - total
    if not args.quiet:
        print(
            f"{len(images)} images x {len(jobs)} method/layer pairs on {model.key} "
            f"(shard {shard}/{shards}): {total} rows to compute, {skipped} already in {out}.",
            file=sys.stderr,
            flush=True,
        )

    progress = ProgressPrinter(total, enabled=not args.quiet)
    maker = MapMaker(model, cam_layer, args.batch_size)
    writer = RowWriter(out)
    errors = 0
    try:
        for path, label, todo in plan:
            for row in _evaluate_image(model, maker, path, label, todo, args, step):
                writer.write(row)
                errors += bool(row["error"])
                progress.step(f"{row['file']}  {row['method']}@{row['layer']}" + ("  ERROR" if row["error"] else ""))
                if on_row is not None:
                    on_row(row)
    finally:
        writer.close()
    _write_summary(read_rows(out), summary_path)
    if errors and not args.quiet:
        print(f"{errors} rows hold errors (see the 'error' column of {out}).", file=sys.stderr)
    return EXIT_ROW_ERRORS if errors else EXIT_OK


def _default_step(model) -> int:
    from xai_core.metrics import default_pixels_per_step

    h, w = model.spec.preprocessing.input_size
    return default_pixels_per_step(h, w)


def _key(model_key: str, file: str, job: Job, target: str, label: int | None) -> tuple[str, ...]:
    cls = str(label) if target == "label" and label is not None else ""
    return (model_key, file, job.method.key, job.layer, target, cls)


def _write_summary(rows: list[dict[str, str]], path: Path) -> int:
    text = summarise(rows)
    path.write_text(text, encoding="utf-8")
    print(text)
    return EXIT_OK


def _evaluate_image(model, maker: MapMaker, path: Path, label: int | None, jobs: list[Job], args, step: int):
    """Rows for one image, one per job (error rows when the image or a method fails)."""
    from xai_core.metrics import average_drop_increase, evaluate_map
    from xai_core.models.preprocess import prepare

    base = {c: "" for c in COLUMNS}
    base.update(model=model.key, file=path.name, target=args.target, pixels_per_step=str(step))
    base["label"] = "" if label is None else str(label)
    maker.new_image()
    try:
        image = read_pixels(path, model.spec.family)
        prepared = prepare(image, model.spec.preprocessing)
        x = prepared.tensor
        probs = model.predict(x)[0]
        top = [int(i) for i in torch.argsort(probs, descending=True)[: max(j.method.k for j in jobs)]]
    except (XaiCoreError, OSError, ValueError) as exc:
        for job in jobs:
            yield {
                **base,
                "method": job.method.key,
                "layer": job.layer,
                "error": _one_line(f"{type(exc).__name__}: {exc}"),
            }
        return
    base["predicted"] = str(top[0])
    base["correct"] = "" if label is None else str(int(label == top[0]))
    for job in jobs:
        row = {**base, "method": job.method.key, "layer": job.layer}
        if args.target == "label" and label is None:
            row["error"] = (
                "no label for this file (give --labels or name it NAME__<class>.EXT), needed by --target label"
            )
            yield row
            continue
        class_idx = label if args.target == "label" else top[0]
        row.update(class_idx=str(class_idx), class_name=model.labels[class_idx])
        try:
            start = time.perf_counter()
            saliency, signed = maker(image, x, job, class_idx, top)
            row["map_seconds"] = f"{time.perf_counter() - start:.2f}"
            start = time.perf_counter()
            ev = evaluate_map(model.predict, x, saliency, class_idx, pixels_per_step=step, batch_size=args.batch_size)
            scores = dict(ev.scores)
            if signed:
                adi = average_drop_increase(
                    model.predict, x, [saliency], class_idx, positive_only=True, batch_size=args.batch_size
                )
                scores["average_drop"], scores["average_increase"] = float(adi.drop[0]), float(adi.average_increase)
            row["metric_seconds"] = f"{time.perf_counter() - start:.2f}"
            row["ad_positive_only"] = "1" if signed else "0"
            row.update({c: _fmt(scores.get(c, float("nan"))) for c in METRIC_COLUMNS})
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing method must not stop a long batch; the row says why
            row["error"] = _one_line(f"{type(exc).__name__}: {exc}")
        yield row


if __name__ == "__main__":
    sys.exit(main())

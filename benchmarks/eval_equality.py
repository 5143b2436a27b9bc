"""Equality of the evaluation's three paths on a real model: per-image, local engine, Ray engine.

On the first ``--images`` images of ``--folder`` (the 16 of ``samples/imagenet``) and the
methods Grad-CAM, FM-G-CAM K=3, FG-CAM to the input and LRP at the input, with full
insertion/deletion curves (the model's default step, 448 pixels at 224 x 224), it computes
the rows of:

- ``old``: the per-image path the command took before it was batched
  (:func:`benchmarks.eval_throughput.old_rows`: one image, one method, one
  :func:`~xai_core.metrics.evaluate_map` at a time, batch-1 maps, default memory format);
- ``local``: ``python -m xai_core.evaluate`` (local engine; the CPU default memory format,
  ``channels_last``);
- ``ray``: the same with ``--engine ray --workers 2`` (a local Ray instance);
- ``contiguous`` (not run unless asked): the local engine with ``--memory-format
  contiguous``, the old path's format, which separates the two causes of the old path's
  differences (memory format; batch composition);

and prints, per method and metric column, the largest absolute difference between each
pair of paths with PASS or FAIL against ``--tolerance`` (1e-6); then the per-image path
against the engines at the tightest tolerances that hold in float32 (``OLD_TOLERANCE``:
it runs other batch sizes, and by default another memory format, so it cannot agree to
1e-6; see docs/reproduction.md). Exit status 0 when the engines in one memory format agree
to ``--tolerance`` and the per-image path to those tolerances (``contiguous`` against
``local`` or ``ray`` is shown, not judged: two memory formats).

Every path runs in a process of its own (as a user runs it: nothing cached by one path
reaches the next), with the same torch thread count (``--threads``, default torch's
default here), on a snapshot of ``xai_core`` taken at the first run, so that code edited
while it runs (or between a run and its resumption) cannot make the paths differ.

The rows are kept under ``--work`` (Parquet parts, as the command writes them), so a rerun
with the same arguments computes only what is missing: an interrupted run resumes, a path
added later is computed alone, and a finished run just prints the comparison again.
``--pixels-per-step 3584`` (15 steps a curve) and ``--images 3`` make a quick run.

Run: ``python -m benchmarks.eval_equality [--images 16] [--pixels-per-step N] [--paths old,local,ray]``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from xai_core.evaluate import key_of, read_rows
from xai_core.evaluate.jobs import list_images
from xai_core.evaluate.store import METRIC_COLUMNS, ResultStore

ROOT = Path(__file__).resolve().parents[1]

METHODS = "grad_cam,fm_g_cam:k=3,fg_cam@input,lrp@input"
PATHS = ("old", "local", "ray", "contiguous")
# Every metric column the paths score (no ROAD: the per-image path has none).
METRICS = tuple(c for c in METRIC_COLUMNS if not c.startswith("road_"))
# The metric columns by unit: a class probability (or an area under one), a percentage, a 0/1 or 0/100 flag.
UNITS = {
    "probability": (
        "probability",
        "insertion_auc",
        "deletion_auc",
        "overall",
        "multiplied_change",
        "top_removed_drop",
    ),
    "percent": ("average_drop", "multiplied_drop_percent", "top_removed_drop_percent"),
    "flags": ("average_increase", "multiplied_increased"),
}
# The per-image path cannot agree with the engines to 1e-6 in float32 (docs/reproduction.md,
# "Equality"): these are the tightest tolerances that held, per unit, on the 16 samples at
# 448 pixels a step (docs/eval_equality.txt), against the engines in the per-image path's
# memory format (``contiguous``) and in the CPU default (``channels_last``: ``local``, ``ray``).
OLD_TOLERANCE = {
    "contiguous": {"probability": 1e-4, "percent": 2e-4, "flags": 0.0},
    "channels_last": {"probability": 3e-3, "percent": 1.5, "flags": 0.0},
}
# Columns that must be equal, not close.
EXACT = ("class_idx", "predicted", "error", "ad_positive_only")
SNAPSHOT = ("xai_core", "benchmarks/__init__.py", "benchmarks/eval_throughput.py", "benchmarks/eval_equality.py")


def code_hash(root: Path) -> str:
    """sha256 of the Python files of ``root/xai_core`` (names and contents), 12 hex digits."""
    digest = hashlib.sha256()
    for path in sorted((root / "xai_core").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def snapshot(src: Path) -> Path:
    """A copy of the code every path runs (made once per work folder, then reused)."""
    if not (src / "done").is_file():
        shutil.rmtree(src, ignore_errors=True)
        for name in SNAPSHOT:
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(ROOT / name, target)
        (src / "done").write_text(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return src


def run_old(args: argparse.Namespace) -> None:
    """The per-image path on the images not yet in ``args.old_into`` (this process is the path)."""
    torch.set_num_threads(args.threads)
    from benchmarks.eval_throughput import old_model, old_rows

    store = ResultStore(args.old_into)
    done = {r["file"] for r in store.rows()}
    files = [f for f in list_images(args.folder)[: args.images] if f.name not in done]
    if files:
        model = old_model(args.model)
        for path in files:
            store.write(old_rows(model, path, args.methods, args.pixels_per_step))  # one part per image


def run_path(path: str, out: Path, src: Path, args: argparse.Namespace) -> None:
    """One path in a process of its own, on the snapshot ``src``; it resumes from ``out``."""
    common = ["--model", args.model, "--methods", args.methods, "--threads", str(args.threads)]
    step = [] if args.pixels_per_step is None else ["--pixels-per-step", str(args.pixels_per_step)]
    if path == "old":
        cmd = [sys.executable, str(src / "benchmarks" / "eval_equality.py"), "--old-into", str(out)]
        cmd += ["--folder", str(args.folder.resolve()), "--images", str(args.images), *common, *step]
    else:
        cmd = [sys.executable, "-m", "xai_core.evaluate", str(args.folder.resolve()), "--out", str(out), "--quiet"]
        cmd += ["--limit", str(args.images), "--batch-size", str(args.batch_size), *common, *step]
        if path == "ray":
            cmd += ["--engine", "ray", "--workers", str(args.workers)]
        if path == "contiguous":
            cmd += ["--memory-format", "contiguous"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{path}: {' '.join(cmd)} exited with status {done.returncode}")


def largest(values) -> float:
    """The largest of ``values``, nan (a missing value) above everything."""
    return max(values, key=lambda d: math.inf if math.isnan(d) else d)


def compare(a: list[dict], b: list[dict], methods: list[str]) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Largest |a - b| per (method, metric column) over rows with the same key, and what did not match exactly."""
    ka, kb = {key_of(r): r for r in a}, {key_of(r): r for r in b}
    problems = []
    if set(ka) != set(kb):
        problems.append(f"{len(set(ka) ^ set(kb))} row keys in only one of the two")
    diffs: dict[tuple[str, str], float] = {}
    for key in sorted(set(ka) & set(kb)):
        ra, rb = ka[key], kb[key]
        problems += [f"{key[1]} {key[2]}: {c} {ra[c]!r} != {rb[c]!r}" for c in EXACT if ra[c] != rb[c]]
        for column in METRICS:
            va, vb = ra[column], rb[column]
            d = math.nan if va is None or vb is None else abs(va - vb)
            old = diffs.get((key[2], column), 0.0)
            diffs[(key[2], column)] = math.nan if math.isnan(d) or math.isnan(old) else max(old, d)
    return {(m, c): diffs.get((m, c), math.nan) for m in methods for c in METRICS}, problems


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "samples" / "imagenet")
    parser.add_argument("--images", type=int, default=16, help="first N images of the folder, by name (16)")
    parser.add_argument("--methods", default=METHODS, help=f"(default {METHODS})")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument(
        "--pixels-per-step", type=int, default=None, help="insertion/deletion step (default the model's: 448)"
    )
    parser.add_argument("--paths", default="old,local,ray", help=f"paths to run and compare ({', '.join(PATHS)})")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (2)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch of the engines (16)")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads of every path (torch's default)"
    )
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest difference that passes (1e-6)")
    parser.add_argument("--work", type=Path, default=None, help="where the rows are kept (default: a folder in tmp)")
    parser.add_argument("--fresh", action="store_true", help="discard the rows and code snapshot under --work first")
    parser.add_argument("--old-into", type=Path, default=None, help=argparse.SUPPRESS)  # the old path's process
    args = parser.parse_args()
    if args.old_into is not None:
        run_old(args)
        return
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PATHS)})")
    step = "default" if args.pixels_per_step is None else str(args.pixels_per_step)
    work = args.work or Path(tempfile.gettempdir()) / "eval_equality" / f"{args.model}-{args.images}-{step}"
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    src = snapshot(work / "src")
    methods = [m.partition("@")[0] for m in args.methods.split(",")]
    n_images = len(list_images(args.folder)[: args.images])
    ours, now = code_hash(src), code_hash(ROOT)
    print(
        f"{n_images} images of {args.folder.name} x {len(methods)} methods ({args.methods}) on {args.model}, "
        f"pixels per step: {step}; torch {torch.__version__}, {args.threads} threads in every path; "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    print(
        f"rows kept in {work}; code: xai_core snapshot {ours} of {(src / 'done').read_text()} "
        f"({'the same as' if ours == now else 'differs from'} the checkout's now)",
        flush=True,
    )
    rows: dict[str, list[dict]] = {}
    for path in paths:
        start, out = time.perf_counter(), work / path
        before = len(read_rows([out])) if out.is_dir() else 0
        print(f"  {path}: running ({time.strftime('%H:%M UTC', time.gmtime())})", flush=True)
        run_path(path, out, src, args)
        rows[path] = read_rows([out])
        seconds = time.perf_counter() - start
        print(f"  {path}: {len(rows[path])} rows ({len(rows[path]) - before} computed in {seconds:.0f} s)", flush=True)

    pairs = list(itertools.combinations(paths, 2))
    results = {pair: compare(rows[pair[0]], rows[pair[1]], methods) for pair in pairs}
    tol = args.tolerance
    print()
    print(f"Largest |difference| over the images, per method and metric column (PASS: <= {tol:.0e})")
    print()
    names = [f"{a} vs {b}" for a, b in pairs]
    print("| method | column | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(pairs))
    for method in methods:
        for column in METRICS:
            cells = []
            for pair in pairs:
                d = results[pair][0][(method, column)]
                cells.append(f"{d:.1e} {'PASS' if d <= tol else 'FAIL'}")
            print(f"| {method} | {column} | " + " | ".join(cells) + " |")
    print()
    verdicts = []
    for pair, name in zip(pairs, names, strict=True):
        diffs, problems = results[pair]
        worst = max(diffs.values(), key=lambda d: math.inf if math.isnan(d) else d)
        column = max(diffs, key=lambda k: math.inf if math.isnan(diffs[k]) else diffs[k])
        ok = not problems and worst <= tol
        # Only paths with the same arithmetic must agree to --tolerance: the engines in one
        # memory format; the per-image path is judged below, engines in two formats not at all.
        formats_differ = "contiguous" in pair and bool(set(pair) & {"local", "ray"})
        if not formats_differ:
            verdicts.append((pair, ok))
        print(
            f"{name}: largest difference {worst:.2e} ({column[0]}, {column[1]}); "
            f"{'identical' if worst == 0 and not problems else 'different'}; "
            f"{'PASS' if ok else 'FAIL'} at {tol:.0e}"
            + (" (two memory formats: shown, not judged)" if formats_differ else "")
        )
        for problem in problems[:10]:
            print(f"    not equal: {problem}")
        by_unit = []
        for unit, columns in UNITS.items():
            by_unit.append(f"{unit} {largest(diffs[(m, c)] for m in methods for c in columns):.1e}")
        print(f"    largest per unit: {'; '.join(by_unit)}")
    old_pairs = [(pair, name) for pair, name in zip(pairs, names, strict=True) if "old" in pair]
    if old_pairs:
        print()
        print("The per-image path against the engines, at the tightest tolerances that hold in float32:")
        verdicts = [(pair, ok) for pair, ok in verdicts if "old" not in pair]
    for pair, name in old_pairs:
        diffs, problems = results[pair]
        fmt = "contiguous" if "contiguous" in pair else "channels_last"
        cells, ok = [], not problems
        for unit, columns in UNITS.items():
            worst = largest(diffs[(m, c)] for m in methods for c in columns)
            tol_unit = OLD_TOLERANCE[fmt][unit]
            ok = ok and worst <= tol_unit
            cells.append(f"{unit} {worst:.1e} <= {tol_unit:g}: {'PASS' if worst <= tol_unit else 'FAIL'}")
        verdicts.append((pair, ok))
        print(f"{name} ({fmt}): {'; '.join(cells)}")
    sys.exit(0 if all(ok for _, ok in verdicts) else 1)


if __name__ == "__main__":
    main_cli()

"""One command for a GPU check (issue 20): tests, batches, the evaluation, peers, one summary.

``benchmarks/gpu_check.sh [FOLDER] [--quick] [--device cuda] [--images N]`` runs, each part
in a process of its own with a time limit (about 6 minutes in all on a CUDA GPU):

1. the CUDA tests (``tests/test_devices.py``, ``tests/test_gpu.py``, ``tests/test_registry.py
   -k cuda``, the metrics' device test); on a machine without CUDA they skip;
2. ``benchmarks/batch.py`` at batch 1, 8, 32 and 128 (ratios to the batched floor);
3. the peak memory of one pass at batch 1, 64 and 512 against the budget's estimate (CUDA only);
4. the evaluation (``python -m xai_core.evaluate``) of FOLDER (default ``samples/imagenet``)
   with Grad-CAM, FM-G-CAM K=3, FG-CAM, LRP and SGLRP at the input: rows per second, and
   per method the median ``map_seconds`` and ``metric_seconds`` of a row;
5. ``benchmarks/peer_ratio.py`` (Grad-CAM and Score-CAM against torchcam and
   pytorch-grad-cam) where those are installed; it runs on the CPU;
6. ``benchmarks/single_image.py``: Grad-CAM on one image, eager against a replayed CUDA
   graph (``accelerate="cuda_graph"``), with the maps compared (CUDA only).

It ends with one summary: each target of issue 20 with the number measured and
``met`` / ``NOT MET`` / ``not run``. ``--quick`` runs every part small (CPU CI: a few
images, one round) to show the check works; its numbers are not the targets' conditions.
Needs torch and the project's requirements; not Streamlit or Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Multiplies every part's time limit: 1 on a GPU; ``--quick`` sets 4 (a CPU shared by other jobs is slow).
SLACK = {"value": 1.0}
METHODS = "grad_cam,fm_g_cam:k=3,fg_cam@input,lrp@input,sglrp@input"


@dataclass
class Target:
    """One goal of the issue: what is measured, the limit, the value found (None: not run)."""

    name: str
    limit: str
    value: float | None
    ok: bool | None
    shown: str = ""

    def line(self) -> str:
        """The summary line."""
        verdict = "not run" if self.ok is None else ("met" if self.ok else "NOT MET")
        shown = self.shown or ("-" if self.value is None else f"{self.value:.2f}")
        return f"| {self.name} | {self.limit} | {shown} | {verdict} |"


def _run(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, str, float]:
    """Run ``cmd`` in the repository root; returns (exit status or None on timeout, output, seconds)."""
    timeout *= SLACK["value"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    start = time.perf_counter()
    print(f"$ {' '.join(cmd)}", flush=True)
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += f"\n[timed out after {timeout:.0f} s]"
    seconds = time.perf_counter() - start
    log.write_text(out, encoding="utf-8")
    tail = "\n".join(out.strip().splitlines()[-3:])
    print(f"  ({seconds:.0f} s, exit {code}) {tail}", flush=True)
    return code, out, seconds


def tests(py: str, quick: bool, logs: Path) -> tuple[str, bool | None]:
    """The CUDA tests: ``N passed, M skipped`` and whether none failed."""
    if quick:
        cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_devices.py", "-k", "cuda"]
    else:
        cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "tests/test_devices.py"]
        cmd += ["tests/test_gpu.py", "tests/test_registry.py", "tests/test_metrics.py"]
        cmd += ["-k", "cuda or gpu or device or budget or chunk"]
    code, out, _ = _run(cmd, 240, logs / "tests.log")
    found = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", out)
    counts = ", ".join(f"{n} {what}" for n, what in found if what != "deselected") or "no result"
    return counts, None if code is None else code == 0


def batches(py: str, device: str, quick: bool, logs: Path) -> dict[tuple[str, int], dict]:
    """``benchmarks/batch.py``'s table: (case, batch) -> ms_per_image, x_floor."""
    out_json = logs / "batch.json"
    sizes, rounds = ("1,2", "1") if quick else ("1,8,32,128", "5")
    cmd = [py, "-m", "benchmarks.batch", "--device", device, "--batches", sizes, "--rounds", rounds]
    _run([*cmd, "--json", str(out_json)], 150, logs / "batch.log")
    if not out_json.is_file():
        return {}
    return {(r["case"], r["batch"]): r for r in json.loads(out_json.read_text())["rows"]}


def memory(py: str, device: str, quick: bool, logs: Path) -> str:
    """Peak CUDA memory of one pass per image at batch 1, 64 and 512 (``--memory-probe``)."""
    if not device.startswith("cuda"):
        return "not run (CUDA only)"
    sizes = "1,8" if quick else "1,64,512"
    code, out, _ = _run([py, __file__, "--memory-probe", device, "--sizes", sizes], 90, logs / "memory.log")
    lines = [line for line in out.splitlines() if line.startswith("memory:")]
    return "; ".join(line[len("memory: ") :] for line in lines) if lines else f"failed (exit {code})"


def memory_probe(device: str, sizes: list[int]) -> None:
    """Print the peak memory per image of Grad-CAM and FG-CAM passes, and the budget's estimate."""
    import math

    import torch

    import xai_core as xc
    from xai_core.api import images_per_pass

    model = xc.load_model("efficientnet_lite0", device=device)
    shapes = [math.prod(layer.shape) for layer in model.layers]
    estimate = 4 * (2 * sum(shapes) + max(shapes))
    print(f"memory: estimate {estimate / 1e6:.0f} MB/image, default chunk {images_per_pass(model, 1)} images")
    for method in ("grad_cam", "fg_cam"):
        for n in sizes:
            x = torch.rand(n, 3, *model.spec.preprocessing.input_size, device=model.device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            try:
                xc.explain(model, x, method=method, top_k=1, max_batch=n)
                peak = (torch.cuda.max_memory_allocated() - base) / n / 1e6
                print(f"memory: {method} batch {n} {peak:.0f} MB/image")
            except torch.cuda.OutOfMemoryError:
                print(f"memory: {method} batch {n} out of memory")
            del x
            torch.cuda.empty_cache()


def evaluation(py: str, folder: Path, device: str, images: int, quick: bool, logs: Path) -> dict:
    """Rows per second of the evaluation, and per method the median map and metric seconds of a row."""
    out = Path(tempfile.mkdtemp(prefix="gpu_check_eval_"))
    cmd = [py, "-m", "xai_core.evaluate", str(folder), "--methods", METHODS, "--device", device]
    cmd += ["--limit", str(images), "--out", str(out / "results"), "--quiet"]
    if quick:
        cmd += ["--batch-size", "2", "--pixels-per-step", "12544"]  # 4 points a curve: shows it runs
    else:
        cmd += ["--batch-size", "64", "--forward-batch", "512", "--loader-workers", str(min(6, os.cpu_count() or 1))]
    code, _, seconds = _run(cmd, 240, logs / "evaluate.log")
    result: dict = {"exit": code, "seconds": seconds}
    try:
        from xai_core.evaluate import read_rows

        rows = read_rows([out / "results"]) if (out / "results").is_dir() else []
    finally:
        shutil.rmtree(out, ignore_errors=True)
    good = [r for r in rows if not r.get("error")]
    result["rows"], result["errors"] = len(rows), len(rows) - len(good)
    result["rows_per_s"] = len(rows) / seconds if rows else None
    per: dict[str, tuple[float, float]] = {}
    for method in sorted({r["method"] for r in good}):
        mine = [r for r in good if r["method"] == method]
        per[method] = (
            statistics.median(r["map_seconds"] for r in mine),
            statistics.median(r["metric_seconds"] for r in mine),
        )
    result["per_method"] = per
    return result


def peers(py: str, quick: bool, logs: Path) -> list[tuple[str, str, float]]:
    """``benchmarks/peer_ratio.py``'s ratios (ours / peer) where a peer is installed."""
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("torchcam", "pytorch_grad_cam")):
        return []
    only = "grad_cam" if quick else "grad_cam,score_cam"
    cmd = [py, "-m", "benchmarks.peer_ratio", "--only", only, "--images", "1" if quick else "2", "--settle", "0"]
    _, out, _ = _run(cmd, 120, logs / "peers.log")
    found = []
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(torchcam|pytorch-grad-cam)\s+[\d.]+\s+[\d.]+\s+([\d.]+)", line)
        if m:
            found.append((m.group(1), m.group(2), float(m.group(3))))
    return found


def single_image(py: str, device: str, quick: bool, logs: Path) -> dict[str, dict]:
    """``benchmarks/single_image.py``'s rows by case (floor, eager, cuda_graph); empty off CUDA."""
    if not device.startswith("cuda"):
        return {}
    out_json = logs / "single_image.json"
    cmd = [py, "-m", "benchmarks.single_image", "--device", device, "--rounds", "5" if quick else "50"]
    _run([*cmd, "--json", str(out_json)], 120, logs / "single_image.log")
    if not out_json.is_file():
        return {}
    return {r["case"]: r for r in json.loads(out_json.read_text())["rows"]}


def _batch_one(table: dict, single: dict) -> Target:
    """The batch-1 target: Grad-CAM through a replayed CUDA graph (eager and the floor shown beside it)."""
    name, limit = "Grad-CAM at batch 1, ms", "<= 3 ms"
    graphed = single.get("cuda_graph")
    if graphed is None:
        b1 = table.get(("grad_cam", 1))
        here = "" if b1 is None else f"; eager here {b1['ms_per_image']:.1f} ms"
        return Target(name, limit, None, None, f"not run (CUDA graphs: CUDA only{here})")
    ms = graphed["ms"]
    shown = f"graphed {ms:.2f} (eager {single['eager']['ms']:.2f}, floor {single['floor']['ms']:.2f})"
    if graphed["max_rel_diff"] is not None:
        shown += f", maps vs eager {graphed['max_rel_diff']:.0e}, same classes {graphed['same_classes']}"
    return Target(name, limit, ms, ms <= 3.0 and bool(graphed["same_classes"]), shown)


def summary(
    device: str,
    quick: bool,
    test: tuple[str, bool | None],
    table: dict,
    mem: str,
    ev: dict,
    peer: list,
    images: int,
    single: dict | None = None,
) -> str:
    """The printed summary: each target with its number and verdict."""

    def ratio(case: str, limit: float, name: str) -> Target:
        got = {b: r["x_floor"] for (c, b), r in table.items() if c == case}
        if not got:
            return Target(name, f"<= {limit:.2f}x", None, None)
        worst = max(got.values())
        shown = " / ".join(f"b{b} {v:.2f}" for b, v in sorted(got.items()))
        return Target(name, f"<= {limit:.2f}x", worst, worst <= limit, shown)

    targets = [
        Target("CUDA tests", "all pass", None, test[1], test[0]),
        ratio("grad_cam", 1.10, "Grad-CAM / floor, every batch"),
        ratio("fm_g_cam K=5", 1.15, "FM-G-CAM K=5 / floor, every batch"),
        ratio("fg_cam to input", 4.0, "FG-CAM to the input / floor"),
    ]
    targets.append(_batch_one(table, single or {}))
    rps = ev.get("rows_per_s")
    shown = (
        "-" if rps is None else f"{rps:.1f} rows/s ({ev['rows']} rows, {ev['errors']} errors, {ev['seconds']:.0f} s)"
    )
    targets.append(Target("evaluation, 5 methods", ">= 42 rows/s", rps, None if rps is None else rps >= 42, shown))
    if peer:
        worst = max(r for _, _, r in peer)
        shown = ", ".join(f"{k} vs {p} {r:.2f}" for k, p, r in peer)
        targets.append(Target("ours / peer (peer_ratio.py, CPU)", "<= 1", worst, worst <= 1.0, shown))
    else:
        targets.append(Target("ours / peer", "<= 1", None, None, "no peer installed"))
    lines = [
        "",
        f"## GPU check summary ({'quick: small sizes, not the targets conditions' if quick else 'full'})",
        f"device {device}; evaluation on {images} images x 5 methods",
        "",
        "| target | limit | measured | verdict |",
        "|---|---|---|---|",
        *[t.line() for t in targets],
        "",
        f"memory of a pass: {mem}",
    ]
    for method, (maps, metrics) in ev.get("per_method", {}).items():
        lines.append(f"evaluation {method}: map {1000 * maps:.1f} ms/row, metrics {1000 * metrics:.1f} ms/row")
    if rps:
        lines.append(f"1,000 images x 5 methods at this rate: {5000 / rps:.0f} s (target <= 120 s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "samples" / "imagenet")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--quick", action="store_true", help="every part, small (CPU CI)")
    parser.add_argument("--images", type=int, default=None, help="images evaluated (default 400, quick 2)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1,64,512", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe, [int(s) for s in args.sizes.split(",")])
        return 0
    import torch

    SLACK["value"] = 4.0 if args.quick else 1.0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    images = args.images or (2 if args.quick else 400)
    py = sys.executable
    logs = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    print(f"# GPU check on {device} (logs in {logs})", flush=True)
    if device.startswith("cuda"):
        print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    test = tests(py, args.quick, logs)
    table = batches(py, device, args.quick, logs)
    mem = memory(py, device, args.quick, logs)
    ev = evaluation(py, args.folder, device, images, args.quick, logs)
    peer = peers(py, args.quick, logs)
    single = single_image(py, device, args.quick, logs)
    print(summary(device, args.quick, test, table, mem, ev, peer, images, single), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

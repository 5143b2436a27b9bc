"""One image fast: Grad-CAM at batch 1, eager against a CUDA graph (and ``torch.compile``).

Cases, interleaved round after round on one prepared sample image (``xc.explain`` of a
``[1, 3, H, W]`` tensor on the device, top-1, as ``benchmarks/batch.py``'s ``grad_cam``):

- floor: one forward pass with the layer captured plus one backward pass of the top-1
  logit to it (``benchmarks/batch.py``'s floor, eager);
- eager: ``accelerate="off"``;
- cuda_graph: ``accelerate="cuda_graph"`` (CUDA only; the capture happens in the warm-up);
- compile: ``accelerate="compile"`` (with ``--compile``; the first call compiles).

The first call of each case is timed apart (column ``first s``: a capture, a compile).

Then each accelerated case's maps against eager on every sample image: the largest
``|fast - eager| / max |eager|`` and whether the classes agree. Goal (issue 20): Grad-CAM at
batch 1 in at most 3 ms on a GPU.

Run: ``python -m benchmarks.single_image [--device cuda] [--rounds 50] [--compile] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import xai_core as xc
from benchmarks.batch import _floor, _images, _sync, interleaved

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="also time accelerate='compile' (slow first call)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON (gpu_check reads it)")
    args = parser.parse_args(argv)

    model = xc.load_model(args.model, device=args.device)
    layer = model.spec.default_layer
    device = model.device
    print(f"# {model.spec.label}, layer {layer}, device {device}, torch {torch.__version__}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, rounds {args.rounds}")
    modes = ["off"] + (["cuda_graph"] if device.type == "cuda" else []) + (["compile"] if args.compile else [])
    cases = {"floor": lambda x: _floor(model, layer, x)}
    for mode in modes:
        cases["eager" if mode == "off" else mode] = lambda x, mode=mode: xc.explain(
            model, x, method="grad_cam", top_k=1, accelerate=mode
        )
    x = _images(model, 1)
    notes, first = {}, {}
    for name, fn in cases.items():  # warm-up: kernels chosen, graphs captured, code compiled
        _sync(device)
        t0 = time.perf_counter()
        out = fn(x)
        _sync(device)
        first[name] = time.perf_counter() - t0
        for _ in range(2):
            out = fn(x)
        if name not in ("floor", "eager"):
            notes[name] = out[0].path_note
            if out[0].path != name:
                print(f"# {name} ran eager: {out[0].path_note}")
    times = interleaved(cases, x, args.rounds, device)
    rows = []
    print(f"\n{'case':14s} {'first s':>8s} {'ms':>8s} {'x eager':>8s} {'max rel diff':>13s} {'classes':>8s}")
    eager_ms = 1000 * statistics.median(times["eager"])
    everything = _images(model, len(sorted((ROOT / "samples" / "imagenet").glob("*.*"))))
    for name, ts in times.items():
        ms = 1000 * statistics.median(ts)
        diff, same = None, None
        if name not in ("floor", "eager"):
            diff, same = 0.0, True
            for i in range(len(everything)):
                one = everything[i : i + 1]
                ref = xc.explain(model, one, method="grad_cam", top_k=1)[0]
                fast = xc.explain(model, one, method="grad_cam", top_k=1, accelerate=name)[0]
                same = same and fast.class_idx == ref.class_idx and fast.path == name
                diff = max(diff, float((fast.cams - ref.cams).abs().max() / ref.cams.abs().max().clamp(min=1e-30)))
        row = {"case": name, "first_s": first[name], "ms": ms, "x_eager": ms / eager_ms}
        rows.append({**row, "max_rel_diff": diff, "same_classes": same})
        shown = "-" if diff is None else f"{diff:.1e}"
        same_shown = "-" if same is None else str(same)
        print(f"{name:14s} {first[name]:8.2f} {ms:8.2f} {ms / eager_ms:8.2f} {shown:>13s} {same_shown:>8s}")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": str(device), "rows": rows, "notes": notes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

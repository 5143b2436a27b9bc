"""Batched explanations: images per second at batch 1, 8 and 32, as ratios to the batched floor.

For each batch size, every case runs on the same batch, interleaved round after round
(a change in machine load hits every case alike); the table gives the median per round.

- floor: one forward pass of the batch with the explained layer captured, plus one
  backward pass of each image's top-1 logit to that layer (what any gradient CAM must do),
  in the memory format ``xai_core.explain`` chooses for that batch;
- Grad-CAM (top-1), FM-G-CAM with K = 5 (one batched backward of 5 rows), FG-CAM from
  the CAM layer down to the input (top-1), through ``xai_core.explain``;
- the plain forward pass in both memory formats, to show why batches run in ``channels_last``.

Goals (issue 10): Grad-CAM <= 1.05x and FM-G-CAM K=5 <= 1.10x the floor at every batch
size; on the CPU, batch 32 at least as many images per second as batch 1.

Run: ``python -m benchmarks.batch [--model efficientnet_lite0] [--device cuda] [--rounds 5] [--batches 1,8,32]
[--json FILE]``.
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
from xai_core.api import _memory_format
from xai_core.hooks.capture import capture

ROOT = Path(__file__).resolve().parents[1]


def _images(model: xc.LoadedModel, n: int) -> torch.Tensor:
    files = sorted((ROOT / "samples" / "imagenet").glob("*.*"))
    prepared = [xc.prepare(xc.read_image(f), model.spec.preprocessing).tensor for f in files]
    return torch.cat([prepared[i % len(prepared)] for i in range(n)]).to(model.device)


def _floor(model: xc.LoadedModel, layer: str, x: torch.Tensor) -> None:
    x = _memory_format(x, xc.get_explainer("grad_cam"))
    with capture(model.module, layer) as cap:
        logits = model.module(x)
        top = logits.max(dim=1).values
        torch.autograd.grad(top.sum(), cap[layer])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(cases: dict, x: torch.Tensor, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each case ``fn(x)`` per round, the cases interleaved round after round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            _sync(device)
            t0 = time.perf_counter()
            fn(x)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--no-fgcam", action="store_true", help="skip FG-CAM (slow on the CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON (gpu_check.sh reads it)")
    args = parser.parse_args()

    model = xc.load_model(args.model, device=args.device)
    layer = model.spec.default_layer
    device = model.device
    print(f"# {model.spec.label}, layer {layer}, device {device}, torch {torch.__version__}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, rounds {args.rounds}")
    batches = [int(b) for b in args.batches.split(",")]
    cases = {
        "floor": lambda x: _floor(model, layer, x),
        "grad_cam": lambda x: xc.explain(model, x, method="grad_cam", top_k=1, max_batch=len(x)),
        "fm_g_cam K=5": lambda x: [
            e.fused(5) for e in xc.explain(model, x, method="grad_cam", top_k=5, max_batch=len(x))
        ],
        "forward (default format)": lambda x: _forward(model, x.contiguous()),
        "forward (channels_last)": lambda x: _forward(model, x.contiguous(memory_format=torch.channels_last)),
    }
    if not args.no_fgcam:
        cases["fg_cam to input"] = lambda x: xc.explain(model, x, method="fg_cam", top_k=1, max_batch=len(x))
    per_image: dict[tuple[str, int], float] = {}
    table: list[dict] = []
    for b in batches:
        x = _images(model, b)
        for fn in cases.values():  # warm-up
            fn(x)
        times = interleaved(cases, x, args.rounds, device)
        floor = statistics.median(times["floor"])
        print(f"\n## batch {b}")
        print(f"{'case':28s} {'ms/image':>10s} {'images/s':>10s} {'x floor':>8s}")
        for name, ts in times.items():
            med = statistics.median(ts)
            per_image[(name, b)] = med / b
            table.append({"case": name, "batch": b, "ms_per_image": med / b * 1000, "x_floor": med / floor})
            print(f"{name:28s} {med / b * 1000:10.1f} {b / med:10.2f} {med / floor:8.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": str(device), "rows": table}, indent=1))
    if 1 in batches and len(batches) > 1:
        print("\n## throughput against batch 1 (images/s ratio)")
        for name in cases:
            ratios = "  ".join(f"b{b}: {per_image[(name, 1)] / per_image[(name, b)]:.2f}x" for b in batches if b != 1)
            print(f"{name:28s} {ratios}")


def _forward(model: xc.LoadedModel, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model.module(x)


if __name__ == "__main__":
    main()

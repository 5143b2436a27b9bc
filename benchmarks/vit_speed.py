"""Vision transformers on the CPU: Grad-CAM, FM-G-CAM K=5 and AttnLRP as ratios to their floors.

ViT-S/16 (timm ``vit_small_patch16_224``, random weights: speed does not depend on them)
at batch 1 and 32; every case runs on the same batch, interleaved round after round, and
the table gives the median per round.

- CAM floor: one forward pass with the default layer (``blocks.11.norm1``) captured as a
  map, plus one backward pass of each image's top-1 logit to that layer: what any
  gradient CAM must do. Grad-CAM (top-1) and FM-G-CAM K=5 (one batched backward of 5
  rows) are measured against it.
- input floor: one forward pass with the input differentiable plus one backward pass of
  the top-1 logit to the input: what any gradient x input relevance must do (AttnLRP,
  top-1, against it).

Goal (issue 21): Grad-CAM <= 1.10x its floor.

Run: ``python -m benchmarks.vit_speed [--rounds 3] [--batches 1,32] [--threads N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import xai_core as xc
from xai_core.hooks.capture import capture

ROOT = Path(__file__).resolve().parents[1]


def _cam_floor(model: xc.LoadedModel, layer: str, x: torch.Tensor) -> None:
    with capture(model.module, layer) as cap:
        logits = model.module(x)
        torch.autograd.grad(logits.max(dim=1).values.sum(), cap[layer])


def _input_floor(model: xc.LoadedModel, x: torch.Tensor) -> None:
    module = model.module
    flags = [p.requires_grad for p in module.parameters()]
    try:
        for p in module.parameters():
            p.requires_grad_(False)
        xg = x.detach().clone().requires_grad_(True)
        logits = module(xg)
        torch.autograd.grad(logits.max(dim=1).values.sum(), xg)
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="timm:vit_small_patch16_224")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = xc.build_model(args.model, weights=None)
    layer = model.spec.default_layer
    print(f"# {model.spec.label} (random weights), layer {layer}, torch {torch.__version__}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, rounds {args.rounds}")
    cases = {
        "CAM floor": lambda x: _cam_floor(model, layer, x),
        "grad_cam": lambda x: xc.explain(model, x, method="grad_cam", top_k=1, max_batch=len(x)),
        "fm_g_cam K=5": lambda x: [
            e.fused(5) for e in xc.explain(model, x, method="grad_cam", top_k=5, max_batch=len(x))
        ],
        "input floor": lambda x: _input_floor(model, x),
        "attn_lrp": lambda x: xc.explain(model, x, method="attn_lrp", top_k=1, max_batch=len(x)),
    }
    floors = {"grad_cam": "CAM floor", "fm_g_cam K=5": "CAM floor", "attn_lrp": "input floor"}
    h, w = model.spec.preprocessing.input_size
    for b in [int(v) for v in args.batches.split(",")]:
        torch.manual_seed(0)
        x = torch.randn(b, 3, h, w)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for fn in cases.values():  # warm-up
            fn(x)
        for _ in range(args.rounds):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        print(f"\n## batch {b}")
        print(f"{'case':16s} {'ms/image':>10s} {'x floor':>8s}  floor")
        for name, t in med.items():
            ratio = f"{t / med[floors[name]]:8.2f}  {floors[name]}" if name in floors else f"{'':8s}"
            print(f"{name:16s} {t / b * 1000:10.1f} {ratio}")


if __name__ == "__main__":
    main()

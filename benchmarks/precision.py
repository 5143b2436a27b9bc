"""Mixed precision against float32: how far bf16/fp16 autocast maps are from the fp32 maps.

For each sample image (top-1 class, the model's default layer) and each method, prints the
median and worst of: the largest absolute difference relative to the fp32 map's largest
absolute value, and the correlation of the two maps. fp16 autocast runs only where the
device supports it (CUDA); bf16 runs on the CPU too.

Run: ``python -m benchmarks.precision [--device cpu] [--methods grad_cam,layer_cam]`` (CAM-family methods and
FM-G-CAM: relevance methods always run in float32).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

import xai_core as xc

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="grad_cam,grad_cam_pp,layer_cam,fm_g_cam")
    args = parser.parse_args()
    model = xc.load_model(args.model, device=args.device)
    files = sorted(p for p in (ROOT / "samples" / "imagenet").iterdir() if p.is_file())
    images = [xc.read_image(p) for p in files]
    precisions = ["bf16"] + (["fp16"] if model.device.type == "cuda" else [])
    print(f"# {model.spec.label} on {model.device}, {len(images)} images, top-1 class")
    print(
        f"{'method':12s} {'precision':9s} {'rel. max diff (median / worst)':>32s} {'correlation (median / worst)':>30s}"
    )
    for method in args.methods.split(","):
        full = xc.explain(model, images, method=method, top_k=1, max_batch=8)
        for precision in precisions:
            low = xc.explain(
                model,
                images,
                method=method,
                class_idx=[list(e.class_idx) for e in full],
                precision=precision,
                max_batch=8,
            )
            rel, corr = [], []
            for a, b in zip(full, low):
                fa, fb = a.cams[0].numpy().ravel(), b.cams[0].numpy().ravel()
                rel.append(float(np.abs(fa - fb).max() / (np.abs(fa).max() + 1e-12)))
                corr.append(float(np.corrcoef(fa, fb)[0, 1]))
            print(
                f"{method:12s} {precision:9s} {statistics.median(rel):15.4f} / {max(rel):.4f}"
                f" {statistics.median(corr):19.5f} / {min(corr):.5f}"
            )


if __name__ == "__main__":
    main()

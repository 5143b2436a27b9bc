"""Does upsampling CAMs at the measured receptive-field centres change the faithfulness numbers?

On the sample images with the model's real weights: each method's top-1 map at its
default layer, upsampled the usual way (bilinear, unit ``i`` at the centre of its
stride cell) and at the measured centres (:func:`xai_core.trust.upsample.aligned_resize`
with :func:`xai_core.hooks.geometry.receptive_field`'s offset; 15.5 px on
EfficientNet-Lite0); insertion, deletion and Overall (insertion - deletion) of both
(:func:`xai_core.metrics.evaluate_maps`, default settings), mean over images and the
per-image mean difference.

Run: ``python -m benchmarks.aligned_upsampling [--images 16] [--methods grad_cam,layer_cam] [--threads 1]
[--pixels-per-step 448]`` (one torch thread by default: on a shared machine the run then costs
CPU time rather than contended wall time; 448 px per step is 112 steps at 224 px).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import xai_core as xc
from xai_core.metrics import evaluate_maps
from xai_core.trust.upsample import aligned_resize, unit_offset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--methods", default="grad_cam")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pixels-per-step", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = xc.load_model(args.model)
    files = sorted(p for p in (ROOT / "samples" / "imagenet").iterdir() if p.is_file())[: args.images]
    images = [xc.read_image(p) for p in files]
    offset, stride = unit_offset(model)
    print(
        f"# {model.spec.label}, {len(images)} samples, layer {model.spec.default_layer}: "
        f"stride {stride}, offset {offset}"
    )
    print("| method | upsampling | insertion | deletion | Overall | Overall aligned - naive (mean, min, max) |")
    print("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        exps = xc.explain(model, images, method=method, top_k=1)
        x = torch.cat([e.prepared.tensor for e in exps])
        classes = [e.class_idx[0] for e in exps]
        cams = torch.stack([e.cams[0] for e in exps]).float().clamp(min=0)
        size = tuple(x.shape[-2:])
        naive = F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        aligned = aligned_resize(cams, size, offset, stride)
        results = {}
        for name, maps in (("naive", naive), ("aligned", aligned)):
            ev = evaluate_maps(
                model.predict, x, maps, classes, pixels_per_step=args.pixels_per_step, batch_size=args.batch_size
            )
            results[name] = ev.scores
            s = ev.scores
            print(
                f"| {method} | {name} | {np.mean(s['insertion_auc']):.4f} | {np.mean(s['deletion_auc']):.4f} "
                f"| {np.mean(s['overall']):.4f} | |",
                flush=True,
            )
        d = results["aligned"]["overall"] - results["naive"]["overall"]
        print(f"| {method} | difference | | | | {d.mean():+.4f} ({d.min():+.4f}, {d.max():+.4f}) |", flush=True)


if __name__ == "__main__":
    main()

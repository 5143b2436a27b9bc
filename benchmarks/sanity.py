"""Cascading model-parameter randomisation on a real model: the Adebayo et al. (2018) curve.

For each method, the maps of the model's top-1 class on the sample images are compared
(Spearman rank correlation of the absolute maps, the paper's main curve; also signed,
SSIM and HOG) with the maps after the layers are re-initialised from the output down,
cumulatively (:func:`xai_core.trust.sanity.model_randomisation`, Quantus's order and
seed). Every layer is randomised in turn; maps are compared after the block groups named
in the header (after the classifier, the head convolution, chosen blocks, the stem).

Run: ``python -m benchmarks.sanity [--images 16] [--blocks 15,12,9,6,3,0] [--methods grad_cam,lrp] [--threads 1]``

``--threads`` defaults to 1: on a shared machine torch's default (one thread per core) spent
four times the CPU time for the same maps (44 s of CPU against 12 s for Guided Grad-CAM on
8 images x 9 checkpoints, its threads waiting on each other), and the wall time followed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import xai_core as xc
from xai_core.trust.sanity import model_randomisation, randomisable_layers

ROOT = Path(__file__).resolve().parents[1]

METHODS = "grad_cam,guided_backprop,guided_grad_cam,fg_cam,lrp,fm_g_cam"


def checkpoints(names: list[str], blocks: list[str]) -> tuple[list[str], list[str]]:
    """Per group (classifier, head, each chosen block, stem): the last layer the cascade randomises in it."""
    walk = names[::-1]
    groups: list[tuple[str, str]] = []
    for name in walk:
        parts = name.split(".")
        group = ".".join(parts[:2]) if len(parts) > 1 and "blocks" in parts[0] else name
        if group in ("_bn1", "_conv_head"):
            group = "head"
        elif group in ("_bn0", "_conv_stem"):
            group = "stem"
        if groups and groups[-1][0] == group:
            groups[-1] = (group, name)
        else:
            groups.append((group, name))
    keep = [(g, n) for g, n in groups if "blocks" not in g or g.split(".")[-1] in blocks]
    return [g for g, _ in keep], [n for _, n in keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--blocks", default="15,12,9,6,3,0")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = xc.load_model(args.model)
    files = sorted(p for p in (ROOT / "samples" / "imagenet").iterdir() if p.is_file())[: args.images]
    images = [xc.read_image(p) for p in files]
    names = randomisable_layers(model.module)
    groups, steps = checkpoints(names, args.blocks.split(","))
    print(
        f"# {model.spec.label}, {len(images)} sample images, top-1 class, {len(names)} randomisable layers, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    print("# cascade from the output; columns: after randomising " + ", ".join(groups))
    header = "| method | similarity | original | " + " | ".join(groups) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for method in args.methods.split(","):
        began = time.perf_counter()
        result = model_randomisation(model, images, method, layers=steps, seed=args.seed, max_batch=16)
        seconds = time.perf_counter() - began
        for sim in ("spearman_abs", "spearman", "ssim", "hog"):
            curve = " | ".join(f"{v:.3f}" for v in result.mean(sim))
            print(f"| {method} | {sim} | 1.000 | {curve} |", flush=True)
        spread = np.nanstd(result.scores["spearman_abs"][-1])
        print(f"# {method}: {seconds:.0f} s; spread (std over images) of the last |Spearman| {spread:.3f}", flush=True)


if __name__ == "__main__":
    main()

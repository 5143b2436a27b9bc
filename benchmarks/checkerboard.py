"""Stride checkerboard of relevance maps, and what removing it costs: rule sets side by side.

EfficientNet-Lite0 with its real ImageNet weights (offline), the images in
``samples/imagenet``, the top-1 class. For FG-CAM (Grad-CAM base at the model's layer,
brought to the input) and LRP under each rule set (``authors``, ``canonized``, ``crisp``):

- checkerboard: :func:`xai_core.metrics.checkerboard_score` of the signed input map, the
  share of its spectral energy within one bin of the stride-2 and stride-4 frequencies
  (DC neighbourhood excluded), median (min..max) over the images; references: the photos
  themselves (channel mean) and Grad-CAM upsampled bilinearly;
- kept: relevance at the input over relevance at the start (FG-CAM: the components'
  sum; LRP: the logit), median;
- faithfulness (``--faithfulness``): insertion, deletion and Overall (insertion - deletion)
  of each map as the comparison page scores it (``Explanation.saliency(0)``: ReLU,
  min-max; :func:`xai_core.metrics.evaluate_maps`, ``--pixels-per-step`` px per step),
  mean over the images;
- known ground truth (``--ground-truth``): the tiny CNN of :mod:`xai_core.trust.synthetic`
  (its first convolution has stride 2), pointing game and mass in the object of FG-CAM
  and LRP under each rule set on ``--n-test`` held-out images.

Run: ``python -m benchmarks.checkerboard [--faithfulness] [--ground-truth] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import xai_core as xc
from xai_core.metrics import checkerboard_score, evaluate_maps
from xai_core.trust import synthetic

ROOT = Path(__file__).resolve().parents[1]
RULES = ("authors", "canonized", "crisp")
METHODS = ("fg_cam", "lrp")
EXTENSIONS = {".jpg", ".jpeg", ".png"}


def _summary(values) -> str:
    v = [float(a) for a in values]
    return f"{statistics.median(v):.4f} ({min(v):.4f}..{max(v):.4f})"


def _explain(model, images, method: str, rules: str | None, **kw) -> list[xc.Explanation]:
    params = {} if rules is None else {"rules": rules}
    return xc.explain(model, images, method=method, **params, **kw)


def spectral_table(model, images, x, methods=METHODS, rule_sets=RULES) -> dict:
    """Checkerboard and kept per method and rule set; returns the explanations for reuse."""
    print("| map | checkerboard, median (min..max) | kept, median |")
    print("|---|---|---|")
    print(f"| the photos (channel mean) | {_summary(checkerboard_score(x.mean(1).numpy()))} | |")
    grad = _explain(model, images, "grad_cam", None, top_k=1)
    up = torch.stack([torch.from_numpy(np.asarray(e.saliency(0))) for e in grad])
    print(f"| Grad-CAM, upsampled | {_summary(checkerboard_score(up.numpy()))} | |", flush=True)
    classes = [[e.class_idx[0]] for e in grad]
    out = {}
    for method in methods:
        for rules in rule_sets:
            exps = _explain(model, images, method, rules, class_idx=classes)
            maps = torch.stack([e.cams[0] for e in exps]).float()
            out[method, rules] = exps
            kept = ""
            if method == "lrp":
                logits = torch.stack([model.module(e.prepared.tensor)[0, c[0]] for e, c in zip(exps, classes)])
                kept = f"{statistics.median((maps.flatten(1).sum(1) / logits.detach()).tolist()):.3f}"
            print(f"| {method}, {rules} | {_summary(checkerboard_score(maps.numpy()))} | {kept} |", flush=True)
    return out


def faithfulness_table(model, x, explained: dict, pixels_per_step: int, batch_size: int) -> None:
    """Insertion, deletion, Overall per method and rule set (mean over the images)."""
    print(f"\n| map | insertion | deletion | Overall | ({pixels_per_step} px per step) |")
    print("|---|---|---|---|---|")
    for (method, rules), exps in explained.items():
        began = time.perf_counter()
        maps = torch.stack([torch.from_numpy(np.asarray(e.saliency(0))) for e in exps])
        classes = [e.class_idx[0] for e in exps]
        ev = evaluate_maps(model.predict, x, maps, classes, pixels_per_step=pixels_per_step, batch_size=batch_size)
        s = ev.scores
        print(
            f"| {method}, {rules} | {np.mean(s['insertion_auc']):.4f} | {np.mean(s['deletion_auc']):.4f} "
            f"| {np.mean(s['overall']):.4f} | {time.perf_counter() - began:.0f} s |",
            flush=True,
        )


def ground_truth_table(args: argparse.Namespace) -> None:
    """Pointing game and mass in the object on the synthetic benchmark, per method and rule set."""
    x, y, _ = synthetic.make_dataset(1600, seed=args.seed)
    xt, yt, mt = synthetic.make_dataset(args.n_test, seed=args.seed + 1)
    model = synthetic.train_tiny_cnn(x, y, seed=args.seed, epochs=10, threads=args.threads)
    print(
        f"\n# tiny CNN (first conv stride 2): test accuracy {synthetic.accuracy(model, xt, yt):.3f}; "
        f"{args.n_test} test images; object share (chance) {synthetic.chance(mt):.3f}"
    )
    print("| map | pointing game | mass in object | checkerboard (stride 2), median |")
    print("|---|---|---|---|")
    classes = [[int(c)] for c in yt]
    for method in METHODS:
        for rules in RULES:
            exps = _explain(model, xt, method, rules, class_idx=classes, max_batch=64)
            cams = torch.stack([e.cams[0] for e in exps]).float()
            maps = F.interpolate(cams[:, None], size=tuple(xt.shape[-2:]), mode="bilinear")[:, 0]
            loc = synthetic.localisation(maps.numpy(), mt)
            cb = float(np.median(checkerboard_score(cams.numpy(), strides=(2,))))
            print(f"| {method}, {rules} | {loc.pointing_game:.3f} | {loc.mass_in_object:.3f} | {cb:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "samples" / "imagenet")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--faithfulness", action="store_true")
    parser.add_argument("--ground-truth", action="store_true")
    parser.add_argument("--spectral-only", action="store_true", help="skip the Lite0 tables (with --ground-truth)")
    parser.add_argument("--pixels-per-step", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS), help="of fg_cam,lrp (Lite0 tables)")
    parser.add_argument("--rules", default=",".join(RULES), help="rule sets (Lite0 tables)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.spectral_only:
        model = xc.load_model("efficientnet_lite0")
        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in EXTENSIONS)
        images = [xc.read_image(p) for p in files]
        x = torch.cat([xc.prepare(im, model.spec.preprocessing).tensor for im in images])
        print(f"# EfficientNet-Lite0 (real weights), {len(files)} images from {args.images.name}, top-1 class")
        explained = spectral_table(model, images, x, args.methods.split(","), args.rules.split(","))
        if args.faithfulness:
            faithfulness_table(model, x, explained, args.pixels_per_step, args.batch_size)
    if args.ground_truth:
        ground_truth_table(args)


if __name__ == "__main__":
    main()

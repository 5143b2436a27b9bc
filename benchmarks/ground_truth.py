"""Localisation against known ground truth: pointing game and mass in the object, per method.

Trains the tiny CNN of :mod:`xai_core.trust.synthetic` on seeded images (one class object
among distractors), then for every registered method that runs on it: the pointing game
and the mean share of positive map mass inside the class object, on held-out images;
for maps at a layer's resolution both with the usual bilinear upsampling and at the
measured receptive-field centres (:func:`xai_core.trust.upsample.aligned_resize`). The
data-randomisation check: the same model trained on shuffled labels, its pointing game and
the Spearman correlation of its maps with the trained model's.

Run: ``python -m benchmarks.ground_truth [--n-test 200] [--n-slow 40] [--methods grad_cam,lrp]``
(slow methods, the registry's ``slow`` flag, run on the first ``--n-slow`` test images).

``--vit`` trains the tiny ViT of :func:`xai_core.trust.synthetic.train_tiny_vit` instead
(4000 training images, 8 epochs by default) and scores Grad-CAM on tokens (the default
token layer) and the transformer-native methods: pointing game and mass in the object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import xai_core as xc
from xai_core.trust import synthetic
from xai_core.trust.similarity import spearman
from xai_core.trust.upsample import aligned_resize, unit_offset

ROOT = Path(__file__).resolve().parents[1]


def maps_of(model, x, method, classes, offset, stride):
    """``(naive, aligned)`` maps ``[N, H, W]`` at input resolution (aligned None: input-size maps, no offset)."""
    exps = xc.explain(model, x, method=method, class_idx=[[int(c)] for c in classes], max_batch=64)
    cams = torch.stack([e.cams[0] for e in exps]).float()
    size = tuple(x.shape[-2:])
    if tuple(cams.shape[-2:]) == size:
        return cams.numpy(), None
    naive = F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return naive.numpy(), None if offset is None else aligned_resize(cams, size, offset, stride).numpy()


VIT_METHODS = "grad_cam,hires_cam,layer_cam,attention_rollout,chefer,legrad,attn_lrp,fg_attn_lrp"


def main_vit(args: argparse.Namespace) -> None:
    """The ``--vit`` table: the tiny ViT's localisation per method."""
    n_train = args.n_train or 4000
    epochs = args.epochs or 8
    x, y, _ = synthetic.make_dataset(n_train, seed=args.seed)
    xt, yt, mt = synthetic.make_dataset(args.n_test, seed=args.seed + 1)
    began = time.perf_counter()
    model = synthetic.train_tiny_vit(x, y, seed=args.seed, epochs=epochs, threads=args.threads)
    took = time.perf_counter() - began
    keep = mt.reshape(len(mt), -1).any(1)
    print(
        f"# tiny ViT (timm VisionTransformer, patch 8, dim 48, depth 3, 4 heads): {n_train} training images, "
        f"{epochs} epochs, trained in {took:.0f} s ({args.threads} thread); test accuracy "
        f"{synthetic.accuracy(model, xt, yt):.3f} (majority class {float(torch.bincount(yt).max()) / len(yt):.3f}); "
        f"{int(keep.sum())} of {args.n_test} test images have an object; chance {synthetic.chance(mt):.3f}"
    )
    print(f"# Grad-CAM layer (default token layer): {model.spec.default_layer}")
    print("| method | n | pointing game | mass in object | s |")
    print("|---|---|---|---|---|")
    for key in [k for k in (args.methods or VIT_METHODS).split(",") if k]:
        began = time.perf_counter()
        try:
            maps, _ = maps_of(model, xt, key, yt, None, None)
        except xc.XaiCoreError as err:
            print(f"| {key} | - | does not run here: {err} |")
            continue
        loc = synthetic.localisation(maps, mt)
        print(
            f"| {key} | {loc.n} | {loc.pointing_game:.3f} | {loc.mass_in_object:.3f} "
            f"| {time.perf_counter() - began:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=0, help="default 1600 (CNN), 4000 (--vit)")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-slow", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=0, help="default 10 (CNN), 8 (--vit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default="", help="comma-separated keys (default: every registered method)")
    parser.add_argument("--vit", action="store_true", help="the tiny ViT and the transformer-native methods")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.vit:
        main_vit(args)
        return
    args.n_train = args.n_train or 1600
    args.epochs = args.epochs or 10
    x, y, _ = synthetic.make_dataset(args.n_train, seed=args.seed)
    xt, yt, mt = synthetic.make_dataset(args.n_test, seed=args.seed + 1)
    began = time.perf_counter()
    model = synthetic.train_tiny_cnn(x, y, seed=args.seed, epochs=args.epochs, threads=args.threads)
    took = time.perf_counter() - began
    shuffled = synthetic.train_tiny_cnn(
        x, y, seed=args.seed, epochs=args.epochs, threads=args.threads, shuffle_labels=True
    )
    offset, stride = unit_offset(model)
    keep = mt.reshape(len(mt), -1).any(1)
    print(
        f"# tiny CNN: {args.n_train} training images, {args.epochs} epochs, trained in {took:.0f} s "
        f"({args.threads} thread); test accuracy {synthetic.accuracy(model, xt, yt):.3f} "
        f"(shuffled-label model {synthetic.accuracy(shuffled, xt, yt):.3f}); {int(keep.sum())} of {args.n_test} "
        f"test images have an object; object share of the image (chance) {synthetic.chance(mt):.3f}"
    )
    print(f"# CAM layer {model.spec.default_layer}: stride {stride}, measured receptive-field offset {offset} px")
    print(
        "| method | n | pointing game | mass in object | aligned: pointing | aligned: mass "
        "| shuffled labels: pointing | Spearman trained vs shuffled | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    wanted = [k for k in args.methods.split(",") if k] or [e.key for e in xc.list_explainers()]
    for key in wanted:
        spec = xc.get_explainer(key)
        n = min(args.n_slow, args.n_test) if spec.slow else args.n_test
        began = time.perf_counter()
        try:
            naive, aligned = maps_of(model, xt[:n], key, yt[:n], offset, stride)
            shuf, _ = maps_of(shuffled, xt[:n], key, yt[:n], offset, stride)
        except xc.XaiCoreError as err:
            print(f"| {key} | - | does not run here: {err} |")
            continue
        seconds = time.perf_counter() - began
        loc = synthetic.localisation(naive, mt[:n])
        al = synthetic.localisation(aligned, mt[:n]) if aligned is not None else None
        sh = synthetic.localisation(shuf, mt[:n])
        rho = float(np.nanmean(spearman(naive[keep[:n].numpy()], shuf[keep[:n].numpy()])))
        al_cells = f"{al.pointing_game:.3f} | {al.mass_in_object:.3f}" if al else "(input) | (input)"
        print(
            f"| {key} | {loc.n} | {loc.pointing_game:.3f} | {loc.mass_in_object:.3f} | {al_cells} "
            f"| {sh.pointing_game:.3f} | {rho:.3f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Render the fine-grained fused FG-CAM map (and the per-class maps) of a sample as PNG files.

The same calls the classification page makes (:func:`xai_core.explain`,
:func:`xai_core.explain_fine`, :meth:`Explanation.fused` with the page's percentile,
:func:`xai_core.render_fused_relevance`), for looking at the map without a browser.

Run: ``python -m scripts.fgcam_fused_screens --image samples/imagenet/cat_dog.png --out /tmp/x.png
[--rules crisp] [--k 3]``; ``--find-class 690`` picks the sample whose top-1 class is 690 (oxcart).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import xai_core as xc
from xai_core.render.relevance import DEFAULT_PERCENTILE, relevance_limit, render_relevance

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Render one sample's fine-grained fused map (and per-class maps) to a PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--find-class", type=int)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rules", default=None)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--per-class", action="store_true", help="also the per-class maps, side by side")
    args = parser.parse_args()
    model = xc.load_model("efficientnet_lite0")
    path = args.image
    if args.find_class is not None:
        for p in sorted((ROOT / "samples" / "imagenet").iterdir()):
            if xc.explain(model, xc.read_image(p), method="grad_cam", top_k=1).class_idx[0] == args.find_class:
                path = p
                break
    exp = xc.explain(model, xc.read_image(path), method="grad_cam", top_k=args.k)
    params = {} if args.rules is None else {"rules": args.rules}
    fine = xc.explain_fine(model, exp, **params)
    fused = fine.fused(args.k, normalise="off", clip_percentile=DEFAULT_PERCENTILE)
    panels = [exp.prepared.view, xc.render_fused_relevance(fine, fused, percentile=DEFAULT_PERCENTILE)]
    if args.per_class:
        stack = np.asarray(fine.cams.detach().cpu())
        limit = relevance_limit(stack, percentile=DEFAULT_PERCENTILE)
        panels += [render_relevance(stack[i], limit=limit) for i in range(len(stack))]
    Image.fromarray(np.concatenate([np.asarray(p, dtype=np.uint8) for p in panels], axis=1)).save(args.out)
    print(path.name, [f"{name} {p:.2f}" for _, name, p in exp.predictions[: args.k]], "->", args.out)


if __name__ == "__main__":
    main()

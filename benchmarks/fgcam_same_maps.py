"""Relevance maps of the rule sets on EfficientNet-Lite0, saved or compared (speed work keeps the maps).

``python -m benchmarks.fgcam_same_maps --save maps.pt`` on one version of the code, then
``python -m benchmarks.fgcam_same_maps --compare maps.pt`` on another: prints, per case, the
largest absolute difference as a fraction of the map's largest absolute value (float
rounding: about 1e-7). Cases: FG-CAM K = 1 and 3 to the input and to ``_blocks.4``, LRP and
SGLRP, every registered rule set, real Lite0 weights on two sample photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

import xai_core as xc
from xai_core.models.preprocess import prepare
from xai_core.relevance import RULE_SETS, fg_cam, lrp


def maps() -> dict[str, torch.Tensor]:
    """Case name -> relevance map."""
    loaded = xc.load_model("efficientnet_lite0")
    net = loaded.module
    root = Path(__file__).resolve().parent.parent / "samples" / "imagenet"
    photos = sorted(root.glob("*.jpg"))[:2]
    out: dict[str, torch.Tensor] = {}
    for photo in photos:
        x = prepare(Image.open(photo), loaded.spec.preprocessing).tensor
        for rules in RULE_SETS:
            for target in ("input", "_blocks.4"):
                for k in (1, 3):
                    r = fg_cam(net, x, cam_layer="_head_act", target_layer=target, class_idx=[1, 2, 3][:k], rules=rules)
                    out[f"{photo.stem} fgcam {rules} {target} K={k}"] = r.relevance
            for variant in ("lrp", "sglrp"):
                r = lrp(net, x, class_idx=[1], variant=variant, rules=rules)
                out[f"{photo.stem} {variant} {rules}"] = r.relevance
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    now = maps()
    if args.save:
        torch.save(now, args.save)
        print(f"saved {len(now)} maps to {args.save}")
        return
    before = torch.load(args.compare)
    worst = 0.0
    for name, r in now.items():
        ref = before[name]
        rel = float((r - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
        worst = max(worst, rel)
        print(f"{name:<45} max |diff| / max |map| = {rel:.2e}")
    print(f"largest: {worst:.2e} over {len(now)} maps")


if __name__ == "__main__":
    main()

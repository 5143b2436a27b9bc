"""FG-CAM evidence on real weights: how much relevance survives and where it lands.

EfficientNet-Lite0 with its real ImageNet weights (offline), the ImageNet sample images
in ``samples/imagenet``, the top-1 class, Grad-CAM base at ``--cam-layer``. For each
target (the input, ``_blocks.4``, ``_blocks.10``) and each rule set it prints, as
medians (min..max) over the images:

- kept: ``sum(FG-CAM map at the target) / sum(components)``, the share of the
  components' total relevance that reaches the target (1 = conserved);
- corr: Pearson correlation of the target map, average-pooled to the CAM's grid, with
  the Grad-CAM map (the components summed over channels, signed) it refines;
- corr+: the same with both maps' negative parts set to 0 (the usual ReLU'd Grad-CAM);
- corr@rf: as corr, with the map pooled over cells centred on the CAM units' receptive
  fields instead of the naive grid (``xai_core.hooks.geometry.receptive_field``: on Lite0
  the fields sit 15.5 pixels below and right of their cells, TF "same" padding).

``authors`` is the official code's rule set (BatchNorm as identity, today's default
before issue 12); ``canonized`` keeps the evidence, ``crisp`` (the default) also removes
the stride checkerboard. Printed, not asserted.

Run: ``python -m benchmarks.fgcam_quality [--cam-layer _head_act] [--threads 2] [--targets L1,L2,...]``
(``--targets _conv_head,_blocks.15._depthwise_conv,_blocks.15._expand_conv,_blocks.14,input`` traces
where the correlation is lost).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

import xai_core
from xai_core.hooks.geometry import receptive_field
from xai_core.relevance import RULE_SETS, fg_cam

ROOT = Path(__file__).resolve().parents[1]

TARGETS = ("input", "_blocks.4", "_blocks.10")
EXTENSIONS = {".jpg", ".jpeg", ".png"}


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation of ``[N, d]`` tensors."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def _load_batch(model: xai_core.LoadedModel, folder: Path) -> tuple[list[str], torch.Tensor]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
    tensors = [xai_core.prepare(xai_core.read_image(p), model.spec.preprocessing).tensor for p in files]
    return [p.name for p in files], torch.cat(tensors)


def _shifted(fine: torch.Tensor, offset: tuple[float, float]) -> torch.Tensor:
    """``fine`` ``[N, H, W]`` moved up/left by ``offset`` pixels (bilinear, zeros shifted in)."""
    n, h, w = fine.shape
    theta = torch.tensor([[1.0, 0.0, 2 * offset[1] / w], [0.0, 1.0, 2 * offset[0] / h]]).expand(n, 2, 3)
    grid = F.affine_grid(theta.to(fine), [n, 1, h, w], align_corners=False)
    return F.grid_sample(fine[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


def _summary(values: torch.Tensor) -> str:
    v = values.tolist()
    return f"{statistics.median(v):6.3f} ({min(v):6.3f}..{max(v):6.3f})"


def measure(
    model: torch.nn.Module, x: torch.Tensor, cam_layer: str, rules: str, targets: tuple[str, ...] = TARGETS
) -> dict[str, dict[str, torch.Tensor]]:
    """Per target: kept, corr, corr+ and corr@rf per image (tensors of length N)."""
    top1 = lambda logits: logits.argmax(dim=1, keepdim=True)  # noqa: E731 - the classes of this forward pass
    cam = fg_cam(model, x, cam_layer=cam_layer, target_layer=cam_layer, class_idx=top1, rules=rules)
    grad_cam = cam.relevance[:, 0]  # [N, h, w], signed channel sum of the components
    total = grad_cam.flatten(1).sum(1)
    cam_rf = receptive_field(model, x[:1], cam_layer)
    out = {}
    for target in targets:
        res = fg_cam(model, x, cam_layer=cam_layer, target_layer=target, class_idx=cam.class_idx, rules=rules)
        fine = res.relevance[:, 0]
        pooled = F.adaptive_avg_pool2d(fine[:, None], grad_cam.shape[-2:])[:, 0]
        # The target's own units are offset too: move by the CAM's offset less the target's.
        own = (0.0, 0.0) if target == "input" else receptive_field(model, x[:1], target).offset
        scale = x.shape[-1] / fine.shape[-1]
        shift = ((cam_rf.offset[0] - own[0]) / scale, (cam_rf.offset[1] - own[1]) / scale)
        aligned = F.adaptive_avg_pool2d(_shifted(fine, shift)[:, None], grad_cam.shape[-2:])[:, 0]
        out[target] = {
            "kept": fine.flatten(1).sum(1) / total,
            "corr": _pearson(pooled.flatten(1), grad_cam.flatten(1)),
            "corr+": _pearson(pooled.clamp_min(0).flatten(1), grad_cam.clamp_min(0).flatten(1)),
            "corr@rf": _pearson(aligned.flatten(1), grad_cam.flatten(1)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cam-layer", default="_head_act")
    parser.add_argument("--images", type=Path, default=ROOT / "samples" / "imagenet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated target layers (any module between the input and the CAM layer, or 'input')",
    )
    args = parser.parse_args()
    targets = tuple(t for t in args.targets.split(",") if t)
    torch.set_num_threads(args.threads)
    model = xai_core.load_model("efficientnet_lite0")
    names, x = _load_batch(model, args.images)
    print(f"EfficientNet-Lite0 (real weights), {len(names)} images from {args.images}, top-1 class, ")
    print(f"Grad-CAM base at {args.cam_layer}; median (min..max) over the images")
    results = {rules: measure(model.module, x, args.cam_layer, rules, targets) for rules in reversed(RULE_SETS)}
    header = f"{'target':<11} {'metric':<7} " + " ".join(f"{r:<26}" for r in results)
    print(header)
    for target in targets:
        for metric in ("kept", "corr", "corr+", "corr@rf"):
            row = " ".join(f"{_summary(results[r][target][metric]):<26}" for r in results)
            print(f"{target:<11} {metric:<7} {row}")


if __name__ == "__main__":
    main()

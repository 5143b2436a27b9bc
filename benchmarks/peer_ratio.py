"""Our time as a ratio to each peer's, for every method both we and a peer have.

    python -m benchmarks.peer_ratio [--images 3] [--rounds 1] [--threads 0] [--settle 0.3]
                                    [--skip-slow] [--only fem,xgrad_cam,...]

One interleaved run (:func:`benchmarks.harness.interleave`): every case on image 1, then
every case on image 2, ...; each ratio is the median over images of our time / the
peer's time on the same image (paired), so machine load hits both alike. ``--rounds R``
goes over the images R times in that order (the median is then over images x rounds):
on a shared machine one load spike on one of two images moves a 2-sample median by
several x, so ratios near 1 need more rounds. ``--settle`` idles before each timed call
(BLAS threads a NumPy-based peer leaves spinning would slow the next case).

Same model (EfficientNet-Lite0, real weights), same layer, same images, the top class.
Gradient and activation methods explain ``_head_act`` (1280 channels); the masked-pass
methods (whose cost grows with the channels) explain ``_blocks.3._bn2`` (40 channels) with
few samples, the same settings on both sides. Goal: every ratio <= 1.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from benchmarks.harness import Case, interleave, paired_ratio, requires_grad_setup

os.environ.setdefault("TQDM_DISABLE", "1")
SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "imagenet")

HEAD, MASKED = "_head_act", "_blocks.3._bn2"
# our registry key -> [(peer, peer class, our parameters, peer constructor kwargs, peer call kwargs, layer)]
PGC, TC = "pytorch-grad-cam", "torchcam"
PAIRS: dict[str, list[tuple]] = {
    "grad_cam": [(PGC, "GradCAM", {}, {}, {}, HEAD), (TC, "GradCAM", {}, {}, {}, HEAD)],
    "grad_cam_pp": [(PGC, "GradCAMPlusPlus", {}, {}, {}, HEAD), (TC, "GradCAMpp", {}, {}, {}, HEAD)],
    "xgrad_cam": [(PGC, "XGradCAM", {}, {}, {}, HEAD), (TC, "XGradCAM", {}, {}, {}, HEAD)],
    "hires_cam": [(PGC, "HiResCAM", {}, {}, {}, HEAD)],
    "layer_cam": [(PGC, "LayerCAM", {}, {}, {}, HEAD), (TC, "LayerCAM", {}, {}, {}, HEAD)],
    "eigen_cam": [(PGC, "EigenCAM", {}, {}, {}, HEAD)],
    "eigen_grad_cam": [(PGC, "EigenGradCAM", {}, {}, {}, HEAD)],
    "kpca_cam": [(PGC, "KPCA_CAM", {}, {}, {}, HEAD)],
    "grad_cam_elementwise": [(PGC, "GradCAMElementWise", {}, {}, {}, HEAD)],
    "shapley_cam": [(PGC, "ShapleyCAM", {}, {}, {}, HEAD)],
    "fem": [(PGC, "FEM", {}, {}, {}, HEAD)],
    "random_cam": [(PGC, "RandomCAM", {}, {}, {}, HEAD)],
    "finer_cam": [
        (PGC, "FinerCAM", {"comparison": "probability"}, {}, {}, HEAD),
        (TC, "FinerCAM", {"alpha": 0.6}, {}, {}, HEAD),
    ],
    "fullgrad": [(PGC, "FullGrad", {}, {}, {}, HEAD)],
    "guided_backprop": [(PGC, "GuidedBackprop", {}, {}, {}, HEAD)],
    "smooth_grad_cam_pp": [(TC, "SmoothGradCAMpp", {}, {}, {}, HEAD)],
    "grad_cam+eigen_smooth": [(PGC, "GradCAM", {"eigen_smooth": True}, {}, {"eigen_smooth": True}, HEAD)],
    "grad_cam+aug_smooth": [(PGC, "GradCAM", {"aug_smooth": True}, {}, {"aug_smooth": True}, HEAD)],
    "score_cam": [
        (PGC, "ScoreCAM", {"variant": "logit_softmax"}, {}, {}, MASKED),
        (TC, "ScoreCAM", {}, {}, {}, MASKED),
    ],
    "ablation_cam": [(PGC, "AblationCAM", {}, {}, {}, MASKED)],
    "ss_cam": [(TC, "SSCAM", {"num_samples": 2}, {"num_samples": 2}, {}, MASKED)],
    "is_cam": [(TC, "ISCAM", {"num_samples": 3}, {"num_samples": 3}, {}, MASKED)],
}


def ours_case(model, key: str, params: dict, layer: str) -> Case:
    import xai_core as xc

    method = key.split("+")[0]

    def run(x: torch.Tensor):
        return xc.explain(model, x, method=method, layer=layer, top_k=1, **params)[0].cams

    return Case(f"ours {key}", run)


def pgc_case(module, layer_name: str, cls_name: str, init: dict, call: dict) -> Case:
    import pytorch_grad_cam as pgc

    layer = module.get_submodule(layer_name)
    if cls_name == "GuidedBackprop":
        from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel

        copy_ = copy.deepcopy(module)  # it rewrites the model's ReLUs

        def run_gb(x: torch.Tensor):
            return GuidedBackpropReLUModel(copy_, device="cpu")(x.clone(), target_category=None)

        return Case(f"{PGC} {cls_name}", run_gb, setup=requires_grad_setup(copy_))
    cls = getattr(pgc, cls_name)

    def run(x: torch.Tensor):
        try:
            with cls(model=module, target_layers=[] if cls_name == "FullGrad" else [layer], **init) as cam:
                if cls_name == "FinerCAM":
                    return cam(x)[0]
                return cam(input_tensor=x, targets=None, **call)[0]
        finally:
            _put_back(module, layer_name, layer)  # its Ablation-CAM swaps the layer and may not swap it back

    return Case(f"{PGC} {cls_name}", run, setup=requires_grad_setup(module))


def _put_back(model, name: str, layer) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if getattr(parent, child) is not layer:
        setattr(parent, child, layer)


def torchcam_case(module, layer_name: str, cls_name: str, init: dict) -> Case:
    from torchcam import methods as tcm

    cls = getattr(tcm, cls_name)

    def run(x: torch.Tensor):
        with cls(module, target_layer=layer_name, input_shape=tuple(x.shape[1:]), **init) as ext:
            scores = module(x)
            return ext(class_idx=int(scores[0].argmax()), scores=scores)[0]

    return Case(f"{TC} {cls_name}", run, setup=requires_grad_setup(module))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--skip-slow", action="store_true", help="skip the masked-pass methods")
    parser.add_argument("--only", default="", help="comma-separated registry keys")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the images (paired ratios of all)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: its default)")
    parser.add_argument(
        "--settle", type=float, default=0.3, help="idle seconds before each timed call (spinning BLAS threads)"
    )
    args = parser.parse_args(argv)
    import xai_core as xc

    torch.set_num_threads(args.threads if args.threads > 0 else max(1, torch.get_num_threads()))
    model = xc.load_model("efficientnet_lite0")
    names = sorted(f for f in os.listdir(SAMPLES) if not f.startswith("."))[: args.images]
    inputs = [
        xc.prepare(np.asarray(Image.open(os.path.join(SAMPLES, n)).convert("RGB")), model.spec.preprocessing).tensor
        for n in names
    ]
    pairs: list[tuple[str, str, Case, Case]] = []
    only = set(filter(None, args.only.split(",")))
    for key, peers in PAIRS.items():
        if only and key not in only:
            continue
        if args.skip_slow and xc.get_explainer(key.split("+")[0]).slow:
            continue
        for peer, cls_name, ours_params, init, call, layer in peers:
            ours = ours_case(model, key, ours_params, layer)
            theirs = (
                pgc_case(model.module, layer, cls_name, init, call)
                if peer == PGC
                else torchcam_case(model.module, layer, cls_name, init)
            )
            pairs.append((key, peer, ours, theirs))
    unknown = only - set(PAIRS)
    if unknown:
        parser.error(f"--only: no pair for {', '.join(sorted(unknown))}; keys: {', '.join(PAIRS)}")
    cases = [c for _, _, o, t in pairs for c in (o, t)]
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    interleave(cases, inputs * max(1, args.rounds), warmup=1, log=log, settle=args.settle)
    print(f"{'method':24s} {'peer':18s} {'ours ms':>9s} {'peer ms':>9s} {'ratio':>7s}")
    worst = 0.0
    for key, peer, ours, theirs in pairs:
        if ours.error or theirs.error:
            print(f"{key:24s} {peer:18s} error: {ours.error or theirs.error}")
            continue
        ratio = paired_ratio(ours, theirs)
        worst = max(worst, ratio)
        print(
            f"{key:24s} {peer:18s} {1000 * np.median(ours.wall):9.1f} {1000 * np.median(theirs.wall):9.1f} "
            f"{ratio:7.2f}{'  SLOWER' if ratio > 1 else ''}"
        )
    print(
        f"worst ratio: {worst:.2f} over {len(inputs)} images x {max(1, args.rounds)} rounds, "
        f"{torch.get_num_threads()} threads ({', '.join(names)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""FG-CAM speed on EfficientNet-Lite0 (224x224, CPU, 2 threads): printed, not asserted.

Compares the median time of FG-CAM down to the input (Grad-CAM base, one class) with
the floor of a Grad-CAM-style explanation: one forward pass with the CAM layer captured
plus the batched backward of the class logit to that layer. Target: ratio <= 4.

Run: ``python benchmarks/fgcam_speed.py [--runs 10] [--layer _bn1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xai_core.hooks.capture import capture  # noqa: E402
from xai_core.relevance import fg_cam  # noqa: E402


def _time(fn, runs: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per run; CPU time is less sensitive to other load."""
    out = []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layer", default="_bn1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    model = EfficientNet.from_name("efficientnet-lite0").eval()
    x = torch.randn(1, 3, 224, 224)
    cls = 1

    def grad_cam_floor() -> None:
        with capture(model, args.layer, grad=True) as cap:
            logits = model(x)
            torch.autograd.grad(logits[0, cls], cap[args.layer])

    def fgcam_input() -> None:
        fg_cam(model, x, cam_layer=args.layer, target_layer="input", class_idx=[cls])

    def fgcam_input_k3() -> None:
        fg_cam(model, x, cam_layer=args.layer, target_layer="input", class_idx=[cls, 2, 3])

    for fn in (grad_cam_floor, fgcam_input, fgcam_input_k3):  # warm-up
        fn()
    floor, fg, fg3 = [], [], []
    for _ in range(args.runs):  # interleaved, so load changes hit all three alike
        floor += _time(grad_cam_floor, 1)
        fg += _time(fgcam_input, 1)
        fg3 += _time(fgcam_input_k3, 1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}, layer {args.layer}")
    for i, kind in enumerate(("wall", "CPU")):
        f, g, g3 = (statistics.median(t[i] for t in ts) for ts in (floor, fg, fg3))
        print(f"[{kind}] Grad-CAM forward+backward floor : {f * 1000:8.1f} ms (median)")
        print(f"[{kind}] FG-CAM to input, K=1            : {g * 1000:8.1f} ms  ratio {g / f:.2f}x (target <= 4x)")
        print(f"[{kind}] FG-CAM to input, K=3            : {g3 * 1000:8.1f} ms  ratio {g3 / f:.2f}x")


if __name__ == "__main__":
    main()

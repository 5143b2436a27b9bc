"""FG-CAM speed on EfficientNet-Lite0 (CPU, batch 1): printed, not asserted.

Median time of FG-CAM from ``--layer`` (default ``_head_act``) down to the input with the
Grad-CAM base, as a ratio to the floor of an explanation at that layer: one forward pass
with the layer captured plus the backward of the class logit to it. The authors' rule set
(BatchNorm identity rule, a hook on every BatchNorm: the path before issue 12) and the
canonized default are measured side by side, interleaved in one run. Goal: <= 4x.

Run: ``python -m benchmarks.fgcam_speed [--runs 10] [--layer _head_act] [--size 224]``.
``--profile`` also counts, with torch.profiler, the convolution calls and the time in
convolution kernels of the floor and of canonized FG-CAM K=1 (where the time goes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xai_core.hooks.capture import capture
from xai_core.models.zoo import _build_lite0
from xai_core.relevance import fg_cam


def _time(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one run; CPU time is less sensitive to other load."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layer", default="_head_act")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="count convolution calls and kernel time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = _build_lite0().eval()  # weights do not change the work done
    x = torch.randn(1, 3, args.size, args.size)
    cls = 1

    def floor() -> None:
        with capture(model, args.layer, grad=True) as cap:
            logits = model(x)
            torch.autograd.grad(logits[0, cls], cap[args.layer])

    def run(rules: str, k: int):
        classes = [cls, 2, 3][:k]
        return lambda: fg_cam(model, x, cam_layer=args.layer, target_layer="input", class_idx=classes, rules=rules)

    cases = {
        "floor": floor,
        "authors K=1": run("authors", 1),
        "canonized K=1": run("canonized", 1),
        "authors K=3": run("authors", 3),
        "canonized K=3": run("canonized", 3),
    }
    for fn in cases.values():  # warm-up (and the canonizer's one-off structure trace)
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so load changes hit all alike
        for name, fn in cases.items():
            times[name].append(_time(fn))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}, "
        f"layer {args.layer} -> input, {args.size}x{args.size}, batch 1"
    )
    for i, kind in enumerate(("wall", "CPU")):
        med = {name: statistics.median(t[i] for t in ts) for name, ts in times.items()}
        print(f"[{kind}] floor (forward + backward to {args.layer}): {med['floor'] * 1000:8.1f} ms")
        for name in list(cases)[1:]:
            print(f"[{kind}] FG-CAM {name:<14}: {med[name] * 1000:8.1f} ms  ratio {med[name] / med['floor']:.2f}x")
    if args.profile:
        floor_total = None
        for name, fn in (("floor", floor), ("canonized K=1", cases["canonized K=1"])):
            calls, conv_ms, total_ms = _convolutions(fn, args.runs)
            floor_total = floor_total or total_ms
            print(
                f"[profile] {name:<14}: {calls:4d} convolution calls, {conv_ms:7.1f} ms in convolution kernels "
                f"({conv_ms / floor_total:.2f}x the floor), {total_ms:7.1f} ms in all ({total_ms / floor_total:.2f}x)"
            )


CONV_FORWARD = ("aten::_slow_conv2d_forward", "aten::mkldnn_convolution")
"""Forward convolution kernels on the CPU (one call each)."""
CONV_BACKWARD = ("aten::convolution_backward", "aten::_slow_conv2d_backward")
"""The transposed convolutions: one ``convolution_backward`` call each (its own time is mkldnn's kernel)."""


def _convolutions(fn, runs: int) -> tuple[int, float, float]:
    """Per call of ``fn``: convolution calls (forward kernels and backward entries), ms in their kernels, ms in all."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fn()
    stats = {e.key: e for e in prof.key_averages()}
    calls = sum(stats[k].count for k in (*CONV_FORWARD, CONV_BACKWARD[0]) if k in stats)
    kernel_us = sum(stats[k].self_cpu_time_total for k in (*CONV_FORWARD, *CONV_BACKWARD) if k in stats)
    total_us = sum(e.self_cpu_time_total for e in stats.values())
    return calls // runs, kernel_us / 1000 / runs, total_us / 1000 / runs


if __name__ == "__main__":
    main()

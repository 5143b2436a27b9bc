"""FG-CAM speed on EfficientNet-Lite0 (CPU, batch 1 unless --batch): printed, not asserted.

Median time of FG-CAM from ``--layer`` (default ``_head_act``) down to ``--target``
(default the input) with the Grad-CAM base, as a ratio to the floor of an explanation at
that layer: one forward pass with the layer captured plus the backward of the class logit
to it. The default rule set as users get it (``DEFAULT_RULES``, "crisp"), "canonized" and
the authors' rule set (BatchNorm identity rule, a hook on every BatchNorm) are measured
side by side, interleaved in one run. Goal: <= 4x.

Run: ``python -m benchmarks.fgcam_speed [--runs 10] [--threads 1] [--layer _head_act]
[--target input|_blocks.4] [--batch 1] [--size 224] [--lrp]``. ``--lrp`` adds LRP and
SGLRP to the input (default rules) as ratios to the same floor. ``--profile`` also counts,
with torch.profiler, the convolution calls and the time in convolution kernels of the floor
and of default-rules FG-CAM K=1, and prints its heaviest operators (where the time goes).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from xai_core.hooks.capture import capture
from xai_core.models.zoo import _build_lite0
from xai_core.relevance import DEFAULT_RULES, fg_cam, lrp


def _time(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one run; CPU time is less sensitive to other load."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layer", default="_head_act")
    parser.add_argument("--target", default="input", help="target layer (default: the input)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1, help="images per call (the floor takes the same batch)")
    parser.add_argument("--lrp", action="store_true", help="also time LRP and SGLRP to the input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="count convolution calls and kernel time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = _build_lite0().eval()  # weights do not change the work done
    x = torch.randn(args.batch, 3, args.size, args.size)
    cls = 1

    def floor() -> None:
        with capture(model, args.layer, grad=True) as cap:
            logits = model(x)
            torch.autograd.grad(logits[:, cls].sum(), cap[args.layer])

    def run(rules: str, k: int):
        classes = [cls, 2, 3][:k]
        return lambda: fg_cam(model, x, cam_layer=args.layer, target_layer=args.target, class_idx=classes, rules=rules)

    default = f"{DEFAULT_RULES} (default)"
    cases = {
        "floor": floor,
        f"{default} K=1": run(DEFAULT_RULES, 1),
        "canonized K=1": run("canonized", 1),
        "authors K=1": run("authors", 1),
        f"{default} K=3": run(DEFAULT_RULES, 3),
        "canonized K=3": run("canonized", 3),
        "authors K=3": run("authors", 3),
    }
    if args.lrp:
        for variant in ("lrp", "sglrp"):
            cases[f"{variant.upper()} K=1"] = functools.partial(lrp, model, x, class_idx=[cls], variant=variant)
    for fn in cases.values():  # warm-up (and the canonizer's one-off structure trace)
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so load changes hit all alike
        for name, fn in cases.items():
            times[name].append(_time(fn))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}, "
        f"layer {args.layer} -> {args.target}, {args.size}x{args.size}, batch {args.batch}"
    )
    for i, kind in enumerate(("wall", "CPU")):
        med = {name: statistics.median(t[i] for t in ts) for name, ts in times.items()}
        print(f"[{kind}] floor (forward + backward to {args.layer}): {med['floor'] * 1000:8.1f} ms")
        for name in list(cases)[1:]:
            label = name if name.startswith(("LRP", "SGLRP")) else f"FG-CAM {name}"
            print(f"[{kind}] {label:<29}: {med[name] * 1000:8.1f} ms  ratio {med[name] / med['floor']:.2f}x")
    if args.profile:
        floor_total = None
        for name in ("floor", f"{default} K=1"):
            calls, conv_ms, total_ms, table = _convolutions(cases[name], args.runs)
            floor_total = floor_total or total_ms
            print(
                f"[profile] {name:<14}: {calls:4d} convolution calls, {conv_ms:7.1f} ms in convolution kernels "
                f"({conv_ms / floor_total:.2f}x the floor), {total_ms:7.1f} ms in all ({total_ms / floor_total:.2f}x)"
            )
        print(f"[profile] heaviest operators of FG-CAM {default} K=1 (self CPU time per call of fg_cam):")
        print(table)


CONV_FORWARD = ("aten::_slow_conv2d_forward", "aten::mkldnn_convolution")
"""Forward convolution kernels on the CPU (one call each)."""
CONV_BACKWARD = ("aten::convolution_backward", "aten::_slow_conv2d_backward")
"""The transposed convolutions: one ``convolution_backward`` call each (its own time is mkldnn's kernel)."""
CONV_MATMUL = ("aten::bmm", "aten::mm")
"""1x1 convolutions of the rules, run as matrix products (``xai_core.relevance.rules._conv``)."""


def _convolutions(fn, runs: int) -> tuple[int, float, float, str]:
    """Per call of ``fn``: convolution calls (forward kernels, backward entries, 1x1 convolutions as matmuls),
    ms in their kernels, ms in all, and a table of the operators with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fn()
    stats = {e.key: e for e in prof.key_averages()}
    calls = sum(stats[k].count for k in (*CONV_FORWARD, CONV_BACKWARD[0], *CONV_MATMUL) if k in stats)
    kernel_us = sum(stats[k].self_cpu_time_total for k in (*CONV_FORWARD, *CONV_BACKWARD, *CONV_MATMUL) if k in stats)
    total_us = sum(e.self_cpu_time_total for e in stats.values())
    rows = sorted(stats.values(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    table = "\n".join(
        f"  {e.key:<44} {e.count // runs:5d} calls {e.self_cpu_time_total / 1000 / runs:8.1f} ms" for e in rows
    )
    return calls // runs, kernel_us / 1000 / runs, total_us / 1000 / runs, table


if __name__ == "__main__":
    main()

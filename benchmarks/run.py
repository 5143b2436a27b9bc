"""Speed of xai_core against the floor and its peers, measured side by side in one run.

Run from the repository root::

    python -m benchmarks.run                 # full run (default 100 images, ~5-10 min on 2 cores)
    python -m benchmarks.run --quick         # a smoke run while developing (~1-2 min)
    python -m benchmarks.run --images 200    # as the issue's author measured

What is measured (CPU, ``torch.set_num_threads(2)``, 224x224, batch 1, the model's
default layer, images cycled from ``samples/imagenet``):

- the floor: forward with grad enabled on the layer output made a leaf, parameters
  frozen, and ``autograd.grad`` of the top logit to that leaf only (``harness.FloorHarness``,
  independent of xai_core); forward without grad; forward + full backward;
- xai_core's gradient methods (``xai_core.explain``, K = 1), FM-G-CAM with K = 1 and 5,
  ``explain`` end to end, Eigen-CAM, FG-CAM to the input and to an intermediate layer;
- the peers on the same model, layer and images: pytorch-grad-cam Grad-CAM and
  Eigen-CAM, torchcam Grad-CAM, xai-inference-engine FM-G-CAM K = 1 and 5;
- three ways to get K = 5 gradients (batched backward, K backward passes, a K-copy head);
- Score-CAM and Ablation-CAM against pytorch-grad-cam (same layer, mask batch 32, same
  maps: correlation of the input-size maps printed);
- display-only changes on a cached Explanation (p95, model calls counted);
- cold start in a fresh process (and the dashboard through Streamlit's AppTest and
  ``streamlit run``), peak RSS with three models and ten images, RSS across repeats.

Ratios are paired: per image, the case's time over the floor's time on that image,
then the median. Cases are interleaved image by image, so load changes hit all alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import harness, peers, process
from benchmarks.harness import Case, FloorHarness, interleave, paired_ratio, percentile

ROOT = Path(__file__).resolve().parents[1]

SAMPLES = ROOT / "samples" / "imagenet"


def log(msg: str) -> None:
    print(msg, flush=True)


def load_images(n: int) -> list:
    import xai_core as xc

    files = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    pictures = [xc.read_image(str(p)) for p in files]
    return [pictures[i % len(pictures)] for i in range(n)]


# ----------------------------------------------------------------------------- model cases


def model_cases(loaded, layer: str, fg_layer: str, *, with_all_methods: bool) -> tuple[Case, list[Case]]:
    """The floor and every fast case for one model at ``layer``."""
    import xai_core as xc
    from xai_core.fusion import fm_g_cam
    from xai_core.hooks.layers import resolve_layer
    from xai_core.relevance import fg_cam

    model = loaded.module
    layer_module = resolve_layer(model, layer)
    fh = FloorHarness(model, layer_module)
    floor = Case(
        "FLOOR: forward with grad + backward to the layer only", fh.run, fh.setup, fh.teardown, group="reference"
    )
    cases: list[Case] = [
        floor,
        harness.forward_case(model),
        harness.full_backward_case(model),
    ]
    for c in cases[1:]:
        c.group = "reference"

    def ours(method: str, k: int):
        def run(x: torch.Tensor) -> torch.Tensor:
            return xc.explain(loaded, x, method=method, layer=layer, top_k=k, max_batch=len(x))[0].cams

        return run

    methods = ["grad_cam", "grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam"] if with_all_methods else ["grad_cam"]
    for m in methods:
        cases.append(Case(f"xai_core {m} (K=1)", ours(m, 1), group="xai_core", target="<= 1.05x", limit=1.05))

    def fused(k: int):
        def run(x: torch.Tensor):
            r = xc.explain(loaded, x, method="grad_cam", layer=layer, top_k=k, max_batch=len(x))[0]
            return fm_g_cam(r.cams, channels=r.channels)

        return run

    cases.append(Case("xai_core FM-G-CAM K=1", fused(1), group="xai_core", target="<= 1.05x", limit=1.05))
    cases.append(
        Case("xai_core FM-G-CAM K=5 (one batched backward)", fused(5), group="xai_core", target="<= 1.2x", limit=1.2)
    )
    if with_all_methods:
        cases.append(Case("xai_core eigen_cam", ours("eigen_cam", 1), group="xai_core"))

    def fg(target: str):
        def run(x: torch.Tensor) -> torch.Tensor:
            # FG-CAM takes the class; the top class comes from an untimed, cached forward.
            return fg_cam(model, x, cam_layer=layer, target_layer=target, class_idx=[_top1(model, x)])

        return run

    cases.append(Case("xai_core FG-CAM to the input (K=1)", fg("input"), group="xai_core", target="<= 4x", limit=4.0))
    cases.append(Case(f"xai_core FG-CAM to {fg_layer} (K=1)", fg(fg_layer), group="xai_core"))
    return floor, cases


_TOP1: dict[int, int] = {}


def _top1(model, x: torch.Tensor) -> int:
    """The top class of ``x`` (cached per input object: FG-CAM takes class_idx, the floor picks argmax)."""
    key = id(x)
    if key not in _TOP1:
        with torch.inference_mode():
            _TOP1[key] = int(model(x)[0].argmax())
    return _TOP1[key]


def peer_cases(loaded, layer: str, *, eigen: bool) -> list[Case]:
    from xai_core.hooks.layers import resolve_layer

    model = loaded.module
    mod = resolve_layer(model, layer)
    cases = [
        peers.torchcam_case(model, layer),
        peers.pgc_case(model, mod, "GradCAM", name="pytorch-grad-cam Grad-CAM"),
    ]
    if eigen:
        cases.append(peers.pgc_case(model, mod, "EigenCAM", name="pytorch-grad-cam Eigen-CAM"))
    cases += [
        peers.xai_engine_case(model, mod, 1, name="xai-inference-engine FM-G-CAM K=1"),
        peers.xai_engine_case(model, mod, 5, name="xai-inference-engine FM-G-CAM K=5"),
    ]
    for c in cases:
        c.group = "peer"
    return cases


def gradient_strategy_cases(loaded, layer: str) -> list[Case]:
    """K = 5 gradients to ``layer`` three ways (the forward pass included in each)."""
    from xai_core.hooks.capture import capture
    from xai_core.hooks.layers import resolve_layer

    model = loaded.module

    def batched(x: torch.Tensor) -> torch.Tensor:
        with capture(model, layer) as cap:
            logits = model(x)
            idx = logits[0].topk(5).indices
            eye = torch.eye(5)
            return torch.autograd.grad(logits[0, idx], cap[layer], grad_outputs=eye, is_grads_batched=True)[0]

    def loop(x: torch.Tensor) -> torch.Tensor:
        with capture(model, layer) as cap:
            logits = model(x)
            idx = logits[0].topk(5).indices
            return torch.stack([torch.autograd.grad(logits[0, i], cap[layer], retain_graph=True)[0] for i in idx])

    def head_copies(x: torch.Tensor) -> torch.Tensor:
        # Classes known in advance (as with class_idx): the layer's output is repeated
        # 5 times as a [5, C, h, w] leaf, the rest of the network runs on the batch and
        # one ordinary backward of sum_i logits[i, c_i] gives row i's gradient.
        idx = torch.tensor(_top5(model, x))
        leaf = {}

        def hook(_m, _i, out):
            leaf["t"] = out.detach().repeat(5, 1, 1, 1).requires_grad_(True)
            return leaf["t"]

        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        h = resolve_layer(model, layer).register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = model(x)
                return torch.autograd.grad(logits[torch.arange(5), idx].sum(), leaf["t"])[0]
        finally:
            h.remove()
            for p, flag in flags:
                p.requires_grad_(flag)

    return [
        Case(f"K=5 grads at {layer}: one batched backward (is_grads_batched, xai_core)", batched, group="strategy"),
        Case(f"K=5 grads at {layer}: 5 backward passes on one graph", loop, group="strategy"),
        Case(f"K=5 grads at {layer}: head on 5 copies, one backward", head_copies, group="strategy"),
    ]


_TOP5: dict[int, list[int]] = {}


def prime(model, inputs: list[torch.Tensor]) -> None:
    """Work out every input's top classes before any timing (they are looked up, untimed)."""
    for x in inputs:
        _top1(model, x)
        _top5(model, x)


def _top5(model, x: torch.Tensor) -> list[int]:
    key = id(x)
    if key not in _TOP5:
        with torch.inference_mode():
            _TOP5[key] = model(x)[0].topk(5).indices.tolist()
    return _TOP5[key]


# ----------------------------------------------------------------------------- slow methods


def _as_pgc(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Our map processed as pytorch-grad-cam processes its output: ReLU, upsample, min-max."""
    up = F.interpolate(cam.clamp(min=0)[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    up = up - up.min()
    return (up / (up.max() + 1e-7)).numpy()


def slow_comparison(loaded, layer: str, inputs: list[torch.Tensor], batch: int) -> list[dict]:
    """Score-CAM and Ablation-CAM: ours vs pytorch-grad-cam, same layer, batch and class."""
    import xai_core as xc
    from xai_core.hooks.layers import resolve_layer

    model = loaded.module
    mod = resolve_layer(model, layer)
    rows = []
    for ours_key, params, pgc_name, label, n_inputs in [
        ("score_cam", {"variant": "logit_softmax", "batch_size": batch}, "ScoreCAM", "Score-CAM", len(inputs)),
        ("ablation_cam", {"batch_size": batch}, "AblationCAM", "Ablation-CAM", 1),
    ]:
        theirs = peers.pgc_case(model, mod, pgc_name, name=f"pytorch-grad-cam {label}", batch_size=batch)
        row = {
            "label": label,
            "ours": [],
            "theirs": [],
            "ours_cpu": [],
            "theirs_cpu": [],
            "corr": [],
            "error": theirs.error,
        }
        for i, x in enumerate(inputs[:n_inputs]):
            c = _top1(model, x)

            def ours(x=x, c=c, key=ours_key, params=params):
                return xc.explain(loaded, x, method=key, layer=layer, class_idx=[c], max_batch=len(x), **params)[
                    0
                ].cams[0]

            steps = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]  # alternate: load drift hits both
            result = {}
            for step in steps:
                if step == "theirs" and theirs.error:
                    continue
                try:
                    if step == "theirs":
                        theirs.setup()
                    t0, c0 = time.perf_counter(), time.process_time()
                    result[step] = ours() if step == "ours" else theirs.run(x)
                    row[step].append(time.perf_counter() - t0)
                    row[step + "_cpu"].append(time.process_time() - c0)
                except Exception as err:  # noqa: BLE001
                    row["error"] = f"{type(err).__name__}: {err}"
            if "ours" in result and "theirs" in result:
                ours_map = _as_pgc(result["ours"], tuple(x.shape[-2:]))
                row["corr"].append(float(np.corrcoef(ours_map.ravel(), result["theirs"].ravel())[0, 1]))
        log(f"  {label}: xai_core {row['ours']} s, pytorch-grad-cam {row['theirs']} s, corr {row['corr']}")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- display-only


def display_only(loaded, picture, samples: int) -> dict:
    """Model-free controls on a cached Explanation: fused(k, ...) + render, p95 and model calls."""
    import itertools

    import xai_core as xc
    from xai_core.fusion.fmgcam import ACTIVATIONS, NORMALISATIONS
    from xai_core.render import COLORMAPS

    exp = xc.explain(loaded, picture, method="grad_cam", top_k=5)
    calls = {"n": 0}
    handle = loaded.module.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    combos = list(itertools.product(range(1, exp.k_max + 1), NORMALISATIONS, ACTIVATIONS, COLORMAPS, (0.3, 0.6, 0.9)))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(combos))[:samples]
    fused_t, map_t = [], []
    try:
        for j in order:
            k, norm, act, cmap, alpha = combos[j]
            t0 = time.perf_counter()
            xc.render_fused(exp, exp.fused(k, normalise=norm, activation=act), alpha=alpha, colormap=cmap)
            fused_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            xc.render_map(exp, int(k) - 1, colormap=cmap, alpha=alpha)
            map_t.append(time.perf_counter() - t0)
    finally:
        handle.remove()
    return {"fused": fused_t, "map": map_t, "model_calls": calls["n"], "combos": len(order)}


# ----------------------------------------------------------------------------- table


def fmt_ms(values: list[float]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return f"{statistics.median(values) * 1000:.1f}", f"{percentile(values, 90) * 1000:.1f}"


def table(title: str, floor: Case, cases: list[Case]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| measure | median ms | p90 ms | ratio to floor (wall) | ratio (CPU time) | target | met |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for c in cases:
        if c.error:
            lines.append(f"| {c.name} | - | - | - | - | {c.target} | not run: {c.error} |")
            continue
        med, p90 = fmt_ms(c.wall)
        r, rc = paired_ratio(c, floor, "wall"), paired_ratio(c, floor, "cpu")
        met = "" if c.limit is None else ("yes" if r <= c.limit else f"NO (+{(r - c.limit) * 100:.0f}% of floor)")
        lines.append(f"| {c.name} | {med} | {p90} | {r:.2f}x | {rc:.2f}x | {c.target} | {met} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description="xai_core speed against the floor and its peers")
    parser.add_argument("--images", type=int, default=None, help="images for EfficientNet-Lite0 (default 100; quick 8)")
    parser.add_argument("--resnet-images", type=int, default=None, help="images for ResNet50 (default images/4)")
    parser.add_argument("--slow-images", type=int, default=None, help="images for Score-CAM (default 2, quick 1)")
    parser.add_argument(
        "--quick", action="store_true", help="8 images (ResNet50 4, Score/Ablation-CAM 1), shorter repeats"
    )
    parser.add_argument(
        "--slow-layer", default=None, help="layer for Score/Ablation-CAM (default the model's default layer)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip", default="", help="comma list of sections to skip: lite0,resnet,strategy,slow,display,cold,memory"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = parser.parse_args()
    n = args.images or (8 if args.quick else 100)
    n_resnet = args.resnet_images or max(4, n // 4)
    n_slow = args.slow_images or (1 if args.quick else 2)
    skip = set(filter(None, args.skip.split(",")))

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import xai_core as xc

    started = time.perf_counter()
    details = harness.machine_details()
    details["load average at start (1, 5, 15 min)"] = harness.load_average()
    out: list[str] = []
    raw: dict = {"details": details}
    pictures = load_images(n)

    lite0 = xc.load_model("efficientnet_lite0")
    lite_layer = lite0.spec.default_layer
    lite_inputs = [xc.prepare(p, lite0.spec.preprocessing).tensor for p in pictures]
    prime(lite0.module, lite_inputs)

    if "lite0" not in skip:
        log(f"EfficientNet-Lite0 (real weights), layer {lite_layer}, {n} images")
        floor, cases = model_cases(lite0, lite_layer, "_blocks.4", with_all_methods=True)
        cases += peer_cases(lite0, lite_layer, eigen=True)
        interleave(cases, lite_inputs, log=log)
        out += table(f"EfficientNet-Lite0, real weights, layer `{lite_layer}`, {n} images", floor, cases)
        raw["lite0"] = {c.name: {"wall": c.wall, "cpu": c.cpu, "error": c.error} for c in cases}

    if "strategy" not in skip:
        from xai_core.hooks.layers import resolve_layer

        m = max(4, n // 4)
        log(f"K=5 gradient strategies, {m} images")
        for layer in (lite_layer, "_blocks.10"):
            fh = FloorHarness(lite0.module, resolve_layer(lite0.module, layer))
            floor = Case(f"FLOOR at {layer} (K=1)", fh.run, fh.setup, fh.teardown)
            cases = [floor] + gradient_strategy_cases(lite0, layer)
            interleave(cases, lite_inputs[:m], log=log)
            out += table(
                f"K = 5 gradients, EfficientNet-Lite0 `{layer}`, {m} images (ratios to the K=1 floor)", floor, cases
            )

    if "resnet" not in skip:
        resnet = xc.build_model("resnet50", weights=None)
        r_layer = resnet.spec.default_layer
        r_inputs = [xc.prepare(p, resnet.spec.preprocessing).tensor for p in pictures[:n_resnet]]
        prime(resnet.module, r_inputs)
        log(f"ResNet50 (random weights), layer {r_layer}, {n_resnet} images")
        floor, cases = model_cases(resnet, r_layer, "layer2", with_all_methods=False)
        cases += peer_cases(resnet, r_layer, eigen=False)
        interleave(cases, r_inputs, log=log)
        out += table(f"ResNet50, random weights, layer `{r_layer}`, {n_resnet} images", floor, cases)
        raw["resnet50"] = {c.name: {"wall": c.wall, "cpu": c.cpu, "error": c.error} for c in cases}
        del resnet

    if "slow" not in skip:
        slow_layer = args.slow_layer or lite_layer
        log(f"Score-CAM / Ablation-CAM vs pytorch-grad-cam, layer {slow_layer}, batch 32, {n_slow} image(s)")
        rows = slow_comparison(lite0, slow_layer, lite_inputs[:n_slow], 32)
        raw["slow"] = rows
        out += [
            f"### Score-CAM and Ablation-CAM, EfficientNet-Lite0 `{slow_layer}`, mask batch 32, top class "
            f"(Score-CAM {n_slow} image(s), Ablation-CAM 1; xai_core and the peer alternate in order)",
            "",
            "| method | xai_core s (CPU s) | pytorch-grad-cam s (CPU s) | ratio wall | ratio CPU | map correlation "
            "| target | met |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in rows:
            o, oc = statistics.median(row["ours"]), statistics.median(row["ours_cpu"])
            if row["theirs"]:
                t, tc = statistics.median(row["theirs"]), statistics.median(row["theirs_cpu"])
                met = "yes" if o / t <= 0.67 and min(row["corr"]) >= 0.999 else "NO"
                out.append(
                    f"| {row['label']} | {o:.2f} ({oc:.2f}) | {t:.2f} ({tc:.2f}) | {o / t:.3f}x | {oc / tc:.3f}x "
                    f"| {min(row['corr']):.6f} | <= 0.67x, same maps | {met} |"
                )
            else:
                out.append(
                    f"| {row['label']} | {o:.2f} ({oc:.2f}) | not run: {row['error']} | - | - | - | <= 0.67x | - |"
                )
        out.append("")

    if "display" not in skip:
        log("Display-only controls on a cached Explanation")
        d = display_only(lite0, pictures[0], 60 if args.quick else 300)
        raw["display"] = d
        out += [
            "### Display-only changes (cached Explanation, no model call), EfficientNet-Lite0 K_max = 5",
            "",
            "| measure | median ms | p95 ms | max ms | model calls | target | met |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for key, label in (
            ("fused", "Explanation.fused(k, normalise, activation) + render_fused(alpha, colormap)"),
            ("map", "render_map(i, colormap, alpha)"),
        ):
            v = d[key]
            p95 = percentile(v, 95) * 1000
            met = "yes" if p95 <= 100 and d["model_calls"] == 0 else "NO"
            out.append(
                f"| {label} ({d['combos']} random control settings) | {statistics.median(v) * 1000:.1f} "
                f"| {p95:.1f} | {max(v) * 1000:.1f} | {d['model_calls']} | <= 100 ms p95, no model call | {met} |"
            )
        out.append("")

    if "cold" not in skip:
        log("Cold start in fresh processes")
        cold = process.cold_start(ROOT, dashboard=not args.quick)
        raw["cold"] = cold
        out += ["### Cold start (fresh process)", "", "| measure | seconds | target | met |", "|---|---:|---|---|"]
        for label, value, target in cold["rows"]:
            if isinstance(value, str):
                out.append(f"| {label} | {value} | {target} | - |")
            else:
                met = "" if not target else ("yes" if value <= 15 else "NO")
                out.append(f"| {label} | {value:.1f} | {target} | {met} |")
        out.append("")

    if "memory" not in skip:
        log("Memory in a fresh process")
        mem = process.memory(ROOT, repeats=10 if args.quick else 30)
        raw["memory"] = mem
        out += ["### Memory (fresh process, RSS)", "", "| measure | MiB |", "|---|---:|"]
        for label, value in mem["rows"]:
            out.append(f"| {label} | {value} |")
        out.append("")

    details["load average at end"] = harness.load_average()
    details["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    head = ["## Machine", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in details.items()] + [""]
    head += [f"Command: `{' '.join(['python', '-m', 'benchmarks.run', *sys.argv[1:]])}`", ""]
    print("\n" + "\n".join(head + out))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()

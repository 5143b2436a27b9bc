"""Throughput of the faithfulness evaluation: the per-image path against the batched one.

Rows per second with full insertion/deletion curves (the model's default step: 448
pixels at 224 x 224, 112 steps a curve), on the same images and methods, for:

- ``old``: the path ``python -m xai_core.evaluate`` took before it was batched - one
  image, one method, one :func:`~xai_core.metrics.evaluate_map` at a time, in the
  default memory format (written out here from the per-image functions);
- ``local``: ``python -m xai_core.evaluate`` (local engine, in this process);
- ``ray``: the same with ``--engine ray --workers N`` (a local Ray instance; its start-up
  is included in the time).

It also prints, per path, the largest difference of any metric from the old path's rows;
the equality check, per method and column and pair of paths, each path in a process of its
own, is ``benchmarks/eval_equality.py``.

Run: ``python -m benchmarks.eval_throughput [--images 2] [--paths old,local,ray] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xai_core.evaluate import key_of, main, read_rows
from xai_core.evaluate.store import METRIC_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

METHODS = "grad_cam,fm_g_cam:k=3,fg_cam@input,lrp@input,sglrp@input"
# The metrics both paths score (the old path had no ROAD and no multiplied_increased flag).
METRICS = tuple(c for c in METRIC_COLUMNS if not c.startswith("road_") and c != "multiplied_increased")


def old_path(model_key: str, files: list[Path], methods: str, pixels_per_step: int | None = None) -> list[dict]:
    """The per-image path: explain one image with one method, then ``evaluate_map`` on it."""
    model = old_model(model_key)
    return [row for path in files for row in old_rows(model, path, methods, pixels_per_step)]


def old_model(model_key: str):
    """The model as the per-image path ran it: the default memory format.

    A model of its own (not the process's cached one, which the command's engine then
    loads): the per-image path must not change the memory format of the engine's model,
    nor leave it anything cached for its layers, such as the BatchNorm-folded weights of
    FG-CAM and LRP, which keep the memory format of the first explanation.
    """
    from xai_core.models.registry import build_model

    model = build_model(model_key)
    model.module.to(memory_format=torch.contiguous_format)
    return model


def old_rows(model, path: Path, methods: str, pixels_per_step: int | None = None) -> list[dict]:
    """The per-image path's rows of one image: each method in turn, then ``evaluate_map`` on its map."""
    from xai_core.api import explain
    from xai_core.images import read_image
    from xai_core.metrics import average_drop_increase, evaluate_map
    from xai_core.models.preprocess import prepare
    from xai_core.relevance import fg_cam, lrp
    from xai_core.render.colour import resize_map

    cam_layer = model.spec.default_layer
    rows = []
    image = read_image(path)
    x = prepare(image, model.spec.preprocessing).tensor
    size = tuple(x.shape[-2:])
    top = [int(i) for i in torch.argsort(model.predict(x)[0], descending=True, stable=True)[:10]]
    c = top[0]
    for entry in methods.split(","):
        name, _, layer = entry.partition("@")
        key, *params = name.split(":")
        layer = layer or ("input" if key in ("fg_cam", "lrp", "clrp", "sglrp") else cam_layer)
        if key == "fm_g_cam":
            k = int(dict(p.split("=") for p in params).get("k", 3))
            exp = explain(model, image, method="grad_cam", layer=layer, class_idx=[c] + top[1:k])
            sal = torch.from_numpy(np.asarray(resize_map(exp.fused(k).maps[0], size), dtype=np.float64))
        elif key == "fg_cam":
            sal = fg_cam(model.module, x, cam_layer=cam_layer, target_layer=layer, class_idx=[c]).relevance[0, 0]
            sal = sal.double()
        elif key in ("lrp", "clrp", "sglrp"):
            sal = lrp(model.module, x, class_idx=[c], variant=key, target_layer=layer).relevance[0, 0].double()
        else:
            exp = explain(model, image, method=key, layer=layer, class_idx=[c])
            sal = torch.from_numpy(np.asarray(exp.saliency(0), dtype=np.float64))
        signed = layer == "input"
        scores = dict(evaluate_map(model.predict, x, sal, c, pixels_per_step=pixels_per_step).scores)
        if signed:
            adi = average_drop_increase(model.predict, x, [sal], c, positive_only=True)
            scores["average_drop"], scores["average_increase"] = float(adi.drop[0]), float(adi.average_increase)
        rows.append(
            {"model": model.key, "file": path.name, "method": name, "layer": layer, "target": "top1"}
            | {"label": None, "class_idx": c, "predicted": c, "ad_positive_only": signed, **scores}
        )
    return rows


def max_difference(rows: list[dict], reference: list[dict]) -> float:
    """Largest absolute difference of any metric between rows with the same key (nan if keys differ)."""
    ref = {key_of(r): r for r in reference}
    got = {key_of(r): r for r in rows}
    if set(ref) != set(got):
        return math.nan
    return max(abs(got[k][m] - ref[k][m]) for k in ref for m in METRICS)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "samples" / "imagenet")
    parser.add_argument("--images", type=int, default=2, help="first N images of the folder (2)")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--paths", default="old,local,ray", help="which paths to time (old,local,ray)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in this process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="eval_throughput_"))
    images = work / "images"
    images.mkdir()
    from xai_core.evaluate.jobs import list_images

    files = list_images(args.folder)[: args.images]
    for f in files:
        shutil.copy(f, images / f.name)
    files = list_images(images)
    n_methods = len(args.methods.split(","))
    print(
        f"{len(files)} images x {n_methods} methods ({args.methods}) on {args.model}, full curves at the model's "
        f"default step; torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    results: dict[str, tuple[int, float, float, list[dict]]] = {}
    for path in args.paths.split(","):
        start, cpu = time.perf_counter(), time.process_time()
        if path == "old":
            rows = old_path(args.model, files, args.methods)
        else:
            out = work / path
            extra = ["--engine", "ray", "--workers", str(args.workers)] if path == "ray" else []
            argv = [str(images), "--model", args.model, "--methods", args.methods, "--out", str(out)]
            code = main([*argv, "--batch-size", str(args.batch_size), "--quiet", *extra])
            if code != 0:
                raise SystemExit(f"{path}: the command exited with status {code}")
            rows = read_rows([out])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        results[path] = (len(rows), seconds, cpu, rows)
        print(f"  {path}: {len(rows)} rows in {seconds:.1f} s", flush=True)

    old = results.get("old")
    first = next(iter(results))
    reference = old or results[first]
    print()
    against = "old" if old else first
    print(f"| path | rows | wall s | rows/s | x old | this process's CPU s | max metric diff vs {against} |")
    print("|---|---|---|---|---|---|---|")
    for path, (n, seconds, cpu, rows) in results.items():
        speed = n / seconds
        ratio = f"{speed / (old[0] / old[1]):.2f}" if old else "-"
        diff = f"{max_difference(rows, reference[3]):.2e}"
        print(f"| {path} | {n} | {seconds:.1f} | {speed:.4f} | {ratio} | {cpu:.1f} | {diff} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main_cli()

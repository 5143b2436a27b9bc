"""The command line: ``python -m xai_core.evaluate [run] FOLDER ...`` and ``... summary RESULTS ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from xai_core.errors import UnknownNameError, XaiCoreError
from xai_core.evaluate.compute import METRIC_PRECISIONS, Settings, load
from xai_core.evaluate.engines import Plan, RayOptions, pixels_per_step, run_local, run_ray
from xai_core.evaluate.jobs import IMAGE_SUFFIXES, label_from_name, list_images, parse_jobs, parse_shard, read_labels
from xai_core.evaluate.jobs import row_key as make_key
from xai_core.evaluate.methods import UsageError, method_keys
from xai_core.evaluate.progress import Progress
from xai_core.evaluate.store import ResultStore, key_of, read_rows
from xai_core.evaluate.summary import summarise, summary_csv
from xai_core.hooks.layers import resolve_layer
from xai_core.models.registry import get_spec

EXIT_OK, EXIT_ROW_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "python -m xai_core.evaluate"
#: Devices whose fastest float32 memory format for EfficientNet-Lite0 is ``channels_last``
#: (``--memory-format auto``): oneDNN's batched convolutions on the CPU, and cuDNN on CUDA
#: (14,567 against 10,105 images/s at batch 512 on an H200, issue 20).
AUTO_CHANNELS_LAST = ("cpu", "cuda")
OnRows = Callable[[list[dict]], None]


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score saliency maps of every image in a folder with the faithfulness metrics (Average "
        "Drop/Increase, insertion/deletion, seed 001's checks). Results go to a folder of Parquet parts as "
        "batches finish; rerunning the same command resumes. '" + PROG + " summary DIR...' merges results.",
        epilog="Methods: registry keys with optional parameters, KEY[:NAME=VALUE...] (for example grad_cam, "
        "fm_g_cam:k=3, fg_cam:base=score_cam, lrp); METHOD@LAYER pins a layer. Labels: --labels CSV "
        "(columns file,label; label = class index or name) or file names NAME__<index or class_name>.EXT. "
        "Exit status: 0 ok, 1 some rows hold errors, 2 bad arguments, 130 interrupted.",
    )
    parser.add_argument("folder", type=Path, help="folder of images (not searched recursively)")
    parser.add_argument("--model", default="efficientnet_lite0", help="model registry key (default efficientnet_lite0)")
    parser.add_argument(
        "--weights", default="default", help="'default', 'random' (untrained) or a state_dict file for --model"
    )
    parser.add_argument("--methods", default="grad_cam", help="comma-separated methods (default grad_cam)")
    parser.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers for every method without @LAYER (default: the model's default layer for "
        "CAM methods, 'input' for relevance methods)",
    )
    parser.add_argument("--cam-layer", default=None, help="FG-CAM's CAM layer L (default the model's default layer)")
    parser.add_argument(
        "--target",
        choices=("top1", "label"),
        default="top1",
        help="explain the top-1 prediction (default) or the true label (files without one become error rows)",
    )
    parser.add_argument("--labels", type=Path, default=None, help="CSV with columns file,label")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (by name), before sharding")
    parser.add_argument("--shard", default="0/1", help="i/n: evaluate images i, i+n, i+2n, ... of the sorted list")
    parser.add_argument(
        "--out", type=Path, default=Path("evaluation"), help="results folder (Parquet parts, summary.md, summary.csv)"
    )
    parser.add_argument(
        "--pixels-per-step",
        type=int,
        default=None,
        help="insertion/deletion step (default round(H*W/112): the papers' 448 at 224x224)",
    )
    parser.add_argument(
        "--road",
        action="store_true",
        help="also score ROAD (remove and debias; MoRF and LeRF mean class probability at 10%% to 90%% removed)",
    )
    parser.add_argument(
        "--sanity",
        action="store_true",
        help="also run the randomisation checks per row (off by default: ~3 extra map passes per image): "
        "sanity_mprt_spearman = Spearman rank correlation of the signed map of the explained class with the "
        "map after every layer of a copy of the model is re-initialised (cascading, Quantus MPRT order, "
        "seed 42); sanity_random_logit_spearman = the same between the map of the explained class and that "
        "of another class drawn as Quantus RandomLogit does for the image alone (seed 42). Maps as "
        "xai_core.trust computes them (signed, bilinear to the input); near 1 = the map ignores the model/class",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images explained and scored together (16)")
    parser.add_argument(
        "--forward-batch",
        type=int,
        default=64,
        help="most images in one forward pass of the metrics: the memory budget (64)",
    )
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:1', ... (default cpu)")
    parser.add_argument(
        "--memory-format",
        choices=("auto", "channels_last", "contiguous"),
        default="auto",
        help="the model's memory format (auto: channels_last on the CPU and CUDA, where it is faster)",
    )
    parser.add_argument(
        "--metric-precision",
        choices=tuple(METRIC_PRECISIONS),
        default="fp32",
        help="dtype of the metrics' forward passes: fp32 (default) or bf16 (autocast; faster on recent GPUs, "
        "README gives its difference from fp32); the maps and the explained class stay fp32",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of each computing process (this one, or each Ray worker); one number for the "
        "run, so both engines give the same numbers (default: torch's default here, "
        f"{torch.get_num_threads()})",
    )
    parser.add_argument("--loader-workers", type=int, default=1, help="processes decoding images (1)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="where to compute (default local)")
    parser.add_argument("--workers", type=int, default=2, help="Ray: workers, each holding one model (2)")
    parser.add_argument("--ray-address", default=None, help="Ray: join this cluster instead of starting one")
    parser.add_argument(
        "--cpus-per-worker", type=float, default=None, help="Ray: CPUs each worker reserves (default --threads)"
    )
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per worker (0)")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, here and in every worker (to register your own models); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or final line on stderr")
    return parser


def build_summary_parser() -> argparse.ArgumentParser:
    """The ``summary`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG + " summary",
        description="Merge results folders (shards, partial runs) into one Markdown table and a CSV.",
    )
    parser.add_argument("results", type=Path, nargs="+", help="results folders (or part files)")
    parser.add_argument(
        "--out", type=Path, default=None, help="file stem for STEM.md and STEM.csv (default FIRST/summary)"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, on_rows: OnRows | None = None) -> int:
    """Run the command; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
        on_rows: called with each finished part's rows right after they are written.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["summary"]:
        parser = build_summary_parser()
        argv = argv[1:]
    else:
        parser = build_parser()
        argv = argv[1:] if argv[:1] == ["run"] else argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error
        return int(exc.code or 0)
    try:
        if parser.prog.endswith("summary"):
            return _summary(args)
        return _run(args, on_rows)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\nInterrupted; finished results are in {args.out}. Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _summary(args: argparse.Namespace) -> int:
    for path in args.results:
        if not path.exists():
            raise UsageError(f"no results at {str(path)!r}.")
    rows = read_rows(args.results)
    if not rows:
        raise UsageError(f"no result rows in {', '.join(map(str, args.results))}.")
    stem = args.out or (args.results[0] if args.results[0].is_dir() else args.results[0].parent) / "summary"
    write_summary(rows, Path(stem))
    return EXIT_OK


def write_summary(rows: list[dict], stem: Path) -> tuple[Path, Path]:
    """Write ``STEM.md`` and ``STEM.csv`` and print the Markdown."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, table = stem.with_suffix(".md"), stem.with_suffix(".csv")
    text = summarise(rows)
    md.write_text(text, encoding="utf-8")
    table.write_text(summary_csv(rows), encoding="utf-8")
    print(text)
    return md, table


def _check_args(args: argparse.Namespace) -> None:
    if not args.folder.is_dir():
        raise UsageError(f"folder {str(args.folder)!r} does not exist or is not a directory.")
    for name in ("limit", "batch_size", "forward_batch", "pixels_per_step", "workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {value}.")
    if args.loader_workers < 0:
        raise UsageError(f"--loader-workers must be >= 0; got {args.loader_workers}.")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} exists and is not a folder; results go to a folder.")
    if args.device.startswith("cuda") and args.engine == "local":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device is available here.")
    check_gpus_per_worker(args.gpus_per_worker, local_ray=args.engine == "ray" and args.ray_address is None)


def check_gpus_per_worker(gpus: float, *, local_ray: bool) -> None:
    """``--gpus-per-worker``: 0, a fraction below 1 (workers share a GPU) or a whole number.

    Ray packs fractional GPUs: at 0.5, two workers share each GPU. A Ray instance
    started here on a machine without CUDA would wait for GPUs forever, so that is refused.

    Raises:
        UsageError: a negative or non-whole value above 1, or GPUs asked of a local
            Ray instance on a machine without CUDA.
    """
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise UsageError(f"--gpus-per-worker must be 0, a fraction below 1 or a whole number; got {gpus}.")
    if gpus and local_ray and not torch.cuda.is_available():
        raise UsageError(
            f"--gpus-per-worker {gpus}: no CUDA device is available here for the local Ray instance "
            "(give --ray-address to use a cluster's GPUs)."
        )


def _settings(args: argparse.Namespace) -> Settings:
    import importlib

    for name in args.imports:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"--import {name}: {exc}") from None

    try:
        get_spec(args.model)
    except UnknownNameError as exc:
        raise UsageError(f"--model: {exc}") from None
    weights = None if args.weights == "random" else args.weights
    if weights not in ("default", None) and not Path(weights).is_file():
        raise UsageError(f"--weights: no such file {weights!r} (or use 'default').")
    device_type = "cuda" if args.gpus_per_worker else args.device.split(":")[0].strip().lower()
    channels_last = args.memory_format == "channels_last" or (
        args.memory_format == "auto" and device_type in AUTO_CHANNELS_LAST
    )
    return Settings(
        model=args.model,
        weights=weights,
        device=args.device,
        cam_layer=args.cam_layer,
        target=args.target,
        pixels_per_step=args.pixels_per_step,
        forward_batch=args.forward_batch,
        method_batch=min(args.forward_batch, 32),
        channels_last=channels_last,
        metric_precision=args.metric_precision,
        road=args.road,
        sanity=args.sanity,
        threads=args.threads or torch.get_num_threads(),  # one count for the run, driver and workers alike
        imports=tuple(args.imports),
    )


def _run(args: argparse.Namespace, on_rows: OnRows | None) -> int:
    _check_args(args)
    shard, shards = parse_shard(args.shard)
    settings = _settings(args)
    try:
        model = load(settings)
    except XaiCoreError as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    cam_layer = args.cam_layer or model.spec.default_layer
    if args.cam_layer:
        try:
            resolve_layer(model.module, cam_layer)
        except UnknownNameError as exc:
            raise UsageError(f"--cam-layer: {exc}") from None
    methods = [m for m in (s.strip() for s in args.methods.split(",")) if m]
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    jobs = parse_jobs(methods, layers, model, cam_layer)
    labels_by_file = read_labels(args.labels, model.labels) if args.labels else {}

    images = list_images(args.folder)
    if not images:
        raise UsageError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(args.folder)!r}.")
    images = images[: args.limit][shard::shards]

    store = ResultStore(args.out)
    existing = store.rows()
    step = pixels_per_step(settings, model)
    other = {r["pixels_per_step"] for r in existing if r["model"] == model.key} - {step}
    if other:
        raise UsageError(
            f"{str(args.out)!r} holds rows computed with --pixels-per-step {', '.join(map(str, sorted(other)))}, "
            f"not {step}; use the same setting to resume, or another --out."
        )
    done = {key_of(r) for r in existing}
    files, todo = [], []
    for path in images:
        label = labels_by_file.get(path.name)
        if label is None:
            label = label_from_name(path, model.labels)
        left = [
            j for j in jobs if make_key(model.key, path.name, j.method.key, j.layer, args.target, label) not in done
        ]
        if left:
            files.append((path, label))
            todo.append(left)
    plan = Plan(files, todo, args.batch_size, args.loader_workers)
    skipped = len(images) * len(jobs) - plan.rows
    if not args.quiet:
        threads = f"{settings.threads} torch thread{'s' if settings.threads != 1 else ''}"
        where = f"this process, {threads}" if args.engine == "local" else f"Ray, {args.workers} workers, {threads} each"
        print(
            f"{len(images)} images x {len(jobs)} method/layer pairs on {model.key} (shard {shard}/{shards}, "
            f"{where}): {plan.rows} rows to compute, {skipped} already in {args.out}.",
            file=sys.stderr,
            flush=True,
        )
    progress = Progress(plan.rows, enabled=not args.quiet)

    def write(rows: list[dict]) -> None:
        store.write(rows)
        progress.update(rows)
        if on_rows is not None:
            on_rows(rows)

    try:
        if plan.rows:
            if args.engine == "ray":
                options = RayOptions(
                    address=args.ray_address,
                    workers=args.workers,
                    cpus_per_worker=args.cpus_per_worker,
                    gpus_per_worker=args.gpus_per_worker,
                )
                run_ray(plan, settings, model, write, options)
            else:
                run_local(plan, settings, model, write)
    except OSError as exc:
        progress.close(args.out, skipped)
        print(
            f"{PROG}: error: cannot write results to {args.out}: {exc}. Finished parts are kept; free space "
            "and run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_ROW_ERRORS
    rows = store.rows()
    md, _ = write_summary(rows, args.out / "summary") if rows else (None, None)
    progress.close(args.out, skipped, md)
    return EXIT_ROW_ERRORS if progress.errors else EXIT_OK


def help_methods() -> str:
    """Every method the command accepts, for messages."""
    return ", ".join(method_keys())

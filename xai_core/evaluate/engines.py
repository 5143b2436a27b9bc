"""Engines: where the units of work run. ``local`` (this process) or ``ray`` (a Ray cluster).

Both read the images with the same :class:`torch.utils.data.DataLoader` in the driver,
turn each batch into a :class:`~xai_core.evaluate.compute.Unit` and write every finished
task's rows as one Parquet part from the driver (:class:`~xai_core.evaluate.store.ResultStore`).
The Ray engine hands units to a pool of actors (:class:`ray.util.ActorPool`), each
holding one model; Ray restarts a worker that dies and retries its task
(``max_restarts`` / ``max_task_retries``), and a re-run skips whatever was written.

Both engines do the same float32 arithmetic, so their rows are bit-identical: the same
units (the same images in the same batches, so every forward pass has the same images),
the same memory format and device, and the same torch thread count
(:attr:`~xai_core.evaluate.compute.Settings.threads`, resolved once in the driver and
given to every worker: a worker on 1 thread against a driver on 2 moves Lite0's metrics
in percent by up to 1.2e-4, see docs/eval_equality.txt).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Full, Queue
from typing import TypeVar

import torch

from xai_core.evaluate.compute import Evaluator, Settings, Unit, error_rows, run_threads
from xai_core.evaluate.dataset import ImageFiles, make_loader
from xai_core.evaluate.jobs import Job
from xai_core.evaluate.methods import shares_score_components
from xai_core.metrics import default_pixels_per_step

OnRows = Callable[[list[dict]], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """The images still to do and, per image, the jobs still to do.

    Attributes:
        files: ``(path, label)`` per image.
        todo: the jobs still to do, per image (same order as ``files``).
        batch_size: images per batch (explained and scored together).
        loader_workers: processes decoding images.
    """

    files: Sequence[tuple[Path, int | None]]
    todo: Sequence[Sequence[Job]]
    batch_size: int
    loader_workers: int

    @property
    def rows(self) -> int:
        """Rows to compute."""
        return sum(len(t) for t in self.todo)


def units(plan: Plan, settings: Settings, model, *, pin: bool = False) -> Iterator[tuple[Unit | None, list[dict]]]:
    """Batches of the plan as units, with the error rows of unreadable images in each batch.

    ``pin``: put each unit's images in page-locked memory, so that the copy to a CUDA
    device is asynchronous (``non_blocking``) and overlaps the work queued before it.
    """
    step = pixels_per_step(settings, model)
    dataset = ImageFiles(plan.files, model.spec.preprocessing, model.spec.family)
    loader = make_loader(dataset, plan.batch_size, plan.loader_workers)
    for batch_id, items in enumerate(loader):
        errors: list[dict] = []
        good = []
        for item in items:
            if item.error is not None:
                errors += error_rows(
                    settings, model.key, item.path, item.label, plan.todo[item.index], step, item.error
                )
            else:
                good.append(item)
        if not good:
            yield None, errors
            continue
        jobs: list[Job] = []
        for item in good:
            jobs += [j for j in plan.todo[item.index] if j not in jobs]
        tasks = [(job, [n for n, item in enumerate(good) if job in plan.todo[item.index]]) for job in jobs]
        x = torch.stack([item.tensor for item in good])
        unit = Unit(
            batch_id=batch_id,
            x=x.pin_memory() if pin else x,
            files=[item.path.name for item in good],
            labels=[item.label for item in good],
            crop_boxes=[item.crop_box for item in good],
            tasks=tasks,
        )
        yield unit, errors


def pixels_per_step(settings: Settings, model) -> int:
    """The insertion/deletion step of this run."""
    if settings.pixels_per_step is not None:
        return settings.pixels_per_step

    return default_pixels_per_step(*model.spec.preprocessing.input_size)


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of ``items`` in order, produced by a background thread up to ``depth`` ahead.

    The next batch is decoded (by the loader's workers, or in this thread when there are
    none), stacked and pinned while the current one is explained and scored. An exception
    in the producer is raised here, at the item where it happened; closing this generator
    stops the producer.
    """
    queue: Queue = Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(entry: tuple) -> bool:
        """Hand ``entry`` over unless the consumer has stopped (never blocks past a stop)."""
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((done, exc))

    thread = threading.Thread(target=produce, name="xai-evaluate-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()


def run_local(plan: Plan, settings: Settings, model, write: OnRows) -> None:
    """Run the plan in this process; ``write`` gets each finished task's rows.

    The next batch is read while the current one runs (:func:`prefetched`); on CUDA its
    images are pinned, so their copy to the GPU does not wait for the CPU.
    """
    evaluator = Evaluator(settings, model)
    pin = evaluator.device.type == "cuda"
    for unit, errors in prefetched(units(plan, settings, model, pin=pin)):
        if errors:
            write(errors)
        if unit is not None:
            for rows in evaluator.run_iter(unit):
                write(rows)


def _shared_work(job: Job) -> object:
    """Tasks with the same value share cached work and go to the same worker (FG-Score-CAM)."""
    if shares_score_components(job.method):
        return "score_components"
    return job.name


def split(unit: Unit) -> list[Unit]:
    """One unit per group of tasks that share work (see :func:`_shared_work`)."""
    groups: dict[object, list] = {}
    for task in unit.tasks:
        groups.setdefault(_shared_work(task[0]), []).append(task)
    return [replace(unit, tasks=tasks) for tasks in groups.values()]


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: an existing cluster (``ray://host:10001`` or ``host:6379``); ``None``
            starts a local Ray instance for this run.
        workers: actors, each holding one model.
        cpus_per_worker: CPUs each actor reserves (``None``: the run's torch thread count,
            so that a worker reserves what it uses). Only Ray's bookkeeping: the worker's
            torch threads are the run's (:func:`worker_settings`), whatever this is.
        gpus_per_worker: GPUs each actor reserves (0 on a CPU machine).
        retries: times Ray restarts a dead worker and retries its task.
    """

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float | None = None
    gpus_per_worker: float = 0.0
    retries: int = 2


def worker_cpus(settings: Settings, options: RayOptions) -> float:
    """CPUs one worker reserves: ``options.cpus_per_worker``, else the run's thread count."""
    return options.cpus_per_worker if options.cpus_per_worker is not None else float(run_threads(settings))


def worker_settings(settings: Settings, options: RayOptions) -> Settings:
    """The settings a Ray worker runs with: the driver's, with the run's thread count made explicit.

    The thread count is the driver's (``settings.threads``, else torch's default in the
    driver), never the worker's CPU reservation or its environment (Ray sets
    ``OMP_NUM_THREADS`` to the reserved CPUs): another count would change float32 sums
    and the rows would differ from the local engine's (see
    :attr:`~xai_core.evaluate.compute.Settings.threads`).
    """
    device = "cuda" if options.gpus_per_worker else settings.device
    return replace(settings, threads=run_threads(settings), device=device)


def worker_options(settings: Settings, options: RayOptions) -> dict[str, float | int]:
    """The Ray actor options of one worker: its CPUs, its GPUs and its restarts.

    ``num_gpus`` below 1 is a share of one GPU: Ray packs such workers onto the same GPU
    (two at 0.5) and sets each worker's ``CUDA_VISIBLE_DEVICES`` to it, where it is
    ``cuda``; N GPUs take 2N workers at 0.5, spread across them.
    """
    return {
        "num_cpus": worker_cpus(settings, options),
        "num_gpus": options.gpus_per_worker,
        "max_restarts": options.retries,
        "max_task_retries": options.retries,
    }


def start_ray(settings: Settings, options: RayOptions) -> bool:
    """Start (or join) Ray for the run unless it is running; True when this call started it.

    A local instance gets the CPUs the workers reserve and, when they ask for GPUs,
    the GPUs Ray finds on this machine (none otherwise).
    """
    import ray

    if ray.is_initialized():
        return False
    if options.address is None:
        # A local instance: its workers get the checkout on their PYTHONPATH through
        # Ray's runtime environment, so they import the same xai_core as the driver
        # while this process's environment is left as it was.
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH", "")
        if root not in path.split(os.pathsep):
            path = os.pathsep.join(p for p in (root, path) if p)
        ray.init(
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            num_cpus=max(1, math.ceil(options.workers * worker_cpus(settings, options))),
            num_gpus=None if options.gpus_per_worker else 0,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        ray.init(address=options.address, log_to_driver=False)
    return True


def run_ray(plan: Plan, settings: Settings, model, write: OnRows, options: RayOptions) -> None:
    """Run the plan on Ray actors; the driver reads images and writes the results."""
    import ray
    from ray.util import ActorPool

    started = start_ray(settings, options)
    try:
        actor = ray.remote(EvalWorker).options(**worker_options(settings, options))
        pool = ActorPool([actor.remote(worker_settings(settings, options)) for _ in range(options.workers)])
        for unit, errors in prefetched(units(plan, settings, model)):
            if errors:
                write(errors)
            if unit is None:
                continue
            x_ref = ray.put(unit.x)
            for part in split(unit):
                while not pool.has_free():
                    _write_all(pool.get_next_unordered(), write)
                pool.submit(lambda a, u, ref=x_ref: a.run.remote(ref, replace(u, x=None)), part)
        while pool.has_next():
            _write_all(pool.get_next_unordered(), write)
    finally:
        if started:
            ray.shutdown()


def _write_all(parts: list[list[dict]], write: OnRows) -> None:
    for rows in parts:
        write(rows)


class EvalWorker:
    """A Ray actor: one model, scoring units (see :class:`~xai_core.evaluate.compute.Evaluator`)."""

    def __init__(self, settings: Settings) -> None:
        self.evaluator = Evaluator(settings)

    def run(self, x: torch.Tensor, unit: Unit) -> list[list[dict]]:
        """Rows of every task of ``unit`` on images ``x``."""
        return self.evaluator.run(replace(unit, x=x))

    def pid(self) -> int:
        """This worker's process id (tests kill it)."""
        return os.getpid()

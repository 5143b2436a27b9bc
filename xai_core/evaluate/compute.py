"""The work itself: explain a batch of images with one method at one layer and score the maps.

:class:`Evaluator` holds one model (on its device) and turns a :class:`Unit` - prepared
images plus the (method, layer) tasks still to do on them - into result rows. Both
engines use it: the local engine in the main process, the Ray engine once per worker.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xai_core.evaluate.dataset import one_line
from xai_core.evaluate.jobs import Job
from xai_core.evaluate.methods import ScoreComponents, make_maps
from xai_core.evaluate.sanity import sanity_scores
from xai_core.hooks.capture import eval_mode
from xai_core.metrics import default_pixels_per_step, evaluate_maps, road
from xai_core.models.registry import load_model

#: ``--metric-precision``: the dtype of the metrics' forward passes (``None``: float32, no autocast).
METRIC_PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to build its model and score maps (picklable).

    Attributes:
        model: model registry key.
        weights: ``"default"``, ``None`` (untrained) or a state_dict file.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        cam_layer: FG-CAM's CAM layer.
        target: ``"top1"`` or ``"label"``.
        pixels_per_step: insertion/deletion step.
        forward_batch: most images per forward pass of the metrics (the memory budget).
        method_batch: masked forward passes per batch inside Score-CAM / Ablation-CAM.
        channels_last: run the model in ``channels_last`` memory format.
        metric_precision: ``"fp32"`` (default) or ``"bf16"``: the dtype of the metrics'
            forward passes (insertion/deletion, Average Drop, ROAD) under
            ``torch.autocast``; the ranking of the classes and the maps stay float32.
        road: also score ROAD (remove and debias), MoRF and LeRF, at 10 % to 90 % removed.
        sanity: also fill the randomisation-check columns (:mod:`xai_core.evaluate.sanity`).
        threads: torch intra-op threads of every process that computes: this one on the
            local engine, each worker on Ray (``None``: torch's default of the driver, see
            :func:`run_threads`). One number for the whole run, because it changes float32
            results: oneDNN splits the reduction of some convolutions (the 1x1 projections
            of EfficientNet-Lite0 at batch 1, for instance) across threads, so another thread
            count sums in another order; a class probability then moves by up to ~1e-6 and a
            metric in percent by up to ~1e-4. At the same thread count (and the same batches,
            memory format and device) both engines give bit-identical rows.
        imports: modules imported first (they may register models).
    """

    model: str
    weights: str | None = "default"
    device: str = "cpu"
    cam_layer: str | None = None
    target: str = "top1"
    pixels_per_step: int | None = None
    forward_batch: int = 64
    method_batch: int = 32
    channels_last: bool = False
    metric_precision: str = "fp32"
    road: bool = False
    sanity: bool = False
    threads: int | None = None
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unit:
    """Images of one batch and the tasks still to do on them.

    Attributes:
        batch_id: the batch's number in the run.
        x: prepared images ``[B, C, H, W]`` (CPU).
        files: file name of each image.
        labels: true class of each image, or ``None``.
        crop_boxes: each image's crop box.
        tasks: ``(job, indices of the images that still need it)``.
    """

    batch_id: int
    x: torch.Tensor
    files: Sequence[str]
    labels: Sequence[int | None]
    crop_boxes: Sequence[tuple[float, float, float, float]]
    tasks: Sequence[tuple[Job, Sequence[int]]] = field(default_factory=list)


def run_threads(settings: Settings) -> int:
    """The run's torch thread count: ``settings.threads``, else torch's default in this process."""
    return settings.threads or torch.get_num_threads()


def apply_threads(settings: Settings) -> None:
    """Run torch in this process with the run's thread count (when ``settings.threads`` is set)."""
    if settings.threads and torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)


def load(settings: Settings):
    """Import ``settings.imports``, load the model on its device, ready for inference."""
    for name in settings.imports:
        importlib.import_module(name)
    apply_threads(settings)
    model = load_model(settings.model, weights=settings.weights)
    model.module.to(settings.device)
    if settings.channels_last:
        model.module.to(memory_format=torch.channels_last)
    return model


class Evaluator:
    """One model and the scoring of units on it."""

    def __init__(self, settings: Settings, model=None) -> None:
        self.settings = settings
        apply_threads(settings)  # also when the model is given: the run's arithmetic
        self.model = model if model is not None else load(settings)
        self.device = torch.device(settings.device)
        self.cam_layer = settings.cam_layer or self.model.spec.default_layer
        if settings.pixels_per_step is None:
            self.step = default_pixels_per_step(*self.model.spec.preprocessing.input_size)
        else:
            self.step = settings.pixels_per_step
        self._cache = ScoreComponents()
        self._probs: tuple[int, torch.Tensor] | None = None

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, N]`` (inference mode, the chosen memory format, float32)."""
        return self._forward(batch, None)

    def metric_predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, N]`` for the metrics: like :meth:`predict`, at ``settings.metric_precision``."""
        return self._forward(batch, METRIC_PRECISIONS[self.settings.metric_precision])

    def _forward(self, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        if self.settings.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(batch.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with self.model.lock, eval_mode(self.model.module), torch.inference_mode():
            with autocast:
                logits = self.model.module(batch)
            return self.model.probabilities(logits.float())

    def run(self, unit: Unit) -> list[list[dict]]:
        """Rows of every task of ``unit``, one list per task (each list is one results part)."""
        return list(self.run_iter(unit))

    def run_iter(self, unit: Unit) -> Iterator[list[dict]]:
        """Like :meth:`run`, yielding each task's rows as soon as they are computed."""
        x = unit.x.to(self.device, non_blocking=True)  # asynchronous from pinned memory (see engines.units)
        if self._probs is None or self._probs[0] != unit.batch_id:
            self._probs = (unit.batch_id, self.predict(x).float().cpu())
        probs = self._probs[1]
        kmax = max([job.method.k for job, _ in unit.tasks] + [1])
        ranked = torch.argsort(probs, dim=1, descending=True, stable=True)[:, :kmax].tolist()
        self._cache.for_batch(unit.batch_id)
        for job, idx in unit.tasks:
            yield self._task(unit, x, ranked, job, list(idx))

    def _task(self, unit: Unit, x: torch.Tensor, ranked: list[list[int]], job: Job, idx: list[int]) -> list[dict]:
        model = self.model
        rows, todo = {}, []
        for i in idx:
            label = unit.labels[i]
            row = base_row(self.settings, model.key, unit.files[i], job, label, self.step)
            row.update(predicted=ranked[i][0], crop_box=list(unit.crop_boxes[i]))
            row["correct"] = None if label is None else label == ranked[i][0]
            if self.settings.target == "label" and label is None:
                row["error"] = (
                    "no label for this file (give --labels or name it NAME__<class>.EXT), needed by --target label"
                )
            else:
                cls = label if self.settings.target == "label" else ranked[i][0]
                row.update(class_idx=cls, class_name=model.labels[cls])
                todo.append(i)
            rows[i] = row
        if todo:
            self._score(x, ranked, job, todo, rows, unit.files)
        return [rows[i] for i in idx]

    def _score(self, x, ranked, job: Job, todo: list[int], rows: dict[int, dict], files) -> None:
        start = time.perf_counter()
        classes = [rows[i]["class_idx"] for i in todo]
        try:
            maps, signed = self._maps(x[todo], job, classes, [ranked[i] for i in todo], [files[i] for i in todo])
        except Exception:  # isolate the image(s) that fail; the others still get their rows
            maps, signed, ok = [], False, []
            for i, cls in zip(todo, classes, strict=True):
                try:
                    m, signed = self._maps(x[i : i + 1], job, [cls], [ranked[i]], [files[i]])
                except Exception as exc:  # one failing image must not stop a long run; the row says why
                    rows[i]["error"] = one_line(f"{type(exc).__name__}: {exc}")
                    continue
                maps.append(m[0])
                ok.append(i)
            todo, classes = ok, [rows[i]["class_idx"] for i in ok]
            if not todo:
                return
            maps = torch.stack(maps)
        map_seconds = (time.perf_counter() - start) / len(todo)
        start = time.perf_counter()
        try:
            ev = evaluate_maps(
                self.metric_predict,
                x[todo],
                maps,
                classes,
                positive_only=signed,
                pixels_per_step=self.step,
                batch_size=self.settings.forward_batch,
            )
            scores = dict(ev.scores)
            if self.settings.road:
                for order in ("morf", "lerf"):
                    result = road(
                        self.metric_predict,
                        x[todo],
                        maps,
                        classes,
                        order=order,
                        batch_size=self.settings.forward_batch,
                    )
                    scores[f"road_{order}"] = result.mean
        except Exception as exc:  # the rows say why
            for i in todo:
                rows[i]["error"] = one_line(f"{type(exc).__name__}: {exc}")
            return
        metric_seconds = (time.perf_counter() - start) / len(todo)
        for n, i in enumerate(todo):
            rows[i].update({name: float(values[n]) for name, values in scores.items()})
            rows[i].update(ad_positive_only=signed, map_seconds=map_seconds, metric_seconds=metric_seconds)
        if self.settings.sanity:
            try:
                sanity = sanity_scores(self.model, x[todo], job.method, job.layer, classes, cam_layer=self.cam_layer)
            except Exception as exc:  # the metrics stand; the row says why the checks are missing
                for i in todo:
                    rows[i]["error"] = one_line(f"--sanity: {type(exc).__name__}: {exc}")
                return
            for n, i in enumerate(todo):
                rows[i].update({name: float(values[n]) for name, values in sanity.items()})

    def _maps(self, x, job: Job, classes, ranked, files) -> tuple[torch.Tensor, bool]:
        return make_maps(
            self.model,
            x,
            job.method,
            job.layer,
            classes,
            ranked,
            cam_layer=self.cam_layer,
            batch_size=self.settings.method_batch,
            cache=self._cache,
            image_ids=files,
        )


def base_row(settings: Settings, model_key: str, file: str, job: Job, label: int | None, step: int) -> dict:
    """The identifying columns of a row (everything else empty)."""
    return {
        "model": model_key,
        "file": file,
        "method": job.method.key,
        "layer": job.layer,
        "target": settings.target,
        "label": label,
        "pixels_per_step": step,
        "error": None,
    }


def error_rows(settings: Settings, model_key: str, path: Path, label, jobs: Sequence[Job], step: int, error: str):
    """One error row per job for an image that could not be used."""
    return [{**base_row(settings, model_key, path.name, job, label, step), "error": error} for job in jobs]

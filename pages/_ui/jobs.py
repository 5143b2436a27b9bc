"""Model work outside Streamlit's caches: background jobs, a shared result store, Stop.

Why not ``st.cache_data`` for the explanations: a progress bar updated from inside a
cached function is recorded by Streamlit as part of the cached call and replayed on
every later cache hit, where the element it belonged to no longer exists
(``CacheReplayClosureError``: slow results broke when shown again, issue 14 defect 1).
Here no Streamlit element is ever touched by the computation:

- :class:`JobStore` (one per server process, shared by every session) keeps finished
  results in a small LRU dictionary keyed exactly like the old caches (image digest,
  model id, layer, method, parameters, classes) and runs each missing result once in a
  worker thread. Two sessions asking for the same key share one job.
- The job's ``progress(done, total)`` only writes numbers; it raises :class:`Stopped`
  once Stop was pressed, so the library unwinds (hooks removed by its context managers)
  at the next batch. Results already finished stay in the store, and so do the finished
  batches of the stopped job (its ``memo``, see ``xai_core.methods.context.Progress``):
  Compute again goes on from there instead of starting from zero.
- The page's script thread draws the progress from those numbers (unit, time left) and
  owns every Streamlit element.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger("xai_dashboard")

MISSING = object()
#: Stopped jobs whose finished batches are kept (each a few kB: one score per mask and class).
MAX_MEMOS = 16


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a job's progress callback after Stop was pressed."""


@dataclass
class Job:
    """One computation running (or just finished) in a worker thread.

    Attributes:
        key: the result's key in the store.
        label: what is computed, for the progress text ("Score-CAM of 10 classes").
        unit: what ``done``/``total`` count ("masks"); empty for work without progress.
        done, total: the latest progress report.
        result, error: set when the job ends; ``stopped`` when it ended on Stop.
    """

    key: Hashable
    label: str
    unit: str = ""
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    result: object = None
    error: BaseException | None = None
    stopped: bool = False
    ended_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    #: finished batches (Score-CAM, Ablation-CAM), kept by the store when the job is stopped.
    memo: dict = field(default_factory=dict, repr=False)
    #: seconds spent by the stopped runs whose ``memo`` this job goes on from.
    spent: float = 0.0

    @property
    def resumed(self) -> bool:
        """Whether this job goes on from a stopped run's finished batches."""
        return self.spent > 0

    def __call__(self, done: int, total: int) -> None:
        """The job is the library's progress callback, carrying its ``memo``."""
        self.progress(done, total)

    @property
    def resumable(self) -> bool:
        """Whether a stopped run of this job kept finished batches to go on from."""
        return bool(self.memo)

    def progress(self, done: int, total: int) -> None:
        """The library's progress callback: record, and stop here if Stop was pressed."""
        self.done, self.total = int(done), int(total)
        if self.cancel.is_set():
            raise Stopped

    @property
    def running(self) -> bool:
        return not self.finished.is_set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def seconds_left(self) -> float | None:
        """Time left from the measured rate so far (None before the first report)."""
        if not self.done or not self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done * max(0, self.total - self.done)

    def status(self) -> str:
        """E.g. ``"Score-CAM: 256 of 770 masks, about 12 s left"``."""
        elapsed = time.monotonic() - self.started
        if not self.total:
            return f"{self.label}... ({elapsed:.0f} s)"
        left = self.seconds_left()
        tail = f", about {format_seconds(left)} left" if left is not None else ""
        return f"{self.label}: {self.done} of {self.total} {self.unit}{tail}"


def format_seconds(seconds: float) -> str:
    """``"4 s"``, ``"1 min 20 s"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


class JobStore:
    """Finished results (LRU) and running jobs, keyed by what was computed."""

    def __init__(self, max_results: int = 96) -> None:
        self._results: OrderedDict[Hashable, object] = OrderedDict()
        self._jobs: dict[Hashable, Job] = {}
        #: the memos of stopped jobs (a few, newest last), handed to the next job of the same key.
        self._memos: OrderedDict[Hashable, tuple[dict, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_results
        #: measured seconds per unit of slow work, ``(model_id, what) -> seconds``.
        self.rates: dict[tuple[str, str], float] = {}

    def get(self, key: Hashable) -> object:
        """The stored result, or :data:`MISSING`."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        return MISSING

    def put(self, key: Hashable, value: object) -> None:
        with self._lock:
            self._results[key] = value
            self._results.move_to_end(key)
            while len(self._results) > self._max:
                self._results.popitem(last=False)

    def job(self, key: Hashable) -> Job | None:
        """The job computing ``key``, if one runs and was not stopped."""
        with self._lock:
            job = self._jobs.get(key)
        return job if job is not None and not job.cancel.is_set() else None

    def submit(
        self, key: Hashable, fn: Callable[[Callable[[int, int], None]], object], *, label: str, unit: str = ""
    ) -> Job:
        """Start computing ``key`` with ``fn(progress)`` in a worker thread, or join the running job."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.cancel.is_set():
                return job
            memo, spent = self._memos.pop(key, ({}, 0.0))
            job = Job(key, label, unit, memo=memo, spent=spent)
            self._jobs[key] = job
        thread = threading.Thread(target=self._run, args=(job, fn), name=f"xai-job-{label}", daemon=True)
        thread.start()
        return job

    def stop(self, key: Hashable) -> Job | None:
        """Ask the job computing ``key`` to stop at its next progress report."""
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job.cancel.set()
        return job

    def _run(self, job: Job, fn: Callable[[Callable[[int, int], None]], object]) -> None:
        try:
            job.result = fn(job)
            if job.spent and dataclasses.is_dataclass(job.result) and hasattr(job.result, "seconds"):
                # The map's compute time is that of all its runs, not of the last part alone.
                job.result = dataclasses.replace(job.result, seconds=job.result.seconds + job.spent)
            self.put(job.key, job.result)
        except Stopped:
            job.stopped = True
            if job.memo:
                with self._lock:
                    self._memos[job.key] = (job.memo, job.spent + time.monotonic() - job.started)
                    while len(self._memos) > MAX_MEMOS:
                        self._memos.popitem(last=False)
        except BaseException as err:  # noqa: BLE001 - handed to the page that waits
            job.error = err
        finally:
            job.ended_at = time.monotonic()
            with self._lock:
                if self._jobs.get(job.key) is job:
                    del self._jobs[job.key]
            job.finished.set()

    def clear(self) -> None:
        """Forget every stored result (tests)."""
        with self._lock:
            self._results.clear()
            self._memos.clear()


#: The process-wide store used by the pages.
STORE = JobStore()

"""Running model work from a page: the result store, Compute / Stop, progress with time left.

Every Streamlit element lives here, in the script thread; the work itself runs in a
:mod:`pages._ui.jobs` worker and only reports numbers. While a job runs the script
redraws its progress bar a few times a second, which is also where Streamlit stops an
outdated run when the user changes a control: the job goes on in its thread (a second
run of the page joins it instead of restarting it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st

import xai_core as xc
from pages._ui.jobs import MISSING, STORE, Job, format_seconds

#: Session keys (one per browser session, shared by every page).
REQUESTED = "jobs.requested"  # slow results the user asked for with Compute
STOPPED = "jobs.stopped"  # key -> (done, total, label, unit, resumable) of work stopped by Stop

log = logging.getLogger("xai_dashboard")
T = TypeVar("T")


def attempt(fn: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Run ``fn``; show an XaiCoreError's message, or a short generic one for a bug; None on failure."""
    try:
        return fn(*args, **kwargs)
    except xc.XaiCoreError as err:
        st.error(str(err))
    except Exception:  # noqa: BLE001 - anything else is a bug: log it, keep the page alive
        log.exception("Unexpected error in %s", getattr(fn, "__name__", fn))
        st.error("Something went wrong while computing this. The details were written to the server log.")
    return None


@dataclass(frozen=True)
class Work:
    """A result the page needs: its store key, how to compute it, and how to talk about it.

    Attributes:
        key: store key (image digest, model id, layer, method, parameters, classes...).
        run: ``run(progress) -> result``; touches no Streamlit element.
        label: what is computed ("Score-CAM of 10 classes").
        slow: runs only after the user presses Compute, and can be stopped.
        unit: what the progress counts ("masks").
        estimate: estimated seconds on this machine (slow work), shown before Compute.
        how: how the estimate was made, one short phrase.
        rate_key: where the measured seconds per unit are kept for later estimates.
    """

    key: Hashable
    run: Callable[[Callable[[int, int], None]], object]
    label: str
    slow: bool = False
    unit: str = ""
    estimate: float | None = None
    how: str = ""
    rate_key: tuple | None = None


def _requested() -> set:
    return st.session_state.setdefault(REQUESTED, set())


def _stopped() -> dict:
    return st.session_state.setdefault(STOPPED, {})


def _widget_id(key: Hashable) -> str:
    return hashlib.sha1(repr(key).encode()).hexdigest()[:12]


def _stop(key: Hashable) -> None:
    """Stop button callback (runs before the page's next run, within a fraction of a second)."""
    job = STORE.stop(key)
    _requested().discard(key)
    if job is not None:
        # Score-CAM and Ablation-CAM keep their finished batches (the job's memo): Compute goes on.
        _stopped()[key] = (job.done, job.total, job.label, job.unit, job.resumable)


def _ask(key: Hashable) -> None:
    _requested().add(key)
    _stopped().pop(key, None)


def stopped_here(match: Callable[[Hashable], bool], *, forget: bool = False) -> bool:
    """Whether this session stopped work whose key ``match`` accepts; ``forget``: drop those records.

    For work whose key changes once stopped (the gallery's: the images still missing), where
    :func:`obtain`'s own "Stopped after" note, kept under the old key, is not drawn again.
    """
    found = [k for k in _stopped() if match(k)]
    if forget:
        for k in found:
            _stopped().pop(k, None)
    return bool(found)


def stored(work: Work) -> object:
    """The finished result of ``work`` if the store has it, else :data:`MISSING` (never computes)."""
    return STORE.get(work.key)


def obtain(work: Work, *, button: str | None = None, primary: bool = True) -> object:
    """The result of ``work``: from the store, or computed now with progress and Stop.

    Slow work waits for a Compute button press (``button`` is its label) and says how
    long it will take; after Stop the page shows what was done and offers Compute again.
    Returns the result, or :data:`MISSING` when it is not (yet) computed. Re-raises the
    work's error (an ``XaiCoreError`` for a user error) for the caller to show.
    """
    result = STORE.get(work.key)
    if result is not MISSING:
        return result
    job = STORE.job(work.key)
    if job is None and work.slow and work.key not in _requested():
        _offer(work, button or f"Compute {work.label}", primary)
        return MISSING
    if job is None:
        job = STORE.submit(work.key, work.run, label=work.label, unit=work.unit)
    return wait(job, work, button=button or f"Compute {work.label}")


def _offer(work: Work, button: str, primary: bool) -> None:
    # One container at the same place as the progress block of :func:`wait`, so that the
    # running page replaces this button instead of leaving it, clickable, beside the progress.
    with st.empty().container():
        stopped = _stopped().get(work.key)
        if stopped:
            done, total, _, unit, resumable = stopped
            again = (
                f"the {done} {unit} done are kept: the button goes on from there."
                if resumable
                else "this one starts again from the beginning when you press the button (other finished "
                "results are kept)."
            )
            st.info(f"Stopped after {done} of {total} {unit}; {again}", icon=":material/stop_circle:")
        elif work.estimate is not None:
            st.warning(
                f"{work.label} takes about **{format_seconds(work.estimate)}** on this machine ({work.how}). "
                "You can stop it at any time.",
                icon=":material/hourglass_top:",
            )
        left, _ = st.columns([3, 1])
        left.button(
            button,
            type="primary" if primary else "secondary",
            key=f"compute.{_widget_id(work.key)}",
            on_click=_ask,
            args=(work.key,),
        )


def wait(job: Job, work: Work, *, button: str) -> object:
    """Draw the job's progress until it ends; the result, or :data:`MISSING` after Stop."""
    holder = st.empty()
    with holder.container():
        if work.slow:
            left, right = st.columns([3, 1])
            left.button(
                button, disabled=True, key=f"computing.{_widget_id(work.key)}", help="Running: press Stop to end it."
            )
            right.button(
                "Stop",
                key=f"stop.{_widget_id(work.key)}",
                on_click=_stop,
                args=(work.key,),
                icon=":material/stop_circle:",
                help="Stops within a second; results finished before are kept.",
            )
        bar = st.progress(job.fraction, text=job.status())
    while not job.finished.wait(0.2):
        if job.cancel.is_set():  # stopped by another session sharing this job
            break
        bar.progress(job.fraction, text=job.status())
    holder.empty()
    if job.stopped or job.cancel.is_set():
        return MISSING
    if job.error is not None:
        raise job.error
    if work.rate_key is not None and job.total and job.ended_at is not None and not job.resumed:
        STORE.rates[work.rate_key] = (job.ended_at - job.started) / job.total
    return job.result


def request(key: Hashable) -> None:
    """Mark slow work as asked for (computed without another button press)."""
    _ask(key)


def asked(key: Hashable) -> bool:
    """Whether this session asked for the slow work ``key``."""
    return key in _requested()

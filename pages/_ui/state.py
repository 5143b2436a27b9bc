"""Session-state keys, paths and the model-run counter.

``model_runs()`` counts every time a page helper actually ran a model (a cache miss of a
``compute_*`` helper). Tests read it to check that display-only changes (K, colour map,
opacity, activation, normalisation) re-render without the model.
"""

from __future__ import annotations

import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
PAGE_FILES = {
    "home": "pages/home.py",
    "classification": "pages/classification.py",
    "xray": "pages/xray.py",
    "comparison": "pages/comparison.py",
}

#: Session-state key holding a sample chosen on the home page: ``{"family": ..., "name": ...}``.
PENDING_SAMPLE = "pending_sample"

#: The largest number of classes explained per image; any K up to this re-renders without the model.
K_MAX = 10

_RUNS = 0
_RUNS_LOCK = threading.Lock()


def count_model_run(n: int = 1) -> None:
    """Record that a model was run ``n`` times (called inside the cached compute helpers)."""
    global _RUNS
    with _RUNS_LOCK:
        _RUNS += n


def model_runs() -> int:
    """How many times a model has been run in this process (all sessions)."""
    with _RUNS_LOCK:
        return _RUNS


def key(page: str, name: str) -> str:
    """A session-state / widget key scoped to one page, e.g. ``"cls.k"``."""
    return f"{page}.{name}"


# ----------------------------------------------------------------------------- routing

_ROUTED = False


def mark_routed() -> None:
    """Called by ``app.py`` before ``st.navigation``: the router has run in this process."""
    global _ROUTED
    _ROUTED = True


def ensure_routed() -> None:
    """Run ``app.py`` first when Streamlit ran a page file directly.

    Streamlit keeps its older multipage mode while a ``pages/`` folder sits next to the
    main script and no ``st.navigation`` call has been seen yet in the process: a first
    visitor opening ``/classification`` on a fresh server would get the page file alone
    (no page config, a navigation built from file names). Running the router instead
    switches the process to ``st.navigation`` for good; the router then runs this page.
    """
    if _ROUTED:
        return
    import runpy

    import streamlit as st

    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
    st.stop()

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
    "side_by_side": "pages/side_by_side.py",
    "gallery": "pages/gallery.py",
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


# ----------------------------------------------------------------------------- shared choices
#
# One image and one set of choices per browser session, used by every page. Streamlit
# forgets a widget's value when a run does not draw that widget (moving to another page),
# so each choice also lives under a plain session key, ``shared.<name>``, that no widget
# owns. A widget is seeded from it before it is drawn (:func:`seed`) and writes back to
# it when the user changes it (``on_change=remember, args=(widget_key, name)``).

SHARED_PREFIX = "shared."


def shared_key(name: str) -> str:
    """The session key holding the shared value of choice ``name``."""
    return SHARED_PREFIX + name


def shared(name: str, default: object = None) -> object:
    """The session's shared value of ``name`` (``default`` if never chosen)."""
    import streamlit as st

    return st.session_state.get(shared_key(name), default)


def set_shared(name: str, value: object) -> None:
    import streamlit as st

    st.session_state[shared_key(name)] = value


def seed(widget_key: str, name: str, default: object, valid=None) -> None:
    """Give the widget ``widget_key`` the shared value of ``name`` (else ``default``) before it is drawn.

    ``valid(value) -> bool`` rejects a shared value this widget cannot show (a layer of
    another model, a K above the classes computed); the default is used then.
    """
    import streamlit as st

    value = st.session_state.get(shared_key(name), default)
    if valid is not None and not valid(value):
        from pages._ui import url_state  # a choice from the address that this widget cannot show: say so

        url_state.refused(name, value)
        value = default
    # Only when it differs: a value set through the Session State API is sent to the
    # browser again, which would close a menu the user has just opened.
    if widget_key not in st.session_state or st.session_state[widget_key] != value:
        st.session_state[widget_key] = value


def remember(widget_key: str, name: str) -> None:
    """``on_change`` callback: store the widget's new value as the shared choice ``name``."""
    import streamlit as st

    st.session_state[shared_key(name)] = st.session_state[widget_key]

"""The comparison page's randomisation check (Adebayo et al. 2018): one button, the paper's figure.

No maths here: :func:`xai_core.trust.model_randomisation` runs the check (on a deep copy
of the model) through :func:`pages._ui.compute.sanity_work`, as slow work of
:mod:`pages._ui.running` (an estimate, progress, Stop); each method's result is kept in
the shared store as it ends, and a method stopped midway keeps the steps it finished.
"""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures
from pages._ui.jobs import MISSING, STORE
from pages._ui.running import STOPPED, Work, attempt, obtain
from pages._ui.state import key
from xai_core.trust import SanityResult

#: Randomisation steps offered (layers of the cascade after which the maps are compared).
STEPS = (4, 6, 8, 12)
DEFAULT_STEPS = 6

READING = (
    "**How to read it:** a method that explains the model passes when its maps and its curve decay as more layers "
    "are randomised; a method whose map stays similar to the trained model's shows the image's structure (edges), "
    "not the model's reasoning."
)


def show(
    page: str,
    model: xc.LoadedModel,
    model_id: str,
    digest: str,
    image,
    view,
    layer: str,
    cls: int,
    on_screen: dict[str, tuple[str, tuple, float]],
    colormap: str,
) -> None:
    """The section: what the check does, its steps, the Run button with an estimate, then the figure and curves.

    ``on_screen``: label -> (registry method, parameters, seconds one map took here) of the maps on the page.
    """
    st.subheader("Can these maps be trusted?")
    st.markdown(
        "**Model-parameter randomisation** (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018): the "
        "model's layers are re-initialised one after another from the output down (cascading), and each method's "
        "map of the same class is recomputed after each group of layers. A copy of the model is randomised; the "
        "model itself is left untouched. More, with measurements on 16 images: `docs/trust.md`."
    )
    steps = st.select_slider(
        "Randomisation steps",
        STEPS,
        value=DEFAULT_STEPS,
        key=key(page, "sanity_steps"),
        help="Layers of the cascade after which the maps are compared, evenly spaced from the output layer to the "
        "first one (every layer in between is randomised too). Each step costs one map per method.",
    )
    keys = {
        label: compute.sanity_key(digest, model_id, layer, method, params, cls, steps)
        for label, (method, params, _) in on_screen.items()
    }

    def found() -> dict[str, SanityResult]:
        out = {}
        for label, k in keys.items():
            result = STORE.get(k)
            if result is MISSING:
                result = STORE.get(compute.sanity_partial_key(k))
            if result is not MISSING:
                out[label] = result
        return out

    todo = [(label, keys[label]) for label in on_screen if STORE.get(keys[label]) is MISSING]
    if todo:
        maps = (steps + 1) * len(todo)
        seconds = (steps + 1) * sum(on_screen[label][2] for label, _ in todo)
        work = Work(
            ("sanity-run", *(k for _, k in todo)),
            compute.sanity_work(
                model, image, layer, [(k, on_screen[label][0], on_screen[label][1]) for label, k in todo], cls, steps
            ),
            f"Sanity check of {len(todo)} method{'s' if len(todo) > 1 else ''}",
            slow=True,
            unit="maps",
            estimate=seconds,
            how=f"{maps} maps, {steps + 1} per method, at each method's time for its map above",
        )
        attempt(obtain, work, button="Run the sanity check")
    results = found()
    if not results:
        return
    complete = sum(not r.stopped for r in results.values())
    ours = set(keys.values())
    stopped = any(
        isinstance(k, tuple) and k[:1] == ("sanity-run",) and ours & set(k[1:])
        for k in st.session_state.get(STOPPED, {})
    )
    if stopped and complete < len(on_screen):
        st.info(
            f"Stopped: {complete} of {len(on_screen)} methods finished"
            + "".join(
                f"; {label} after {r.completed} of {len(r.steps)} steps" for label, r in results.items() if r.stopped
            )
            + ". Press the button to run the rest.",
            icon=":material/stop_circle:",
        )
    elif complete < len(on_screen):
        st.caption(f"{complete} of the {len(on_screen)} methods on screen are checked; the button checks the rest.")
    st.markdown(READING)
    st.plotly_chart(figures.sanity_curves_figure(results), key=key(page, "sanity_curves"))
    st.plotly_chart(figures.sanity_maps_figure(view, results, colormap), key=key(page, "sanity_maps"))

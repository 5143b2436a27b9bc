"""Running an explanation for a page: predictions, the explanation job and the classes shown.

The sidebar's choices come in as a :class:`pages._ui.widgets.Setup`; the work runs through
:mod:`pages._ui.running` (Compute / Stop, progress) and errors are shown by
:func:`pages._ui.running.attempt`.
"""

from __future__ import annotations

from typing import NamedTuple

import xai_core as xc
from pages._ui import compute
from pages._ui.estimates import slow_estimate
from pages._ui.running import MISSING, Work, attempt, obtain
from pages._ui.widgets import Setup


class Explained(NamedTuple):
    """One pass over the top K_max classes and the chosen ones, and what the page shows of it.

    Attributes:
        full: every computed class (the top K_max, then chosen classes outside them).
        shown: the classes of the fused map, in order (top K and/or the chosen ones).
        chart: ``shown`` first, then the other top classes (for the bar chart).
    """

    full: xc.Explanation
    shown: xc.Explanation
    chart: xc.Explanation


def shown_classes(full: xc.Explanation, setup: Setup, n_top: int) -> Explained:
    """Pick the classes to show from a computed explanation (no model call)."""
    from xai_core.select import rows_of, subset

    k = min(setup.display.k, n_top)
    chosen = rows_of(full, setup.classes)
    if setup.class_mode == "replace" and chosen:
        rows = chosen
    else:
        rows = list(range(k)) + [r for r in chosen if r >= k]
    rest = [r for r in range(n_top) if r not in rows]
    return Explained(full, subset(full, rows), subset(full, rows + rest))


def explain_classes(page: str, setup: Setup, digest: str, image: object, what: str) -> Explained | None:
    """Maps of the top ``setup.k_max`` classes and the chosen ones, in one pass per image and settings.

    Slow methods run only after Compute is pressed, with progress and Stop; every result
    stays in the shared store afterwards. ``what`` names the classes ("classes", "pathologies").
    """
    spec = xc.get_explainer(setup.method)
    model_id = setup.choice.model_id
    pred = attempt(compute.predictions, digest, model_id, _image=image, _model=setup.model)
    if pred is None:
        return None
    top = tuple(pred.order[: setup.k_max])
    class_idx = top + tuple(c for c in setup.classes if c not in top)
    n = len(class_idx)
    estimate, how = slow_estimate(model_id, setup.model, setup.layer, pred) if spec.slow else (None, "")
    work = Work(
        compute.explanation_key(digest, model_id, setup.layer, setup.method, setup.params, class_idx),
        compute.explanation_work(setup.model, image, setup.layer, setup.method, setup.params, class_idx),
        f"{spec.label} of {n} {what}",
        slow=spec.slow,
        unit="masks" if spec.slow else "",
        estimate=estimate,
        how=how,
        rate_key=(model_id, "masks") if spec.slow else None,
    )
    full = attempt(obtain, work, button=f"Compute {spec.label}")
    if full is None or full is MISSING:
        return None
    return attempt(shown_classes, full, setup, len(top))

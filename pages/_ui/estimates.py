"""Time estimates for slow (perturbation) methods, shown before the user presses Compute."""

from __future__ import annotations

import xai_core as xc
from pages._ui import compute


def slow_estimate(model_id: str, model: xc.LoadedModel, layer: str, pred: compute.Predictions) -> tuple[float, str]:
    """Seconds a perturbation method will take here, and how that was estimated.

    One masked forward pass per feature map of ``layer``; its cost is the rate measured
    by the last finished slow run of this model in this server, else one forward pass
    timed on this image.
    """
    from pages._ui.jobs import STORE

    n = compute.layer_channels(model, layer) or 1
    rate = STORE.rates.get((model_id, "masks"))
    if rate:
        return n * rate, f"up to {n} masks at {1000 * rate:.0f} ms each, measured on the last slow run here"
    return (
        n * pred.forward_seconds,
        f"up to {n} masks, one masked forward pass measured at {1000 * pred.forward_seconds:.0f} ms here",
    )

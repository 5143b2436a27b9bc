"""Layer lookup, the module tracer and activation capture.

Every hook xai_core registers lives inside a context manager that removes it in
``finally``: :func:`capture` and :func:`~xai_core.hooks.capture.replace_output` here, the
tracer in :mod:`xai_core.hooks.layers`, and the relevance rules in
:mod:`xai_core.relevance.composite`.
"""

from xai_core.hooks.capture import Capture, capture, model_lock
from xai_core.hooks.layers import call_counts, candidate_layers, final_feature_layer, resolve_layer, trace_modules

__all__ = [
    "Capture",
    "call_counts",
    "candidate_layers",
    "capture",
    "final_feature_layer",
    "model_lock",
    "resolve_layer",
    "trace_modules",
]

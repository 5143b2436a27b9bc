"""Layer lookup and activation capture (the only place that registers hooks)."""

from xai_core.hooks.capture import Capture, capture
from xai_core.hooks.layers import call_counts, candidate_layers, resolve_layer

__all__ = ["Capture", "capture", "call_counts", "candidate_layers", "resolve_layer"]

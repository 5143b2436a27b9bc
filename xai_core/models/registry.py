"""The model registry: every model the dashboard offers, as data.

A :class:`ModelSpec` says how to build the architecture, where its weights come from,
how to preprocess, which output is "the logit", class names, and the default layer to
explain. :func:`load_model` turns a spec into a :class:`LoadedModel`. Adding a model is
one :func:`register` call (see README "Using other models").
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from xai_core.errors import UnknownNameError
from xai_core.hooks.layers import LayerInfo, candidate_layers
from xai_core.models.preprocess import Preprocessing
from xai_core.models.weights import load_into, read_state_dict


@dataclass(frozen=True)
class ModelSpec:
    """Everything xai_core needs to know about one model.

    Attributes:
        key: registry key, e.g. ``"resnet50"``.
        label: display name.
        family: ``"imagenet"`` or ``"xray"``.
        build: returns the architecture with random weights (no download).
        fetch_weights: returns the default weights as a state_dict; may download and
            raises :class:`~xai_core.errors.WeightsError` when that fails.
        preprocessing: see :class:`Preprocessing`.
        labels: class names, one per output ("" for an untrained output).
        default_layer: the layer explained by default (the last convolutional block).
        output: ``"softmax"`` (single-label) or ``"sigmoid"`` (multi-label) probabilities.
        thresholds: per-output operating thresholds on the probability (NaN = unknown).
        offline: the default weights ship with a Python package (no network needed).
        description: one line for the model picker.
    """

    key: str
    label: str
    family: str
    build: Callable[[], nn.Module]
    fetch_weights: Callable[[], dict[str, torch.Tensor]] | None
    preprocessing: Preprocessing
    labels: tuple[str, ...]
    default_layer: str
    output: str = "softmax"
    thresholds: tuple[float, ...] | None = None
    offline: bool = False
    description: str = ""


@dataclass
class LoadedModel:
    """A built model with its spec. Hooks and state changes go through ``xai_core.hooks``."""

    spec: ModelSpec
    module: nn.Module
    weights_source: str
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def key(self) -> str:
        """The registry key."""
        return self.spec.key

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, one per output."""
        return self.spec.labels

    @property
    def valid_outputs(self) -> torch.Tensor:
        """Boolean mask of outputs with a class name (torchxrayvision leaves some unnamed)."""
        return torch.tensor([bool(label) for label in self.spec.labels])

    @property
    def n_valid(self) -> int:
        """How many outputs have a class name (the most classes top-K can explain)."""
        return int(self.valid_outputs.sum())

    def example_input(self) -> torch.Tensor:
        """A zero input of the model's shape ``[1, C, H, W]``."""
        h, w = self.spec.preprocessing.input_size
        return torch.zeros(1, self.spec.preprocessing.channels, h, w)

    @cached_property
    def layers(self) -> list[LayerInfo]:
        """Layers that can be explained, in forward order (traced once, then cached)."""
        with self.lock:
            return candidate_layers(self.module, self.example_input())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, N]`` to probabilities, softmax or sigmoid as the model was trained."""
        return torch.sigmoid(logits) if self.spec.output == "sigmoid" else torch.softmax(logits, dim=-1)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, N]`` for a batch of prepared inputs (no gradients)."""
        from xai_core.hooks.capture import eval_mode

        with self.lock, eval_mode(self.module), torch.inference_mode():
            return self.probabilities(self.module(batch))

    def above_threshold(self, probs: torch.Tensor) -> list[bool | None]:
        """Per output: probability above the operating threshold (None where unknown)."""
        if self.spec.thresholds is None:
            return [None] * len(self.spec.labels)
        return [None if math.isnan(t) else bool(p > t) for p, t in zip(probs.tolist(), self.spec.thresholds)]


_REGISTRY: dict[str, ModelSpec] = {}
_CACHE: dict[tuple[str, str | None], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to the registry."""
    if spec.key in _REGISTRY and not replace:
        raise ValueError(f"A model called {spec.key!r} is already registered.")
    _REGISTRY[spec.key] = spec
    return spec


def get_spec(key: str) -> ModelSpec:
    """The spec registered as ``key``."""
    _ensure_builtins()
    if key not in _REGISTRY:
        raise UnknownNameError("model", key, list(_REGISTRY))
    return _REGISTRY[key]


def list_models(family: str | None = None) -> list[ModelSpec]:
    """Registered models, optionally of one family (``"imagenet"`` or ``"xray"``)."""
    _ensure_builtins()
    return [s for s in _REGISTRY.values() if family is None or s.family == family]


def build_model(key: str, *, weights: str | os.PathLike | None = "default") -> LoadedModel:
    """Build a model without caching.

    Args:
        key: registry key.
        weights: ``"default"`` (the spec's weights, downloaded if needed), ``None``
            (random weights, for tests and speed measurements), or a path to a
            state_dict file (read with ``weights_only=True``).

    Raises:
        UnknownNameError, WeightsError.
    """
    spec = get_spec(key)
    module = spec.build()
    if weights == "default":
        if spec.fetch_weights is None:
            source = "random (no default weights)"
        else:
            load_into(module, spec.fetch_weights(), source=f"the default weights of {spec.label}")
            source = "default"
    elif weights is None:
        source = "random"
    else:
        load_into(module, read_state_dict(weights), source=repr(os.fspath(weights)))
        source = os.fspath(weights)
    module.eval()
    return LoadedModel(spec, module, source)


def load_model(key: str, *, weights: str | os.PathLike | None = "default") -> LoadedModel:
    """Like :func:`build_model`, but built once per process and reused."""
    cache_key = (key, None if weights is None else os.fspath(weights))
    with _CACHE_LOCK:
        if cache_key not in _CACHE:
            _CACHE[cache_key] = build_model(key, weights=weights)
        return _CACHE[cache_key]


def clear_cache() -> None:
    """Forget every cached model."""
    with _CACHE_LOCK:
        _CACHE.clear()


_BUILTINS_LOADED = False
_BUILTINS_LOCK = threading.Lock()


def _ensure_builtins() -> None:
    # Thread-safe: the flag is set only once every spec is registered, so a second thread
    # (another dashboard session) waits instead of seeing an empty registry.
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _BUILTINS_LOCK:
        if not _BUILTINS_LOADED:
            from xai_core.models import zoo

            for spec in zoo.builtin_specs():
                _REGISTRY.setdefault(spec.key, spec)
            _BUILTINS_LOADED = True

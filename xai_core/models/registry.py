"""The model registry: every model the dashboard offers, as data, made when first asked for.

The catalogue (:func:`list_models`) is a list of cheap :class:`ModelInfo` lines; the
full :class:`ModelSpec` of a model (how to build it, its weights, preprocessing, class
names, default layer) is made the first time :func:`get_spec` asks for that key and is
kept. Keys ``timm:NAME`` and ``torchvision:NAME`` resolve on demand to any CNN of those
libraries (:mod:`xai_core.models.libraries`). :func:`load_model` turns a spec into a
:class:`LoadedModel` on a device. Adding a model is one :func:`register` call (see
README "Using other models").
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import torch
from torch import nn

from xai_core.errors import UnknownNameError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.hooks.layers import LayerInfo, candidate_layers
from xai_core.hooks.tokens import is_transformer, token_candidate_layers
from xai_core.models import zoo
from xai_core.models.device import module_device, resolve_device
from xai_core.models.libraries import PREFIXES, library_spec
from xai_core.models.spec import ModelInfo, ModelSpec
from xai_core.models.weights import load_into, read_state_dict

__all__ = [
    "LoadedModel",
    "ModelInfo",
    "ModelSpec",
    "build_model",
    "clear_cache",
    "get_spec",
    "list_models",
    "load_model",
    "register",
]


@dataclass
class LoadedModel:
    """A built model on its device, with its spec.

    Hooks and state changes go through ``xai_core.hooks``; the model's one lock is
    :func:`xai_core.hooks.capture.model_lock` of its module (also :attr:`lock`).
    """

    spec: ModelSpec
    module: nn.Module
    weights_source: str

    @property
    def key(self) -> str:
        """The registry key."""
        return self.spec.key

    @property
    def device(self) -> torch.device:
        """The device the model's weights live on (inputs go there too)."""
        return module_device(self.module)

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock that serialises hooked work on this model (one per module)."""
        return model_lock(self.module)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, one per output."""
        return self.spec.labels

    @cached_property
    def _valid_cpu(self) -> torch.Tensor:
        return torch.tensor([bool(label) for label in self.spec.labels])

    @property
    def valid_outputs(self) -> torch.Tensor:
        """Boolean mask of outputs with a class name, on the model's device (torchxrayvision leaves some unnamed)."""
        return self._valid_cpu.to(self.device)

    @property
    def n_valid(self) -> int:
        """How many outputs have a class name (the most classes top-K can explain)."""
        return int(self._valid_cpu.sum())

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A zero input of the model's shape ``[batch, C, H, W]`` on the model's device."""
        h, w = self.spec.preprocessing.input_size
        return torch.zeros(batch, self.spec.preprocessing.channels, h, w, device=self.device)

    @cached_property
    def layers(self) -> list[LayerInfo]:
        """Layers that can be explained, in forward order (traced once, then cached)."""
        if is_transformer(self.module):  # token layers read as [C, h, w] maps (hooks/tokens.py)
            return token_candidate_layers(self.module, self.example_input())
        return candidate_layers(self.module, self.example_input())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, N]`` to probabilities (softmax or sigmoid as the model was trained), on the logits' device."""
        return torch.sigmoid(logits) if self.spec.output == "sigmoid" else torch.softmax(logits, dim=-1)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, N]`` on the model's device for prepared inputs (moved there; no gradients)."""
        with self.lock, eval_mode(self.module), torch.inference_mode():
            return self.probabilities(self.module(batch.to(self.device)))

    def above_threshold(self, probs: torch.Tensor) -> list[bool | None]:
        """Per output: probability above the operating threshold (None where unknown)."""
        if self.spec.thresholds is None:
            return [None] * len(self.spec.labels)
        return [None if math.isnan(t) else bool(p > t) for p, t in zip(probs.tolist(), self.spec.thresholds)]


_MAKERS: dict[str, Callable[[], ModelSpec]] = {}  # key -> the zoo's function making its spec
_CATALOGUE: dict[str, ModelInfo] = {}  # key -> its line, whose ``make`` goes through get_spec
_REGISTRY: dict[str, ModelSpec] = {}  # specs made so far, and registered ones
_SPEC_LOCK = threading.RLock()  # held while a spec is made (may import a library)
_CATALOGUE_LOCK = threading.Lock()  # held only to read or change the catalogue: listing never waits for a maker
_CACHE: dict[tuple[str, str | None, str], LoadedModel] = {}
#: The seed of every model's initial (random) weights: :func:`build_model` gives the same ones each time.
RANDOM_WEIGHTS_SEED = 0
_CACHE_LOCK = threading.Lock()


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to the registry (and to :func:`list_models`)."""
    with _SPEC_LOCK:
        if (spec.key in _CATALOGUE or spec.key in _REGISTRY) and not replace:
            raise ValueError(f"A model called {spec.key!r} is already registered.")
        _REGISTRY[spec.key] = spec
        _MAKERS.pop(spec.key, None)
        with _CATALOGUE_LOCK:
            _CATALOGUE[spec.key] = spec.info
    return spec


def get_spec(key: str) -> ModelSpec:
    """The spec of ``key``: a listed model, or any ``timm:NAME`` / ``torchvision:NAME`` CNN.

    The spec is made on first use (only then are the libraries it needs imported) and
    kept; concurrent first callers wait for one another and get the same object.

    Raises:
        UnknownNameError: an unknown key (with close matches and the valid choices).
    """
    spec = _REGISTRY.get(key)
    if spec is not None:
        return spec
    with _SPEC_LOCK:
        spec = _REGISTRY.get(key)
        if spec is None:
            if isinstance(key, str) and key in _MAKERS:
                spec = _MAKERS[key]()
            elif isinstance(key, str) and key.startswith(PREFIXES):
                spec = library_spec(key)
            else:
                with _CATALOGUE_LOCK:
                    choices = list(_CATALOGUE)
                raise UnknownNameError(
                    "model",
                    key,
                    choices,
                    hint="Any timm or torchvision CNN also works by name: 'timm:convnext_tiny', "
                    "'torchvision:regnet_y_800mf'.",
                )
            _REGISTRY[key] = spec
        return spec


def list_models(family: str | None = None) -> list[ModelInfo]:
    """The catalogue, default first, optionally of one family (``"imagenet"`` or ``"xray"``).

    Each :class:`ModelInfo` has ``key``, ``label``, ``family``, ``description`` and
    ``offline`` without making the spec; its other spec attributes (``labels``,
    ``preprocessing``, ...) make the spec on first access.
    """
    with _CATALOGUE_LOCK:
        infos = list(_CATALOGUE.values())
    return [i for i in infos if family is None or i.family == family]


def build_model(
    key: str, *, weights: str | os.PathLike | None = "default", device: str | torch.device | None = "cpu"
) -> LoadedModel:
    """Build a model without caching.

    Args:
        key: registry key (see :func:`get_spec`).
        weights: ``"default"`` (the spec's weights, downloaded if needed), ``None``
            (random weights, for tests and speed measurements: the same on every call and
            every server, drawn from seed :data:`RANDOM_WEIGHTS_SEED`), or a path to a weights
            file: a state_dict (read with ``weights_only=True``) or a ``.safetensors`` file.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``
            (see :func:`xai_core.models.device.resolve_device`).

    Raises:
        UnknownNameError, WeightsError, DeviceError.
    """
    target = resolve_device(device)  # before any work: a wrong device fails at once
    spec = get_spec(key)
    # Seeded, so that random weights are the same everywhere (one server's demo flags what another's does),
    # without touching the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(RANDOM_WEIGHTS_SEED)
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
    module.eval().to(target)
    return LoadedModel(spec, module, source)


def load_model(
    key: str, *, weights: str | os.PathLike | None = "default", device: str | torch.device | None = "cpu"
) -> LoadedModel:
    """Like :func:`build_model`, but built once per process, weights and device, and reused."""
    target = resolve_device(device)
    cache_key = (key, None if weights is None else os.fspath(weights), str(target))
    with _CACHE_LOCK:
        if cache_key not in _CACHE:
            _CACHE[cache_key] = build_model(key, weights=weights, device=target)
        return _CACHE[cache_key]


def clear_cache() -> None:
    """Forget every cached model."""
    with _CACHE_LOCK:
        _CACHE.clear()


for _info in zoo.catalogue():
    _MAKERS[_info.key] = _info.make
    _CATALOGUE[_info.key] = dataclasses.replace(_info, make=partial(get_spec, _info.key))

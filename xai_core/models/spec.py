"""What xai_core knows about a model, as data: :class:`ModelSpec` and :class:`ModelInfo`.

A :class:`ModelSpec` is complete (builder, weights, preprocessing, class names, default
layer) and may take imports to make (torchvision's weights tables, torchxrayvision). A
:class:`ModelInfo` is the cheap catalogue line a picker needs (key, label, family,
description) plus a function that makes the spec when it is first asked for. This module
imports nothing heavy and nothing else from ``xai_core.models`` but preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from xai_core.models.preprocess import Preprocessing


@dataclass(frozen=True)
class ModelSpec:
    """Everything xai_core needs to know about one model.

    Attributes:
        key: registry key, e.g. ``"resnet50"`` or ``"timm:convnext_atto"``.
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

    @property
    def info(self) -> ModelInfo:
        """This spec's catalogue line."""
        return ModelInfo(self.key, self.label, self.family, self.description, self.offline, make=lambda: self)


@dataclass(frozen=True)
class ModelInfo:
    """One line of the model catalogue: enough for a picker, without building the spec.

    Reading any other :class:`ModelSpec` attribute (``preprocessing``, ``labels``,
    ``default_layer``, ...) on it makes the spec and returns the spec's value, so code
    written for the lists of specs that ``list_models`` used to return keeps working.
    The lines ``list_models`` returns make their spec through ``get_spec``, once.

    Attributes:
        key, label, family, description, offline: as in :class:`ModelSpec`.
        make: returns the full spec (may import torchvision, torchxrayvision, timm).
    """

    key: str
    label: str
    family: str
    description: str = ""
    offline: bool = False
    make: Callable[[], ModelSpec] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def spec(self) -> ModelSpec:
        """The full spec (for listed models, made once and kept by the registry)."""
        return self.make()

    def __getattr__(self, name: str) -> object:
        # Only called for attributes a ModelInfo does not have itself.
        if name.startswith("_") or name not in ModelSpec.__dataclass_fields__:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        return getattr(self.spec, name)

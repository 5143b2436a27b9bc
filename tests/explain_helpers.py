"""Tests' way to explain a bare ``nn.Module``: wrap it as a :class:`~xai_core.LoadedModel`, then ``explain``.

``xai_core.explain`` is the one entry point; it takes a loaded model. Tests that build
small networks by hand use :func:`cams` to run any registered method on them through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import xai_core as xc
from xai_core.hooks.capture import eval_mode
from xai_core.models import LoadedModel
from xai_core.models.preprocess import Preprocessing
from xai_core.models.spec import ModelSpec


def as_model(module: nn.Module, x: torch.Tensor, *, layer: str = "") -> LoadedModel:
    """``module`` as a loaded model for inputs shaped like ``x`` (one forward pass counts its outputs)."""
    with eval_mode(module), torch.no_grad():
        classes = int(module(x[:1]).shape[1])
    h, w = x.shape[-2:]
    spec = ModelSpec(
        key=f"test:{type(module).__name__}",
        label=type(module).__name__,
        family="imagenet",
        build=lambda: module,
        fetch_weights=None,
        preprocessing=Preprocessing(kind="imagenet", input_size=(int(h), int(w)), channels=int(x.shape[1])),
        labels=tuple(f"class {i}" for i in range(classes)),
        default_layer=layer,
    )
    return LoadedModel(spec, module, "test")


def cams(
    module: nn.Module | LoadedModel,
    x: torch.Tensor,
    *,
    method: str,
    layer: str,
    top_k: int = 1,
    class_idx: Sequence[int] | None = None,
    **params: object,
) -> xc.Explanation:
    """``xai_core.explain`` of one prepared input ``[1, C, H, W]``: its :class:`~xai_core.Explanation`.

    ``.cams`` holds the signed maps ``[K, h, w]``, ``.class_idx`` the classes.
    """
    model = module if isinstance(module, LoadedModel) else as_model(module, x, layer=layer)
    return xc.explain(
        model, x, method=method, layer=layer, top_k=top_k, class_idx=class_idx, max_batch=x.shape[0], **params
    )[0]

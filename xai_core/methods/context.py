"""What an explainer receives: the request, and for CAM-family maths the captured tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called by slow methods as batches finish.

A progress callback may also carry a ``memo`` dict (an attribute): Score-CAM and
Ablation-CAM then keep each finished batch's scores there and, called again with the
same inputs and the same memo, skip the batches it holds. A run stopped by a raising
callback thus goes on from where it stopped (:func:`batch_memo`).
"""


def batch_memo(progress: Progress | None) -> dict | None:
    """The ``memo`` dict ``progress`` carries, or None (see :data:`Progress`)."""
    memo = getattr(progress, "memo", None)
    return memo if isinstance(memo, dict) else None


ClassChoice = Callable[[torch.Tensor], torch.Tensor]
"""Maps the logits ``[N, n]`` of the forward pass to the explained classes ``[N, K]``."""


@dataclass(frozen=True)
class ExplainRequest:
    """One explainer call on a batch of prepared inputs.

    Attributes:
        module: the network (any mode; every explainer leaves it as found).
        x: prepared inputs ``[N, C_in, H, W]`` on the model's device.
        layer_name: the explained layer (for relevance methods: the layer the CAM
            components are taken at; the map itself lives at ``target_layer``); CAM-family
            methods also take several layer names, whose maps the driver fuses.
        choose: picks the explained classes ``[N, K]`` from the logits ``[N, n]`` of the
            method's own forward pass, so top-K needs no extra pass.
        probabilities: the model's logits ``[B, n]`` -> probabilities (softmax or sigmoid).
        progress: optional progress callback for slow methods.
        autocast: ``None`` (float32) or a dtype (``torch.bfloat16``/``torch.float16``)
            for the forward passes.
        accelerate: ``"off"`` (eager), ``"auto"``, ``"cuda_graph"`` or ``"compile"``: how
            CAM-family passes run (:mod:`xai_core.methods.accelerate`).
    """

    module: nn.Module
    x: torch.Tensor
    layer_name: str | tuple[str, ...] | list[str]
    choose: ClassChoice
    probabilities: Callable[[torch.Tensor], torch.Tensor]
    progress: Progress | None = None
    autocast: torch.dtype | None = None
    accelerate: str = "off"


@dataclass(frozen=True)
class MapResult:
    """What every explainer returns.

    Attributes:
        maps: ``[N, K, h, w]`` signed maps (no ReLU, no scaling) where the map lives
            (the layer's resolution, the target layer's, or the input's).
        class_idx: ``[N, K]`` the explained classes.
        logits: ``[N, n]`` the model's raw scores on ``x``.
        channels: ``C`` of the explained layer (FM-G-CAM's 1/C); 1 for maps that are
            already a channel sum of relevance.
        path: how the passes ran: ``"eager"``, ``"cuda_graph"`` (a replayed CUDA graph)
            or ``"compile"`` (``torch.compile``).
        path_note: when an acceleration was asked for and the passes ran eager, why.
    """

    maps: torch.Tensor
    class_idx: torch.Tensor
    logits: torch.Tensor
    channels: int
    path: str = "eager"
    path_note: str = ""


@dataclass(frozen=True)
class CamContext:
    """Inputs of one CAM-family computation (N images, K classes each).

    The driver (:func:`xai_core.methods.base._run_cams`) fills it from one forward pass
    and, for methods that need them, one batched backward pass.

    Attributes:
        module: the network (in eval mode, parameters frozen, by the driver).
        x: the prepared inputs ``[N, C_in, H, W]``.
        layer_name: the explained layer.
        activations: its output ``[N, C, h, w]`` (detached).
        grads: ``[N, K, C, h, w]`` gradients of each image's K class logits w.r.t. its
            activations, or ``None`` for methods that need none.
        class_idx: ``[N, K]`` the explained classes.
        logits: ``[N, n]`` the model's raw scores on ``x``.
        probabilities: maps logits ``[B, n]`` to class probabilities (softmax or sigmoid).
        progress: optional progress callback.
        hvp: ``[N, K, C, h, w]`` Hessian-vector products ``H A`` of each class score
            w.r.t. the activations (for methods whose entry asks for them), else ``None``.
    """

    module: nn.Module
    x: torch.Tensor
    layer_name: str
    activations: torch.Tensor
    grads: torch.Tensor | None
    class_idx: torch.Tensor
    logits: torch.Tensor
    probabilities: Callable[[torch.Tensor], torch.Tensor]
    progress: Progress | None = None
    hvp: torch.Tensor | None = None

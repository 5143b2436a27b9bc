"""What a CAM method receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called by slow methods as batches finish."""


@dataclass(frozen=True)
class CamContext:
    """Inputs of one CAM computation (one image, K classes).

    Attributes:
        module: the network (in eval mode, parameters frozen, by the driver).
        x: the prepared input ``[1, C_in, H, W]``.
        layer_name: the explained layer.
        activations: its output ``[1, C, h, w]`` (detached).
        grads: ``[K, C, h, w]`` gradients of the K class logits w.r.t. the activations,
            or ``None`` for methods that need none.
        class_idx: ``[K]`` the explained classes.
        logits: ``[1, N]`` the model's raw scores on ``x``.
        probabilities: maps logits ``[B, N]`` to class probabilities (softmax or sigmoid).
        progress: optional progress callback.
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

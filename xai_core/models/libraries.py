"""Any CNN or vision transformer of timm or torchvision, by name, with its own preprocessing and weights.

``timm:NAME`` (any ``timm.list_models()`` name, optionally with a weights tag:
``timm:convnext_atto.d2_in1k``) and ``torchvision:NAME`` (any classification model of
``torchvision.models.list_models()`` with pretrained weights) become a
:class:`~xai_core.models.spec.ModelSpec` on first use: preprocessing from the library's
pretrained config, ImageNet class names, and the default layer found by tracing the
architecture (:func:`xai_core.hooks.layers.final_feature_layer`; for vision transformers
:func:`xai_core.hooks.tokens.default_token_layer`). Nothing is downloaded
until weights are asked for.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from xai_core.errors import LayerError, UnknownNameError, WeightsError, XaiCoreError
from xai_core.hooks.layers import final_feature_layer
from xai_core.hooks.tokens import default_token_layer, is_transformer
from xai_core.models.imagenet_classes import IMAGENET_CLASSES
from xai_core.models.preprocess import Preprocessing
from xai_core.models.spec import ModelSpec
from xai_core.models.weights import fetch, read_downloaded, torch_checkpoint_dir

TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision:"
PREFIXES = (TIMM_PREFIX, TORCHVISION_PREFIX)


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names the project uses (torchvision's list, stored without torchvision)."""
    return IMAGENET_CLASSES


def timm_weights_dir():
    """Where timm weights are looked for and downloaded to: ``$TORCH_HOME/hub/checkpoints/timm``."""
    return torch_checkpoint_dir() / "timm"


def auto_default_layer(build, channels: int, input_size: tuple[int, int]) -> str:
    """The default layer of the architecture ``build()`` makes, found by tracing it.

    The architecture is built on PyTorch's ``meta`` device (shapes only, no memory, no
    arithmetic) where its code allows, else on the CPU with random weights.

    Raises:
        LayerError: the architecture has no spatial feature map (not a CNN).
    """
    example_shape = (1, channels, *input_size)
    try:
        with torch.device("meta"):
            module = build()
        return _default_layer(module, torch.zeros(example_shape, device="meta"))
    except LayerError:
        raise
    except Exception:  # noqa: BLE001 - code the meta device cannot run: trace on the CPU instead
        module = build()
        return _default_layer(module, torch.zeros(example_shape))


def _default_layer(module: nn.Module, example: torch.Tensor) -> str:
    """A vision transformer's default token layer (hooks/tokens.py), else the CNN's final feature map."""
    if is_transformer(module):
        layer = default_token_layer(module, example)
        if layer is None:
            raise LayerError(f"{type(module).__name__}: no layer of its token layout gives a map with h, w > 1.")
        return layer
    return final_feature_layer(module, example)


# ----------------------------------------------------------------------------- torchvision


def _torchvision_weights(arch: str):
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    weights = _torchvision_weights(arch)
    path = fetch(weights.url, torch_checkpoint_dir(), what=f"torchvision {arch}")
    return read_downloaded(path, weights.url, what=f"torchvision {arch}")


def _torchvision_preprocessing(weights) -> Preprocessing:
    """The weights' own evaluation transform, read from its arguments (nothing is built)."""
    import inspect

    transform = weights.transforms
    defaults = {
        name: p.default
        for name, p in inspect.signature(transform.func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    args = {**defaults, **transform.keywords}
    crop = args["crop_size"]
    crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
    resize = args.get("resize_size")
    resize = resize[0] if isinstance(resize, list | tuple) else resize
    interpolation = args.get("interpolation")
    return Preprocessing(
        kind="imagenet",
        input_size=(int(crop[0]), int(crop[-1])),
        resize=None if resize is None else int(resize),
        mean=tuple(float(v) for v in args["mean"]),
        std=tuple(float(v) for v in args["std"]),
        interpolation=getattr(interpolation, "value", interpolation or "bilinear"),
    )


def torchvision_spec(
    arch: str, *, key: str | None = None, label: str | None = None, default_layer: str | None = None, description=""
) -> ModelSpec:
    """The spec of torchvision's classification model ``arch`` with its default weights.

    Args:
        arch: a name from ``torchvision.models.list_models(module=torchvision.models)``.
        key: the registry key (default ``"torchvision:<arch>"``).
        label: display name (default: the architecture name).
        default_layer: the layer explained by default (default: found by tracing).
        description: one line for the model picker (the weights file is appended).

    Raises:
        UnknownNameError: not a torchvision classification model with weights.
    """
    import torchvision
    from torchvision.models import get_model, list_models

    classifiers = list_models(module=torchvision.models)
    if arch not in classifiers:
        raise UnknownNameError(
            "torchvision classification model", arch, classifiers, hint="Keys look like 'torchvision:regnet_y_800mf'."
        )
    weights = _torchvision_weights(arch)
    if weights is None:
        raise UnknownNameError("torchvision model with pretrained weights", arch, classifiers)
    pre = _torchvision_preprocessing(weights)
    build = partial(get_model, arch, weights=None)
    if default_layer is None:
        default_layer = auto_default_layer(build, pre.channels, pre.input_size)
    file = weights.url.rsplit("/", 1)[-1]
    return ModelSpec(
        key=key or TORCHVISION_PREFIX + arch,
        label=label or f"{arch} (torchvision)",
        family="imagenet",
        build=build,
        fetch_weights=partial(_torchvision_state, arch),
        preprocessing=pre,
        labels=tuple(weights.meta["categories"]),
        default_layer=default_layer,
        description=(description + " " if description else "") + f"torchvision weights {file} (downloaded once).",
    )


# ----------------------------------------------------------------------------- timm


def _timm_cfg(name: str):
    """Timm's pretrained config for ``name`` (``arch`` or ``arch.tag``)."""
    try:
        import timm
    except ImportError as err:
        raise XaiCoreError("timm models need the timm package: pip install timm==1.0.31") from err

    if not timm.is_model(name):
        raise UnknownNameError(
            "timm model",
            name,
            timm.list_models(),
            hint="Keys look like 'timm:convnext_tiny' or 'timm:convnext_tiny.fb_in1k'; timm.list_models() lists them.",
        )
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise UnknownNameError("timm model with pretrained weights", name, timm.list_models(pretrained=True))
    return cfg


def _timm_download(cfg) -> tuple[str, str]:
    """``(address, local file name)`` of the weights timm's config points to."""
    full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@", 1)[0]
        file = cfg.hf_hub_filename or "model.safetensors"
        suffix = file.rsplit(".", 1)[-1]
        return f"https://huggingface.co/{repo}/resolve/main/{file}", f"{full}.{suffix}"
    if cfg.url:
        return cfg.url, cfg.url.rsplit("/", 1)[-1]
    raise WeightsError(f"timm has no downloadable weights for {full}; give a local weights file instead.")


def _timm_state(name: str) -> dict[str, torch.Tensor]:
    cfg = _timm_cfg(name)
    url, file = _timm_download(cfg)
    path = fetch(url, timm_weights_dir(), what=f"timm {name}", filename=file)
    return read_downloaded(path, url, what=f"timm {name}")


def _timm_labels(cfg, n: int) -> tuple[str, ...]:
    if n == 1000:
        return imagenet_labels()
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(cfg)
        if subset:
            names = tuple(ImageNetInfo(subset).label_descriptions(as_dict=False))
            if len(names) == n:
                return names
    except Exception:  # noqa: BLE001, S110 - no names known: numbered classes below
        pass
    return tuple(f"class {i}" for i in range(n))


def _timm_build(name: str, num_classes: int) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def timm_spec(name: str, *, key: str | None = None, label: str | None = None, description: str = "") -> ModelSpec:
    """The spec of timm's model ``name`` (``arch`` or ``arch.tag``), found by tracing.

    Preprocessing follows ``timm.data.resolve_data_config`` on the pretrained config:
    input size, interpolation, mean/std, and the resize before the centre crop
    (``floor(size / crop_pct)``).

    Raises:
        UnknownNameError: timm has no such model or no pretrained config for it.
        LayerError: the model has no spatial feature map and no token layout read as one.
    """
    from timm.data import resolve_data_config

    cfg = _timm_cfg(name)
    data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    channels, h, w = data["input_size"]
    crop_pct = float(data.get("crop_pct") or 1.0)
    pre = Preprocessing(
        kind="imagenet",
        input_size=(int(h), int(w)),
        resize=int(math.floor(min(h, w) / crop_pct)),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation="bicubic" if data.get("interpolation") == "bicubic" else "bilinear",
        channels=int(channels),
    )
    n = int(cfg.num_classes or 1000)
    build = partial(_timm_build, name, n)
    url, file = _timm_download(cfg) if (cfg.hf_hub_id or cfg.url) else ("", "")
    return ModelSpec(
        key=key or TIMM_PREFIX + name,
        label=label or f"{name} (timm)",
        family="imagenet",
        build=build,
        fetch_weights=partial(_timm_state, name),
        preprocessing=pre,
        labels=_timm_labels(cfg, n),
        default_layer=auto_default_layer(build, pre.channels, pre.input_size),
        description=(description + " " if description else "")
        + (f"timm weights {file} (downloaded once)." if file else "timm architecture (no pretrained weights)."),
    )


def library_spec(key: str) -> ModelSpec | None:
    """The spec for a ``timm:`` or ``torchvision:`` key; ``None`` for any other key."""
    if key.startswith(TIMM_PREFIX):
        return timm_spec(key[len(TIMM_PREFIX) :])
    if key.startswith(TORCHVISION_PREFIX):
        return torchvision_spec(key[len(TORCHVISION_PREFIX) :])
    return None

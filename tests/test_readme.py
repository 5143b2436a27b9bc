"""The README's Python examples run as written (from the project root)."""

from __future__ import annotations

import os
import re

import xai_core as xc
from tests.conftest import ROOT


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_notebook_example_runs(capsys):
    blocks = _python_blocks()
    assert blocks, "README.md has no python example"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        namespace: dict = {}
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
    assert namespace["exp"].labels[0] == "bull mastiff"
    assert namespace["picture"].shape == (224, 224, 3)
    assert "bull mastiff" in capsys.readouterr().out


def test_readme_registry_batch_and_new_method_examples_run():
    """The registry, batches-and-devices and adding-a-method examples, run in one namespace."""
    blocks = _python_blocks()
    cwd = os.getcwd()
    os.chdir(ROOT)
    namespace: dict = {}
    try:
        for block in blocks[:4]:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
        if "abs_grad_cam" in xc.EXPLAINERS:
            xc.unregister_explainer("abs_grad_cam")
    assert len(namespace["exps"]) == 3 and namespace["fused"].method == "fm_g_cam"
    assert namespace["fused"].params["base"] == "abs_grad_cam"


def test_readme_relevance_rule_example_runs():
    """The "Adding a relevance rule" example: one Rule subclass, one registration, used by LRP."""
    import torch

    from xai_core.relevance import RULE_SETS, lrp, unregister_rule_set

    block = next(b for b in _python_blocks() if "register_rule_set" in b)
    namespace: dict = {}
    try:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
        relevance = namespace["relevance"]
        assert relevance.shape == (1, 1, 32, 32) and torch.isfinite(relevance).all()
        net, x = namespace["net"], namespace["x"]
        canonized = lrp(net, x, class_idx=[2], rules="canonized").relevance
        assert not torch.allclose(relevance, canonized)  # the new rule ran at the Linear layer
        assert isinstance(RULE_SETS["epsilon_head"].rule_for(net[4]), namespace["Epsilon"])
        # Its maths: at the pooled features the class's relevance is y * z / (z + eps * sign(z)).
        at_pool = lrp(net, x, class_idx=[2], rules="epsilon_head", target_layer="2").relevance.sum()
        with torch.no_grad():
            feats = net[:4](x)
            y, z = net[4](feats)[0, 2], (feats @ net[4].weight.T)[0, 2]
        expected = y * z / (z + 0.25 * torch.sign(z))
        torch.testing.assert_close(at_pool, expected, rtol=1e-5, atol=1e-7)
    finally:
        if "epsilon_head" in RULE_SETS:
            unregister_rule_set("epsilon_head")
    assert "epsilon_head" not in xc.get_explainer("lrp").param("rules").choices


def test_readme_new_model_example_runs(tmp_path):
    """README's "Another architecture" example registers a ModelSpec and builds it from a local file."""
    import torch
    import torchvision

    from xai_core.models import registry

    block = next(b for b in _python_blocks() if "xc.register(" in b and "ModelSpec(" in b)
    key = "resnet18"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    namespace: dict = {}
    try:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
        registry._REGISTRY.pop(key, None)  # leave the registry as the other tests expect it
        registry._CATALOGUE.pop(key, None)
    model = namespace["model"]
    assert model.key == key and model.spec.default_layer == "layer4"
    exp = xc.explain(model, torch.rand(1, 3, 224, 224), method="grad_cam", top_k=2)[0]
    assert exp.cams.shape == (2, 7, 7)

"""The README's Python examples run as written (from the project root)."""

from __future__ import annotations

import os
import re

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
        from xai_core.methods.registry import EXPLAINERS, _refresh_fusion_bases

        EXPLAINERS.pop("abs_grad_cam", None)
        _refresh_fusion_bases()
    assert len(namespace["exps"]) == 3 and namespace["fused"].method == "fm_g_cam"
    assert namespace["fused"].params["base"] == "abs_grad_cam"

"""The package's shape: one-way import layers, and no dashboard code in the library."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys

import pytest

import xai_core
from tests.conftest import ROOT


def test_import_layers_hold() -> None:
    """import-linter's layers contract (pyproject.toml): no layer imports one above it, siblings stay apart."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (requirements-dev.txt)")
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def test_the_contract_can_fail(tmp_path) -> None:
    """An upward import (hooks -> api) breaks the contract: the check above is not vacuous."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (requirements-dev.txt)")
    pkg = tmp_path / "xai_core"
    shutil.copytree(ROOT / "xai_core", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "hooks" / "upward.py").write_text("from xai_core.api import explain  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode != 0
    assert "xai_core.hooks is not allowed to import xai_core.api" in out.stdout


def test_the_library_never_imports_streamlit() -> None:
    """Every module of xai_core imports without Streamlit (the dashboard sits on top, not inside)."""
    modules = [m.name for m in pkgutil.walk_packages(xai_core.__path__, "xai_core.") if not m.name.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
    assert len(modules) > 60

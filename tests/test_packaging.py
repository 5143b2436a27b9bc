"""The package installs from a wheel: ``import xai_core`` and the ``xai-evaluate`` console script.

The wheel is built from a copy of ``pyproject.toml``, ``README.md`` and ``xai_core/`` (so the
checkout gets no ``build/`` folder), installed into a fresh virtual environment, and used
from a directory outside the checkout, so nothing can be imported from the source tree.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path) -> str:
    # Without PYTHONPATH: a test before this one may have put the checkout there (Ray workers).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "xai_core", src / "xai_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    # No build isolation: the setuptools already installed builds it, with no index needed.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src, cwd=tmp_path)
    (wheel,) = dist.glob("xai_core-*.whl")
    names = _run(sys.executable, "-m", "zipfile", "-l", wheel, cwd=tmp_path)
    assert "xai_core/__init__.py" in names
    assert "pages/" not in names and "tests/" not in names and "samples/" not in names

    # torch and the other dependencies (gigabytes) are already installed here: the venv reaches
    # them through a .pth file naming this Python's site-packages. Not --system-site-packages:
    # that would also run the .pth files there, among them the editable install of this
    # checkout (`pip install -e .`, as README and CI do), whose import hook would win over the
    # wheel. --without-pip: `python -m pip` is the system's, found through the same path.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    venv_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    (venv_site / "system-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --force-reinstall: an editable install seen on that path counts as "already satisfied".
    _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall", wheel, cwd=tmp_path)

    # -S: no .pth file runs, so no editable install's import hook can answer instead of the wheel;
    # the venv's site-packages comes first, this Python's after it (torch and the rest).
    code = (
        "import sys; "
        f"sys.path[:0] = [{str(venv_site)!r}]; sys.path += {site.getsitepackages()!r}; "
        "import xai_core; print(xai_core.__file__)"
    )
    where = _run(python, "-S", "-c", code, cwd=tmp_path).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    usage = _run(venv / "bin" / "xai-evaluate", "--help", cwd=tmp_path)
    assert "--methods" in usage and "--layers" in usage

"""The stored colour-map tables equal matplotlib's, and the script reproduces the file exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from xai_core.render import colour
from xai_core.render._luts import LUT_HEX

matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (requirements-dev.txt) is the tables' source")

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_luts", ROOT / "scripts" / "make_luts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_colour_map_has_a_table():
    assert set(LUT_HEX) == set(colour.COLORMAPS + colour.SIGNED_COLORMAPS)


@pytest.mark.parametrize("name", sorted(LUT_HEX))
def test_table_equals_matplotlibs_colour_map(name):
    ours = colour.colormap(name).astype(np.float64) / 255.0
    theirs = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    # Quantised to 8 bits: within half a step of matplotlib's floats, and not a shifted map.
    assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-12


def test_script_regenerates_the_stored_file_byte_for_byte():
    assert _script().source() == (ROOT / "xai_core" / "render" / "_luts.py").read_text()

"""Regenerate ``xai_core/render/_luts.py``, the colour maps' 256-entry tables, from matplotlib.

matplotlib is the source of the tables, not a runtime dependency of ``xai_core``: this
script is run once (again only to add a map), and ``tests/test_render.py`` checks the
stored tables against matplotlib's. Each entry is ``colormaps[name](linspace(0, 1, 256))``
scaled to 0-255 and rounded half up (``floor(x * 255 + 0.5)``).

Run from the repository root: ``python scripts/make_luts.py`` (``--check`` only compares).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "xai_core" / "render" / "_luts.py"
# The sequential maps, then the signed (diverging) ones; xai_core.render.colour lists them.
NAMES = ("viridis", "jet", "turbo", "inferno", "magma", "plasma", "cividis", "gray", "RdBu_r", "coolwarm")
HEX_PER_LINE = 96  # 16 RGB triplets

HEADER = '''"""256-entry colour lookup tables, generated from matplotlib's colour maps by ``scripts/make_luts.py``.

Do not edit: run ``python scripts/make_luts.py`` (matplotlib is needed there only, not at run
time). Each table is a hex string of 256 RGB triplets. The perceptual maps (viridis, inferno,
magma, plasma, cividis) are CC0; turbo is Apache-2.0 (Google); jet, gray, RdBu_r and coolwarm
are public-domain formulas.
"""
'''


def table(name: str) -> np.ndarray:
    """The ``[256, 3]`` uint8 table of one matplotlib colour map."""
    import matplotlib

    rgb = np.asarray(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256)), dtype=np.float64)[:, :3]
    return np.floor(rgb * 255.0 + 0.5).astype(np.uint8)


def source() -> str:
    """The text of ``_luts.py`` for :data:`NAMES`."""
    lines = [HEADER, "LUT_HEX: dict[str, str] = {"]
    for name in NAMES:
        hex_text = table(name).tobytes().hex()
        lines.append(f'    "{name}": (')
        lines += [f'        "{hex_text[i : i + HEX_PER_LINE]}"' for i in range(0, len(hex_text), HEX_PER_LINE)]
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the tables (or, with ``--check``, exit 1 when the stored file differs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = source()
    if args.check:
        same = OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(NAMES)} maps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

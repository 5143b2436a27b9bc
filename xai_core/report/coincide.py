"""Which methods gave the same map, so that a comparison can say so instead of hiding one behind another."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Two maps coincide when, each divided by its largest magnitude, no value differs by more than this.
TOLERANCE = 1e-3


def coinciding_groups(maps: Mapping[str, np.ndarray], tolerance: float = TOLERANCE) -> list[list[str]]:
    """Groups of two or more names whose maps are the same up to a positive scale.

    Args:
        maps: name -> signed map (any shape; the same shape within a group).
        tolerance: the largest difference of the maps scaled to a largest magnitude of 1.

    Returns:
        The groups, in the order of ``maps``; names with a map of their own are in none.
    """
    scaled = {}
    for name, m in maps.items():
        a = np.asarray(m, dtype=np.float64)
        peak = float(np.abs(a).max()) if a.size else 0.0
        scaled[name] = a / peak if peak > 0 else a
    groups: list[list[str]] = []
    for name, a in scaled.items():
        for group in groups:
            b = scaled[group[0]]
            if a.shape == b.shape and float(np.abs(a - b).max()) <= tolerance:
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]

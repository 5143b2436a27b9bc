"""The categorical class palette of fused maps: colour-blind safe first, distinct for any K.

Design (issue 14, item 4):

- **Base colours** are the Okabe-Ito palette (Okabe & Ito 2008; Wong, "Points of view:
  Color blindness", Nature Methods 8:441, 2011) without its black, which would be invisible
  in a map drawn from black to the class colour. The order puts the pairs that stay far
  apart under every simulated deficiency first: vermillion, sky blue, yellow, bluish green,
  reddish purple, orange, blue. Under simulated deuteranopia, protanopia and tritanopia
  (Machado et al. 2009, severity 100, via ``colorspacious``) the first 5 are at least 13
  CAM02-UCS units apart, and all 7 at least 11 (tests/test_palette.py checks it).
- **Extension** beyond the base: colorcet's Glasbey palette for dark backgrounds
  (``glasbey_bw_minc_20_minl_30``: 256 colours generated for maximal mutual distance, with
  a minimum chroma and lightness) is filtered to colours that are bright enough over black
  and clearly not white or grey (CAM02-UCS lightness J' in [55, 85], chroma >= 20), then
  ordered greedily: each next colour is the candidate farthest (in CAM02-UCS) from every
  colour already chosen. For ranks 8 to 10 the distance is the minimum over normal vision
  and the three simulated deficiencies (the first 10 stay >= 10 units apart under each);
  later ranks maximise it in normal vision (the first 20 stay >= 14 units apart there).
- Beyond the ~200 usable colours the sequence repeats: no palette keeps that many classes
  apart, and a fused map of that many classes is unreadable anyway.

The palette is computed once (a few milliseconds) and cached.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from xai_core.errors import MethodError

__all__ = ["BASE_PALETTE", "CVD_TYPES", "class_palette", "cvd_simulate", "to_cam02ucs"]

#: Okabe-Ito without black, in the order used for ranks 1 to 7 (see the module docstring).
BASE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (213, 94, 0),  # vermillion  #D55E00
    (86, 180, 233),  # sky blue    #56B4E9
    (240, 228, 66),  # yellow      #F0E442
    (0, 158, 115),  # bluish green #009E73
    (204, 121, 167),  # reddish purple #CC79A7
    (230, 159, 0),  # orange      #E69F00
    (0, 114, 178),  # blue        #0072B2
)

#: colorspacious's names of the three simulated colour-vision deficiencies (full severity:
#: deuteranopia, protanopia, tritanopia).
CVD_TYPES: tuple[str, ...] = ("deuteranomaly", "protanomaly", "tritanomaly")

# Filters for the Glasbey extension (CAM02-UCS J' and chroma): bright enough over black,
# not near-white, not grey.
_MIN_LIGHTNESS, _MAX_LIGHTNESS, _MIN_CHROMA = 55.0, 85.0, 20.0
# Ranks chosen for distance under every simulated deficiency; later ones for normal vision.
_CVD_RANKS = 10


def to_cam02ucs(rgb255: np.ndarray) -> np.ndarray:
    """Colours in sRGB 0-255 ``[..., 3]`` to CAM02-UCS ``(J', a', b')``."""
    from colorspacious import cspace_convert

    return np.asarray(cspace_convert(np.asarray(rgb255, dtype=np.float64) / 255.0, "sRGB1", "CAM02-UCS"))


def cvd_simulate(rgb255: np.ndarray, cvd_type: str, severity: float = 100.0) -> np.ndarray:
    """How colours ``[..., 3]`` (0-255) look under a colour-vision deficiency (Machado 2009).

    Args:
        rgb255: sRGB colours in 0-255.
        cvd_type: one of :data:`CVD_TYPES`.
        severity: 0-100 (100: dichromacy).

    Returns:
        The simulated sRGB colours in 0-255 (float, clipped to the gamut).
    """
    from colorspacious import cspace_convert

    space = {"name": "sRGB1+CVD", "cvd_type": cvd_type, "severity": severity}
    out = cspace_convert(np.asarray(rgb255, dtype=np.float64) / 255.0, space, "sRGB1")
    return np.clip(out, 0.0, 1.0) * 255.0


def _views(rgb255: np.ndarray) -> np.ndarray:
    """``[V, N, 3]`` CAM02-UCS coordinates in normal vision and under each deficiency."""
    views = [to_cam02ucs(rgb255)] + [to_cam02ucs(cvd_simulate(rgb255, t)) for t in CVD_TYPES]
    return np.stack(views)


@cache
def _palette() -> tuple[tuple[int, int, int], ...]:
    """Base palette followed by the filtered, greedily ordered Glasbey extension."""
    import colorcet

    base = np.asarray(BASE_PALETTE, dtype=np.float64)
    pool = np.array(
        [[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in colorcet.b_glasbey_bw_minc_20_minl_30],
        dtype=np.float64,
    )
    jab = to_cam02ucs(pool)
    chroma = np.hypot(jab[:, 1], jab[:, 2])
    keep = (jab[:, 0] >= _MIN_LIGHTNESS) & (jab[:, 0] <= _MAX_LIGHTNESS) & (chroma >= _MIN_CHROMA)
    pool = pool[keep]
    pool_views, base_views = _views(pool), _views(base)
    # distance of each candidate to its nearest chosen colour: worst case over the 4 views,
    # and in normal vision alone
    to_base = np.linalg.norm(pool_views[:, :, None] - base_views[:, None], axis=-1).min(axis=2)
    nearest_all, nearest_normal = to_base.min(axis=0), to_base[0]
    chosen: list[int] = []
    free = np.ones(len(pool), dtype=bool)
    for _ in range(len(pool)):
        score = nearest_all if len(BASE_PALETTE) + len(chosen) < _CVD_RANKS else nearest_normal
        i = int(np.argmax(np.where(free, score, -np.inf)))
        chosen.append(i)
        free[i] = False
        d = np.linalg.norm(pool_views - pool_views[:, i : i + 1], axis=-1)
        nearest_all = np.minimum(nearest_all, d.min(axis=0))
        nearest_normal = np.minimum(nearest_normal, d[0])
    extension = tuple(tuple(int(v) for v in pool[i]) for i in chosen)
    return BASE_PALETTE + extension  # type: ignore[return-value]


def class_palette(k: int) -> list[tuple[int, int, int]]:
    """RGB colours (0-255) of ranks 1..k in fused maps, legends, charts and hover.

    Args:
        k: number of classes, >= 1 (any size; beyond the ~200 distinct colours the
            sequence repeats).

    Returns:
        ``k`` RGB tuples; the first 7 are :data:`BASE_PALETTE`.

    Raises:
        MethodError: ``k`` is not a positive integer.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MethodError(f"The number of class colours must be a whole number >= 1; got {k!r}.")
    full = _palette()
    return [full[i % len(full)] for i in range(int(k))]

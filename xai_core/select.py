"""Choosing and joining the classes of explanations (no model call).

The dashboard explains the top-K classes and any classes the user picks in one pass,
then shows a chosen subset (the top K, the picked ones, or both); FG-CAM is computed
only for the classes on screen and extended when more are shown. These helpers move
rows of an :class:`~xai_core.api.Explanation` around; they never recompute a map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from xai_core.api import Explanation
from xai_core.errors import MethodError


def subset(exp: Explanation, rows: Sequence[int]) -> Explanation:
    """The explanation restricted to ``rows`` (positions in ``exp.class_idx``), in that order.

    Raises:
        MethodError: no rows, or a row outside ``range(exp.k_max)``.
    """
    rows = [int(r) for r in rows]
    if not rows:
        raise MethodError("Choose at least one class to show.")
    bad = [r for r in rows if not 0 <= r < exp.k_max]
    if bad:
        raise MethodError(f"rows must be in [0, {exp.k_max - 1}], got {bad}.")
    index = torch.as_tensor(rows, dtype=torch.long, device=exp.cams.device)
    return replace(
        exp,
        class_idx=tuple(exp.class_idx[r] for r in rows),
        labels=tuple(exp.labels[r] for r in rows),
        probs=tuple(exp.probs[r] for r in rows),
        cams=exp.cams.index_select(0, index),
    )


def rows_of(exp: Explanation, classes: Sequence[int]) -> list[int]:
    """Positions of ``classes`` (class numbers) in ``exp.class_idx``; classes not explained are skipped."""
    where = {c: i for i, c in enumerate(exp.class_idx)}
    return [where[int(c)] for c in classes if int(c) in where]


def join(parts: Sequence[Explanation]) -> Explanation:
    """One explanation whose classes are those of ``parts`` in order (same image, method and layer).

    Raises:
        MethodError: no parts, or parts whose maps do not share a shape, layer or method.
    """
    if not parts:
        raise MethodError("Nothing to join.")
    first = parts[0]
    for p in parts[1:]:
        if p.cams.shape[1:] != first.cams.shape[1:] or p.layer != first.layer or p.method != first.method:
            raise MethodError("Only explanations of one image, method and layer can be joined.")
    return replace(
        first,
        class_idx=tuple(c for p in parts for c in p.class_idx),
        labels=tuple(n for p in parts for n in p.labels),
        probs=tuple(q for p in parts for q in p.probs),
        cams=torch.cat([p.cams.to(first.cams.device) for p in parts]),
        seconds=sum(p.seconds for p in parts),
    )


def top_classes(all_probs, labels: Sequence[str], k: int) -> list[int]:
    """The ``k`` most probable named outputs (unnamed outputs, ``""``, are never chosen)."""
    probs = torch.as_tensor(all_probs, dtype=torch.float64).flatten()
    named = torch.tensor([bool(n) for n in labels], dtype=torch.bool)
    probs = torch.where(named, probs, torch.full_like(probs, -1.0))
    k = max(1, min(int(k), int(named.sum())))
    return [int(i) for i in torch.argsort(probs, descending=True, stable=True)[:k]]

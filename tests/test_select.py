"""Choosing and joining the classes of explanations, without the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xai_core as xc
from xai_core.select import join, rows_of, subset, top_classes


@pytest.fixture(scope="module")
def exp(lite0, cat_dog):
    return xc.explain(lite0, cat_dog, method="grad_cam", top_k=4)


def test_subset_and_rows_of_pick_rows_in_order(exp):
    rows = rows_of(exp, [exp.class_idx[2], 99999, exp.class_idx[0]])
    assert rows == [2, 0]
    part = subset(exp, rows)
    assert part.class_idx == (exp.class_idx[2], exp.class_idx[0])
    torch.testing.assert_close(part.cams, exp.cams[[2, 0]])
    with pytest.raises(xc.MethodError, match="at least one"):
        subset(exp, [])
    with pytest.raises(xc.MethodError, match=r"\[0, 3\]"):
        subset(exp, [4])


def test_join_puts_parts_back_together(exp):
    whole = join([subset(exp, [0, 1]), subset(exp, [2, 3])])
    assert whole.class_idx == exp.class_idx and whole.labels == exp.labels
    torch.testing.assert_close(whole.cams, exp.cams)
    with pytest.raises(xc.MethodError, match="one image, method and layer"):
        join([exp, xc.explain_fine(xc.load_model("efficientnet_lite0"), subset(exp, [0]), target_layer="_blocks.4")])


def test_top_classes_skips_unnamed_outputs():
    probs = np.array([0.1, 0.5, 0.3, 0.1])
    assert top_classes(probs, ["a", "", "c", "d"], 2) == [2, 0]
    assert top_classes(probs, ["a", "", "c", "d"], 10) == [2, 0, 3]

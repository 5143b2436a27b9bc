"""FM-G-CAM against the golden outputs of the authors' library (tests/golden/README.md)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import GOLDEN, SmallVGG
from tests.explain_helpers import cams
from xai_core.fusion import filter_maps, fm_g_cam, joint_minmax, l2_normalise

GOLD = torch.load(GOLDEN / "fmgcam_reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def small_vgg() -> SmallVGG:
    model = SmallVGG(GOLD["model"])
    model.load_state_dict(GOLD["model"]["state_dict"], strict=True)
    return model.eval()


def test_rebuilt_model_reproduces_logits(small_vgg):
    for name, x in GOLD["inputs"].items():
        with torch.no_grad():
            torch.testing.assert_close(small_vgg(x), GOLD["logits"][name], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def raw_cams(small_vgg):
    """Our batched Grad-CAM maps of the top-5 classes, per (input, layer)."""
    out = {}
    for name, x in GOLD["inputs"].items():
        for layer in (18, 17):
            res = cams(small_vgg, x, method="grad_cam", layer=f"features.{layer}", top_k=5)
            out[name, layer] = res
    return out


def test_raw_maps_match_corrected_intermediates(raw_cams):
    for (name, layer), res in raw_cams.items():
        inter = GOLD["intermediates"][f"{name}|{layer}"]
        assert list(res.class_idx) == inter["sorted_indices"][:5].tolist()
        torch.testing.assert_close(res.cams / res.channels, inter["raw_corrected"], rtol=1e-4, atol=1e-9)


def _settings(call: dict) -> dict:
    return {"normalise": "reference" if call["enhance"] else "off", "activation": call["act_mode"]}


def test_every_call_matches_corrected_output(raw_cams):
    """All 192 stored calls: fused (K = 1, 3, 5) and single rank, every activation, L2 on/off."""
    checked = 0
    for call in GOLD["calls"]:
        res = raw_cams[call["input"], call["layer_index"]]
        if call["class_rank_index"] is None:
            cams = res.cams[: call["class_count"]]
        else:
            r = call["class_rank_index"]
            cams = res.cams[r : r + 1]
        fused = fm_g_cam(cams, channels=res.channels, **_settings(call))
        torch.testing.assert_close(fused.maps, call["corrected"], rtol=0, atol=1e-5, equal_nan=False)
        checked += 1
    assert checked == 192


def test_matches_reference_where_its_defect_cannot_act(raw_cams):
    """K = 1 and rank 0: the published library's in-place mutation has no earlier class to act on."""
    n = 0
    for call in GOLD["calls"]:
        single = call["class_count"] == 1 and call["class_rank_index"] is None
        if not (single or call["class_rank_index"] == 0):
            continue
        res = raw_cams[call["input"], call["layer_index"]]
        fused = fm_g_cam(res.cams[:1], channels=res.channels, **_settings(call))
        torch.testing.assert_close(fused.maps, call["reference"], rtol=0, atol=1e-5)
        n += 1
    assert n == 48


def test_differs_from_reference_where_defect_acts(raw_cams):
    """Rank >= 1 maps: the reference is wrong there and we must not reproduce it."""
    call = next(c for c in GOLD["calls"] if c["class_rank_index"] == 1 and c["input"] == "real")
    res = raw_cams[call["input"], call["layer_index"]]
    fused = fm_g_cam(res.cams[1:2], channels=res.channels, **_settings(call))
    assert (fused.maps - call["reference"]).abs().max() > 0.3


def test_unfiltered_maps_equal_independent_grad_cams(small_vgg):
    x = GOLD["inputs"]["real"]
    batched = cams(small_vgg, x, method="grad_cam", layer="features.17", top_k=4)
    for k, cls in enumerate(batched.class_idx):
        single = cams(small_vgg, x, method="grad_cam", layer="features.17", class_idx=[cls])
        torch.testing.assert_close(batched.cams[k], single.cams[0], rtol=1e-5, atol=1e-7)
    unfiltered = fm_g_cam(batched.cams, channels=batched.channels, normalise="off", activation="none", filter=False)
    manual = joint_minmax(batched.cams / batched.channels)
    torch.testing.assert_close(unfiltered.maps, manual)


def test_filter_keeps_one_class_per_position():
    maps = torch.tensor([[[1.0, -2.0], [3.0, 0.5]], [[2.0, -1.0], [3.0, 0.1]]])
    filtered, owner = filter_maps(maps)
    assert owner.tolist() == [[1, 1], [0, 0]]  # tie at (1, 0) goes to the lower rank
    assert filtered.tolist() == [[[0.0, 0.0], [3.0, 0.5]], [[2.0, -1.0], [0.0, 0.0]]]


def test_per_class_normalisation_balances_classes():
    maps = torch.stack([torch.full((4, 4), 10.0), torch.full((4, 4), 0.1)])
    out = l2_normalise(maps, "per_class")
    torch.testing.assert_close(out.flatten(1).norm(dim=1), torch.ones(2))
    ref = l2_normalise(maps, "reference")
    torch.testing.assert_close(ref.norm(dim=1), torch.ones(2, 4))  # each column of each map


def test_constant_maps_give_zeros_not_nan():
    fused = fm_g_cam(-torch.ones(2, 3, 3), activation="relu")
    assert torch.isfinite(fused.maps).all() and fused.maps.abs().max() == 0


def test_bad_options_name_the_choices():
    from xai_core.errors import MethodError

    with pytest.raises(MethodError, match="relu, elu, gelu"):
        fm_g_cam(torch.ones(1, 2, 2), activation="tanh")
    with pytest.raises(MethodError, match="reference, per_class, off"):
        fm_g_cam(torch.ones(1, 2, 2), normalise="L1")

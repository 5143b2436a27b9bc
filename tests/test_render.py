"""Rendering and geometry: colour maps, fused colouring, overlays, crop boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import xai_core
from xai_core.errors import UnknownNameError
from xai_core.models.preprocess import PreparedInput, Preprocessing, prepare
from xai_core.render import (
    COLORMAPS,
    apply_colormap,
    class_colours,
    colormap,
    colourise_fused,
    overlay,
    place_on_original,
    resize_map,
    signed_colormap,
)


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormaps_are_256_distinct_rgb_entries(name):
    lut = colormap(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert len({tuple(c) for c in lut}) > 200


def test_known_colormap_endpoints():
    assert tuple(colormap("viridis")[0]) == (68, 1, 84)
    assert tuple(colormap("viridis")[255]) == (253, 231, 37)
    assert tuple(colormap("gray")[0]) == (0, 0, 0) and tuple(colormap("gray")[255]) == (255, 255, 255)
    with pytest.raises(UnknownNameError, match="viridis"):
        colormap("virdis")


def test_apply_colormap_maps_values_to_entries():
    out = apply_colormap(np.array([[0.0, 1.0], [0.5, np.nan]]), "gray")
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [0, 0, 0]  # NaN shows as 0, not garbage
    signed = signed_colormap(np.array([[-1.0, 0.0, 1.0]]))
    assert signed[0, 0, 2] > signed[0, 0, 0] and signed[0, 2, 0] > signed[0, 2, 2]  # blue, red


def test_fused_colouring_gives_each_class_its_hue():
    # The colouring mechanics, with pure primaries given explicitly (the default palette is
    # no longer red/green/blue: issue 14 replaced it by a colour-blind-safe one).
    maps = np.zeros((3, 2, 2), dtype=np.float32)
    maps[0, 0, 0], maps[1, 0, 1], maps[2, 1, 0] = 1.0, 0.5, 0.25
    rgb = colourise_fused(maps, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [0, 128, 0]
    assert rgb[1, 0].tolist() == [0, 0, 64]
    assert rgb[1, 1].tolist() == [0, 0, 0]
    # default colours: class k in class_colours(K)[k], scaled by its value, same hue
    # default colours: the strongest position shows its class colour exactly as the legend
    default = colourise_fused(maps)
    assert tuple(default[0, 0]) == class_colours(3)[0]
    np.testing.assert_allclose(default[0, 1], np.asarray(class_colours(3)[1]) * 0.5, atol=0.51)
    assert default[1, 1].tolist() == [0, 0, 0]
    # overlapping classes (an ELU/GELU background) are scaled down together, never clipped
    flat = colourise_fused(np.full((3, 1, 1), 0.9, np.float32), [(255, 0, 0), (255, 255, 0), (0, 0, 255)])
    assert flat[0, 0].tolist() == [255, 128, 128]
    assert len(set(class_colours(10))) == 10


def test_overlay_opacity_and_weight():
    img = np.zeros((4, 4, 3), np.uint8)
    heat = np.full((2, 2, 3), 200, np.uint8)
    assert overlay(img, heat, 0.0).max() == 0
    assert overlay(img, heat, 1.0).min() == 200
    weighted = overlay(img, heat, 1.0, weight=np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert weighted[:, 0].max() < weighted[:, -1].min()
    with pytest.raises(ValueError):
        overlay(img, heat, 1.5)


def test_resize_map_keeps_constant_and_shape():
    out = resize_map(torch.full((7, 7), 3.0), (224, 160))
    assert out.shape == (224, 160) and np.allclose(out, 3.0)
    assert resize_map(np.zeros((2, 7, 7)), (14, 14)).shape == (2, 14, 14)


def test_crop_box_maps_the_view_back_without_stretching():
    """A 400x200 image: resize short side to 256 -> 512x256, centre crop 224 -> box in original."""
    pre = Preprocessing(kind="imagenet", input_size=(224, 224), resize=256)
    image = np.zeros((200, 400, 3), np.float32)
    image[:, 180:220] = 1.0  # a white vertical band in the middle
    prepared = prepare(image, pre)
    left, top, right, bottom = prepared.crop_box
    assert (right - left) == pytest.approx(175, abs=1) and (bottom - top) == pytest.approx(175, abs=1)
    assert left == pytest.approx(112.5, abs=1) and top == pytest.approx(12.5, abs=1)
    assert prepared.view.shape == (224, 224, 3)
    band = prepared.view[:, :, 0].mean(axis=0) > 128
    assert band[100:124].all() and not band[:60].any()  # the band stays in the middle, unstretched
    heat = np.full((224, 224, 3), 255, np.uint8)
    placed = place_on_original(Image.fromarray((image * 255).astype(np.uint8)), heat, prepared.crop_box, alpha=1.0)
    assert placed.shape == (200, 400, 3)
    assert placed[100, 10].tolist() == [0, 0, 0]  # outside the crop: untouched
    assert placed[100, 200].tolist() == [255, 255, 255]


def test_xray_preprocessing_scales_to_xrv_range():
    pre = Preprocessing(kind="xray", input_size=(64, 64), channels=1)
    grey = np.linspace(0, 1, 100 * 80, dtype=np.float32).reshape(100, 80)
    prepared = prepare(grey, pre)
    assert prepared.tensor.shape == (1, 1, 64, 64)
    # rows 10..90 of a 0..1 ramp are kept: values 0.1..0.9 -> about -819..819
    assert float(prepared.tensor.min()) == pytest.approx(-819, abs=8)
    assert float(prepared.tensor.max()) == pytest.approx(819, abs=8)
    assert prepared.crop_box == (0.0, 10.0, 80.0, 90.0)


def test_explanation_renders_without_the_model(lite0, cat_dog, monkeypatch):
    exp = xai_core.explain(lite0, cat_dog, top_k=5)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was called during rendering")

    monkeypatch.setattr(lite0.module, "forward", no_model)
    pictures = {
        (k, act): xai_core.render_fused(exp, exp.fused(k, activation=act)).tobytes()
        for k in (1, 2, 5)
        for act in ("relu", "elu", "gelu")
    }
    for act in ("relu", "elu", "gelu"):  # K changes the picture
        assert len({pictures[k, act] for k in (1, 2, 5)}) == 3
    # so does the end activation (with K = 5 every position's strongest class is positive
    # here, so ReLU and ELU coincide exactly; GELU still differs)
    assert len({pictures[2, act] for act in ("relu", "elu", "gelu")}) == 3
    assert pictures[5, "relu"] != pictures[5, "gelu"]
    assert xai_core.render_map(exp, 1, colormap="magma").shape == (224, 224, 3)
    assert len(xai_core.legend(exp, 3)) == 3
    with pytest.raises(xai_core.MethodError, match="between 1 and 5"):
        exp.fused(6)


def _relevance_explanation(cams: torch.Tensor, view: np.ndarray | None = None) -> xai_core.Explanation:
    """An Explanation holding given input-resolution maps (as FG-CAM's are), no model involved."""
    k, h, w = cams.shape
    view = np.full((h, w, 3), 128, dtype=np.uint8) if view is None else view
    prepared = PreparedInput(torch.zeros(1, 3, h, w), view, (0.0, 0.0, float(w), float(h)), (w, h))
    return xai_core.Explanation(
        model_key="m",
        method="fg_cam",
        layer="input",
        class_idx=tuple(range(k)),
        labels=tuple(f"c{i}" for i in range(k)),
        probs=tuple(1.0 / (i + 2) for i in range(k)),
        cams=cams,
        channels=1,
        all_probs=np.full(10, 0.1),
        prepared=prepared,
    )


def test_fused_relevance_clip_keeps_weak_evidence_visible():
    """One extreme pixel must not set the scale of a fused relevance map (issue 12, item 3)."""
    cams = torch.zeros(2, 48, 48)
    cams[0, 4:20, 4:20] = 1.0  # class 0: a block of ordinary evidence
    cams[1, 28:44, 28:44] = 0.8  # class 1: a weaker block elsewhere
    cams[0, 0, 0] = 1000.0  # one edge pixel (0.2 % of the evidence), 1000x the rest
    exp = _relevance_explanation(cams)
    plain = exp.fused(2, normalise="off")
    clipped = exp.fused(2, normalise="off", clip_percentile=99.5)
    assert float(plain.maps[0, 4:20, 4:20].max()) < 0.01  # washed out by the outlier
    assert float(clipped.maps[0, 4:20, 4:20].min()) > 0.5  # visible once clipped
    assert float(clipped.maps[1, 28:44, 28:44].min()) > 0.5
    # the shared limit keeps the classes' order of strength
    assert float(clipped.maps[0, 4:20, 4:20].mean()) > float(clipped.maps[1, 28:44, 28:44].mean())

    picture = xai_core.render_fused_relevance(exp, clipped)
    colours = class_colours(2)
    assert picture.shape == (48, 48, 3) and picture.dtype == np.uint8
    # each class in its own colour at the centre of its block (each on a scale of its own)
    for cls, (y, x) in ((0, (12, 12)), (1, (36, 36))):
        assert _nearest_class(picture[y, x], colours) == cls
    blank = picture[24, 2].astype(int)  # no relevance: the grey photo, untinted
    assert np.ptp(blank) <= 1


def _nearest_class(pixel: np.ndarray, colours) -> int:
    return int(np.argmin([np.abs(pixel.astype(int) - np.asarray(c)).sum() for c in colours]))


def test_fine_fused_map_gives_a_weaker_class_its_own_region_and_shows_the_photo():
    """Issue 23 item 8: a class with broad strong relevance must not own the whole fused map,
    and the photo must stay visible beneath it."""
    cams = torch.zeros(2, 64, 64)
    cams[0] = 0.3  # class 0: strong everywhere (the background too) ...
    cams[0, 8:28, 8:28] = 1.0  # ... and strongest on its object
    cams[1, 36:56, 36:56] = 0.2  # class 1: weaker overall, all of it on its own object
    stripes = np.where((np.arange(64) // 4) % 2 == 1, 200, 40).astype(np.uint8)  # a photo with contrast
    exp = _relevance_explanation(cams, np.repeat(np.tile(stripes, (64, 1))[..., None], 3, axis=2))
    picture = xai_core.render_fused_relevance(exp, exp.fused(2, normalise="off", clip_percentile=99.5))
    colours = class_colours(2)
    assert _nearest_class(picture[18, 18], colours) == 0
    assert _nearest_class(picture[46, 46], colours) == 1  # a shared scale hands this to class 0 too
    # where neither class stands out (class 0's flat background, a third of its scale), the photo shows
    view = exp.prepared.view.astype(float).mean(axis=2)
    out = picture.astype(float).mean(axis=2)
    region = (slice(2, 6), slice(40, 60))
    contrast = np.ptp(out[region]) / max(np.ptp(view[region]), 1e-6)
    assert contrast > 0.4, contrast  # the photo's own contrast, not a faint wash


def test_relevance_caption_says_how_much_blue_there_is():
    """Issue 23 item 8: the caption must not promise blue the maps do not have."""
    from xai_core.render.relevance import negative_share, scale_label

    positive = np.array([[1.0, 2.0], [0.0, 1.0]])
    assert negative_share(positive) == 0.0
    assert "nothing is blue" in scale_label(negative=negative_share(positive))
    signed = np.array([[1.0, -1.0], [2.0, 0.0]])
    assert negative_share(signed) == pytest.approx(0.25)
    assert "25 %" in scale_label(negative=negative_share(signed))


def test_rendering_reads_explanations_without_importing_the_layers_above():
    """render/ sits below methods, relevance, fusion and the API: it imports none of them."""
    import ast
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[1] / "xai_core" / "render"
    above = ("xai_core.api", "xai_core.methods", "xai_core.relevance", "xai_core.fusion", "xai_core.evaluate")
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(above) for n in names), (path.name, names)
    assert xai_core.render_map is xai_core.render.render_map

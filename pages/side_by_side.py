"""Side by side: two models on one image, or one model on two images.

One method, one class; the maps on one colour scale and their difference.
"""

from __future__ import annotations

import html

import streamlit as st

import xai_core as xc
from pages._ui import compute, url_state
from pages._ui.compare_view import comparison_figure, photo_under
from pages._ui.estimates import slow_estimate
from pages._ui.running import MISSING, Work, attempt, obtain
from pages._ui.state import ensure_routed, key, remember, seed
from pages._ui.views import full_image
from pages._ui.widgets import image_source, layer_picker, load_model_or_explain, method_picker, model_picker
from xai_core.render import COLORMAPS
from xai_core.report import weights_status

ensure_routed()

PAGE = "sbs"
url_state.follow(PAGE)  # choices from / into the address (a reload or a link restores them)
FAMILIES = {"imagenet": "ImageNet (photos)", "xray": "Chest X-ray"}
DEFAULT_SAMPLE = {"imagenet": "cat_dog.png", "xray": "nih_00000001_000.png"}
SECOND_SAMPLE = {"imagenet": "dogs.png", "xray": "nih_00027426_000.png"}
MODES = {"models": "Two models, one image", "images": "Two images, one model"}
VALUE_LABELS = {
    "raw": "raw values on one shared min/max",
    "normalised": "each map scaled to 0-1 first",
}

seed(key(PAGE, "mode"), "sbs.mode", "models", valid=lambda v: v in MODES)
mode = st.radio(
    "Compare",
    list(MODES),
    format_func=MODES.get,
    horizontal=True,
    key=key(PAGE, "mode"),
    on_change=remember,
    args=(key(PAGE, "mode"), "sbs.mode"),
)
two_images = mode == "images"
if two_images:
    st.title("Side by side: two images, one model")
    st.caption(
        "The same model, method and class explained on two images. Both maps are drawn on **one** colour scale, "
        "each over its own image, and their difference 1 − 2 beside them (red: stronger in image 1, blue: "
        "stronger in image 2)."
    )
else:
    st.title("Side by side: two models, one image")
    st.caption(
        "The same method and the same class explained by two models on one image. Both maps are drawn on **one** "
        "colour scale, on the part of the image both models saw, and their difference A − B beside them "
        "(red: stronger in A, blue: stronger in B)."
    )


def _family(slot: str) -> str:
    widget = key(PAGE, f"family_{slot}")
    seed(widget, f"sbs.family_{slot}", "imagenet", valid=lambda v: v in FAMILIES)
    return st.radio(
        "Family",
        list(FAMILIES),
        format_func=FAMILIES.get,
        horizontal=True,
        key=widget,
        on_change=remember,
        args=(widget, f"sbs.family_{slot}"),
    )


with st.sidebar:
    st.header("Model" if two_images else "Model A")
    family_a = _family("a")
    choice_a, weights_a = model_picker(f"{PAGE}_a", family_a)
    if not two_images:
        st.header("Model B")
        family_b = _family("b")
        default_b = "resnet50" if family_b == "imagenet" else None
        # Random weights first: no weights but Lite0's ship offline, so "Default" would open the page on
        # "weights not available"; the figure's titles and a warning say "random weights".
        choice_b, weights_b = model_picker(
            f"{PAGE}_b", family_b, name=f"sbs.model_b.{family_b}", default=default_b, default_weights="random"
        )

if not two_images and family_a != family_b:
    st.error(
        f"**These two models predict different classes.** Model A predicts {FAMILIES[family_a]} classes and "
        f"model B {FAMILIES[family_b]} classes: they have no class in common, so there is no 'same class' to "
        "compare. Pick two models of one family in the sidebar."
    )
    st.stop()
family = family_a

if two_images:
    st.subheader("Image 1")
image = image_source(PAGE, family, default_sample=DEFAULT_SAMPLE[family])
if two_images:
    st.subheader("Image 2")
    image_2 = image_source(f"{PAGE}_2", family, default_sample=SECOND_SAMPLE[family], scope="2")
model_a = load_model_or_explain(choice_a, weights_a, who="" if two_images else "Model A")
if two_images:  # one model: the second is the first (same classes, layer, method)
    choice_b, model_b = choice_a, model_a
else:
    model_b = load_model_or_explain(choice_b, weights_b, who="Model B")
if model_a is None or model_b is None:
    st.stop()
shared = xc.common_classes(model_a.labels, model_b.labels)
if not shared:
    st.error(
        f"**{model_a.spec.label} and {model_b.spec.label} share no class**: their class sets differ, so their maps "
        "of 'the same class' cannot be compared. Pick two models that predict the same classes."
    )
    st.stop()

with st.sidebar:
    st.header("Layer" if two_images else "Layers")
    layer_a = layer_picker(f"{PAGE}_a", model_a, choice_a)
    layer_b = layer_a if two_images else layer_picker(f"{PAGE}_b", model_b, choice_b)
    st.header("Method")
    unavailable = {
        **compute.unavailable_methods(model_a, layer_a),
        **compute.unavailable_methods(model_b, layer_b),
    }
    method, params = method_picker(PAGE, unavailable=unavailable)

if image is None or (two_images and image_2 is None):
    st.info("Upload an image or choose a sample to start." if not two_images else "Choose two images to start.")
    st.stop()


def _weights_note(model: xc.LoadedModel) -> str:
    """`` (random weights)`` or `` (unknown weights)`` after a model's name in a title; nothing for published ones."""
    status = weights_status(model.weights_source)
    return "" if status.is_result else f" ({status.kind} weights)"


def _short(name: str, most: int = 22) -> str:
    """A file name cut in the middle to fit a third of the figure's width (the caption gives it whole)."""
    return name if len(name) <= most else f"{name[: most - 9]}…{name[-8:]}"


def _read(image):
    if family == "xray":
        xray = attempt(compute.read_xray, image.digest, image.name, image.data)
        return xray.pixels if xray is not None else None
    return attempt(compute.read_image, image.digest, image.data, _name=image.name)


picture = _read(image)
picture_2 = _read(image_2) if two_images else picture
if picture is None or picture_2 is None:
    st.stop()

pred_a = attempt(compute.predictions, image.digest, choice_a.model_id, _image=picture, _model=model_a)
if pred_a is None:
    st.stop()
index_b = {i: j for i, j, _ in shared}
names = {i: name for i, _, name in shared}
options = [c for c in pred_a.order if c in index_b] + [i for i, _, _ in shared if i not in set(pred_a.order)]

pair = model_a.key if two_images else f"{model_a.key}.{model_b.key}"
class_widget = key(PAGE, f"class.{pair}")
seed(class_widget, f"sbs.class.{pair}", options[0], valid=lambda v: v in index_b)
cls = st.columns([2, 3])[0].selectbox(
    "Class (both images)" if two_images else "Class (both models)",
    options,
    format_func=lambda i: f"{names[i]} ({100 * float(pred_a.all_probs[i]):.1f}% in {'image 1' if two_images else 'A'})",
    key=class_widget,
    on_change=remember,
    args=(class_widget, f"sbs.class.{pair}"),
    help="The model's classes, most probable in image 1 first."
    if two_images
    else "Classes both models predict, model A's most probable first.",
)
with st.sidebar:
    st.header("Display")
    seed(key(PAGE, "values"), "sbs.values", "raw", valid=lambda v: v in VALUE_LABELS)
    values = st.radio(
        "Colour scale",
        list(VALUE_LABELS),
        format_func=VALUE_LABELS.get,
        key=key(PAGE, "values"),
        on_change=remember,
        args=(key(PAGE, "values"), "sbs.values"),
        help="Raw values compare how strong the evidence is in each image (one model: one unit); "
        "scaled to 0-1 compares where the model looks."
        if two_images
        else "Raw values compare how strong the evidence is, but two models' maps are in their own units; "
        "scaled to 0-1 compares where each model looks.",
    )
    seed(key(PAGE, "colormap"), "colormap", xc.DEFAULT_COLORMAP, valid=lambda v: v in COLORMAPS)
    colormap = st.selectbox(
        "Colour map (maps A and B)",
        list(COLORMAPS),
        key=key(PAGE, "colormap"),
        on_change=remember,
        args=(key(PAGE, "colormap"), "colormap"),
    )
    alpha = st.slider("Opacity over the photo", 0.2, 1.0, value=0.7, step=0.05, key=key(PAGE, "alpha"))

spec = xc.get_explainer(method)
explained = []
if two_images:  # one model, one class, two images
    runs = (
        ("image 1", image, picture, choice_a, model_a, layer_a, cls),
        ("image 2", image_2, picture_2, choice_a, model_a, layer_a, cls),
    )
else:
    runs = (
        ("model A", image, picture, choice_a, model_a, layer_a, cls),
        ("model B", image, picture, choice_b, model_b, layer_b, index_b[cls]),
    )
for slot, img, pic, choice, model, layer, target in runs:
    estimate, how = (None, "")
    if spec.slow:
        pred = attempt(compute.predictions, img.digest, choice.model_id, _image=pic, _model=model)
        estimate, how = slow_estimate(choice.model_id, model, layer, pred) if pred else (None, "")
    work = Work(
        compute.explanation_key(img.digest, choice.model_id, layer, method, params, (target,)),
        compute.explanation_work(model, pic, layer, method, params, (target,)),
        f"{spec.label} of {slot} ({model.spec.label})",
        slow=spec.slow,
        unit="masks" if spec.slow else "",
        estimate=estimate,
        how=how,
        rate_key=(choice.model_id, "masks") if spec.slow else None,
    )
    exp = attempt(obtain, work, button=f"Compute {spec.label} for {slot}")
    if exp is None or exp is MISSING:
        st.stop()
    explained.append(exp)
exp_a, exp_b = explained

if two_images:
    # One model: each map covers its own image's crop (the crops differ in pixels), so both are compared on
    # the model's input grid, position for position; no crop boxes.
    comparison = attempt(xc.compare_maps, exp_a.cams[0], exp_b.cams[0], size=tuple(exp_a.input_size), values=values)
else:
    comparison = attempt(
        xc.compare_maps,
        exp_a.cams[0],
        exp_b.cams[0],
        box_a=exp_a.prepared.crop_box,
        box_b=exp_b.prepared.crop_box,
        size=xc.common_grid([exp_a.input_size, exp_b.input_size]),
        values=values,
    )
if comparison is None:
    st.stop()

prob_a, prob_b = exp_a.predictions[0][2], exp_b.predictions[0][2]
h, w = comparison.size
scale = (
    f"share one colour scale ({comparison.vmin:.3g} to {comparison.vmax:.3g}, "
    f"{VALUE_LABELS[values]}, negative evidence dropped); the difference has its own scale, symmetric around 0 "
    f"(±{comparison.limit:.3g})"
)
if two_images:
    titles = (
        f"<b>1</b>: {html.escape(_short(image.name))}<br>{spec.label} at {layer_a}",
        f"<b>2</b>: {html.escape(_short(image_2.name))}<br>{spec.label} at {layer_a}",
    )
    photos = tuple(
        photo_under(full_image(pic), comparison, box=exp.prepared.crop_box)
        for pic, exp in ((picture, exp_a), (picture_2, exp_b))
    )
    figure = comparison_figure(comparison, photos, titles, colormap=colormap, alpha=alpha, names=("1", "2"))
    st.plotly_chart(figure, key=key(PAGE, "figure"))
    st.caption(
        f"Probability of {names[cls]} by {model_a.spec.label}: {100 * prob_a:.1f}% in image 1 "
        f"(**{image.name}**), {100 * prob_b:.1f}% in image 2 (**{image_2.name}**). Maps 1 and 2 {scale}. "
        f"Each map is drawn over its own image, on the model's {h}×{w} input grid (the part of the image the "
        "model saw); the difference compares the same positions of that grid, not the same objects, and is "
        "drawn over no photo. Hover for values."
    )
else:
    titles = (
        f"<b>A</b>: {model_a.spec.label}{_weights_note(model_a)}<br>{spec.label} at {layer_a}",
        f"<b>B</b>: {model_b.spec.label}{_weights_note(model_b)}<br>{spec.label} at {layer_b}",
    )
    photo = photo_under(full_image(picture), comparison)
    st.plotly_chart(
        comparison_figure(comparison, photo, titles, colormap=colormap, alpha=alpha), key=key(PAGE, "figure")
    )
    st.caption(
        f"Probability of {names[cls]}: {100 * prob_a:.1f}% in A, {100 * prob_b:.1f}% in B. "
        f"Maps A and B {scale}. Both maps were resampled onto one {h}×{w} grid covering the part of the image "
        "both models saw (each model resizes and crops the upload its own way). Hover for values."
    )
if values == "raw" and choice_a.model_id != choice_b.model_id:
    st.caption(
        ":material/info: Raw values of two models are in each model's own units; choose *each map scaled to 0-1* "
        "to compare where they look rather than how strongly."
    )

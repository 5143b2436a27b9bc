"""Side by side: two models on one image, one method, one class; the maps on one colour scale and their difference."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute
from pages._ui.compare_view import comparison_figure, photo_under
from pages._ui.estimates import slow_estimate
from pages._ui.running import MISSING, Work, attempt, obtain
from pages._ui.state import ensure_routed, key, remember, seed
from pages._ui.views import full_image
from pages._ui.widgets import image_source, layer_picker, load_model_or_explain, method_picker, model_picker
from xai_core.render import COLORMAPS

ensure_routed()

PAGE = "sbs"
FAMILIES = {"imagenet": "ImageNet (photos)", "xray": "Chest X-ray"}
DEFAULT_SAMPLE = {"imagenet": "cat_dog.png", "xray": "nih_00000001_000.png"}
VALUE_LABELS = {
    "raw": "raw values on one shared min/max",
    "normalised": "each map scaled to 0-1 first",
}

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
    st.header("Model A")
    family_a = _family("a")
    choice_a, weights_a = model_picker(f"{PAGE}_a", family_a)
    st.header("Model B")
    family_b = _family("b")
    default_b = "resnet50" if family_b == "imagenet" else None
    choice_b, weights_b = model_picker(f"{PAGE}_b", family_b, name=f"sbs.model_b.{family_b}", default=default_b)

if family_a != family_b:
    st.error(
        f"**These two models predict different classes.** Model A predicts {FAMILIES[family_a]} classes and "
        f"model B {FAMILIES[family_b]} classes: they have no class in common, so there is no 'same class' to "
        "compare. Pick two models of one family in the sidebar."
    )
    st.stop()
family = family_a

image = image_source(PAGE, family, default_sample=DEFAULT_SAMPLE[family])
model_a = load_model_or_explain(choice_a, weights_a)
model_b = load_model_or_explain(choice_b, weights_b)
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
    st.header("Layers")
    layer_a = layer_picker(f"{PAGE}_a", model_a, choice_a)
    layer_b = layer_picker(f"{PAGE}_b", model_b, choice_b)
    st.header("Method")
    unavailable = {
        **compute.unavailable_methods(model_a, layer_a),
        **compute.unavailable_methods(model_b, layer_b),
    }
    method, params = method_picker(PAGE, unavailable=unavailable)

if image is None:
    st.info("Upload an image or choose a sample to start.")
    st.stop()
if family == "xray":
    xray = attempt(compute.read_xray, image.digest, image.name, image.data)
    picture = xray.pixels if xray is not None else None
else:
    picture = attempt(compute.read_image, image.digest, image.data, _name=image.name)
if picture is None:
    st.stop()

pred_a = attempt(compute.predictions, image.digest, choice_a.model_id, _image=picture, _model=model_a)
if pred_a is None:
    st.stop()
index_b = {i: j for i, j, _ in shared}
names = {i: name for i, _, name in shared}
options = [c for c in pred_a.order if c in index_b] + [i for i, _, _ in shared if i not in set(pred_a.order)]

class_widget = key(PAGE, f"class.{model_a.key}.{model_b.key}")
seed(class_widget, f"sbs.class.{model_a.key}.{model_b.key}", options[0], valid=lambda v: v in index_b)
cls = st.columns([2, 3])[0].selectbox(
    "Class (both models)",
    options,
    format_func=lambda i: f"{names[i]} ({100 * float(pred_a.all_probs[i]):.1f}% in A)",
    key=class_widget,
    on_change=remember,
    args=(class_widget, f"sbs.class.{model_a.key}.{model_b.key}"),
    help="Classes both models predict, model A's most probable first.",
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
        help="Raw values compare how strong the evidence is, but two models' maps are in their own units; "
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
for slot, choice, model, layer in (("A", choice_a, model_a, layer_a), ("B", choice_b, model_b, layer_b)):
    target = cls if slot == "A" else index_b[cls]
    estimate, how = (None, "")
    if spec.slow:
        pred = attempt(compute.predictions, image.digest, choice.model_id, _image=picture, _model=model)
        estimate, how = slow_estimate(choice.model_id, model, layer, pred) if pred else (None, "")
    work = Work(
        compute.explanation_key(image.digest, choice.model_id, layer, method, params, (target,)),
        compute.explanation_work(model, picture, layer, method, params, (target,)),
        f"{spec.label} of model {slot} ({model.spec.label})",
        slow=spec.slow,
        unit="masks" if spec.slow else "",
        estimate=estimate,
        how=how,
        rate_key=(choice.model_id, "masks") if spec.slow else None,
    )
    exp = attempt(obtain, work, button=f"Compute {spec.label} for model {slot}")
    if exp is None or exp is MISSING:
        st.stop()
    explained.append(exp)
exp_a, exp_b = explained

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

prob_b = exp_b.predictions[0][2]
titles = (
    f"<b>A</b>: {model_a.spec.label}<br>{spec.label} at {layer_a}",
    f"<b>B</b>: {model_b.spec.label}<br>{spec.label} at {layer_b}",
)
photo = photo_under(full_image(picture), comparison)
st.plotly_chart(comparison_figure(comparison, photo, titles, colormap=colormap, alpha=alpha), key=key(PAGE, "figure"))
h, w = comparison.size
st.caption(
    f"Probability of {names[cls]}: {100 * exp_a.predictions[0][2]:.1f}% in A, {100 * prob_b:.1f}% in B. "
    f"Maps A and B share one colour scale ({comparison.vmin:.3g} to {comparison.vmax:.3g}, "
    f"{VALUE_LABELS[values]}, negative evidence dropped); the difference has its own scale, symmetric around 0 "
    f"(±{comparison.limit:.3g}). Both maps were resampled onto one {h}×{w} grid covering the part of the image "
    "both models saw (each model resizes and crops the upload its own way). Hover for values."
)
if values == "raw" and choice_a.model_id != choice_b.model_id:
    st.caption(
        ":material/info: Raw values of two models are in each model's own units; choose *each map scaled to 0-1* "
        "to compare where they look rather than how strongly."
    )

"""Method comparison page: every method on one image, with compute times and faithfulness."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, faithfulness, sanity, url_state
from pages._ui.estimates import slow_estimate
from pages._ui.legend import image_grid
from pages._ui.notices import size_warning
from pages._ui.running import MISSING, Work, attempt, obtain
from pages._ui.state import ensure_routed, key, remember, seed
from pages._ui.widgets import (
    cam_methods,
    class_picker,
    image_source,
    map_display_controls,
    method_params,
    model_sidebar,
)
from xai_core.report import coinciding_groups

ensure_routed()

PAGE = "cmp"
url_state.follow(PAGE)  # choices from / into the address (a reload or a link restores them)

st.title("Method comparison")
st.markdown(
    "One image, the model's top class, every method at the same layer: the maps side by side with their "
    "compute times, then how faithful each map is (insertion/deletion curves and related scores)."
)

image = image_source(PAGE, "imagenet", default_sample="cat_dog.png")
chosen = model_sidebar(PAGE, "imagenet")
if chosen is None:
    st.stop()
choice, model, layer = chosen

methods = cam_methods()  # every CAM-family method of the registry, at one layer
labels = {m.key: m.label for m in methods}
with st.sidebar:
    unavailable = compute.unavailable_methods(model, layer)  # e.g. CAM away from the head layer
    fast = [m.key for m in methods if not m.slow and m.key not in unavailable]
    slow = [m.key for m in methods if m.slow and m.key not in unavailable]
    for why in unavailable.values():
        st.caption(":material/info: " + why)
    seed(key(PAGE, "methods"), "cmp_methods", fast, valid=lambda v: isinstance(v, list))
    # A choice made at another layer keeps only the methods that run at this one.
    if not set(st.session_state[key(PAGE, "methods")]) <= set(fast):
        st.session_state[key(PAGE, "methods")] = [m for m in st.session_state[key(PAGE, "methods")] if m in fast]
    chosen = st.multiselect(
        "Methods",
        fast,
        format_func=labels.get,
        key=key(PAGE, "methods"),
        on_change=remember,
        args=(key(PAGE, "methods"), "cmp_methods"),
    )
    seed(key(PAGE, "slow"), "cmp_slow", False)
    include_slow = st.toggle(
        f"Include slow methods ({', '.join(labels[m] for m in slow)})",
        key=key(PAGE, "slow"),
        on_change=remember,
        args=(key(PAGE, "slow"), "cmp_slow"),
        help="They run one masked forward pass per feature map, after you press their Compute button.",
    )
    slow_params = {}
    if include_slow:
        for m in slow:
            slow_params[m] = method_params(PAGE, xc.get_explainer(m), name_method=True)
    classes, _ = class_picker(PAGE, "imagenet", model)
    st.header("Display")
    colormap, alpha, signed = map_display_controls(PAGE)

if image is None:
    st.info("Upload an image or choose a sample to start.")
    st.stop()
picture = attempt(compute.read_image, image.digest, image.data, _name=image.name)
if picture is None:
    st.stop()
size_warning(picture.size, model)
pred = attempt(compute.predictions, image.digest, choice.model_id, _image=picture, _model=model)
if pred is None:
    st.stop()
# The explained class: the first class chosen in the sidebar, else the model's top class.
cls = classes[0] if classes else pred.order[0]

fg_base = compute.fgcam_bases()[0]  # FG-CAM's default base
targets = attempt(compute.fgcam_layers, choice.model_id, layer, _model=model) or []
target_labels = dict(targets)
target_names = [t[0] for t in targets if t[0] != layer]
default_targets = list(dict.fromkeys([t for t in target_names if t == "input"] + target_names[1:2]))
fg_widget = key(PAGE, f"fg_targets.{choice.key}.{layer}")
seed(fg_widget, f"cmp_fg_targets.{choice.key}.{layer}", default_targets, valid=lambda v: set(v) <= set(target_names))
fg_targets = st.multiselect(
    f"FG-CAM target layers ({labels.get(fg_base, fg_base)} components brought down to these layers)",
    target_names,
    format_func=target_labels.get,
    key=fg_widget,
    on_change=remember,
    args=(fg_widget, f"cmp_fg_targets.{choice.key}.{layer}"),
)

runs = [(m, ()) for m in chosen] + ([(m, slow_params[m]) for m in slow] if include_slow else [])
results: dict[str, xc.Explanation] = {}
checks: dict[str, tuple[str, tuple]] = {}  # label -> (method, parameters) for the sanity check
for method, params in runs:
    spec = xc.get_explainer(method)
    estimate, how = slow_estimate(choice.model_id, model, layer, pred) if spec.slow else (None, "")
    work = Work(
        compute.explanation_key(image.digest, choice.model_id, layer, method, params, (cls,)),
        compute.explanation_work(model, picture, layer, method, params, (cls,)),
        spec.label,
        slow=spec.slow,
        unit="masks" if spec.slow else "",
        estimate=estimate,
        how=how,
        rate_key=(choice.model_id, "masks") if spec.slow else None,
    )
    exp = attempt(obtain, work, button=f"Compute {spec.label}", primary=False)
    if exp is not None and exp is not MISSING:
        results[labels[method]] = exp
        checks[labels[method]] = (method, tuple(params))

base_key = compute.explanation_key(image.digest, choice.model_id, layer, fg_base, (), (cls,))
base = results.get(labels.get(fg_base, "")) or attempt(
    obtain,
    Work(base_key, compute.explanation_work(model, picture, layer, fg_base, (), (cls,)), labels.get(fg_base, fg_base)),
)
for target in fg_targets:
    if base is None or base is MISSING:
        break
    part = compute.fgcam_key(image.digest, choice.model_id, layer, target, fg_base, False, cls)
    run = compute.fgcam_work(model, base, image.digest, choice.model_id, target, fg_base, False)
    work = Work(("fgcam-run", *part), run, f"FG-CAM to {target_labels.get(target, target)}")
    out = attempt(obtain, work)
    if out is not None and out is not MISSING:
        results[f"FG-CAM → {target}"] = out
        checks[f"FG-CAM → {target}"] = ("fg_cam", (("base", fg_base), ("target_layer", target)))

if not results:
    st.info("Choose at least one method.")
    st.stop()

first = next(iter(results.values()))
_, name, prob = first.predictions[0]
st.subheader(f"Explaining **{name}** ({100 * prob:.1f}%) at `{layer}`")
pictures = [first.prepared.view] + [
    xc.render_map(e, 0, colormap=colormap, alpha=alpha, signed=signed) for e in results.values()
]
captions = ["input"] + [f"{label}: {e.seconds:.2f} s" for label, e in results.items()]
image_grid(pictures, captions, columns=5)
same = coinciding_groups({label: e.cams[0].detach().cpu().numpy() for label, e in results.items()})
head = "cam" not in compute.unavailable_methods(model, layer)
for group in same:
    why = (
        f"at `{layer}` the network goes on with only global average pooling and one linear layer, so the class "
        "score's gradient is the same at every position and each of these methods reduces to CAM (the linear "
        "layer's weights applied to the feature maps)"
        if head
        else "their weights happen to agree on this image at this layer"
    )
    st.info(
        f"**{', '.join(group)}** give the same map here (up to scale): {why}. Their maps, scores and curves are "
        "identical; the curves are drawn dashed so that none hides another.",
        icon=":material/join:",
    )
st.caption(
    "Times are the compute time of each map for one class on this machine, after one untimed warm-up pass "
    "per model and layer (cached results keep the time of their first computation)."
)

# ----------------------------------------------------------------------------- faithfulness
st.subheader("Faithfulness")
st.markdown(
    "**Insertion**: pixels are put back into a blurred image in the map's order; a faithful map makes the class "
    "probability rise fast (high area). **Deletion**: pixels are blurred in the map's order; a faithful map makes it "
    "fall fast (low area). Petsiuk et al., RISE, BMVC 2018, as used in the FG-CAM paper's Table 2. **ROAD** "
    "(switch it on; slow): pixels are removed most relevant first (MoRF: low probability is better) or least "
    "relevant first (LeRF: high is better) and filled by noisy linear imputation. Rong et al., ICML 2022."
)
c1, c2, c3 = st.columns([3, 1, 1])
to_score = c1.multiselect("Methods to score", list(results), default=list(results)[:3], key=key(PAGE, "score"))
steps = c2.select_slider(
    "Curve points",
    [14, 28, 56, 112],
    value=28,
    key=key(PAGE, "steps"),
    help="112 as in the paper; each point costs two forward passes per method.",
)
road_fractions = faithfulness.road_controls(PAGE, c3)  # None: ROAD off (the default)
request = (image.digest, choice.model_id, layer, tuple(to_score), steps)
requested = st.session_state.setdefault(key(PAGE, "requested"), set())
if request not in requested:
    st.caption(f"About {2 * steps + 8} forward passes per method.")
    if st.button("Compute faithfulness", type="primary", key=key(PAGE, "run_metrics"), disabled=not to_score):
        requested.add(request)
        st.rerun()
if request in requested and to_score:
    metrics_bar = st.progress(0.0, text="Scoring...")
    scored = {}
    for i, label in enumerate(to_score):
        metrics_bar.progress(i / len(to_score), text=f"Scoring {label} ({i + 1} of {len(to_score)})")
        e = results[label]
        ev = attempt(
            compute.compute_metrics, image.digest, choice.model_id, f"{label}@{layer}", cls, steps, _exp=e, _model=model
        )
        if ev is not None:
            scored[label] = ev
    metrics_bar.empty()
    if scored:
        faithfulness.show(PAGE, scored, results, model, choice.model_id, image.digest, cls, road_fractions)

# ----------------------------------------------------------------------------- sanity check
on_screen = {label: (*checks[label], results[label].seconds) for label in results if label in checks}
sanity.show(PAGE, model, choice.model_id, image.digest, picture, first.prepared.view, layer, cls, on_screen, colormap)

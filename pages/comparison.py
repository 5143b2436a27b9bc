"""Method comparison page: every method on one image, with compute times and faithfulness."""

from __future__ import annotations

import streamlit as st

import xai_core as xc
from pages._ui import compute, figures
from pages._ui.state import ensure_routed, key
from pages._ui.widgets import (
    attempt,
    image_grid,
    image_source,
    layer_picker,
    load_model_or_explain,
    method_params,
    model_picker,
    progress_callback,
)
from xai_core.render.colour import COLORMAPS

ensure_routed()

PAGE = "cmp"
SCORE_LABELS = {
    "insertion_auc": "Insertion AUC ↑",
    "deletion_auc": "Deletion AUC ↓",
    "overall": "Insertion − deletion ↑",
    "average_drop": "Average drop % ↓",
    "average_increase": "Increase in confidence ↑",
    "multiplied_change": "Change when multiplied ↑",
    "top_removed_drop": "Drop, top 25% blurred ↑",
}

st.title("Method comparison")
st.markdown(
    "One image, the model's top class, every method at the same layer: the maps side by side with their "
    "compute times, then how faithful each map is (insertion/deletion curves and related scores)."
)

image = image_source(PAGE, "imagenet", default_sample="cat_dog.png")
with st.sidebar:
    st.header("Model")
    choice, weights_file = model_picker(PAGE, "imagenet")
model = load_model_or_explain(choice, weights_file)
if model is None:
    st.stop()

methods = xc.list_methods()
fast = [m.key for m in methods if not m.slow]
slow = [m.key for m in methods if m.slow]
labels = {m.key: m.label for m in methods}
with st.sidebar:
    layer = layer_picker(PAGE, model, choice)
    chosen = st.multiselect("Methods", fast, default=fast, format_func=labels.get, key=key(PAGE, "methods"))
    include_slow = st.toggle(f"Include slow methods ({', '.join(labels[m] for m in slow)})", key=key(PAGE, "slow"))
    slow_params = {}
    if include_slow:
        st.warning("Slow methods run one forward pass per feature map: expect a minute or more each on a CPU.")
        for m in slow:
            slow_params[m] = method_params(PAGE, xc.get_method(m))
    st.header("Display")
    colormap = st.selectbox(
        "Colour map", list(COLORMAPS), index=list(COLORMAPS).index("jet"), key=key(PAGE, "colormap")
    )
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=key(PAGE, "alpha"))
    signed = st.toggle("Signed maps (red +, blue -)", key=key(PAGE, "signed"))

if image is None:
    st.info("Upload an image or choose a sample to start.")
    st.stop()
picture = attempt(compute.read_image, image.digest, image.data, _name=image.name)
if picture is None:
    st.stop()

targets = attempt(compute.fgcam_layers, choice.model_id, layer, _model=model) or []
target_labels = dict(targets)
target_names = [t[0] for t in targets if t[0] != layer]
default_targets = [t for t in target_names if t == "input"] + target_names[1:2]
fg_targets = st.multiselect(
    "FG-CAM target layers (Grad-CAM components brought down to these layers)",
    target_names,
    default=default_targets,
    format_func=target_labels.get,
    key=key(PAGE, f"fg_targets.{choice.key}.{layer}"),
)

runs = [(m, ()) for m in chosen] + ([(m, slow_params[m]) for m in slow] if include_slow else [])
bar = st.progress(0.0, text="Computing...")
results: dict[str, xc.Explanation] = {}
total = len(runs) + len(fg_targets)
for i, (method, params) in enumerate(runs):
    bar.progress(i / max(total, 1), text=f"{labels[method]} ({i + 1} of {total})")
    exp = attempt(
        compute.compute_explanation,
        image.digest,
        choice.model_id,
        layer,
        method,
        params,
        1,
        _image=picture,
        _model=model,
        _progress=progress_callback(bar) if xc.get_method(method).slow else None,
    )
    if exp is not None:
        results[labels[method]] = exp

base = results.get("Grad-CAM") or attempt(
    compute.compute_explanation, image.digest, choice.model_id, layer, "grad_cam", (), 1, _image=picture, _model=model
)
for j, target in enumerate(fg_targets):
    bar.progress((len(runs) + j) / max(total, 1), text=f"FG-CAM to {target} ({len(runs) + j + 1} of {total})")
    if base is None:
        break
    out = attempt(
        compute.compute_fgcam,
        image.digest,
        choice.model_id,
        layer,
        target,
        base.class_idx[:1],
        "grad_cam",
        False,
        _exp=base,
        _model=model,
    )
    if out is not None:
        results[f"FG-CAM → {target}"] = out
bar.empty()

if not results:
    st.info("Choose at least one method.")
    st.stop()

first = next(iter(results.values()))
cls, name, prob = first.predictions[0]
st.subheader(f"Explaining **{name}** ({100 * prob:.1f}%) at `{layer}`")
pictures = [first.prepared.view] + [
    xc.render_map(e, 0, colormap=colormap, alpha=alpha, signed=signed) for e in results.values()
]
captions = ["input"] + [f"{label}: {e.seconds:.2f} s" for label, e in results.items()]
image_grid(pictures, captions, columns=5)
st.caption(
    "Times are the compute time of each map for one class on this machine (cached results keep the time "
    "of their first computation)."
)

# ----------------------------------------------------------------------------- faithfulness
st.subheader("Faithfulness")
st.markdown(
    "**Insertion**: pixels are put back into a blurred image in the map's order; a faithful map makes the class "
    "probability rise fast (high area). **Deletion**: pixels are blurred in the map's order; a faithful map makes it "
    "fall fast (low area). Petsiuk et al., RISE, BMVC 2018, as used in the FG-CAM paper's Table 2."
)
c1, c2 = st.columns([3, 1])
to_score = c1.multiselect("Methods to score", list(results), default=list(results)[:3], key=key(PAGE, "score"))
steps = c2.select_slider(
    "Curve points",
    [14, 28, 56, 112],
    value=28,
    key=key(PAGE, "steps"),
    help="112 as in the paper; each point costs two forward passes per method.",
)
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
        table = [
            {"method": label, **{SCORE_LABELS[k]: round(ev.scores[k], 4) for k in SCORE_LABELS}}
            for label, ev in scored.items()
        ]
        st.dataframe(table, hide_index=True, width="stretch", key=key(PAGE, "table"))
        left, right = st.columns(2)
        left.plotly_chart(figures.curves_figure(scored, "insertion"), key=key(PAGE, "insertion"))
        right.plotly_chart(figures.curves_figure(scored, "deletion"), key=key(PAGE, "deletion"))
        st.caption("Settings: " + "; ".join(f"{k}: {v}" for k, v in next(iter(scored.values())).settings.items()))

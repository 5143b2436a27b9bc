"""Gallery page: many images explained in one batched pass, sorted, filtered, exported."""

from __future__ import annotations

import html
from functools import partial

import streamlit as st

import xai_core as xc
from pages._ui import compute, url_state
from pages._ui.gallery import RESULTS, GalleryFile, gallery_work, read_folder, read_zip, result_key, server_folder
from pages._ui.jobs import MISSING, STORE
from pages._ui.running import Work, asked, attempt, obtain, stopped_here
from pages._ui.state import PAGE_FILES, ensure_routed, key, remember, seed
from pages._ui.widgets import (
    IMAGE_MIME_TYPES,
    IMAGE_TYPES,
    IMAGE_UPLOAD_MB,
    cam_methods,
    method_picker,
    model_sidebar,
    share_image,
)
from xai_core.gallery import MAX_FILES, SORTS, export_zip, gallery_rows, sort_rows
from xai_core.images import image_digest

ensure_routed()

PAGE = "gal"
OPEN = key(PAGE, "open_now")
COLUMNS = 5
ZIP_MB = 200

if st.session_state.pop(OPEN, False):  # a thumbnail's Open was clicked: its image is the session's now
    st.switch_page(PAGE_FILES["classification"])
url_state.follow(PAGE)  # choices from / into the address (a reload or a link restores them)


def _open(name: str, data: bytes) -> None:
    share_image("imagenet", name, data)
    st.session_state[OPEN] = True


def _order_label(option: str) -> str:
    by, direction = option.rsplit(".", 1)
    if by == "file":
        return f"{SORTS[by][0]} ({'Z to A' if direction == 'desc' else 'A to Z'})"
    if by == "wrong":
        return SORTS[by][0] if direction == "desc" else "Model right first (labels)"
    return f"{SORTS[by][0]} ({'largest' if direction == 'desc' else 'smallest'} first)"


st.title("Gallery: many images at once")
st.caption(
    "Upload many images (or a ZIP of them): they are explained together, a batch per pass on the model's device, "
    "each with its top class and FM-G-CAM fused map. Sort them by probability, by how faithful the map is, by how "
    "much two methods disagree, or by where the model is wrong (a label in the file name: `photo__207.jpg` or "
    "`photo__golden_retriever.jpg`). Open any image on the Classification page."
)

# ----------------------------------------------------------------------------- sidebar
chosen = model_sidebar(PAGE, "imagenet")
if chosen is None:
    st.stop()
choice, model, layer = chosen
fast = [m for m in cam_methods() if not m.slow]
fast_keys = [m.key for m in fast]
labels = {m.key: m.label for m in fast}
with st.sidebar:
    unavailable = compute.unavailable_methods(model, layer)  # e.g. CAM away from the head layer
    method, params = method_picker(PAGE, unavailable=unavailable)
    fast_keys = [k for k in fast_keys if k not in unavailable]
    seed(key(PAGE, "k"), "gallery_k", 3, valid=lambda v: isinstance(v, int) and 1 <= v <= 5)
    top_k = st.slider(
        "Classes fused per image",
        1,
        5,
        key=key(PAGE, "k"),
        on_change=remember,
        args=(key(PAGE, "k"), "gallery_k"),
        help="How many of each image's top classes its FM-G-CAM thumbnail fuses.",
    )
    st.header("Disagreement")
    pair = []
    for i, default in enumerate(("grad_cam", "eigen_cam")):
        widget = key(PAGE, f"compare{i}")
        seed(widget, f"gallery_compare{i}", default, valid=lambda v: v in fast_keys)
        pair.append(
            st.selectbox(
                f"Method {'AB'[i]}",
                fast_keys,
                format_func=labels.get,
                key=widget,
                on_change=remember,
                args=(widget, f"gallery_compare{i}"),
                help="Disagreement = 1 - Spearman between the two methods' maps of the top class (0: same ranking).",
            )
        )

# ----------------------------------------------------------------------------- inputs
left, right = st.columns(2)
uploads = left.file_uploader(
    "Upload images (PNG, JPEG, WebP, BMP, TIFF, GIF)",
    type=IMAGE_TYPES + IMAGE_MIME_TYPES,
    accept_multiple_files=True,
    key=key(PAGE, "uploads"),
    max_upload_size=IMAGE_UPLOAD_MB,
)
archive = right.file_uploader(
    "...or a ZIP archive of images",
    type=["zip", "application/zip", "application/x-zip-compressed"],
    key=key(PAGE, "zip"),
    max_upload_size=ZIP_MB,
    help="Read in memory, never extracted: only image files are taken, by their base names.",
)
folder = server_folder()
use_folder = False
if folder:
    use_folder = st.toggle(f"Include the server's folder `{folder}`", value=True, key=key(PAGE, "folder"))


files: list[GalleryFile] = []
skipped: list[str] = []
for up in uploads or []:
    data = up.getvalue()
    files.append(GalleryFile(up.name, data, image_digest(data)))
if archive is not None:
    data = archive.getvalue()
    found = attempt(read_zip, image_digest(data), data)
    if found is not None:
        files += [GalleryFile(n, d, image_digest(d)) for n, d in found.files]
        skipped += [f"{archive.name}: {s}" for s in found.skipped]
if use_folder:
    found = attempt(read_folder, folder)
    if found is not None:
        files += [GalleryFile(n, d, image_digest(d)) for n, d in found.files]
        skipped += list(found.skipped)
if len(files) > MAX_FILES:
    skipped.append(f"{len(files) - MAX_FILES} images over the limit of {MAX_FILES} (left out)")
    files = files[:MAX_FILES]

if not files:
    if skipped:
        st.warning("No image to explain. Left out:\n\n" + "\n".join(f"- {html.escape(s)}" for s in skipped))
    else:
        st.info("Upload images or a ZIP archive to start.")
    st.stop()

# ----------------------------------------------------------------------------- explaining


def _this_run(config: tuple, work_key: object) -> bool:
    """Whether ``work_key`` is a gallery run with these settings (any images)."""
    return isinstance(work_key, tuple) and work_key[:2] == ("gallery-run", config)


compare = (pair[0], pair[1])
config = (choice.model_id, layer, method, params, int(top_k), compare)
missing: list[GalleryFile] = []
for f in files:
    if RESULTS.get(result_key(f.digest, config)) is MISSING and f.digest not in {m.digest for m in missing}:
        missing.append(f)
if missing:
    spec = xc.get_explainer(method)
    work = Work(
        ("gallery-run", config, tuple(f.digest for f in missing)),
        gallery_work(
            model, missing, config, layer=layer, method=method, params=params, top_k=int(top_k), compare=compare
        ),
        f"{spec.label} of {len(missing)} images",
        slow=True,
        unit="images",
    )
    button = f"Explain {len(missing)} {'image' if len(missing) == 1 else 'images'}"
    if STORE.job(work.key) is None and not asked(work.key) and stopped_here(partial(_this_run, config)):
        finished = len(files) - len(missing)
        st.info(
            f"Stopped after {finished} of {len(files)} images: their results are kept below. **{button}** goes on "
            "with the rest.",
            icon=":material/stop_circle:",
        )
    attempt(obtain, work, button=button)
else:
    stopped_here(partial(_this_run, config), forget=True)  # all done: no note of an old Stop

done = [(f, RESULTS.get(result_key(f.digest, config))) for f in files]
failed = [(f, r) for f, r in done if isinstance(r, str)]
skipped += [f"{f.name}: {r}" for f, r in failed]
ready = [(f, r) for f, r in done if r is not MISSING and not isinstance(r, str)]
if skipped:
    with st.expander(f"{len(skipped)} {'file' if len(skipped) == 1 else 'files'} left out", icon=":material/warning:"):
        st.markdown("\n".join(f"- {html.escape(s)}" for s in skipped))
rows = gallery_rows([f.name for f, _ in ready], [r for _, r in ready], model.labels)
data_of = {id(row): f for row, (f, _) in zip(rows, ready)}
has_labels = any(r.label is not None for r in rows)

# ----------------------------------------------------------------------------- sort, filter, grid
c1, c3, c4 = st.columns([4, 3, 2], vertical_alignment="bottom")
# One select box for the key and the direction: no widget's value is ever set from the script.
orders = [f"{by}.{d}" for by in SORTS for d in (("desc", "asc") if SORTS[by][1] else ("asc", "desc"))]
seed(key(PAGE, "sort"), "gallery_sort", orders[0], valid=lambda v: v in orders)
choice_of_order = c1.selectbox(
    "Sort by",
    orders,
    format_func=_order_label,
    help="Average Drop: how much the top class's probability falls when only the map's top half of the pixels is "
    "kept (lower: more faithful). Disagreement: 1 - Spearman between methods A and B's maps of the top class "
    "(sidebar). Model wrong first: needs labels in the file names.",
    key=key(PAGE, "sort"),
    on_change=remember,
    args=(key(PAGE, "sort"), "gallery_sort"),
)
by, direction = choice_of_order.rsplit(".", 1)
descending = direction == "desc"
wrong_only = c3.toggle(
    "Only where the model is wrong",
    key=key(PAGE, "wrong"),
    disabled=not has_labels,
    help="Needs a label in the file name: `<anything>__<class index or name>.<ext>`, as the evaluation command reads.",
)
if not rows:  # the controls above are drawn all the same: a run without them would forget their values
    st.stop()
ordered = sort_rows(rows, by, descending=descending)
shown = sort_rows(rows, by, descending=descending, wrong_only=wrong_only and has_labels)
c4.download_button(
    "Maps + CSV (ZIP)",
    data=lambda: export_zip(ordered),
    file_name="gallery.zip",
    mime="application/zip",
    icon=":material/download:",
    help="Every image explained, in this order (the filter aside): gallery.csv (file, top class, probability, "
    "Average Drop, disagreement, label, correct) and each fused map as a PNG.",
    on_click="ignore",
    width="stretch",
)
correct = [r.correct for r in rows if r.correct is not None]
summary = f"{len(ready)} of {len(files)} images explained with {xc.get_explainer(method).label} at `{layer}`"
if correct:
    summary += f"; top-1 correct on {sum(correct)} of {len(correct)} labelled images"
st.caption(f"{summary}. Sorted by: {_order_label(choice_of_order)}.")

for start in range(0, len(shown), COLUMNS):
    cols = st.columns(COLUMNS)
    for i, (col, row) in enumerate(zip(cols, shown[start : start + COLUMNS]), start=start):
        res, f = row.result, data_of[id(row)]
        with col:
            st.image(res.fused, caption=f"{row.file}: {res.label} ({100 * res.probability:.1f}%)", width="stretch")
            colours = xc.class_colours(len(res.predictions))
            st.markdown(
                "<small>"
                + " ".join(
                    f"<span style='color:rgb{c}'>■</span>&nbsp;{html.escape(name)}"
                    for c, (_, name, _) in zip(colours, res.predictions)
                )
                + "</small>",
                unsafe_allow_html=True,
            )
            parts = [f"Avg drop {res.scores['average_drop']:.0f}%"]
            if res.scores["disagreement"] == res.scores["disagreement"]:  # not NaN
                parts.append(f"disagr. {res.scores['disagreement']:.2f}")
            if row.correct is not None:
                parts.append(("✅ " if row.correct else "❌ label ") + (row.label_name or ""))
            st.caption(" · ".join(parts))
            st.button(
                "Open",
                key=key(PAGE, f"open.{i}.{f.digest[:16]}"),
                on_click=_open,
                args=(f.name, f.data),
                icon=":material/open_in_new:",
                help=f"Open {row.file} on the Classification page.",
                width="stretch",
            )

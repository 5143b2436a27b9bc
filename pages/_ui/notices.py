"""Notices about the input: an image too small for the model, how an X-ray file was read."""

from __future__ import annotations

import streamlit as st

import xai_core as xc


def size_warning(size: tuple[int, int], model: xc.LoadedModel) -> None:
    """Warn when the image is so small that the model sees mostly interpolation (e.g. 8x8)."""
    w, h = size
    in_h, in_w = model.spec.preprocessing.input_size
    if min(w, h) * 4 < min(in_h, in_w):
        st.warning(
            f"This image is only {w}x{h} pixels: the model sees it enlarged to {in_w}x{in_h}, mostly "
            "interpolation, so its predictions and maps say little about the picture. Use a larger image "
            f"(at least {min(in_h, in_w) // 2} pixels on the short side).",
            icon=":material/photo_size_select_small:",
        )


def reading_warnings(xray) -> None:
    """The reader's warnings about the file (a modality or body part that is not a chest radiograph).

    They come from the reader's record (``xray.warnings``, from the DICOM tags).
    """
    for text in tuple(getattr(xray, "warnings", ()) or ()):
        st.warning(text, icon=":material/warning:")


def reading_record(xray, name: str, *, compact: bool = False) -> None:
    """The X-ray as read and how it was read (needs no model); ``compact``: in a closed expander."""
    title = f"How the file was read: {xray.source_format}, {xray.width}x{xray.height}, {xray.bits}-bit"
    box = st.expander(title, expanded=False) if compact else st.container()
    with box:
        picture, record = st.columns([1, 2])
        with picture:
            st.image(xray.pixels, caption=f"{name} as read (bright = dense)", width="stretch", clamp=True)
        with record:
            if not compact:
                st.markdown(f"**{title}**")
            rec = getattr(xray, "record", None)
            if rec is not None:
                # One row per field (a tall two-column table): a one-row table of every field ran
                # 978 px wide in a 596 px column, its right half cut off.
                rows = rec.rows()
                st.table({"Field": [r[0] for r in rows], "Value": [r[1] for r in rows]}, border="horizontal")
            for note in xray.notes or ("read as is",):
                st.markdown(f"- {note}")

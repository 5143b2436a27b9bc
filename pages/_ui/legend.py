"""Legends and captioned output: the fused map's colour swatches and grids of captioned images."""

from __future__ import annotations

import html

import streamlit as st


def legend_html(rows: list[dict]) -> str:
    """Colour swatches naming each fused class and its probability."""
    items = []
    for r in rows:
        items.append(
            f'<div style="display:flex;align-items:center;gap:.5em;margin:.2em 0;font-size:1.05rem">'
            f'<span style="display:inline-block;width:1.3em;height:1.3em;border-radius:3px;'
            f'background:{r["colour"]};border:1px solid #555"></span>'
            f"<span><b>{html.escape(str(r['label']))}</b> &nbsp;{100 * r['probability']:.1f}%</span></div>"
        )
    return '<div class="fmgcam-legend">' + "".join(items) + "</div>"


def show_legend(rows: list[dict]) -> None:
    st.markdown(legend_html(rows), unsafe_allow_html=True)


def image_grid(images: list, captions: list[str], columns: int = 5) -> None:
    """Images in rows of ``columns``, each with its caption."""
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(img, caption=cap, width="stretch")

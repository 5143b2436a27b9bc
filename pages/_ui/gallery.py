"""The gallery page's helpers: where its images come from, its result store, its batched work.

The maths (reading archives safely, explaining in batches, scores, sorting, export) is
:mod:`xai_core.gallery`; this module only gathers the page's inputs and runs that work as
a job with progress and Stop (:mod:`pages._ui.running`).

A folder given to the server is offered as a third source: ``streamlit run app.py --
--gallery-folder DIR`` or the environment variable ``XAI_GALLERY_FOLDER=DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

from pages._ui.jobs import JobStore
from pages._ui.state import count_model_run

FOLDER_ENV = "XAI_GALLERY_FOLDER"

#: One result per (image, settings), shared by every session, apart from the pages' store
#: so that a large gallery does not push the other pages' results out of it.
RESULTS = JobStore(max_results=512)


@dataclass(frozen=True)
class GalleryFile:
    """One image of the gallery: its name, bytes and SHA-256."""

    name: str
    data: bytes
    digest: str


def server_folder(argv: Sequence[str] | None = None) -> str | None:
    """The folder given to the server (``-- --gallery-folder DIR``, else ``$XAI_GALLERY_FOLDER``), if any."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--gallery-folder")
    known, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return known.gallery_folder or os.environ.get(FOLDER_ENV) or None


@st.cache_data(max_entries=4, show_spinner="Reading the archive...")
def read_zip(digest: str, _data: bytes):
    """The images of an uploaded ZIP archive (:func:`xai_core.gallery.read_zip`), once per archive."""
    from xai_core.gallery import read_zip as _read_zip

    return _read_zip(_data)


@st.cache_data(max_entries=2, ttl=60, show_spinner="Reading the folder...")
def read_folder(folder: str):
    """The images of the server's folder (:func:`xai_core.gallery.read_folder`), read again after a minute."""
    from xai_core.gallery import read_folder as _read_folder

    return _read_folder(folder)


def result_key(digest: str, config: tuple) -> tuple:
    """Store key of one image's gallery result."""
    return ("gallery", digest, *config)


def gallery_work(
    model, files: Sequence[GalleryFile], config: tuple, *, layer: str, method: str, params: tuple, top_k: int, compare
) -> Callable[[Callable[[int, int], None]], int]:
    """``work(progress)``: decode and explain ``files`` in batches; each image's result is stored as its chunk ends.

    A file that cannot be decoded stores its message (a ``str``) instead of a result.
    Returns how many images were explained.
    """

    def work(progress: Callable[[int, int], None]) -> int:
        from xai_core import XaiCoreError
        from xai_core.gallery import decode, explain_gallery

        images, kept = [], []
        for f in files:
            try:
                images.append(decode(f.name, f.data))
                kept.append(f)
            except XaiCoreError as err:
                RESULTS.put(result_key(f.digest, config), str(err))
        count_model_run()
        explain_gallery(
            model,
            images,
            method=method,
            layer=layer,
            params=dict(params),
            top_k=top_k,
            compare=compare,
            progress=progress,
            on_result=lambda i, result: RESULTS.put(result_key(kept[i].digest, config), result),
        )
        return len(kept)

    return work

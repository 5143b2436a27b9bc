"""The pages' main choices mirrored in the address bar, so that a reload or a shared link restores them.

Each explanation page calls :func:`follow` once, at its top. On the session's first page run
it reads the address (``/classification?method=score_cam&k=5&image=<token>``) into the
session's shared choices (:mod:`pages._ui.state`), before any widget is seeded from them;
on every run it writes the page's choices back (only the ones the session has set). A value
that is not valid here (an unknown method, K out of range, a layer of another model, an
image the server no longer has) is left out of the address and said in a small notice at the
top of the page; the page then uses its default. Uploaded images come back from the server's
bounded :mod:`pages._ui.upload_store`; uploaded weights files do not (the notice says so).
``?present=1`` (presenter mode) is read by :mod:`pages._ui.presenter` itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

import xai_core as xc
from pages._ui.state import K_MAX, PENDING_SAMPLE, set_shared, shared, shared_key
from pages._ui.upload_store import STORE, TOKEN, token_of
from pages._ui.widgets import ImageFile, cam_methods, sample_files
from xai_core.fusion.fmgcam import ACTIVATIONS
from xai_core.render.colour import COLORMAPS

#: Session keys: the first page run is done; {shared name: (address name, value)} taken from the
#: address; the notices and the page they belong to; this run's notice placeholder.
DONE = "url.done"
FROM_URL = "url.from"
NOTICES = "url.notices"
SLOT = "url.slot"
#: Session keys: the page being run; the address's values when the notices were last said (a change clears them).
PAGE = "url.page"
SEEN = "url.seen"
WEIGHTS = ("default", "file", "random")
#: Longest value read from the address (a layer name, a list of methods).
MAX_CHARS = 300


@dataclass(frozen=True)
class Param:
    """One choice in the address: its name there, the shared choice it mirrors, how to read and check it.

    ``shared``: the shared choice's name, ``{family}`` and ``{model}`` filled in for the page.
    ``check(value, family)``: why the value cannot be used, or "" when it can (the widget's own
    check, e.g. a layer of this model, comes later through :func:`refused`).
    """

    name: str
    shared: str
    parse: Callable[[str], object]
    check: Callable[[object, str], str]
    dump: Callable[[object], str] = str


def _text(raw: str) -> str:
    if not raw or len(raw) > MAX_CHARS:
        raise ValueError
    return raw


def _texts(raw: str) -> list[str]:
    return [_text(part) for part in _text(raw).split(",")]


def _ints(raw: str) -> list[int]:
    return [int(part) for part in _text(raw).split(",")]


def _number(raw: str) -> float:
    value = float(_text(raw))
    if not math.isfinite(value):
        raise ValueError
    return round(value, 2)


def _decimal(value: object) -> str:
    return f"{value:g}"  # a slider's 0.35000000000000003 as 0.35


def _join(values: object) -> str:
    return ",".join(str(v) for v in values)  # type: ignore[union-attr]


def _one_of(options: Callable[[str], object], what: str) -> Callable[[object, str], str]:
    def check(value: object, family: str) -> str:
        return "" if value in options(family) else f"not {what}"

    return check


def _range(lo: float, hi: float) -> Callable[[object, str], str]:
    def check(value: object, family: str) -> str:
        return "" if lo <= value <= hi else f"not between {lo:g} and {hi:g}"  # type: ignore[operator]

    return check


def _model_keys(family: str) -> list[str]:
    return [s.key for s in xc.list_models(family)]


def _method_keys(family: str = "") -> list[str]:
    return [m.key for m in cam_methods()]


def _all_methods(value: object, family: str) -> str:
    return "" if value and all(v in _method_keys() for v in value) else "not a list of this page's methods"  # type: ignore[union-attr]


def _class_numbers(value: object, family: str) -> str:
    return "" if all(v >= 0 for v in value) else "not class numbers"  # type: ignore[union-attr]


def _any(value: object, family: str) -> str:
    return ""  # checked by the widget (a layer of the chosen model): see refused()


def _token(value: object, family: str) -> str:
    return "" if TOKEN.match(str(value)) else "not an image of this server"


PARAMS = {
    p.name: p
    for p in (
        Param("family", "sbs.family_a", _text, _one_of(lambda f: ("imagenet", "xray"), "a model family")),
        Param("compare", "sbs.mode", _text, _one_of(lambda f: ("models", "images"), "'models' or 'images'")),
        Param("image", "image.{family}", _text, _token),
        Param("sample", "sample.{family}", _text, _one_of(sample_files, "a sample of this page")),
        Param("model", "model.{family}", _text, _one_of(_model_keys, "a model of this page")),
        Param("model_b", "sbs.model_b.{family}", _text, _one_of(_model_keys, "a model of this page")),
        Param("weights", "weights.{model}", _text, _one_of(lambda f: WEIGHTS, "a weights source")),
        Param("layer", "layer.{model}", _text, _any),
        Param("method", "method", _text, _one_of(_method_keys, "a CAM method")),
        Param("methods", "cmp_methods", _texts, _all_methods, _join),
        Param("k", "k", int, _range(1, K_MAX)),
        Param("gallery_k", "gallery_k", int, _range(1, 5)),
        Param("activation", "activation", _text, _one_of(lambda f: ACTIVATIONS, "an end activation")),
        Param("cmap", "colormap", _text, _one_of(lambda f: COLORMAPS, "a colour map")),
        Param("alpha", "alpha", _number, _range(0, 1), _decimal),
        Param("fused_alpha", "fused_alpha", _number, _range(0, 1), _decimal),
        Param("classes", "classes.{model}", _ints, _class_numbers, _join),
        Param("class_mode", "class_mode", _text, _one_of(lambda f: ("join", "replace"), "'join' or 'replace'")),
    )
}

_EXPLAIN = ("image", "sample", "model", "weights", "layer", "method", "k", "activation", "cmap", "alpha")
#: Per page (its ``PAGE`` code): its family (or None: the side-by-side page's model A family) and
#: the choices it mirrors, in the order they are read (a model before its weights and layer).
PAGES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "cls": ("imagenet", (*_EXPLAIN, "fused_alpha", "classes", "class_mode")),
    "xray": ("xray", (*_EXPLAIN, "fused_alpha", "classes", "class_mode")),
    "cmp": ("imagenet", ("image", "sample", "model", "weights", "layer", "methods", "classes", "cmap", "alpha")),
    "sbs": (None, ("compare", "family", "image", "sample", "model", "weights", "model_b", "layer", "method", "cmap")),
    "gal": ("imagenet", ("model", "weights", "layer", "method", "gallery_k")),
}


def _family(page: str) -> str:
    family = PAGES[page][0]
    if family is None:
        chosen = shared("sbs.family_a", "imagenet")
        family = chosen if chosen in ("imagenet", "xray") else "imagenet"
    return family


def _shared_name(param: Param, family: str) -> str:
    model = shared(f"model.{family}")
    keys = _model_keys(family)
    model = model if model in keys else (keys[0] if keys else "")
    return param.shared.format(family=family, model=model)


# ----------------------------------------------------------------------------- notices


def _notices(page: str) -> list[str]:
    owner, notes = st.session_state.get(NOTICES, (page, []))
    return notes if owner == page else []


def _say(page: str, note: str) -> None:
    notes = [*_notices(page), note]
    st.session_state[NOTICES] = (page, notes)
    slot = st.session_state.get(SLOT)
    if slot is not None:
        _show(slot, notes)
    else:  # no place kept at the top in this run: said now, and at the top from the next run
        st.toast(note, icon=":material/link:")


def _show(slot, notes: list[str]) -> None:
    slot.info("**From the address:** " + " ".join(notes), icon=":material/link:")


def _refusal(name: str, raw: str, why: str) -> str:
    shown = re.sub(r"[^\w.,:+-]", "?", raw[:60])  # echoed as code: no backtick, link or markup of its own
    return f"`{name}={shown}` was ignored ({why})."


# ----------------------------------------------------------------------------- reading and writing


def _restore(page: str) -> None:
    """Read the page's choices from the address into the session (its first run only)."""
    taken: dict[str, tuple[str, object]] = {}
    for name in PAGES[page][1]:
        if name not in st.query_params:
            continue
        param, raw = PARAMS[name], st.query_params[name]
        family = _family(page)
        try:
            value = param.parse(raw)
        except (TypeError, ValueError):
            value, why = None, "not readable"
        else:
            why = param.check(value, family)
        if why:
            _say(page, _refusal(name, raw, why))
            del st.query_params[name]
            continue
        target = _shared_name(param, family)
        if name == "image":
            kept = STORE.get(str(value))
            if kept is None:
                _say(page, "The uploaded image is no longer on the server; upload it again (the sample is shown).")
                del st.query_params[name]
                continue
            value = ImageFile(kept.name, kept.data, kept.digest, False)
        if name == "weights" and value == "file":
            _say(page, "A weights file is not kept across a reload: upload it again in the sidebar.")
        set_shared(target, value)
        taken[target] = (name, value)
    st.session_state[FROM_URL] = taken


def _wanted(page: str) -> dict[str, str]:
    """The address's values for the page's choices the session has set."""
    family = _family(page)
    out: dict[str, str] = {}
    for name in PAGES[page][1]:
        param = PARAMS[name]
        value = shared(_shared_name(param, family))
        if value is None:
            continue
        if name == "image":
            if not isinstance(value, ImageFile):
                continue
            if token_of(value.digest) not in STORE:
                STORE.put(value.name, value.data, value.digest)
            out[name] = token_of(value.digest)
        else:
            out[name] = param.dump(value)
    pending = st.session_state.get(PENDING_SAMPLE)
    if pending and pending.get("family") == family and "sample" in PAGES[page][1]:
        out["sample"] = str(pending.get("name"))  # the home page's sample, taken by this run's image picker
        out.pop("image", None)
    return out


def _write(page: str) -> None:
    wanted = _wanted(page)
    for name in PAGES[page][1]:
        if name in wanted:
            if st.query_params.get(name) != wanted[name]:
                st.query_params[name] = wanted[name]
        elif name in st.query_params:
            del st.query_params[name]


def follow(page: str) -> None:
    """Restore the page's choices from the address on a fresh session, mirror them there, show notices.

    Called at the top of a page, before its widgets: ``page`` is its ``PAGE`` code (see ``PAGES``).
    The notices stay until a choice changes or the session leaves the page; from then on a
    widget that cannot show a choice is no longer the address's doing (:func:`refused`).
    """
    first = not st.session_state.get(DONE, False)
    st.session_state[DONE] = True
    st.session_state[PAGE] = page
    st.session_state[SLOT] = None
    if first and any(name in st.query_params for name in PAGES[page][1]):
        st.session_state[SLOT] = st.empty()
        _restore(page)
        st.session_state[SEEN] = _wanted(page)
    elif st.session_state.get(SEEN) != _wanted(page):  # a choice changed, or another page: the address is read
        for done in (NOTICES, FROM_URL, SEEN):
            st.session_state.pop(done, None)
    elif _notices(page):
        st.session_state[SLOT] = st.empty()
        _show(st.session_state[SLOT], _notices(page))
    _write(page)


def refused(name: str, value: object) -> None:
    """A widget could not show the shared choice ``name`` (``value``): if it came from the address, say so.

    Called by :func:`pages._ui.state.seed`; the choice goes back to the widget's default and
    leaves the address.
    """
    taken = st.session_state.get(FROM_URL) or {}
    if name not in taken or taken[name][1] != value:
        return
    param, _ = taken.pop(name)
    st.session_state.pop(shared_key(name), None)
    if param in st.query_params:
        del st.query_params[param]
    page = st.session_state.get(PAGE, "")
    if page in PAGES:
        _say(page, _refusal(param, PARAMS[param].dump(value), "not available for this model, layer or page"))
        st.session_state[SEEN] = _wanted(page)

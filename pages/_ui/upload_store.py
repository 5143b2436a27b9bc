"""Uploaded images kept on the server, so that a reload (a new Streamlit session) can show them again.

A reload starts a new session, which has lost the uploader's file. The pages put the bytes of
each image the session shows here, keyed by a token (the first 16 hex digits of their SHA-256)
that goes into the address (``?image=<token>``, :mod:`pages._ui.url_state`). Only bytes and the
file's name are kept: nothing is decoded, executed or unpickled here; a restored image is read
again by the pages' usual readers (``xai_core.read_image``, ``read_xray``), with their checks.

The store is bounded in bytes (``XAI_UPLOAD_STORE_MB``, default 256 MB) and forgets the image
used least recently first; one image larger than the whole store is not kept. It is shared by
every session of the server process and lost when the server restarts.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import NamedTuple

from xai_core.images import image_digest

#: Hex digits of the SHA-256 in the token (64 bits: a collision needs about 4e9 stored images).
TOKEN_HEX = 16
TOKEN = re.compile(rf"^[0-9a-f]{{{TOKEN_HEX}}}$")
DEFAULT_MB = 256


class Stored(NamedTuple):
    """One kept upload: the user's file name, its bytes and their full SHA-256."""

    name: str
    data: bytes
    digest: str


def token_of(digest: str) -> str:
    """The address token of an image whose SHA-256 is ``digest``."""
    return digest[:TOKEN_HEX]


class UploadStore:
    """A least-recently-used map token -> :class:`Stored`, at most ``max_bytes`` of image bytes in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, Stored] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes, digest: str | None = None) -> str:
        """Keep ``data`` (named ``name``); returns its token. The oldest images go when the store is full."""
        digest = digest or image_digest(data)
        token = token_of(digest)
        data = bytes(data)
        with self._lock:
            old = self._items.pop(token, None)
            if old is not None:
                self._bytes -= len(old.data)
            if len(data) > self.max_bytes:
                return token
            self._items[token] = Stored(str(name), data, digest)
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self._bytes -= len(gone.data)
        return token

    def get(self, token: str) -> Stored | None:
        """The image kept under ``token`` (now the most recently used), or None: unknown, malformed or evicted."""
        if not isinstance(token, str) or not TOKEN.match(token):
            return None
        with self._lock:
            item = self._items.get(token)
            if item is not None:
                self._items.move_to_end(token)
            return item

    def __contains__(self, token: object) -> bool:
        with self._lock:
            return token in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes


def _limit_mb() -> float:
    try:
        return max(0.0, float(os.environ.get("XAI_UPLOAD_STORE_MB", DEFAULT_MB)))
    except ValueError:
        return float(DEFAULT_MB)


#: The server's store, shared by every session.
STORE = UploadStore(int(_limit_mb() * 1024 * 1024))

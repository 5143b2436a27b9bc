"""The upload as bytes: a path, a stream or bytes read within the byte limit, and its digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from xai_core.errors import ImageError
from xai_core.images.messages import file_label, too_big_bytes

#: Largest upload accepted, in bytes: 25 MiB, the same as ``server.maxUploadSize = 25`` in
#: ``.streamlit/config.toml`` (Streamlit counts that option in MiB).
MAX_UPLOAD_BYTES: int = 25 * 1024 * 1024


def image_digest(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of the raw file bytes, as 64 hex characters (a cache key for uploads).

    Args:
        data: the file content.

    Returns:
        The lowercase hex digest.
    """
    return hashlib.sha256(bytes(data)).hexdigest()


def read_source(source: Any, max_bytes: int, accepted: str) -> tuple[bytes, str | None]:
    """Read at most ``max_bytes`` (+1 to detect overflow) from bytes, a path or a stream."""
    name: str | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise too_big_bytes(name, size, max_bytes)
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError as exc:
            raise ImageError(f"No file at {str(path)!r}. Check the path, or upload the file instead.") from exc
        except IsADirectoryError as exc:
            raise ImageError(f"{str(path)!r} is a folder, not a file. Choose an image file.") from exc
        except OSError as exc:
            raise ImageError(
                f"{file_label(name)} could not be opened ({exc.strerror or exc}). Check it and try again."
            ) from exc
    elif hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
        try:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)
            data = source.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"{file_label(name)} could not be read ({exc}). Upload it again.") from exc
        if isinstance(data, str):
            raise TypeError("read_image/read_xray need a binary stream (open the file with 'rb').")
        data = bytes(data or b"")
    else:
        raise TypeError(f"Expected bytes, a path or a binary stream; got {type(source).__name__}.")
    if len(data) > max_bytes:
        raise too_big_bytes(name, len(data) if len(data) > max_bytes + 1 else None, max_bytes)
    if not data:
        raise ImageError(f"{file_label(name)} is empty (0 bytes). Upload a {accepted} file.")
    return data, name

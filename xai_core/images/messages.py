"""The messages of the errors a user can cause: what was wrong, what is accepted, what to do."""

from __future__ import annotations

import math
import re

from xai_core.errors import ImageError
from xai_core.images.sniff import describe

IMAGE_FORMATS_TEXT = "PNG, JPEG, WebP, BMP, TIFF or GIF"
XRAY_FORMATS_TEXT = "DICOM (.dcm), PNG, JPEG, WebP, BMP, TIFF or GIF"


def file_label(name: str | None) -> str:
    """The subject of a message: the file by name when it has one."""
    return f"The file {name!r}" if name else "The file"


def fmt_bytes(n: int) -> str:
    """A byte count as "N bytes" or "N.N MB"."""
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def too_big_bytes(name: str | None, size: int | None, max_bytes: int) -> ImageError:
    """The error for a file over ``max_bytes`` (``size`` when known)."""
    seen = f"is {fmt_bytes(size)}" if size is not None else f"is larger than {fmt_bytes(max_bytes)}"
    return ImageError(
        f"{file_label(name)} {seen}; the limit is {fmt_bytes(max_bytes)}. "
        "Upload a smaller file: downscale the image or save it as JPEG/PNG."
    )


def unidentified(data: bytes, name: str | None, dicom_ok: bool) -> ImageError:
    """The error for content Pillow may not open: what it looks like and what is accepted."""
    what = describe(data)
    accepted = XRAY_FORMATS_TEXT if dicom_ok else IMAGE_FORMATS_TEXT
    if what == "a DICOM file" and not dicom_ok:
        return ImageError(
            f"{file_label(name)} is a DICOM file, which this page does not read. "
            "Open it on an X-ray page, or export it as PNG or JPEG."
        )
    seen = f"it looks like {what}" if what else "its content is not a recognised image format"
    return ImageError(
        f"{file_label(name)} is not an image this app can read: {seen}. "
        f"Accepted formats: {accepted}. Upload the picture in one of these formats "
        "(re-save or export it from your viewer if needed)."
    )


def too_many_pixels(
    name: str | None, width: int | None, height: int | None, pixels: int, max_pixels: int
) -> ImageError:
    """The error for an image over ``max_pixels``, with a size to downscale to."""
    dims = f"{width} x {height} pixels ({pixels / 1e6:.1f} megapixels)" if width else f"{pixels / 1e6:.1f} megapixels"
    side = int(math.sqrt(max_pixels))
    return ImageError(
        f"{file_label(name)} is {dims}; the limit is {max_pixels / 1e6:g} megapixels. "
        f"Downscale it (for example to at most {side} x {side}) and upload it again."
    )


def bomb_error(name: str | None, exc: BaseException, max_pixels: int) -> ImageError:
    """The error for Pillow's decompression-bomb guard, with the declared size when it is known."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else 0
    if pixels:
        err = too_many_pixels(name, None, None, pixels, max_pixels)
        return ImageError(f"{err} (It declares far more pixels than it could hold: a possible decompression bomb.)")
    return ImageError(
        f"{file_label(name)} declares an image far larger than the {max_pixels / 1e6:g}-megapixel "
        "limit (a possible decompression bomb). Upload a smaller image."
    )


def dicom_fail(name: str | None, problem: str, action: str = "") -> ImageError:
    """The error for a DICOM problem: ``problem`` and what to do (``action``, or export again)."""
    action = action or "Export the image again from your viewer or PACS (as DICOM, PNG or JPEG) and upload it."
    return ImageError(f"{file_label(name)} {problem}. {action}")

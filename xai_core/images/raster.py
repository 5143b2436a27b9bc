"""Ordinary images through Pillow: an allow-list of decoders, the pixel limit, RGB and grey conversions."""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xai_core.errors import ImageError
from xai_core.images.messages import IMAGE_FORMATS_TEXT, bomb_error, file_label, too_many_pixels, unidentified
from xai_core.images.source import MAX_UPLOAD_BYTES, read_source

#: Largest image accepted, in pixels (width x height of the first frame): 40 megapixels.
#: This is above every chest X-ray detector (about 3000 x 3000 = 9 MP; mammography
#: 4096 x 5120 = 21 MP) and most cameras (a 24 MP DSLR, 12-20 MP phones), while one decoded
#: copy stays small enough for a shared dashboard host: 120 MB as 8-bit RGB, 160 MB as the
#: float32 grey array. It is also below Pillow's own warning threshold (about 89.5 MP), so
#: with the default limit Pillow's ``DecompressionBombWarning`` never fires for an image
#: this module accepts.
MAX_PIXELS: int = 40_000_000

#: Pillow formats :func:`read_image` opens (Pillow's format ids; "MPO" is the JPEG variant
#: that phones write and is reported as JPEG).
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


# ITU-R BT.601 luma weights, the ones Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
MODE_BITS = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


def read_image(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Image.Image:
    """Decode an uploaded image file, safely and completely.

    Accepts PNG, JPEG, WebP, BMP, TIFF (first page) and GIF (first frame). The byte size is
    checked before reading, the pixel count before decoding; the pixels are then fully
    decoded (so truncated files fail here, not later) and the EXIF orientation is applied.

    Args:
        source: file content as bytes, a path, or a binary stream (a Streamlit
            ``UploadedFile``; seekable streams are read from the start).
        max_pixels: largest accepted width x height.
        max_bytes: largest accepted file size in bytes.

    Returns:
        A new, fully loaded, single-frame ``PIL.Image.Image`` in the file's own mode
        (``L``, ``RGB``, ``RGBA``, ``P``, ``I;16``, ``CMYK``, ...; see :func:`to_rgb` and
        :func:`to_gray_float`). ``image.format`` is the decoded format (``"PNG"``, ...).

    Raises:
        ImageError: empty, too large (bytes or pixels), not an accepted format (text, HTML,
            SVG, PDF, DICOM, ...), truncated or otherwise undecodable.
    """
    data, name = read_source(source, max_bytes, IMAGE_FORMATS_TEXT)
    image, _notes = decode_image(data, name, max_pixels, dicom_ok=False)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB for the ImageNet models.

    - ``RGB``: copied.
    - ``1``, ``L``, ``CMYK``, ``YCbCr``, ``HSV``, ``RGBX``: Pillow's conversion.
    - ``P`` (palette), ``LA``, ``PA``, ``RGBA`` and images with a transparent colour key:
      composited over white (transparent areas become white, not black).
    - ``I;16``, ``I``, ``F``: the image's actual value range ``[min, max]`` is scaled
      linearly to ``[0, 255]`` (a 12-bit image stored as 16-bit would otherwise be almost
      black, and clipping would saturate it); NaN/inf become the minimum. A constant image
      maps through its nominal range instead.

    Args:
        image: any Pillow image (not modified).

    Returns:
        A new image of mode ``"RGB"``, same size.

    Raises:
        ImageError: a colour mode that cannot be converted (for example ``LAB``).
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy()
    if mode in HIGH_DEPTH_MODES:
        grey = _scale_to_unit(_as_float_array(image), mode)
        u8 = np.rint(grey * 255.0).astype(np.uint8)
        return Image.fromarray(u8, mode="L").convert("RGB")
    try:
        if mode in ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"Images in colour mode {mode!r} cannot be converted to RGB ({exc}). "
            "Save the image as an ordinary RGB or greyscale PNG or JPEG and upload it again."
        ) from exc


def to_gray_float(image: Image.Image) -> np.ndarray:
    """Convert any Pillow image to a float32 grey array in ``[0, 1]`` (for X-rays).

    - ``L``: ``value / 255``; ``1``: 0 or 1.
    - ``I;16``, ``I``, ``F``: the actual range ``[min, max]`` scaled to ``[0, 1]`` in float,
      so the full 16-bit precision is kept (many X-ray PNGs store 10-12 bits in 16).
    - Colour (``RGB``, ``P``, ``CMYK``, alpha modes): :func:`to_rgb` (alpha over white),
      then luminance ``0.299 R + 0.587 G + 0.114 B`` computed in float, not rounded to 8 bits.

    Args:
        image: any Pillow image (not modified).

    Returns:
        float32 array ``[H, W]`` in ``[0, 1]``, C-contiguous, newly allocated.

    Raises:
        ImageError: a colour mode that cannot be converted.
    """
    mode = image.mode
    if mode in HIGH_DEPTH_MODES:
        return _scale_to_unit(_as_float_array(image), mode).astype(np.float32)
    if mode == "1":
        return np.asarray(image, dtype=np.float32).copy()
    if mode == "L" and "transparency" not in image.info:
        return np.asarray(image, dtype=np.float32) / np.float32(255.0)
    rgb = np.asarray(to_rgb(image), dtype=np.float64)
    return np.ascontiguousarray((rgb @ LUMA) / 255.0, dtype=np.float32)


def decode_image(data: bytes, name: str | None, max_pixels: int, *, dicom_ok: bool) -> tuple[Image.Image, list[str]]:
    """Open lazily, check the header size, decode fully, apply EXIF orientation."""
    notes: list[str] = []
    try:
        im = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
    except UnidentifiedImageError as exc:
        raise unidentified(data, name, dicom_ok) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bomb_error(name, exc, max_pixels) from exc
    except MemoryError as exc:
        raise ImageError(f"{file_label(name)} is too large to open. Upload a smaller image.") from exc
    except Exception as exc:  # a plugin choked on a damaged header
        raise ImageError(
            f"{file_label(name)} could not be read: its header is damaged ({type(exc).__name__}). "
            f"Re-save it as {IMAGE_FORMATS_TEXT} and upload it again."
        ) from exc

    with im:
        fmt = "JPEG" if im.format == "MPO" else (im.format or "unknown")
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{file_label(name)} declares an empty image ({width} x {height}). Upload a real image.")
        if width * height > max_pixels:
            raise too_many_pixels(name, width, height, width * height, max_pixels)
        try:
            im.load()  # first frame / page only; forces the full decode so truncation fails here
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise bomb_error(name, exc, max_pixels) from exc
        except MemoryError as exc:
            raise ImageError(f"{file_label(name)} is too large to decode. Upload a smaller image.") from exc
        except Exception as exc:
            reason = (
                "it is truncated (incomplete download or upload?)"
                if "truncat" in str(exc).lower()
                else (f"its {fmt} data is damaged ({type(exc).__name__})")
            )
            raise ImageError(
                f"{file_label(name)} could not be decoded: {reason}. "
                "Download or export the image again and upload the complete file."
            ) from exc

        try:
            orientation = int(im.getexif().get(0x0112, 1))
        except Exception:
            orientation = 1
        try:
            out = ImageOps.exif_transpose(im)
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                notes.append(f"EXIF orientation {orientation} applied (image rotated/flipped upright)")
        except Exception:  # damaged EXIF must not reject an otherwise good image
            out = im.copy()
            notes.append("EXIF data is damaged; orientation not applied")

        try:
            frames: int | None = int(getattr(im, "n_frames", 1))
        except Exception:  # a later frame is damaged; only the first one is used anyway
            frames = None
        if frames is None or frames > 1:
            count = f" of {frames}" if frames else ""
            if fmt == "TIFF":
                notes.append(f"multi-page TIFF: first page{count} used")
            elif fmt == "JPEG":  # MPO: stereo pairs, depth maps, previews
                notes.append(f"multi-picture JPEG: first picture{count} used")
            else:
                notes.append(f"animated image: first frame{count} used")
    out.format = fmt  # Image.copy()/transpose() drop it; pages show it
    return out, notes


def _as_float_array(image: Image.Image) -> np.ndarray:
    """Pixels of a single-band image as float64, non-finite values replaced by the minimum."""
    arr = np.asarray(image).astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        fill = float(arr[finite].min()) if finite.any() else 0.0
        arr = np.where(finite, arr, fill)
    return arr


def _scale_to_unit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Linear map of the actual range ``[min, max]`` to ``[0, 1]`` (float64)."""
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if hi > lo:
        return (arr - lo) / (hi - lo)
    # Constant image: place it in the mode's nominal range (white 16-bit stays white).
    nominal = 65535.0 if mode.startswith("I;16") else 255.0
    if mode == "F" and 0.0 <= lo <= 1.0:
        nominal = 1.0
    return np.full_like(arr, min(max(lo / nominal, 0.0), 1.0))

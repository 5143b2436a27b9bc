"""Read uploaded images and chest X-rays safely, and convert them for the models.

Everything here treats its input as untrusted: a file a user uploaded. Design:

- Bytes first. The whole upload is read into memory (at most ``max_bytes`` + 1 bytes are
  ever read), so a path, a stream and raw bytes all take the same route, and DICOM is
  always parsed from an in-memory buffer, never from a path pydicom could follow.
- Header before pixels. ``PIL.Image.open`` is lazy: the declared width and height are
  checked against ``max_pixels`` before any pixel is decoded. Pillow's own
  decompression-bomb guard (``DecompressionBombWarning`` when raised as an error,
  ``DecompressionBombError``) is caught and reported the same way. ``PIL.Image.MAX_IMAGE_PIXELS``
  and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are never changed: the limit is a local check.
  (The warnings filters are not touched either - ``catch_warnings`` is not thread-safe -
  so Pillow may log its warning once for an image over its ~89.5 MP threshold; with
  ``max_pixels`` below that, as by default, such an image is refused all the same.)
- Allow-list of decoders. Only PNG, JPEG, WebP, BMP, TIFF and GIF plugins may open a
  file (plus pydicom for :func:`read_xray`); EPS, PDF, SVG, pickles and the rest are
  refused with a message that says what the file looks like and what is accepted.
- One error type. Every failure a user can cause is an :class:`~xai_core.errors.ImageError`
  whose message says what was wrong, what is accepted and what to do. No Pillow or pydicom
  exception escapes; nothing uploaded is executed or unpickled.
- No global state. Functions are pure: inputs are not modified, outputs are new objects.

Display convention for X-rays: ``pixels`` is float32 ``[H, W]`` in ``[0, 1]`` with bright =
dense (bone white), the MONOCHROME2 convention. :func:`xray_to_model_input` maps it to
torchxrayvision's ``[-1024, 1024]``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xai_core.errors import ImageError

__all__ = [
    "IMAGE_FORMATS",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "XrayImage",
    "image_digest",
    "read_image",
    "read_xray",
    "to_gray_float",
    "to_rgb",
    "xray_to_model_input",
]

#: Largest upload accepted, in bytes: 25 MiB, the same as ``server.maxUploadSize = 25`` in
#: ``.streamlit/config.toml`` (Streamlit counts that option in MiB).
MAX_UPLOAD_BYTES: int = 25 * 1024 * 1024

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

_IMAGE_FORMATS_TEXT = "PNG, JPEG, WebP, BMP, TIFF or GIF"
_XRAY_FORMATS_TEXT = "DICOM (.dcm), PNG, JPEG, WebP, BMP, TIFF or GIF"

# ITU-R BT.601 luma weights, the ones Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_MODE_BITS = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}

# Transfer syntaxes pydicom inflates with an unbounded zlib.decompress: a zip bomb vector.
_DEFLATED_SYNTAXES = (b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.8.1")

# Which pip packages provide a decoder, per family of compressed transfer syntaxes.
_DECODER_HINTS = {
    "JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
    "HTJ2K": "pip install pylibjpeg pylibjpeg-openjpeg",
}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class XrayImage:
    """A chest X-ray ready for display and for torchxrayvision preprocessing.

    Attributes:
        pixels: float32 ``[H, W]`` in ``[0, 1]``, display orientation (bright = dense).
            Treat it as read-only; it is a fresh array owned by this object.
        source_format: ``"DICOM"`` or the Pillow format of the file (``"PNG"``, ``"JPEG"``, ...).
        notes: user-visible remarks on what was done to the file (inversion, windowing,
            colour to grey, ignored tags, first frame of several, ...), in order.
        bits: bit depth of the stored samples (DICOM BitsStored; 8 for ordinary images,
            16 for 16-bit PNG/TIFF, 1 for bilevel, 32 for int32/float TIFF).
    """

    pixels: np.ndarray
    source_format: str
    notes: tuple[str, ...] = ()
    bits: int = 8

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.dtype != np.float32:
            raise ValueError(
                "XrayImage.pixels must be a float32 array [H, W]; got "
                f"{type(p).__name__} {getattr(p, 'dtype', '?')} shape {getattr(p, 'shape', '?')}."
            )

    @property
    def height(self) -> int:
        """Rows of :attr:`pixels`."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns of :attr:`pixels`."""
        return int(self.pixels.shape[1])


# --------------------------------------------------------------------------- public API


def image_digest(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of the raw file bytes, as 64 hex characters (a cache key for uploads).

    Args:
        data: the file content.

    Returns:
        The lowercase hex digest.
    """
    return hashlib.sha256(bytes(data)).hexdigest()


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
    data, name = _read_source(source, max_bytes, _IMAGE_FORMATS_TEXT)
    image, _notes = _decode_image(data, name, max_pixels, dicom_ok=False)
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
    if mode in _HIGH_DEPTH_MODES:
        grey = _scale_to_unit(_as_float_array(image), mode)
        u8 = np.rint(grey * 255.0).astype(np.uint8)
        return Image.fromarray(u8, mode="L").convert("RGB")
    try:
        if mode in _ALPHA_MODES or "transparency" in image.info:
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
    if mode in _HIGH_DEPTH_MODES:
        return _scale_to_unit(_as_float_array(image), mode).astype(np.float32)
    if mode == "1":
        return np.asarray(image, dtype=np.float32).copy()
    if mode == "L" and "transparency" not in image.info:
        return np.asarray(image, dtype=np.float32) / np.float32(255.0)
    rgb = np.asarray(to_rgb(image), dtype=np.float64)
    return np.ascontiguousarray((rgb @ _LUMA) / 255.0, dtype=np.float32)


def xray_to_model_input(pixels: np.ndarray) -> np.ndarray:
    """Scale display pixels ``[0, 1]`` to torchxrayvision's input range ``[-1024, 1024]``.

    Same as ``xrv.datasets.normalize(pixels, 1)``: ``(2 * p - 1) * 1024``.

    Args:
        pixels: any shape (usually ``[H, W]``), real values in ``[0, 1]``.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ImageError: non-numeric input, non-finite values or values outside ``[0, 1]``.
    """
    arr = np.asarray(pixels)
    if arr.dtype.kind not in "biuf":
        raise ImageError(
            f"X-ray pixels must be a real-valued array in [0, 1]; got dtype {arr.dtype}, "
            f"shape {arr.shape}. Read the file with read_xray() first."
        )
    arr = arr.astype(np.float32)
    if arr.size:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageError(
                f"X-ray pixels must lie in [0, 1]; got values from {lo:g} to {hi:g} "
                f"(shape {arr.shape}). Read the file with read_xray(), which scales it."
            )
    return (np.clip(arr, 0.0, 1.0) * np.float32(2.0) - np.float32(1.0)) * np.float32(1024.0)


def read_xray(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    *,
    filename: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> XrayImage:
    """Read a chest X-ray from DICOM or any image :func:`read_image` accepts.

    DICOM is recognised by the ``DICM`` marker at byte 128, or (when the content is not a
    known image format) by a ``.dcm``/``.dicom`` name or a preamble-less dataset start.
    DICOM handling, in order: first frame only; Modality LUT or RescaleSlope/Intercept
    (invalid slopes - zero, negative, NaN, text - are ignored with a note); VOI LUT
    sequence, else the first WindowCenter/WindowWidth when valid and not blanking the
    image, else the 0.5-99.5 percentile range; MONOCHROME1 inverted after windowing;
    colour converted to grey. Compressed pixel data is decoded when pydicom has a decoder
    (Pillow covers JPEG baseline/extended and JPEG 2000).

    Args:
        source: file content as bytes, a path, or a binary stream.
        filename: the uploaded file's name, used only as a format hint and in messages
            (defaults to the path's or stream's name).
        max_pixels: largest accepted rows x columns of one frame.
        max_bytes: largest accepted file size in bytes.

    Returns:
        An :class:`XrayImage` with pixels in ``[0, 1]``, bright = dense.

    Raises:
        ImageError: unreadable, too large, no pixel data, missing decoder, or not an
            accepted format.
    """
    data, source_name = _read_source(source, max_bytes, _XRAY_FORMATS_TEXT)
    name = filename or source_name
    # Text, PDF, ZIP and the like named .dcm get the "not an accepted format" message.
    if data[128:132] == b"DICM" or (_is_dicom(data, name) and _describe(data) is None):
        return _read_dicom(data, name, max_pixels)
    image, notes = _decode_image(data, name, max_pixels, dicom_ok=True)
    return _xray_from_image(image, notes)


# --------------------------------------------------------------------------- reading bytes


def _label(name: str | None) -> str:
    return f"The file {name!r}" if name else "The file"


def _fmt_bytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _too_big_bytes(name: str | None, size: int | None, max_bytes: int) -> ImageError:
    seen = f"is {_fmt_bytes(size)}" if size is not None else f"is larger than {_fmt_bytes(max_bytes)}"
    return ImageError(
        f"{_label(name)} {seen}; the limit is {_fmt_bytes(max_bytes)}. "
        "Upload a smaller file: downscale the image or save it as JPEG/PNG."
    )


def _read_source(source: Any, max_bytes: int, accepted: str) -> tuple[bytes, str | None]:
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
                raise _too_big_bytes(name, size, max_bytes)
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError as exc:
            raise ImageError(f"No file at {str(path)!r}. Check the path, or upload the file instead.") from exc
        except IsADirectoryError as exc:
            raise ImageError(f"{str(path)!r} is a folder, not a file. Choose an image file.") from exc
        except OSError as exc:
            raise ImageError(
                f"{_label(name)} could not be opened ({exc.strerror or exc}). Check it and try again."
            ) from exc
    elif hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
        try:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)
            data = source.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"{_label(name)} could not be read ({exc}). Upload it again.") from exc
        if isinstance(data, str):
            raise TypeError("read_image/read_xray need a binary stream (open the file with 'rb').")
        data = bytes(data or b"")
    else:
        raise TypeError(f"Expected bytes, a path or a binary stream; got {type(source).__name__}.")
    if len(data) > max_bytes:
        raise _too_big_bytes(name, len(data) if len(data) > max_bytes + 1 else None, max_bytes)
    if not data:
        raise ImageError(f"{_label(name)} is empty (0 bytes). Upload a {accepted} file.")
    return data, name


# --------------------------------------------------------------------------- sniffing

_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
)


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _describe(data: bytes) -> str | None:
    """A short description of a file Pillow could not (or must not) open, for messages."""
    head = data[:4096]
    if data[128:132] == b"DICM":
        return "a DICOM file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "a PostScript/EPS file"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (or an Office document)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:
        return "Python pickle data (never loaded)"
    if head.startswith(b"8BPS"):
        return "a Photoshop (PSD) file"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "a Windows icon (ICO)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heim", b"heis"):
            return "a HEIC/HEIF photo"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        return "a video or MP4-family file"
    if head.startswith((b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")):
        return "a JPEG 2000 image"
    text = _as_text(head)
    if text is not None:
        low = text.lower()
        if "<svg" in low:
            return "an SVG drawing (vector graphics, not a pixel image)"
        if "<html" in low or "<!doctype html" in low:
            return "an HTML page"
        if low.lstrip().startswith("<?xml"):
            return "an XML document"
        return "a text file"
    return None


def _as_text(head: bytes) -> str | None:
    if not head or b"\x00" in head:
        return None
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError:
            continue
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
        if printable >= 0.95 * len(text):
            return text
    return None


def _is_dicom(data: bytes, name: str | None) -> bool:
    if data[128:132] == b"DICM":
        return True
    if _looks_like_image(data):
        return False  # content wins over a misleading name
    if name and name.lower().endswith((".dcm", ".dicom", ".dic")):
        return True
    # Preamble-less DICOM (raw dataset) starts with a group 0002 or 0008 tag, little endian.
    return data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"


# --------------------------------------------------------------------------- Pillow decoding


def _unidentified(data: bytes, name: str | None, dicom_ok: bool) -> ImageError:
    what = _describe(data)
    accepted = _XRAY_FORMATS_TEXT if dicom_ok else _IMAGE_FORMATS_TEXT
    if what == "a DICOM file" and not dicom_ok:
        return ImageError(
            f"{_label(name)} is a DICOM file, which this page does not read. "
            "Open it on an X-ray page, or export it as PNG or JPEG."
        )
    seen = f"it looks like {what}" if what else "its content is not a recognised image format"
    return ImageError(
        f"{_label(name)} is not an image this app can read: {seen}. "
        f"Accepted formats: {accepted}. Upload the picture in one of these formats "
        "(re-save or export it from your viewer if needed)."
    )


def _too_many_pixels(
    name: str | None, width: int | None, height: int | None, pixels: int, max_pixels: int
) -> ImageError:
    dims = f"{width} x {height} pixels ({pixels / 1e6:.1f} megapixels)" if width else f"{pixels / 1e6:.1f} megapixels"
    side = int(math.sqrt(max_pixels))
    return ImageError(
        f"{_label(name)} is {dims}; the limit is {max_pixels / 1e6:g} megapixels. "
        f"Downscale it (for example to at most {side} x {side}) and upload it again."
    )


def _bomb_error(name: str | None, exc: BaseException, max_pixels: int) -> ImageError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else 0
    if pixels:
        err = _too_many_pixels(name, None, None, pixels, max_pixels)
        return ImageError(f"{err} (It declares far more pixels than it could hold: a possible decompression bomb.)")
    return ImageError(
        f"{_label(name)} declares an image far larger than the {max_pixels / 1e6:g}-megapixel "
        "limit (a possible decompression bomb). Upload a smaller image."
    )


def _decode_image(data: bytes, name: str | None, max_pixels: int, *, dicom_ok: bool) -> tuple[Image.Image, list[str]]:
    """Open lazily, check the header size, decode fully, apply EXIF orientation."""
    notes: list[str] = []
    try:
        im = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
    except UnidentifiedImageError as exc:
        raise _unidentified(data, name, dicom_ok) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(name, exc, max_pixels) from exc
    except MemoryError as exc:
        raise ImageError(f"{_label(name)} is too large to open. Upload a smaller image.") from exc
    except Exception as exc:  # a plugin choked on a damaged header
        raise ImageError(
            f"{_label(name)} could not be read: its header is damaged ({type(exc).__name__}). "
            f"Re-save it as {_IMAGE_FORMATS_TEXT} and upload it again."
        ) from exc

    with im:
        fmt = "JPEG" if im.format == "MPO" else (im.format or "unknown")
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{_label(name)} declares an empty image ({width} x {height}). Upload a real image.")
        if width * height > max_pixels:
            raise _too_many_pixels(name, width, height, width * height, max_pixels)
        try:
            im.load()  # first frame / page only; forces the full decode so truncation fails here
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(name, exc, max_pixels) from exc
        except MemoryError as exc:
            raise ImageError(f"{_label(name)} is too large to decode. Upload a smaller image.") from exc
        except Exception as exc:
            reason = (
                "it is truncated (incomplete download or upload?)"
                if "truncat" in str(exc).lower()
                else (f"its {fmt} data is damaged ({type(exc).__name__})")
            )
            raise ImageError(
                f"{_label(name)} could not be decoded: {reason}. "
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


# --------------------------------------------------------------------------- arrays


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


def _xray_from_image(image: Image.Image, notes: list[str]) -> XrayImage:
    mode = image.mode
    bits = _MODE_BITS.get(mode, 8)
    notes = list(notes)
    if mode in _HIGH_DEPTH_MODES:
        notes.append(f"{bits}-bit image: its value range scaled to 0-1")
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        notes.append("transparent areas composited over white")
    if mode == "P":
        notes.append("palette image converted to grey")
    elif mode not in _HIGH_DEPTH_MODES and mode not in ("1", "L", "LA", "La"):
        rgb = np.asarray(to_rgb(image))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            notes.append(f"{mode} image with identical channels read as grey")
        else:
            notes.append(f"colour ({mode}) image converted to grey (luminance)")
    pixels = to_gray_float(image)
    return XrayImage(
        pixels=np.clip(pixels, 0.0, 1.0).astype(np.float32),
        source_format=image.format or "unknown",
        notes=tuple(notes),
        bits=bits,
    )


# --------------------------------------------------------------------------- DICOM


def _dicom_fail(name: str | None, problem: str, action: str = "") -> ImageError:
    action = action or "Export the image again from your viewer or PACS (as DICOM, PNG or JPEG) and upload it."
    return ImageError(f"{_label(name)} {problem}. {action}")


def _tag_numbers(ds: Any, keyword: str) -> list[float]:
    """All values of a numeric tag as floats, tolerating strings, bytes and junk (-> NaN)."""
    if keyword not in ds:
        return []
    try:
        value = ds[keyword].value  # converted by pydicom (US -> int, DS -> float or str)
    except Exception:  # conversion failed: fall back to the raw text value
        try:
            value = ds.get_item(keyword).value
        except Exception:
            return []
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", errors="replace").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    elif not isinstance(value, Sequence):
        value = [value]
    out: list[float] = []
    for item in value:
        try:
            out.append(float(str(item).strip().rstrip("\x00")))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _tag_int(ds: Any, keyword: str, default: int = 0) -> int:
    values = _tag_numbers(ds, keyword)
    try:
        value = int(values[0])  # ValueError/OverflowError for NaN/inf
    except (IndexError, ValueError, OverflowError):
        return default
    return value


def _tag_text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:
        return ""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value).strip().upper()


def _dicom_decoder_check(ds: Any, name: str | None) -> str:
    """Make sure pydicom can decode the pixel data; returns the transfer syntax name."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(str(ds.file_meta.TransferSyntaxUID))
    ts_name = uid.name if uid.is_transfer_syntax else str(uid)
    if not uid.is_transfer_syntax:
        raise _dicom_fail(name, f"uses an unknown transfer syntax ({uid})")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise _dicom_fail(
            name,
            f"uses the transfer syntax {ts_name!r}, for which no pixel decoder exists",
            "Export it uncompressed or as JPEG/PNG and upload it again.",
        ) from exc
    if not decoder.is_available:
        family = (
            "HTJ2K"
            if "High-Throughput" in ts_name
            else (
                "JPEG-LS"
                if "JPEG-LS" in ts_name
                else "JPEG 2000"
                if "2000" in ts_name
                else "RLE"
                if "RLE" in ts_name
                else "JPEG"
            )
        )
        raise _dicom_fail(
            name,
            f"is compressed with {ts_name}, and no decoder for it is installed on this server",
            f"Ask the administrator to install one ({_DECODER_HINTS[family]}), or export the "
            "image uncompressed or as PNG and upload it again.",
        )
    return ts_name


def _ensure_transfer_syntax(ds: Any) -> None:
    """Preamble-less files have no file meta: infer the transfer syntax from the encoding."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _file_meta_bytes(data: bytes) -> bytes:
    """The File Meta group's bytes (where the transfer syntax is), found without pydicom.

    pydicom inflates a Deflate dataset with an unbounded ``zlib.decompress`` before we
    could look at it, so the transfer syntax is checked here first. With the ``DICM``
    marker the group follows it and starts with its length (0002,0000) UL; without one,
    the first 1 KiB is searched.
    """
    if data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00" and data[136:138] == b"UL":
        length = int.from_bytes(data[140:144], "little")
        return data[132 : 144 + min(length, 65536)]
    return data[:1024]


def _read_dicom(data: bytes, name: str | None, max_pixels: int) -> XrayImage:
    import pydicom
    from pydicom.pixels import pixel_array

    if any(uid in _file_meta_bytes(data) for uid in _DEFLATED_SYNTAXES):
        raise _dicom_fail(
            name,
            "uses the Deflate transfer syntax, which is not accepted (it can expand without bound)",
            "Export it uncompressed or as JPEG/PNG and upload it again.",
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise _dicom_fail(name, f"is not a readable DICOM file ({type(exc).__name__})") from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _dicom_fail(
            name,
            "is a DICOM file without an image (no Pixel Data element: a report, DICOMDIR or "
            "structured report?), or not a DICOM file at all",
            "Export the image itself as DICOM, PNG or JPEG and upload it.",
        )
    rows, cols = _tag_int(ds, "Rows"), _tag_int(ds, "Columns")
    if rows <= 0 or cols <= 0:
        raise _dicom_fail(name, f"declares an empty or invalid image size ({rows} x {cols})")
    if rows * cols > max_pixels:
        raise _too_many_pixels(name, cols, rows, rows * cols, max_pixels)
    notes: list[str] = []
    try:
        _ensure_transfer_syntax(ds)
        ts_name = _dicom_decoder_check(ds, name)
    except ImageError:
        raise
    except Exception as exc:
        raise _dicom_fail(name, f"has an invalid transfer syntax ({type(exc).__name__})") from exc
    frames = _tag_int(ds, "NumberOfFrames", 1)
    try:
        arr = pixel_array(ds, index=0)  # decodes the first frame only
    except MemoryError as exc:
        raise _dicom_fail(name, "is too large to decode", "Upload a smaller image.") from exc
    except Exception as exc:
        raise _dicom_fail(
            name,
            f"has pixel data that could not be decoded ({ts_name}; damaged or truncated: {type(exc).__name__})",
        ) from exc
    if frames > 1:
        notes.append(f"multi-frame DICOM: first frame of {frames} used")
    if ts_name and "Implicit VR" not in ts_name and "Explicit VR" not in ts_name:
        notes.append(f"compressed pixel data decoded ({ts_name})")

    bits = _tag_int(ds, "BitsStored", 0) or _tag_int(ds, "BitsAllocated", 8) or 8
    photometric = _tag_text(ds, "PhotometricInterpretation")
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        pixels = _dicom_colour_to_grey(arr, ds, bits, notes)
    elif arr.ndim == 2:
        pixels = _dicom_grey(arr, ds, notes)
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels
            notes.append("MONOCHROME1 inverted (bright = dense)")
    else:
        raise _dicom_fail(name, f"has pixel data of unexpected shape {arr.shape}")
    return XrayImage(
        pixels=np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32),
        source_format="DICOM",
        notes=tuple(notes),
        bits=int(bits),
    )


def _dicom_colour_to_grey(arr: np.ndarray, ds: Any, bits: int, notes: list[str]) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if arr.ndim == 2:  # PALETTE COLOR indices
        try:
            arr = apply_color_lut(arr, ds)
            bits = 16 if arr.dtype.itemsize > 1 else 8
        except Exception:
            notes.append("palette colour lookup table unreadable; indices shown as grey")
            return _unit_range(arr.astype(np.float64))
    full = float(2 ** min(max(bits, 1), 32) - 1)
    rgb = arr[..., :3].astype(np.float64)
    notes.append("colour DICOM converted to grey (luminance)")
    return np.clip((rgb @ _LUMA) / full, 0.0, 1.0)


def _unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _dicom_grey(arr: np.ndarray, ds: Any, notes: list[str]) -> np.ndarray:
    """Stored values -> modality values -> VOI window -> [0, 1] (MONOCHROME2 sense)."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    x = arr.astype(np.float64)
    if "ModalityLUTSequence" in ds:
        try:
            x = apply_modality_lut(arr, ds).astype(np.float64)
            notes.append("Modality LUT applied")
        except Exception:
            notes.append("Modality LUT unreadable; ignored")
    else:
        x = _apply_rescale(x, ds, notes)
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, float(x[finite].min()) if finite.any() else 0.0)

    if "VOILUTSequence" in ds:
        try:
            y = apply_voi(np.rint(x).astype(np.int64), ds, index=0).astype(np.float64)
            out = _unit_range(y)
            if float(out.std()) > 0:
                notes.append("VOI LUT applied")
                return out
        except Exception:
            pass
        notes.append("VOI LUT unreadable or blank; ignored")

    windowed = _apply_window(x, ds, notes)
    if windowed is not None:
        return windowed
    lo, hi = np.percentile(x, [0.5, 99.5])
    if hi > lo:
        notes.append("contrast set from the 0.5-99.5 percentiles (no usable window in the file)")
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return _unit_range(x)


def _apply_rescale(x: np.ndarray, ds: Any, notes: list[str]) -> np.ndarray:
    has_slope, has_icpt = "RescaleSlope" in ds, "RescaleIntercept" in ds
    if not (has_slope or has_icpt):
        return x
    slopes = _tag_numbers(ds, "RescaleSlope") if has_slope else [1.0]
    icpts = _tag_numbers(ds, "RescaleIntercept") if has_icpt else [0.0]
    slope = slopes[0] if slopes else 1.0
    icpt = icpts[0] if icpts else 0.0
    if not math.isfinite(slope) or slope <= 0:
        notes.append(f"RescaleSlope {_tag_repr(ds, 'RescaleSlope')} is invalid; ignored (1 used)")
        slope = 1.0
    if not math.isfinite(icpt):
        notes.append(f"RescaleIntercept {_tag_repr(ds, 'RescaleIntercept')} is invalid; ignored (0 used)")
        icpt = 0.0
    if slope != 1.0 or icpt != 0.0:
        notes.append(f"RescaleSlope/Intercept applied ({slope:g}, {icpt:g})")
        return x * slope + icpt
    return x


def _tag_repr(ds: Any, keyword: str) -> str:
    try:
        value = ds.get_item(keyword).value
    except Exception:
        return "?"
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", errors="replace").strip()
    text = repr(str(value).strip())
    return text if len(text) <= 24 else text[:21] + "...'"


def _apply_window(x: np.ndarray, ds: Any, notes: list[str]) -> np.ndarray | None:
    """DICOM PS3.3 C.11.2.1.2 windowing with the first WindowCenter/Width, or None."""
    centers, widths = _tag_numbers(ds, "WindowCenter"), _tag_numbers(ds, "WindowWidth")
    if not centers or not widths:
        return None
    c, w = centers[0], widths[0]
    function = _tag_text(ds, "VOILUTFunction") or "LINEAR"
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (function == "LINEAR" and w < 1):
        notes.append(f"window in the file (centre {c:g}, width {w:g}) is invalid; ignored")
        return None
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -500, 500)))
    elif function == "LINEAR_EXACT":
        y = np.clip((x - c) / w + 0.5, 0.0, 1.0)
    else:
        y = np.clip((x - (c - 0.5)) / max(w - 1.0, 1e-12) + 0.5, 0.0, 1.0)
    # A window that does not fit the values (wrong units, ignored slope) blanks the image.
    if float(y.max()) - float(y.min()) < 0.05:
        notes.append(f"window in the file (centre {c:g}, width {w:g}) does not fit the pixel values; ignored")
        return None
    extra = f", {function}" if function != "LINEAR" else ""
    notes.append(f"VOI window applied (centre {c:g}, width {w:g}{extra})")
    return y

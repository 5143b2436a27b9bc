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
torchxrayvision's ``[-1024, 1024]``. Every :class:`XrayImage` carries a :class:`ReadRecord`
(transfer syntax, photometric interpretation, MONOCHROME1 inversion, rescale, window, bits
stored, frame i of n, modality, body part, warnings), so a page can say how the file was
read without any model weights.
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
    "ReadRecord",
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

# Modalities of projection radiographs (DR is not a DICOM defined term, but vendors write it).
_RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
_MODALITY_NAMES = {
    "US": "ultrasound",
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "RTDOSE": "radiotherapy dose",
    "RTIMAGE": "radiotherapy image",
    "RTSTRUCT": "radiotherapy structure set",
    "NM": "nuclear medicine",
    "PT": "PET",
    "MG": "mammography",
    "XA": "X-ray angiography",
    "RF": "fluoroscopy",
    "IO": "intra-oral radiograph",
    "PX": "panoramic dental radiograph",
    "ES": "endoscopy",
    "XC": "photograph",
    "OT": "other",
    "SM": "slide microscopy",
    "OP": "ophthalmic photograph",
}
_CHEST_WORDS = ("CHEST", "THORAX", "LUNG")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReadRecord:
    """How a file was read: what a page shows beside the image, even without model weights.

    Attributes:
        source_format: ``"DICOM"`` or the Pillow format (``"PNG"``, ``"JPEG"``, ...).
        width, height: of the image returned.
        bits_stored: bit depth of the stored samples (DICOM BitsStored).
        transfer_syntax: DICOM transfer syntax name ("" for other formats).
        transfer_syntax_uid: its UID.
        photometric: DICOM PhotometricInterpretation (``"MONOCHROME1"``, ...).
        inverted: whether the MONOCHROME1 inversion was applied (bright = dense).
        rescale: the modality step: ``"none"``, ``"slope S, intercept I"`` or
            ``"Modality LUT sequence"``.
        window: the VOI step: the file's window (centre, width, function), its VOI LUT,
            or the percentile range used when the file has no usable window.
        frame: 0-based index of the frame shown.
        frames: number of frames in the file (1 for single images).
        modality: DICOM Modality (``"DX"``, ``"CR"``, ``"CT"``, ...; "" if absent).
        body_part: DICOM BodyPartExamined ("" if absent).
        view_position: DICOM ViewPosition (``"PA"``, ``"AP"``, ``"LL"``; "" if absent).
        warnings: reasons the image may not suit a chest X-ray model (modality, body part);
            warnings, not errors: the image is still read and shown.
        notes: every step taken, in order (the same as :attr:`XrayImage.notes`).
    """

    source_format: str
    width: int
    height: int
    bits_stored: int = 8
    transfer_syntax: str = ""
    transfer_syntax_uid: str = ""
    photometric: str = ""
    inverted: bool = False
    rescale: str = "none"
    window: str = "none"
    frame: int = 0
    frames: int = 1
    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: format, size, bits, and for DICOM syntax, frame, modality, body part, view."""
        parts = [self.source_format, f"{self.width}x{self.height}", f"{self.bits_stored}-bit"]
        if self.source_format == "DICOM":
            parts.append(self.transfer_syntax)
            if self.frames > 1:
                parts.append(f"frame {self.frame + 1} of {self.frames}")
            parts += [v for v in (self.modality, self.body_part, self.view_position) if v]
            if self.inverted:
                parts.append("MONOCHROME1 inverted")
        return ", ".join(parts)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for a "how it was read" table; DICOM-only rows for DICOM."""
        out = [
            ("Format", self.source_format),
            ("Size", f"{self.width} x {self.height} pixels"),
            ("Bits stored", str(self.bits_stored)),
        ]
        if self.source_format == "DICOM":
            out += [
                ("Transfer syntax", f"{self.transfer_syntax} ({self.transfer_syntax_uid})"),
                ("Photometric interpretation", self.photometric or "not stated"),
                ("MONOCHROME1 inversion", "applied" if self.inverted else "not needed"),
                ("Rescale", self.rescale),
                ("Window", self.window),
                ("Frame", f"{self.frame + 1} of {self.frames}"),
                ("Modality", self.modality or "not stated"),
                ("Body part", self.body_part or "not stated"),
                ("View position", self.view_position or "not stated"),
            ]
        return out


@dataclass(frozen=True)
class XrayImage:
    """A chest X-ray ready for display and for torchxrayvision preprocessing.

    Attributes:
        pixels: float32 ``[H, W]`` in ``[0, 1]``, display orientation (bright = dense).
            Treat it as read-only; it is a fresh array owned by this object.
        source_format: ``"DICOM"`` or the Pillow format of the file (``"PNG"``, ``"JPEG"``, ...).
        notes: user-visible remarks on what was done to the file (inversion, windowing,
            colour to grey, ignored tags, frame i of n, ...), in order.
        bits: bit depth of the stored samples (DICOM BitsStored; 8 for ordinary images,
            16 for 16-bit PNG/TIFF, 1 for bilevel, 32 for int32/float TIFF).
        record: the structured :class:`ReadRecord` of how it was read (built from the
            fields above when not given).
    """

    pixels: np.ndarray
    source_format: str
    notes: tuple[str, ...] = ()
    bits: int = 8
    record: ReadRecord | None = None

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.dtype != np.float32:
            raise ValueError(
                "XrayImage.pixels must be a float32 array [H, W]; got "
                f"{type(p).__name__} {getattr(p, 'dtype', '?')} shape {getattr(p, 'shape', '?')}."
            )
        if self.record is None:
            record = ReadRecord(
                source_format=self.source_format,
                width=int(p.shape[1]),
                height=int(p.shape[0]),
                bits_stored=self.bits,
                notes=tuple(self.notes),
            )
            object.__setattr__(self, "record", record)

    @property
    def height(self) -> int:
        """Rows of :attr:`pixels`."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns of :attr:`pixels`."""
        return int(self.pixels.shape[1])

    @property
    def warnings(self) -> tuple[str, ...]:
        """The record's warnings: reasons this may not be a chest radiograph."""
        return self.record.warnings if self.record is not None else ()


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
    frame: int | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> XrayImage:
    """Read a chest X-ray from DICOM or any image :func:`read_image` accepts.

    DICOM is recognised by the ``DICM`` marker at byte 128, or (when the content is not a
    known image format) by a ``.dcm``/``.dicom`` name or a preamble-less dataset start.
    DICOM handling, in order, with pydicom's own functions where they fit: one frame
    decoded (``frame``; default the first, see below); Modality LUT or RescaleSlope/
    Intercept (``apply_modality_lut``; invalid slopes - zero, negative, NaN, text - are
    ignored with a note); VOI LUT sequence (``apply_voi``), else the first WindowCenter/
    WindowWidth when valid and not blanking the image (``apply_windowing``), else the
    0.5-99.5 percentile range; MONOCHROME1 inverted after windowing; colour converted to
    grey. Compressed pixel data is decoded by pydicom's standard plugins (pylibjpeg with
    libjpeg, openjpeg and rle; pyjpegls; Pillow): JPEG Baseline, Extended 12-bit, Lossless
    (process 14), JPEG-LS, JPEG 2000, HTJ2K and RLE. A syntax whose decoder is not
    installed is refused with a message naming the syntax and the package to install.

    Multi-frame files: the first frame is shown by default. It is the frame every viewer
    shows first and needs no assumption about what the frames are (a cine loop, a
    tomosynthesis stack or several exposures); only that frame is decoded. The record
    says "frame i of n", so a page can offer the others.

    Tags that say the file is not a chest radiograph (Modality other than CR/DX/DR/RG,
    BodyPartExamined other than CHEST) give warnings in ``record.warnings``, not errors.

    Args:
        source: file content as bytes, a path, or a binary stream.
        filename: the uploaded file's name, used only as a format hint and in messages
            (defaults to the path's or stream's name).
        frame: 0-based frame of a multi-frame DICOM (default 0); ignored for other formats
            (their first page or frame is used).
        max_pixels: largest accepted rows x columns of one frame.
        max_bytes: largest accepted file size in bytes.

    Returns:
        An :class:`XrayImage` with pixels in ``[0, 1]``, bright = dense, and its
        :class:`ReadRecord` (``.record``).

    Raises:
        ImageError: unreadable, too large, no pixel data, missing decoder (named as such),
            a frame that does not exist, or not an accepted format.
    """
    data, source_name = _read_source(source, max_bytes, _XRAY_FORMATS_TEXT)
    name = filename or source_name
    # Text, PDF, ZIP and the like named .dcm get the "not an accepted format" message.
    if data[128:132] == b"DICM" or (_is_dicom(data, name) and _describe(data) is None):
        return _read_dicom(data, name, max_pixels, frame)
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


# Transfer syntax UID -> (family, plugins that decode every file of it, pip packages that
# provide one). Pillow decodes only 8-bit JPEG; pydicom's own RLE decoder is always there.
_DECODERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", ("pylibjpeg", "gdcm", "pillow"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended 12-bit", ("pylibjpeg", "gdcm"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", ("pylibjpeg", "gdcm"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless", ("pylibjpeg", "gdcm"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS", ("pylibjpeg", "pyjpegls", "gdcm"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS", ("pylibjpeg", "pyjpegls", "gdcm"), "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000", ("pylibjpeg", "gdcm", "pillow"), "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", ("pylibjpeg", "gdcm", "pillow"), "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.201": ("HTJ2K", ("pylibjpeg",), "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.202": ("HTJ2K", ("pylibjpeg",), "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", ("pylibjpeg",), "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.5": ("RLE", ("pydicom", "pylibjpeg", "gdcm"), "pylibjpeg pylibjpeg-rle"),
}


def _missing_decoder(name: str | None, ts_name: str, uid: str, why: str) -> ImageError:
    family, _full, packages = _DECODERS.get(uid, ("", (), "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"))
    return _dicom_fail(
        name,
        f"is compressed with {ts_name} ({uid}), {why}. The file is not damaged: a decoder is missing",
        f"Ask the administrator to install pydicom's decoder for it (pip install {packages}), or export "
        "the image uncompressed or as PNG and upload it again.",
    )


def _dicom_decoder_check(ds: Any, name: str | None) -> tuple[str, str]:
    """Make sure pydicom has a decoder for the pixel data; returns (syntax name, UID)."""
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
            f"uses the transfer syntax {ts_name!r}, for which pydicom has no pixel decoder",
            "Export it uncompressed or as JPEG/PNG and upload it again.",
        ) from exc
    if not decoder.is_available:
        raise _missing_decoder(name, ts_name, str(uid), "and no decoder for it is installed on this server")
    return ts_name, str(uid)


def _decode_failure(name: str | None, ts_name: str, uid: str, bits: int, exc: BaseException) -> ImageError:
    """Name the real cause of a failed decode: a decoder that cannot do this file, or bad data."""
    from pydicom.pixels import get_decoder

    family = _DECODERS.get(uid)
    if family is not None:
        try:
            available = tuple(get_decoder(uid).available_plugins)
        except Exception:  # pragma: no cover - the check above already found the decoder
            available = ()
        if available and not set(available) & set(family[1]):
            return _missing_decoder(
                name,
                ts_name,
                uid,
                f"which the decoder installed here ({', '.join(available)}) cannot read for this {bits}-bit image",
            )
    return _dicom_fail(
        name,
        f"has pixel data that could not be decoded ({ts_name}, {type(exc).__name__}): either the decoders "
        f"installed here cannot read this variant of {ts_name}, or the data is damaged or truncated",
    )


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


def _read_dicom(data: bytes, name: str | None, max_pixels: int, frame: int | None) -> XrayImage:
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
            "has no Pixel Data element: it may be cut short (truncated in a copy or upload), a DICOM file "
            "without an image (a report, DICOMDIR or structured report), or not a DICOM file at all",
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
        ts_name, ts_uid = _dicom_decoder_check(ds, name)
    except ImageError:
        raise
    except Exception as exc:
        raise _dicom_fail(name, f"has an invalid transfer syntax ({type(exc).__name__})") from exc
    frames = max(_tag_int(ds, "NumberOfFrames", 1), 1)
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ImageError(f"The frame must be a whole number from 0 to {frames - 1}; got {frame!r}. Choose one.")
    index = 0 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise _dicom_fail(
            name,
            f"has {frames} frame{'s' if frames > 1 else ''}; frame {index} does not exist",
            f"Choose a frame from 0 to {frames - 1}.",
        )
    bits = _tag_int(ds, "BitsStored", 0) or _tag_int(ds, "BitsAllocated", 8) or 8
    try:
        arr = pixel_array(ds, index=index)  # decodes this frame only; stored values, no LUTs
    except MemoryError as exc:
        raise _dicom_fail(name, "is too large to decode", "Upload a smaller image.") from exc
    except Exception as exc:
        raise _decode_failure(name, ts_name, ts_uid, bits, exc) from exc
    if frames > 1:
        notes.append(f"multi-frame DICOM: frame {index + 1} of {frames} used")
    if ts_name and "Implicit VR" not in ts_name and "Explicit VR" not in ts_name:
        notes.append(f"compressed pixel data decoded ({ts_name})")

    photometric = _tag_text(ds, "PhotometricInterpretation")
    steps: dict[str, str] = {"rescale": "none", "window": "none"}
    inverted = False
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        pixels = _dicom_colour_to_grey(arr, ds, bits, notes)
        steps["window"] = "none (colour image: luminance)"
    elif arr.ndim == 2:
        pixels = _dicom_grey(arr, ds, notes, steps)
        if photometric == "MONOCHROME1":
            # By hand: pydicom has no display (presentation) step for MONOCHROME1; PS3.3
            # C.7.6.3.1.2 defines it as "minimum value displayed white", i.e. inverted.
            pixels = 1.0 - pixels
            inverted = True
            notes.append("MONOCHROME1 inverted (bright = dense)")
    else:
        raise _dicom_fail(name, f"has pixel data of unexpected shape {arr.shape}")
    modality, body_part = _tag_text(ds, "Modality"), _tag_text(ds, "BodyPartExamined")
    record = ReadRecord(
        source_format="DICOM",
        width=int(arr.shape[1]),
        height=int(arr.shape[0]),
        bits_stored=int(bits),
        transfer_syntax=ts_name,
        transfer_syntax_uid=ts_uid,
        photometric=photometric,
        inverted=inverted,
        rescale=steps["rescale"],
        window=steps["window"],
        frame=index,
        frames=frames,
        modality=modality,
        body_part=body_part,
        view_position=_tag_text(ds, "ViewPosition"),
        warnings=tuple(_chest_warnings(modality, body_part)),
        notes=tuple(notes),
    )
    return XrayImage(
        pixels=np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32),
        source_format="DICOM",
        notes=tuple(notes),
        bits=int(bits),
        record=record,
    )


def _chest_warnings(modality: str, body_part: str) -> list[str]:
    """Warnings (not errors) for files whose tags say they are not chest radiographs."""
    out: list[str] = []
    if modality and modality not in _RADIOGRAPH_MODALITIES:
        what = _MODALITY_NAMES.get(modality, "not a projection radiograph")
        out.append(
            f"Modality is {modality} ({what}), not a radiograph (CR/DX): the chest X-ray models were "
            "trained on chest radiographs, so their output on this image is not meaningful."
        )
    if body_part and not any(word in body_part for word in _CHEST_WORDS):
        out.append(
            f"Body part examined is {body_part}, not CHEST: the models were trained on chest "
            "radiographs, so their output on this image is not meaningful."
        )
    return out


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


def _lut_dataset(ds: Any, notes: list[str]) -> tuple[Any, tuple[float, float] | None, tuple[float, float, str] | None]:
    """A fresh dataset holding only validated LUT tags, for pydicom's LUT functions.

    pydicom's ``apply_modality_lut`` / ``apply_windowing`` trust the tags; uploads can
    carry a RescaleSlope of 0, -1 or "abc", or a window of width 0. Invalid values are left
    out here (with a note) so pydicom computes with the valid ones only.

    Returns:
        ``(dataset, (slope, intercept) or None, (centre, width, function) or None)``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset

    out = Dataset()
    out.file_meta = FileMetaDataset()  # pydicom reads OW LUT data with the file's byte order
    out.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    out.BitsStored = _tag_int(ds, "BitsStored", 0) or _tag_int(ds, "BitsAllocated", 16) or 16
    out.PixelRepresentation = 1 if _tag_int(ds, "PixelRepresentation", 0) == 1 else 0
    out.PhotometricInterpretation = "MONOCHROME2"  # the inversion is done separately, after the VOI step
    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        if keyword in ds:
            try:
                setattr(out, keyword, ds[keyword].value)
            except Exception:
                notes.append(f"{keyword} unreadable; ignored")
    rescale: tuple[float, float] | None = None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slopes = _tag_numbers(ds, "RescaleSlope") if "RescaleSlope" in ds else [1.0]
        icpts = _tag_numbers(ds, "RescaleIntercept") if "RescaleIntercept" in ds else [0.0]
        slope = slopes[0] if slopes else 1.0
        icpt = icpts[0] if icpts else 0.0
        if not math.isfinite(slope) or slope <= 0:
            notes.append(f"RescaleSlope {_tag_repr(ds, 'RescaleSlope')} is invalid; ignored (1 used)")
            slope = 1.0
        if not math.isfinite(icpt):
            notes.append(f"RescaleIntercept {_tag_repr(ds, 'RescaleIntercept')} is invalid; ignored (0 used)")
            icpt = 0.0
        if slope != 1.0 or icpt != 0.0:
            out.RescaleSlope, out.RescaleIntercept = slope, icpt
            rescale = (slope, icpt)
    window: tuple[float, float, str] | None = None
    centers, widths = _tag_numbers(ds, "WindowCenter"), _tag_numbers(ds, "WindowWidth")
    if centers and widths:
        c, w = centers[0], widths[0]
        function = _tag_text(ds, "VOILUTFunction") or "LINEAR"
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            notes.append(f"VOI LUT function {function!r} is unknown; LINEAR used")
            function = "LINEAR"
        if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (function == "LINEAR" and w < 1):
            notes.append(f"window in the file (centre {c:g}, width {w:g}) is invalid; ignored")
        else:
            out.WindowCenter, out.WindowWidth, out.VOILUTFunction = c, w, function
            window = (c, w, function)
    return out, rescale, window


def _dicom_grey(arr: np.ndarray, ds: Any, notes: list[str], steps: dict[str, str]) -> np.ndarray:
    """Stored values -> modality values -> VOI window -> [0, 1] (MONOCHROME2 sense).

    Each step is pydicom's own function (``apply_modality_lut``, ``apply_voi``,
    ``apply_windowing``) on a dataset of validated tags (:func:`_lut_dataset`). Two steps
    stay by hand: the scaling of the VOI output to [0, 1] (pydicom returns it in the
    output range of the LUT or of the stored bits), and the contrast from the 0.5-99.5
    percentiles when the file has no usable window (DICOM defines no default window).
    """
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    lut_ds, rescale, window = _lut_dataset(ds, notes)
    x = arr.astype(np.float64)
    if "ModalityLUTSequence" in lut_ds:
        try:
            x = apply_modality_lut(arr, lut_ds).astype(np.float64)
            notes.append("Modality LUT applied")
            steps["rescale"] = "Modality LUT sequence"
        except Exception:
            notes.append("Modality LUT unreadable; ignored")
            del lut_ds.ModalityLUTSequence
    elif rescale is not None:
        x = apply_modality_lut(arr, lut_ds).astype(np.float64)
        notes.append(f"RescaleSlope/Intercept applied ({rescale[0]:g}, {rescale[1]:g})")
        steps["rescale"] = f"slope {rescale[0]:g}, intercept {rescale[1]:g}"
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, float(x[finite].min()) if finite.any() else 0.0)

    if "VOILUTSequence" in lut_ds:
        try:
            item = lut_ds.VOILUTSequence[0]
            lut_bits = int(item.LUTDescriptor[2])
            y = apply_voi(np.rint(x).astype(np.int64), lut_ds, index=0).astype(np.float64)
            out = np.clip(y / float(2**lut_bits - 1), 0.0, 1.0) if 1 <= lut_bits <= 16 else _unit_range(y)
            if float(out.std()) > 0:
                notes.append("VOI LUT applied")
                steps["window"] = "VOI LUT sequence in the file (first)"
                return out
        except Exception:
            pass
        notes.append("VOI LUT unreadable or blank; ignored")

    if window is not None:
        c, w, function = window
        # pydicom maps values below/above the window to its output minimum/maximum: two
        # sentinels give that range, so the result is scaled to [0, 1] by pydicom's own ends.
        with np.errstate(over="ignore"):
            y = apply_windowing(np.concatenate([x.ravel(), [-1e30, 1e30]]), lut_ds, index=0)
        y_min, y_max = float(y[-2]), float(y[-1])
        out = np.clip((y[:-2].reshape(x.shape) - y_min) / (y_max - y_min), 0.0, 1.0)
        # A window that does not fit the values (wrong units, ignored slope) blanks the image.
        if float(out.max()) - float(out.min()) >= 0.05:
            extra = f", {function}" if function != "LINEAR" else ""
            notes.append(f"VOI window applied (centre {c:g}, width {w:g}{extra})")
            steps["window"] = f"from the file: centre {c:g}, width {w:g} ({function})"
            return out
        notes.append(f"window in the file (centre {c:g}, width {w:g}) does not fit the pixel values; ignored")
    lo, hi = np.percentile(x, [0.5, 99.5])
    if hi > lo:
        notes.append("contrast set from the 0.5-99.5 percentiles (no usable window in the file)")
        steps["window"] = f"0.5-99.5 percentile range {lo:g} to {hi:g} (no usable window in the file)"
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    steps["window"] = "full value range (constant image)"
    return _unit_range(x)


def _tag_repr(ds: Any, keyword: str) -> str:
    try:
        value = ds.get_item(keyword).value
    except Exception:
        return "?"
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", errors="replace").strip()
    text = repr(str(value).strip())
    return text if len(text) <= 24 else text[:21] + "...'"

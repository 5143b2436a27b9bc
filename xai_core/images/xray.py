"""Chest X-rays: DICOM or an ordinary image to display pixels in [0, 1], and to torchxrayvision's range."""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import numpy as np
from PIL import Image

from xai_core.errors import ImageError
from xai_core.images.dicom import read_dicom
from xai_core.images.messages import XRAY_FORMATS_TEXT
from xai_core.images.raster import (
    ALPHA_MODES,
    HIGH_DEPTH_MODES,
    MAX_PIXELS,
    MODE_BITS,
    decode_image,
    to_gray_float,
    to_rgb,
)
from xai_core.images.records import XrayImage
from xai_core.images.sniff import describe, is_dicom
from xai_core.images.source import MAX_UPLOAD_BYTES, read_source


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
    data, source_name = read_source(source, max_bytes, XRAY_FORMATS_TEXT)
    name = filename or source_name
    # Text, PDF, ZIP and the like named .dcm get the "not an accepted format" message.
    if data[128:132] == b"DICM" or (is_dicom(data, name) and describe(data) is None):
        return read_dicom(data, name, max_pixels, frame)
    image, notes = decode_image(data, name, max_pixels, dicom_ok=True)
    return _xray_from_image(image, notes)


def _xray_from_image(image: Image.Image, notes: list[str]) -> XrayImage:
    mode = image.mode
    bits = MODE_BITS.get(mode, 8)
    notes = list(notes)
    if mode in HIGH_DEPTH_MODES:
        notes.append(f"{bits}-bit image: its value range scaled to 0-1")
    elif mode in ALPHA_MODES or "transparency" in image.info:
        notes.append("transparent areas composited over white")
    if mode == "P":
        notes.append("palette image converted to grey")
    elif mode not in HIGH_DEPTH_MODES and mode not in ("1", "L", "LA", "La"):
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

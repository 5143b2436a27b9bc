"""DICOM through pydicom: decoder checks, one frame decoded, modality LUT, VOI windowing, chest warnings."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from xai_core.errors import ImageError
from xai_core.images.messages import dicom_fail, too_many_pixels
from xai_core.images.raster import LUMA
from xai_core.images.records import ReadRecord, XrayImage

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
    return dicom_fail(
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
        raise dicom_fail(name, f"uses an unknown transfer syntax ({uid})")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise dicom_fail(
            name,
            f"uses the transfer syntax {ts_name!r}, for which pydicom has no pixel decoder",
            "Export it uncompressed or as JPEG/PNG and upload it again.",
        ) from exc
    if not decoder.is_available:
        raise _missing_decoder(name, ts_name, str(uid), "and no decoder for it is installed on this server")
    return ts_name, str(uid)


def _native_shortfall(ds: Any, uid: str) -> tuple[int, int] | None:
    """For uncompressed pixel data shorter than its header declares: ``(bytes present, bytes needed)``."""
    from pydicom.uid import UID

    if UID(uid).is_compressed or "PixelData" not in ds:
        return None
    samples = max(_tag_int(ds, "SamplesPerPixel", 1), 1)
    allocated = _tag_int(ds, "BitsAllocated", 8) or 8
    frames = max(_tag_int(ds, "NumberOfFrames", 1), 1)
    need = _tag_int(ds, "Rows") * _tag_int(ds, "Columns") * samples * frames * allocated // 8
    have = len(ds.PixelData or b"")
    return (have, need) if 0 < need and have < need else None


def _decode_failure(
    name: str | None, ts_name: str, uid: str, bits: int, exc: BaseException, ds: Any = None
) -> ImageError:
    """Name the real cause of a failed decode: a decoder that cannot do this file, or bad data."""
    from pydicom.pixels import get_decoder

    short = _native_shortfall(ds, uid) if ds is not None else None
    if short is not None:  # uncompressed: every server reads it, so missing bytes are the cause
        return dicom_fail(
            name,
            f"has pixel data that could not be decoded: only {short[0]:,} of the {short[1]:,} bytes its header "
            "declares are there, so the file is truncated (cut short in a copy or upload)",
            "Copy or export the file again and upload the complete file.",
        )

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
    return dicom_fail(
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


def read_dicom(data: bytes, name: str | None, max_pixels: int, frame: int | None) -> XrayImage:
    """Decode one frame of a DICOM upload into an :class:`XrayImage` with its :class:`ReadRecord`."""
    import pydicom
    from pydicom.pixels import pixel_array

    if any(uid in _file_meta_bytes(data) for uid in _DEFLATED_SYNTAXES):
        raise dicom_fail(
            name,
            "uses the Deflate transfer syntax, which is not accepted (it can expand without bound)",
            "Export it uncompressed or as JPEG/PNG and upload it again.",
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise dicom_fail(name, f"is not a readable DICOM file ({type(exc).__name__})") from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise dicom_fail(
            name,
            "has no Pixel Data element: it may be cut short (truncated in a copy or upload), a DICOM file "
            "without an image (a report, DICOMDIR or structured report), or not a DICOM file at all",
            "Export the image itself as DICOM, PNG or JPEG and upload it.",
        )
    rows, cols = _tag_int(ds, "Rows"), _tag_int(ds, "Columns")
    if rows <= 0 or cols <= 0:
        raise dicom_fail(name, f"declares an empty or invalid image size ({rows} x {cols})")
    if rows * cols > max_pixels:
        raise too_many_pixels(name, cols, rows, rows * cols, max_pixels)
    notes: list[str] = []
    try:
        _ensure_transfer_syntax(ds)
        ts_name, ts_uid = _dicom_decoder_check(ds, name)
    except ImageError:
        raise
    except Exception as exc:
        raise dicom_fail(name, f"has an invalid transfer syntax ({type(exc).__name__})") from exc
    frames = max(_tag_int(ds, "NumberOfFrames", 1), 1)
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ImageError(f"The frame must be a whole number from 0 to {frames - 1}; got {frame!r}. Choose one.")
    index = 0 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise dicom_fail(
            name,
            f"has {frames} frame{'s' if frames > 1 else ''}; frame {index} does not exist",
            f"Choose a frame from 0 to {frames - 1}.",
        )
    bits = _tag_int(ds, "BitsStored", 0) or _tag_int(ds, "BitsAllocated", 8) or 8
    try:
        arr = pixel_array(ds, index=index)  # decodes this frame only; stored values, no LUTs
    except MemoryError as exc:
        raise dicom_fail(name, "is too large to decode", "Upload a smaller image.") from exc
    except Exception as exc:
        raise _decode_failure(name, ts_name, ts_uid, bits, exc, ds) from exc
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
        raise dicom_fail(name, f"has pixel data of unexpected shape {arr.shape}")
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
    return np.clip((rgb @ LUMA) / full, 0.0, 1.0)


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

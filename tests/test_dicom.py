"""Compressed DICOM, missing decoders, frames, the "how it was read" record, chest warnings.

The corpus of compressed transfer syntaxes (issue 14 item 6) is made here with pydicom's
own encoders where it has them (RLE Lossless: pydicom's native encoder; JPEG-LS: pyjpegls;
JPEG 2000: pylibjpeg-openjpeg), JPEG Baseline with Pillow wrapped into an encapsulated
DICOM, and JPEG Extended 12-bit and JPEG Lossless (process 14, two predictors) from the
small files in tests/data (no installed package encodes those; see
tests/data/make_jpeg_dicoms.py). Every file is decoded and compared with the uncompressed
original. A missing decoder is simulated with pydicom's plugin API (``remove_plugin``),
never by mocking the reader, and the message must name the syntax and the package.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tests.corpus import _dicom, _xray_like
from xai_core.errors import ImageError
from xai_core.images import ReadRecord, read_xray

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "xray"
X12 = _xray_like(64, 48, 4095)
X8 = (X12 >> 4).astype(np.uint8)


def _save(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _compressed(uid: str, pixels: np.ndarray = X12, **kwargs: object) -> bytes:
    """The uncompressed corpus file, compressed by pydicom's own encoder for ``uid``."""
    ds = pydicom.dcmread(io.BytesIO(_dicom(pixels, bits_stored=12 if pixels.dtype == np.uint16 else 8)))
    ds.compress(uid, **kwargs)
    return _save(ds)


def _baseline_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(X8, "L").save(buf, "JPEG", quality=95)
    return _dicom(X8, pixel_bytes=buf.getvalue(), transfer_syntax=JPEGBaseline8Bit)


# name -> (bytes, transfer syntax, reference pixels, lossless?)
def _corpus() -> dict[str, tuple[bytes, str, np.ndarray, bool]]:
    return {
        "rle": (_compressed(RLELossless, encoding_plugin="pydicom"), RLELossless, X12, True),
        "jpegls_lossless": (_compressed(JPEGLSLossless), JPEGLSLossless, X12, True),
        "jpegls_near": (_compressed(JPEGLSNearLossless, jls_error=3), JPEGLSNearLossless, X12, False),
        "j2k_lossless": (_compressed(JPEG2000Lossless), JPEG2000Lossless, X12, True),
        "j2k_lossy": (_compressed(JPEG2000, j2k_cr=[10]), JPEG2000, X12, False),
        "jpeg_baseline": (_baseline_jpeg(), JPEGBaseline8Bit, X8, False),
        "jpeg_extended_12bit": ((DATA / "jpeg_extended_12bit.dcm").read_bytes(), JPEGExtended12Bit, X12, False),
        "jpeg_lossless_sv1": ((DATA / "jpeg_lossless_sv1.dcm").read_bytes(), JPEGLosslessSV1, X12, True),
        "jpeg_lossless_p14": ((DATA / "jpeg_lossless_p14.dcm").read_bytes(), JPEGLossless, X12, True),
    }


CORPUS = _corpus()


@contextlib.contextmanager
def decoders_removed(uid: str, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """Remove pydicom's decoder plugins for ``uid`` (all but ``keep``), restoring them after."""
    decoder = get_decoder(uid)
    saved = [(label, (func.__module__, func.__name__)) for label, func in decoder._available.items()]
    try:
        for label, _ in saved:
            if label not in keep:
                decoder.remove_plugin(label)
        yield
    finally:
        for label, _ in saved:
            if label in decoder.available_plugins:
                decoder.remove_plugin(label)
        for label, path in saved:  # in the original order: pydicom tries plugins in order
            decoder.add_plugin(label, path)
        assert list(decoder._available) == [label for label, _ in saved]


def _uncompressed_reference(pixels: np.ndarray) -> np.ndarray:
    bits = 12 if pixels.dtype == np.uint16 else 8
    return read_xray(_dicom(pixels, bits_stored=bits)).pixels


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_compressed_syntax_is_read(name):
    data, uid, reference, lossless = CORPUS[name]
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == uid  # really that syntax
    x = read_xray(data, filename=f"{name}.dcm")
    assert (x.width, x.height) == (48, 64) and x.source_format == "DICOM"
    assert x.record.transfer_syntax_uid == uid and x.record.transfer_syntax == pydicom.uid.UID(uid).name
    assert any("compressed pixel data decoded" in n for n in x.notes)
    expected = _uncompressed_reference(reference)
    if lossless:
        np.testing.assert_array_equal(x.pixels, expected)
    else:
        assert float(np.abs(x.pixels - expected).mean()) < 0.02


@pytest.mark.parametrize("name", list(CORPUS))
def test_missing_decoder_is_named_not_called_damage(name):
    data, uid, _, _ = CORPUS[name]
    with decoders_removed(uid):
        with pytest.raises(ImageError) as info:
            read_xray(data, filename=f"{name}.dcm")
    msg = str(info.value)
    assert pydicom.uid.UID(uid).name in msg and uid in msg, msg
    assert "decoder is missing" in msg and "not damaged" in msg and "damaged or" not in msg, msg
    assert "pip install pylibjpeg" in msg, msg
    read_xray(data)  # restored: reads again


def test_pillow_alone_cannot_read_12_bit_jpeg_and_says_so():
    """Issue 14 item 3: a valid 12-bit JPEG was called "damaged or truncated" with Pillow only."""
    data = CORPUS["jpeg_extended_12bit"][0]
    with decoders_removed(JPEGExtended12Bit, keep=("pillow",)):
        assert get_decoder(JPEGExtended12Bit).available_plugins == ("pillow",)
        with pytest.raises(ImageError) as info:
            read_xray(data, filename="cr_12bit.dcm")
    msg = str(info.value)
    assert "(pillow) cannot read for this 12-bit image" in msg and "pylibjpeg-libjpeg" in msg, msg
    assert "damaged or" not in msg
    # 8-bit baseline JPEG is within Pillow's reach
    with decoders_removed(JPEGBaseline8Bit, keep=("pillow",)):
        read_xray(CORPUS["jpeg_baseline"][0])


def test_damaged_data_with_a_decoder_is_called_damaged():
    data, uid, _, _ = CORPUS["jpegls_lossless"]
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    stream = next(iter(frame))
    broken = _dicom(X12, bits_stored=12, pixel_bytes=stream[:20], transfer_syntax=uid)  # header cut short
    with pytest.raises(ImageError, match="damaged or truncated") as info:
        read_xray(broken, filename="cut.dcm")
    assert "JPEG-LS" in str(info.value)


def test_uncompressed_pixels_cut_short_are_called_truncated_not_a_decoder_problem():
    """Issue 23 leftovers: a truncated uncompressed DICOM blamed "the decoders installed here" too."""
    full = _dicom(X12, bits_stored=12)
    with pytest.raises(ImageError) as info:
        read_xray(full[:-2000], filename="cut.dcm")
    msg = str(info.value)
    assert "truncated" in msg and "4,144 of the 6,144 bytes" in msg, msg
    assert "decoder" not in msg, msg


# --------------------------------------------------------------------------- record


def test_record_of_an_ordinary_dicom():
    x = read_xray(_dicom(X12, bits_stored=12, extra={"BodyPartExamined": "CHEST", "ViewPosition": "PA"}))
    r = x.record
    assert isinstance(r, ReadRecord)
    assert (r.width, r.height, r.bits_stored, r.frame, r.frames) == (48, 64, 12, 0, 1)
    assert r.transfer_syntax == "Implicit VR Little Endian" and r.photometric == "MONOCHROME2"
    assert not r.inverted and r.rescale == "none" and r.window.startswith("0.5-99.5 percentile range")
    assert (r.modality, r.body_part, r.view_position) == ("DX", "CHEST", "PA")
    assert r.warnings == () and x.warnings == ()
    rows = dict(r.rows())
    assert rows["Frame"] == "1 of 1" and rows["MONOCHROME1 inversion"] == "not needed"
    assert rows["Transfer syntax"] == "Implicit VR Little Endian (1.2.840.10008.1.2)"
    assert r.summary() == "DICOM, 48x64, 12-bit, Implicit VR Little Endian, DX, CHEST, PA"


def test_record_of_monochrome1_rescale_and_window():
    data = _dicom(
        4095 - X12,
        photometric="MONOCHROME1",
        bits_stored=12,
        extra={"RescaleSlope": 2, "RescaleIntercept": -1024, "WindowCenter": 3000, "WindowWidth": 5000},
    )
    r = read_xray(data).record
    assert r.inverted and r.photometric == "MONOCHROME1"
    assert r.rescale == "slope 2, intercept -1024"
    assert r.window == "from the file: centre 3000, width 5000 (LINEAR)"


def test_record_of_a_png():
    r = read_xray(SAMPLES / "tbx11k_h0001.png").record
    assert r.source_format == "PNG" and r.transfer_syntax == "" and r.frames == 1
    assert [label for label, _ in r.rows()] == ["Format", "Size", "Bits stored"]


def test_lut_steps_equal_pydicoms_own_functions():
    """Rescale then window (and a SIGMOID window) give pydicom's apply_modality_lut + apply_voi_lut."""
    for function in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        extra = {"RescaleSlope": 0.5, "RescaleIntercept": 100, "WindowCenter": 1100, "WindowWidth": 1400}
        extra["VOILUTFunction"] = function
        data = _dicom(X12, bits_stored=12, extra=extra)
        ds = pydicom.dcmread(io.BytesIO(data))
        y = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
        lo, hi = 100.0, 4095 * 0.5 + 100  # pydicom's output range: the rescaled stored range
        expected = np.clip((y - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(read_xray(data).pixels, expected, atol=1e-6, err_msg=function)


def test_voi_lut_sequence_is_applied():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    lut = np.minimum(2 * np.arange(4096), 4095).astype("<u2")  # doubles, saturating at half
    item.add_new(0x00283006, "OW", lut.tobytes())  # LUTData
    data = _dicom(X12, bits_stored=12, extra={"VOILUTSequence": [item]})
    x = read_xray(data)
    assert x.record.window == "VOI LUT sequence in the file (first)"
    np.testing.assert_allclose(x.pixels, np.minimum(2 * X12, 4095) / 4095, atol=1e-6)


# --------------------------------------------------------------------------- frames


def test_frame_argument_and_count():
    three = np.stack([X12, 4095 - X12, X12 // 2])
    data = _dicom(three[0], bits_stored=12, frames=3, pixel_bytes=three.tobytes())
    first = read_xray(data)
    assert (first.record.frame, first.record.frames) == (0, 3)
    assert any("frame 1 of 3" in n for n in first.notes)
    second = read_xray(data, frame=1)
    assert dict(second.record.rows())["Frame"] == "2 of 3"
    np.testing.assert_allclose(second.pixels, 1.0 - first.pixels, atol=1e-3)  # 4095 - x, percentile contrast
    np.testing.assert_array_equal(read_xray(data, frame=2).pixels, read_xray(_dicom(X12 // 2, bits_stored=12)).pixels)
    for bad in (3, -1):
        with pytest.raises(ImageError, match="has 3 frames") as info:
            read_xray(data, frame=bad, filename="cine.dcm")
        assert "from 0 to 2" in str(info.value)
    with pytest.raises(ImageError, match="whole number from 0 to 2"):
        read_xray(data, frame="2")  # type: ignore[arg-type]


def test_compressed_multiframe_frame_choice():
    three = np.stack([X12, 4095 - X12, X12 // 2])
    ds = pydicom.dcmread(io.BytesIO(_dicom(three[0], bits_stored=12, frames=3, pixel_bytes=three.tobytes())))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    data = _save(ds)
    np.testing.assert_array_equal(read_xray(data, frame=2).pixels, read_xray(_dicom(X12 // 2, bits_stored=12)).pixels)


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("modality", "word"),
    [("US", "ultrasound"), ("CT", "computed tomography"), ("RTDOSE", "radiotherapy dose"), ("MR", "magnetic")],
)
def test_non_radiograph_modalities_warn(modality, word):
    x = read_xray(_dicom(X12, bits_stored=12, extra={"Modality": modality}))
    assert len(x.warnings) == 1 and f"Modality is {modality} ({word}" in x.warnings[0]
    assert x.record.modality == modality  # read all the same


def test_body_part_other_than_chest_warns():
    hand = read_xray(_dicom(X12, bits_stored=12, extra={"BodyPartExamined": "HAND"}))
    assert len(hand.warnings) == 1 and "HAND, not CHEST" in hand.warnings[0]
    both = read_xray(_dicom(X12, bits_stored=12, extra={"Modality": "CT", "BodyPartExamined": "HEAD"}))
    assert len(both.warnings) == 2
    for ok in ("CHEST", "THORAX", "PORTABLE CHEST"):
        for modality in ("CR", "DX"):
            x = read_xray(_dicom(X12, bits_stored=12, extra={"Modality": modality, "BodyPartExamined": ok}))
            assert x.warnings == (), (ok, modality)


def test_samples_are_read_with_a_record():
    for path in sorted(SAMPLES.glob("*.dcm")):
        x = read_xray(path)
        assert x.record.transfer_syntax and x.record.frames >= 1
        assert x.record.inverted == (x.record.photometric == "MONOCHROME1")

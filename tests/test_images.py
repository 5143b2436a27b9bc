"""Tests for xai_core.images: safe reading of uploads, conversions, DICOM handling.

CPU only, no network. The bad-input corpus is generated at test time by tests/corpus.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile

from tests.corpus import CorpusFile, build_corpus
from xai_core.errors import ImageError
from xai_core.images import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    XrayImage,
    image_digest,
    read_image,
    read_xray,
    to_gray_float,
    to_rgb,
    xray_to_model_input,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
IMAGENET = sorted(p for p in (SAMPLES / "imagenet").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
XRAY = sorted(p for p in (SAMPLES / "xray").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".dcm"})
XRAY_PICTURES = [p for p in XRAY if p.suffix.lower() != ".dcm"]

# Every user-facing message must tell the user what to do next.
ACTION = re.compile(r"\b(upload|export|save|re-save|downscale|install|open it|choose|check|ask)\b", re.IGNORECASE)
GOOD_IMAGE = SAMPLES / "imagenet" / "cat_dog.png"
GOOD_XRAY = SAMPLES / "xray" / "siim_sample.dcm"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[CorpusFile]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def by_name(corpus: list[CorpusFile]) -> dict[str, CorpusFile]:
    return {f.name: f for f in corpus}


def _check_image(im: Image.Image) -> None:
    assert isinstance(im, Image.Image)
    assert im.width >= 1 and im.height >= 1
    rgb = to_rgb(im)
    assert rgb.mode == "RGB" and rgb.size == im.size
    assert np.asarray(rgb).dtype == np.uint8
    grey = to_gray_float(im)
    assert grey.dtype == np.float32 and grey.shape == (im.height, im.width)
    assert np.isfinite(grey).all() and grey.min() >= 0.0 and grey.max() <= 1.0


def _check_xray(x: XrayImage) -> None:
    assert isinstance(x, XrayImage)
    assert x.pixels.dtype == np.float32 and x.pixels.ndim == 2 and min(x.pixels.shape) >= 1
    assert np.isfinite(x.pixels).all() and x.pixels.min() >= 0.0 and x.pixels.max() <= 1.0
    assert x.source_format and isinstance(x.notes, tuple) and all(isinstance(n, str) for n in x.notes)
    assert x.bits >= 1
    model = xray_to_model_input(x.pixels)
    assert model.dtype == np.float32 and model.min() >= -1024 and model.max() <= 1024


def _check_message(err: ImageError) -> None:
    msg = str(err)
    assert len(msg) > 30, msg
    assert ACTION.search(msg), f"message does not say what to do: {msg!r}"
    assert "Traceback" not in msg and "PIL." not in msg and "pydicom." not in msg, msg


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("path", IMAGENET + XRAY_PICTURES, ids=lambda p: p.name)
def test_sample_images_load(path: Path) -> None:
    im = read_image(path)
    _check_image(im)
    assert im.format in {"JPEG", "PNG"}


@pytest.mark.parametrize("path", XRAY, ids=lambda p: p.name)
def test_sample_xrays_load(path: Path) -> None:
    x = read_xray(path)
    _check_xray(x)
    assert float(x.pixels.std()) > 0.05  # a real picture, not a blank


def test_siim_sample_is_1024_and_decoded() -> None:
    x = read_xray(GOOD_XRAY)
    assert x.pixels.shape == (1024, 1024)
    assert x.source_format == "DICOM" and x.bits == 8
    assert any("JPEG Baseline" in n for n in x.notes)
    assert not any("MONOCHROME1" in n for n in x.notes)


def test_fake_monochrome1_is_inverted() -> None:
    data = (SAMPLES / "xray" / "fake_monochrome1.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    ds.PhotometricInterpretation = "MONOCHROME2"  # same pixel data, other interpretation
    buf = io.BytesIO()
    ds.save_as(buf)
    as_mono1 = read_xray(data, filename="fake_monochrome1.dcm")
    as_mono2 = read_xray(buf.getvalue(), filename="relabelled.dcm")
    assert any("MONOCHROME1 inverted" in n for n in as_mono1.notes)
    assert not any("MONOCHROME1" in n for n in as_mono2.notes)
    np.testing.assert_allclose(as_mono1.pixels, 1.0 - as_mono2.pixels, atol=1e-6)
    assert float(np.abs(as_mono1.pixels - as_mono2.pixels).mean()) > 0.2


def test_read_image_refuses_dicom_with_pointer_to_xray_page() -> None:
    with pytest.raises(ImageError, match="DICOM") as info:
        read_image(GOOD_XRAY)
    _check_message(info.value)


# --------------------------------------------------------------------------- corpus


def test_corpus_contract(corpus: list[CorpusFile], tmp_path: Path) -> None:
    assert len(corpus) >= 25
    assert len({f.name for f in corpus}) == len(corpus)
    assert {f.kind for f in corpus} == {"both", "xray"}
    assert {f.expect for f in corpus} == {"ok", "error"}
    for f in corpus:
        assert f.kind in ("image", "xray", "both") and f.expect in ("ok", "error")
        assert f.path is not None and f.path.read_bytes() == f.data
    again = build_corpus(tmp_path)  # deterministic: same bytes every run
    assert [(f.name, image_digest(f.data)) for f in again] == [(f.name, image_digest(f.data)) for f in corpus]


def _run_reader(reader: str, f: CorpusFile) -> Image.Image | XrayImage:
    if reader == "image":
        return read_image(f.data)
    return read_xray(f.data, filename=f.name)


# Pillow warns (once) on the 10000x10000 file before read_image rejects it; expected.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("reader", ["image", "xray"])
def test_corpus_every_file(corpus: list[CorpusFile], reader: str) -> None:
    """Check every corpus file against its expectation.

    Each 'ok' file gives a valid result, each 'error' file an ImageError that says what to
    do, and a good file still loads after every error (no global state corrupted).
    """
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    checked = 0
    for f in corpus:
        if f.kind not in (reader, "both"):
            continue
        checked += 1
        if f.expect == "ok":
            result = _run_reader(reader, f)
            if isinstance(result, Image.Image):
                _check_image(result)
                got_size = result.size
            else:
                _check_xray(result)
                got_size = (result.width, result.height)
                if f.note:
                    assert any(f.note in n for n in result.notes), (f.name, result.notes)
            if f.size:
                assert got_size == f.size, (f.name, got_size, f.size)
        else:
            with pytest.raises(ImageError) as info:  # any other exception fails the test
                _run_reader(reader, f)
            _check_message(info.value)
            # a good file still loads right after the failure
            if reader == "image":
                _check_image(read_image(GOOD_IMAGE))
            else:
                _check_xray(read_xray(GOOD_XRAY))
    assert checked >= 25
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_corpus_files_read_from_disk_too(corpus: list[CorpusFile]) -> None:
    for f in corpus:
        if f.expect == "ok" and f.kind in ("image", "both"):
            assert f.path is not None
            assert read_image(f.path).size == read_image(f.data).size


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_corpus_never_unpickles(corpus: list[CorpusFile], monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was unpickled")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    for f in corpus:
        for reader in ("image", "xray") if f.kind == "both" else (f.kind,):
            with contextlib.suppress(ImageError):
                _run_reader(reader, f)


# --------------------------------------------------------------------------- specific files


def test_exif_rotation_applied(by_name: dict[str, CorpusFile]) -> None:
    f = by_name["exif_rotated.jpg"]
    stored = Image.open(io.BytesIO(f.data))
    assert stored.size == (40, 20)
    out = read_image(f.data)
    assert out.size == (20, 40)
    # orientation 6 = rotate 90 degrees clockwise for display
    np.testing.assert_array_equal(np.asarray(out), np.rot90(np.asarray(stored.convert("RGB")), k=-1))
    assert out.getexif().get(0x0112, 1) == 1  # not applied twice downstream


def test_animated_gif_uses_first_frame(by_name: dict[str, CorpusFile]) -> None:
    im = read_image(by_name["animated.gif"].data)
    assert not getattr(im, "is_animated", False)
    assert set(map(tuple, np.asarray(to_rgb(im)).reshape(-1, 3))) == {(255, 0, 0)}


def test_multipage_tiff_uses_first_page(by_name: dict[str, CorpusFile]) -> None:
    im = read_image(by_name["multipage.tif"].data)
    assert im.size == (50, 40)
    assert np.all(np.asarray(im) == 30)


def test_sixteen_bit_png_keeps_precision(by_name: dict[str, CorpusFile]) -> None:
    data = by_name["grey16.png"].data
    raw = np.asarray(Image.open(io.BytesIO(data))).astype(np.float64)
    im = read_image(data)
    assert im.mode.startswith("I;16")
    grey = to_gray_float(im)
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(grey, expected, atol=1e-6)
    assert len(np.unique(grey)) > 256  # more levels than 8 bits could keep
    rgb = np.asarray(to_rgb(im))
    assert rgb.min() == 0 and rgb.max() == 255  # range scaled, not clipped or darkened


def test_transparency_composited_over_white(by_name: dict[str, CorpusFile]) -> None:
    rgba = read_image(by_name["rgba.png"].data)
    assert rgba.mode == "RGBA"
    alpha = np.asarray(rgba)[..., 3]
    rgb = np.asarray(to_rgb(rgba))
    assert np.all(rgb[alpha == 0] == 255)
    pal = read_image(by_name["palette_transparent.png"].data)
    assert pal.mode == "P"
    idx = np.asarray(pal)
    assert (idx == 0).any()
    assert np.all(np.asarray(to_rgb(pal))[idx == 0] == 255)


def test_cmyk_converted(by_name: dict[str, CorpusFile]) -> None:
    im = read_image(by_name["cmyk.jpg"].data)
    assert im.mode == "CMYK"
    rgb = np.asarray(to_rgb(im)).astype(int)
    original = np.asarray(read_image(by_name["photo.png"].data)).astype(int)
    assert np.abs(rgb - original).mean() < 12  # same picture, up to JPEG loss


def test_to_rgb_and_gray_on_synthetic_modes() -> None:
    red = Image.new("RGB", (4, 3), (255, 0, 0))
    np.testing.assert_allclose(to_gray_float(red), 0.299, atol=1e-6)
    const16 = Image.fromarray(np.full((3, 4), 65535, np.uint16))
    assert np.all(np.asarray(to_rgb(const16)) == 255)  # white stays white, no NaN
    assert np.all(to_gray_float(const16) == 1.0)
    f = Image.fromarray(np.array([[np.nan, 0.0], [5.0, 10.0]], np.float32))
    g = to_gray_float(f)
    assert np.isfinite(g).all() and g.max() == 1.0 and g.min() == 0.0
    bilevel = Image.new("1", (2, 2), 1)
    assert np.asarray(to_rgb(bilevel)).min() == 255 and to_gray_float(bilevel).min() == 1.0
    for mode in ("LAB", "HSV", "YCbCr", "RGBX", "RGBa", "PA", "I;16B", "CMYK", "La"):
        try:  # converted, or a clear ImageError (Pillow cannot convert "La"): never a raw error
            assert to_rgb(Image.new(mode, (2, 2))).mode == "RGB"
        except ImageError as err:
            assert mode in str(err)
            _check_message(err)


def test_conversions_do_not_modify_input() -> None:
    im = Image.new("RGBA", (3, 3), (10, 20, 30, 0))
    before = im.tobytes()
    out = to_rgb(im)
    assert out is not im and im.mode == "RGBA" and im.tobytes() == before
    rgb = Image.new("RGB", (3, 3), (1, 2, 3))
    assert to_rgb(rgb) is not rgb


def test_extreme_aspect_ratio_accepted(by_name: dict[str, CorpusFile]) -> None:
    im = read_image(by_name["tall_3x5000.png"].data)
    assert im.size == (3, 5000)
    assert to_gray_float(im).shape == (5000, 3)


# --------------------------------------------------------------------------- limits


def test_limits_are_documented_values() -> None:
    assert MAX_UPLOAD_BYTES == 25 * 1024 * 1024
    config = (Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    # the server's ceiling admits weights files; it must never be below the image limit
    server_mb = int(re.search(r"^maxUploadSize\s*=\s*(\d+)\s*$", config, re.MULTILINE).group(1))
    assert server_mb * 1024 * 1024 >= MAX_UPLOAD_BYTES
    assert MAX_PIXELS == 40_000_000
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS  # Pillow never warns on an accepted image


def test_ten_thousand_squared_is_over_the_limit(by_name: dict[str, CorpusFile]) -> None:
    f = by_name["huge_10000x10000.png"]
    assert len(f.data) < 100_000  # small on disk
    with pytest.raises(ImageError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        read_image(f.data)
    msg = str(info.value)
    assert "10000 x 10000" in msg and "40 megapixels" in msg and "Downscale" in msg


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_warning_as_error_becomes_image_error(by_name: dict[str, CorpusFile]) -> None:
    with pytest.raises(ImageError, match="megapixels"):
        read_image(by_name["huge_10000x10000.png"].data)


def test_decompression_bomb(by_name: dict[str, CorpusFile]) -> None:
    f = by_name["bomb_50000x50000.png"]
    assert len(f.data) < 1000
    with pytest.raises(ImageError, match="decompression bomb") as info:
        read_image(f.data)
    _check_message(info.value)
    # a caller-raised limit is still bounded by Pillow's own guard, reported the same way
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(f.data, max_pixels=10**10)


def test_pixel_limit_is_a_parameter(by_name: dict[str, CorpusFile]) -> None:
    data = by_name["photo.png"].data  # 64 x 48 = 3072 pixels
    assert read_image(data, max_pixels=3072).size == (64, 48)
    with pytest.raises(ImageError, match="64 x 48"):
        read_image(data, max_pixels=3071)
    with pytest.raises(ImageError, match="48 x 64"):
        read_xray(by_name["mono2_16bit.dcm"].data, max_pixels=3071)


def test_byte_limit(tmp_path: Path, by_name: dict[str, CorpusFile]) -> None:
    data = by_name["photo.png"].data
    assert read_image(data, max_bytes=len(data)).size == (64, 48)
    for source in (data, io.BytesIO(data)):
        with pytest.raises(ImageError, match="limit") as info:
            read_image(source, max_bytes=len(data) - 1)
        _check_message(info.value)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="limit"):
        read_xray(path, max_bytes=100)


def test_sources_bytes_path_and_stream(tmp_path: Path) -> None:
    data = GOOD_IMAGE.read_bytes()
    ref = np.asarray(read_image(data))
    stream = io.BytesIO(data)
    stream.read()  # an UploadedFile that was already read once
    for source in (GOOD_IMAGE, str(GOOD_IMAGE), bytearray(data), memoryview(data), stream):
        np.testing.assert_array_equal(np.asarray(read_image(source)), ref)
    with pytest.raises(ImageError, match="No file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(TypeError):
        read_image(12345)  # type: ignore[arg-type]


def test_stream_name_used_in_messages_and_dicom_detection(by_name: dict[str, CorpusFile]) -> None:
    stream = io.BytesIO(by_name["no_preamble"].data)
    stream.name = "upload/scan.dcm"  # type: ignore[attr-defined]
    assert read_xray(stream).pixels.shape == (64, 48)
    bad = io.BytesIO(b"")
    bad.name = "empty.png"  # type: ignore[attr-defined]
    with pytest.raises(ImageError, match=re.escape("'empty.png' is empty")):
        read_image(bad)


# --------------------------------------------------------------------------- DICOM details


def test_monochrome1_16bit_matches_monochrome2(by_name: dict[str, CorpusFile]) -> None:
    # mono1 stores 4095 - v and says MONOCHROME1: it must display exactly like v as MONOCHROME2
    mono1 = read_xray(by_name["mono1_16bit.dcm"].data)
    mono2 = read_xray(by_name["mono2_16bit.dcm"].data)
    assert mono1.bits == mono2.bits == 12
    np.testing.assert_allclose(mono1.pixels, mono2.pixels, atol=1e-5)


def test_dicom_window_formula(by_name: dict[str, CorpusFile]) -> None:
    f = by_name["windowed.dcm"]
    raw = pydicom.dcmread(io.BytesIO(f.data)).pixel_array.astype(np.float64)
    expected = np.clip((raw - 1999.5) / 2999.0 + 0.5, 0, 1)  # PS3.3 C.11.2.1.2, first window
    np.testing.assert_allclose(read_xray(f.data).pixels, expected, atol=1e-6)


def test_dicom_rescale_tags(by_name: dict[str, CorpusFile]) -> None:
    plain = read_xray(by_name["mono2_16bit.dcm"].data).pixels
    # percentile contrast is invariant to a valid positive rescale
    np.testing.assert_allclose(read_xray(by_name["rescaled.dcm"].data).pixels, plain, atol=1e-5)
    for name in ("slope_zero.dcm", "slope_negative.dcm", "slope_text.dcm"):
        x = read_xray(by_name[name].data)
        assert any("RescaleSlope" in n and "invalid" in n for n in x.notes), x.notes
        np.testing.assert_allclose(x.pixels, plain, atol=1e-5)  # ignored, not inverted or flattened


def test_dicom_multiframe_and_rgb(by_name: dict[str, CorpusFile]) -> None:
    multi = read_xray(by_name["multiframe.dcm"].data)
    single = read_xray(by_name["mono2_16bit.dcm"].data)
    np.testing.assert_allclose(multi.pixels, single.pixels, atol=1e-6)  # frame 0 is that image
    rgb = read_xray(by_name["rgb.dcm"].data)
    assert rgb.pixels.shape == (64, 48) and float(rgb.pixels.std()) > 0


def test_broken_jpegls_data_is_called_damaged(by_name: dict[str, CorpusFile]) -> None:
    # The JPEG-LS decoders are runtime requirements now (pylibjpeg-libjpeg, pyjpegls), so
    # junk JPEG-LS data is damage; a missing decoder is tested in tests/test_dicom.py.
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    assert get_decoder(JPEGLSLossless).is_available
    with pytest.raises(ImageError, match="JPEG-LS") as info:
        read_xray(by_name["jpegls.dcm"].data)
    assert "damaged or truncated" in str(info.value)
    _check_message(info.value)


def test_deflated_dicom_refused(by_name: dict[str, CorpusFile]) -> None:
    data = by_name["deflated.dcm"].data
    ds = pydicom.dcmread(io.BytesIO(data))  # the file itself is valid...
    assert ds.Rows == 64 and ds.pixel_array.shape == (64, 48)
    with pytest.raises(ImageError, match="Deflate") as info:  # ...but refused before inflating
        read_xray(data)
    _check_message(info.value)


def test_colour_image_as_xray_gets_note(by_name: dict[str, CorpusFile]) -> None:
    x = read_xray(by_name["colour_photo_xray.jpg"].data)
    assert any("converted to grey" in n for n in x.notes)
    grey = read_xray(SAMPLES / "xray" / "tbx11k_h0001.png")  # RGB file, grey content
    assert not any("colour (" in n for n in grey.notes)


# --------------------------------------------------------------------------- small helpers


def test_xray_to_model_input() -> None:
    p = np.array([[0.0, 0.5, 1.0]], np.float32)
    before = p.copy()
    out = xray_to_model_input(p)
    np.testing.assert_array_equal(out, np.array([[-1024.0, 0.0, 1024.0]], np.float32))
    assert out.dtype == np.float32 and out is not p
    np.testing.assert_array_equal(p, before)
    for bad in (np.array([1.5]), np.array([-0.1]), np.array([np.nan]), np.array(["a"])):
        with pytest.raises(ImageError):
            xray_to_model_input(bad)


def test_image_digest() -> None:
    assert image_digest(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert image_digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert image_digest(bytearray(b"abc")) == image_digest(b"abc")


def test_xray_image_is_frozen_and_validated() -> None:
    x = XrayImage(pixels=np.zeros((2, 3), np.float32), source_format="PNG")
    with pytest.raises(AttributeError):
        x.bits = 16  # type: ignore[misc]
    assert (x.height, x.width) == (2, 3)
    with pytest.raises(ValueError):
        XrayImage(pixels=np.zeros((2, 3, 1), np.float32), source_format="PNG")

"""A deterministic corpus of bad and odd upload files, generated at test time.

Use it to push every kind of file a user might upload through every reader and page::

    from tests.corpus import build_corpus
    for f in build_corpus(tmp_path):
        ...  # f.name, f.data, f.kind ("image" | "xray" | "both"), f.expect ("ok" | "error")

``kind`` says which readers the file is meant for: ``"image"`` -> ``read_image`` (ImageNet
pages), ``"xray"`` -> ``read_xray`` (X-ray pages), ``"both"`` -> either; ``expect`` holds for
every reader in ``kind``. Files are also written to ``tmp_dir/<name>`` (``CorpusFile.path``).
The same bytes come out on every run (fixed seeds, no timestamps), so results can be cached
and compared. Nothing here needs the network; two entries copy the DICOM samples from
``samples/xray``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

Kind = Literal["image", "xray", "both"]
Expect = Literal["ok", "error"]


@dataclass(frozen=True)
class CorpusFile:
    """One generated upload.

    Attributes:
        name: file name as a user would upload it (extension may lie on purpose).
        data: the file's bytes.
        kind: which readers it is meant for: "image", "xray" or "both".
        expect: "ok" (reads and gives a valid image) or "error" (raises ImageError).
        why: what the file is and what should happen, for test ids and reports.
        size: expected (width, height) after reading, when known (EXIF rotation applied).
        note: a substring expected in one of ``XrayImage.notes`` when read as an X-ray.
        path: where build_corpus wrote it.
    """

    name: str
    data: bytes
    kind: Kind
    expect: Expect
    why: str
    size: tuple[int, int] | None = None
    note: str | None = None
    path: Path | None = None


# --------------------------------------------------------------------------- helpers


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth RGB picture with some noise (compresses like a photo, deterministic)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG header declaring ``width x height`` grey pixels, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _xray_like(rows: int, cols: int, max_value: int, seed: int = 1) -> np.ndarray:
    """Synthetic chest-ish picture: bright body, dark lungs; values 0..max_value (uint16)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols]).reshape(2, 1, 1)
    body = np.exp(-((((x - 0.5) / 0.45) ** 2 + ((y - 0.5) / 0.6) ** 2) ** 2))
    lungs = np.exp(-((((np.abs(x - 0.5) - 0.18) / 0.12) ** 2 + ((y - 0.45) / 0.25) ** 2) ** 2))
    img = 0.15 + 0.7 * body - 0.45 * lungs + rng.normal(0, 0.01, (rows, cols))
    return np.clip(img * max_value, 0, max_value).astype(np.uint16)


def _dicom(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    extra: dict[str, object] | None = None,
    raw_tags: dict[int, bytes] | None = None,
    frames: int = 1,
    preamble: bool = True,
    pixel_bytes: bytes | None = None,
    transfer_syntax: str | None = None,
) -> bytes:
    """Build a small DICOM file in memory (Implicit VR Little Endian unless told otherwise).

    ``raw_tags`` are written as raw bytes (VR OB, which Implicit VR does not record), so
    invalid values such as a DS of ``"abc "`` reach the file exactly as given (use them only
    with the default Implicit VR transfer syntax). Compressed syntaxes get the pixel bytes
    encapsulated as one fragment; Deflate gets a real deflated Explicit VR dataset.
    """
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.543.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.543.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.3"
    ds.Modality = "DX"
    ds.PatientName = "Corpus^Test"
    ds.PatientID = "CORPUS"
    if pixels is not None:
        samples = 3 if pixels.ndim == 3 else 1
        ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
        ds.SamplesPerPixel = samples
        ds.PhotometricInterpretation = photometric
        allocated = 8 if pixels.dtype == np.uint8 else 16
        ds.BitsAllocated = allocated
        ds.BitsStored = bits_stored or allocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        if samples == 3:
            ds.PlanarConfiguration = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        data = pixel_bytes if pixel_bytes is not None else pixels.tobytes()
        ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    for tag, raw in (raw_tags or {}).items():
        ds.add(DataElement(tag, "OB", raw))

    syntax = UID(transfer_syntax or ImplicitVRLittleEndian)
    if syntax.is_compressed and syntax != DeflatedExplicitVRLittleEndian and "PixelData" in ds:
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, syntax.is_implicit_VR
    if preamble:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = syntax
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.543.0"
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
    if syntax == DeflatedExplicitVRLittleEndian:  # a real deflated dataset (raw DEFLATE stream)
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        write_dataset(body, ds)
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        fp.write(packer.compress(body.getvalue()) + packer.flush())
    else:
        write_dataset(fp, ds)
    return fp.getvalue()


def _sample(name: str) -> bytes:
    return (SAMPLES / "xray" / name).read_bytes()


# --------------------------------------------------------------------------- corpus


def _image_files() -> list[CorpusFile]:
    photo = _gradient(64, 48)
    jpeg = _save(photo, "JPEG", quality=90)
    png = _save(photo, "PNG")
    files: list[CorpusFile] = []
    add = files.append

    # -- errors --------------------------------------------------------------------------
    add(CorpusFile("empty.png", b"", "both", "error", "zero bytes"))
    add(CorpusFile("truncated.jpg", jpeg[: len(jpeg) // 2], "both", "error", "JPEG cut in half"))
    add(CorpusFile("truncated.png", png[: len(png) // 2], "both", "error", "PNG cut in half"))
    add(CorpusFile("header_only.png", png[:40], "both", "error", "PNG signature and IHDR, no data"))
    add(
        CorpusFile(
            "notes.png", b"Patient notes\nThis is not an image.\n" * 20, "both", "error", "plain text renamed .png"
        )
    )
    html = b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><img src='a.png'></body></html>\n"
    add(CorpusFile("page.png", html, "both", "error", "HTML renamed .png"))
    svg = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        b'width="100" height="100"><circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
    )
    add(CorpusFile("drawing.png", svg, "both", "error", "SVG renamed .png (vector, must not be rendered)"))
    add(
        CorpusFile(
            "document.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "both", "error", "PDF renamed .png"
        )
    )
    add(
        CorpusFile(
            "payload.png",
            b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
            "both",
            "error",
            "a pickle renamed .png: must be refused, never unpickled",
        )
    )
    add(CorpusFile("archive.png", b"PK\x03\x04" + bytes(range(60)), "both", "error", "ZIP renamed .png"))
    rng = np.random.default_rng(7)
    add(CorpusFile("noise.jpg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "both", "error", "random bytes"))
    add(
        CorpusFile(
            "icon.ico",
            _save(_gradient(32, 32), "ICO"),
            "both",
            "error",
            "ICO: a real image, but not an accepted format",
        )
    )
    add(
        CorpusFile(
            "eps_header.png",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
            "both",
            "error",
            "EPS (Pillow would run Ghostscript): refused",
        )
    )
    add(
        CorpusFile(
            "huge_10000x10000.png",
            _save(Image.new("1", (10000, 10000), 1), "PNG", optimize=True),
            "both",
            "error",
            "real 10000x10000 image, 100 MP > 40 MP limit; tiny on disk",
        )
    )
    add(
        CorpusFile(
            "bomb_50000x50000.png",
            _png_bomb(50000, 50000),
            "both",
            "error",
            "PNG header declaring 50000x50000 (2.5 GP), a few hundred bytes on disk",
        )
    )

    # -- ok --------------------------------------------------------------------------------
    add(CorpusFile("photo.jpg", jpeg, "both", "ok", "plain RGB JPEG", size=(64, 48), note="colour"))
    add(CorpusFile("photo.png", png, "both", "ok", "plain RGB PNG", size=(64, 48)))
    add(CorpusFile("png_named.jpg", png, "both", "ok", "PNG with a .jpg name: content decides", size=(64, 48)))
    add(CorpusFile("photo.webp", _save(photo, "WEBP", quality=80), "both", "ok", "WebP", size=(64, 48)))
    add(CorpusFile("photo.bmp", _save(photo, "BMP"), "both", "ok", "BMP", size=(64, 48)))
    add(CorpusFile("photo.tif", _save(photo, "TIFF"), "both", "ok", "single-page TIFF", size=(64, 48)))
    grey = photo.convert("L")
    add(
        CorpusFile(
            "grey.png", _save(grey, "PNG"), "both", "ok", "8-bit grey: read_image + to_rgb must work", size=(64, 48)
        )
    )
    grey16 = Image.fromarray(_xray_like(48, 64, 4095).astype(np.uint16))  # 12 bits in 16
    add(
        CorpusFile(
            "grey16.png",
            _save(grey16, "PNG"),
            "both",
            "ok",
            "16-bit grey PNG holding 12-bit values",
            size=(64, 48),
            note="16-bit",
        )
    )
    rgba = photo.convert("RGBA")
    alpha = Image.linear_gradient("L").resize((64, 48))
    rgba.putalpha(alpha)
    add(
        CorpusFile(
            "rgba.png",
            _save(rgba, "PNG"),
            "both",
            "ok",
            "RGBA, alpha gradient (composited over white)",
            size=(64, 48),
            note="transparent",
        )
    )
    la = grey.copy()
    la.putalpha(alpha)
    add(
        CorpusFile(
            "grey_alpha.png", _save(la, "PNG"), "both", "ok", "LA: grey + alpha", size=(64, 48), note="transparent"
        )
    )
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    add(
        CorpusFile(
            "palette_transparent.png",
            _save(pal, "PNG", transparency=0),
            "both",
            "ok",
            "palette PNG with a transparent index",
            size=(64, 48),
            note="palette",
        )
    )
    add(
        CorpusFile(
            "cmyk.jpg", _save(photo.convert("CMYK"), "JPEG", quality=90), "both", "ok", "CMYK JPEG", size=(64, 48)
        )
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    add(
        CorpusFile(
            "exif_rotated.jpg",
            _save(_gradient(40, 20), "JPEG", exif=exif),
            "both",
            "ok",
            "stored 40x20 with EXIF orientation 6: must come out 20x40",
            size=(20, 40),
            note="EXIF orientation",
        )
    )
    add(
        CorpusFile(
            "one_pixel.png",
            _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
            "both",
            "ok",
            "1x1 image",
            size=(1, 1),
        )
    )
    add(
        CorpusFile(
            "tall_3x5000.png",
            _save(_gradient(3, 5000), "PNG"),
            "both",
            "ok",
            "3x5000 sliver: extreme aspect ratio, accepted",
            size=(3, 5000),
        )
    )
    add(
        CorpusFile("bilevel.png", _save(grey.convert("1"), "PNG"), "both", "ok", "1-bit black and white", size=(64, 48))
    )
    f32 = Image.fromarray(_xray_like(48, 64, 1000).astype(np.float32) / 10.0 - 20.0)
    add(CorpusFile("float32.tif", _save(f32, "TIFF"), "both", "ok", "32-bit float TIFF, values -20..80", size=(64, 48)))
    i32 = Image.fromarray(_xray_like(48, 64, 60000).astype(np.int32) - 30000)
    add(CorpusFile("int32.tif", _save(i32, "TIFF"), "both", "ok", "32-bit signed integer TIFF", size=(64, 48)))
    frames = [Image.new("RGB", (30, 20), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    add(
        CorpusFile(
            "animated.gif",
            _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
            "both",
            "ok",
            "3-frame GIF, red/green/blue: the red first frame is used",
            size=(30, 20),
            note="first frame",
        )
    )
    pages = [Image.new("L", (50, 40), 30), Image.new("L", (20, 10), 220)]
    add(
        CorpusFile(
            "multipage.tif",
            _save(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
            "both",
            "ok",
            "2-page TIFF (50x40 then 20x10): first page used",
            size=(50, 40),
            note="first page",
        )
    )
    return files


def _xray_files() -> list[CorpusFile]:
    from pydicom.uid import JPEGLSLossless

    files: list[CorpusFile] = []
    add = files.append
    x12 = _xray_like(64, 48, 4095)

    # -- ok --------------------------------------------------------------------------------
    add(
        CorpusFile(
            "siim_sample.dcm",
            _sample("siim_sample.dcm"),
            "xray",
            "ok",
            "sample: MONOCHROME2, JPEG baseline compressed",
            size=(1024, 1024),
            note="JPEG Baseline",
        )
    )
    add(
        CorpusFile(
            "fake_monochrome1.dcm",
            _sample("fake_monochrome1.dcm"),
            "xray",
            "ok",
            "sample: MONOCHROME1, JPEG baseline compressed",
            size=(1024, 1024),
            note="MONOCHROME1",
        )
    )
    add(
        CorpusFile(
            "mono2_16bit.dcm",
            _dicom(x12, bits_stored=12),
            "xray",
            "ok",
            "16-bit MONOCHROME2, 12 bits stored",
            size=(48, 64),
            note="percentile",
        )
    )
    add(
        CorpusFile(
            "mono1_16bit.dcm",
            _dicom(4095 - x12, photometric="MONOCHROME1", bits_stored=12),
            "xray",
            "ok",
            "16-bit MONOCHROME1: must be inverted",
            size=(48, 64),
            note="MONOCHROME1 inverted",
        )
    )
    add(
        CorpusFile(
            "windowed.dcm",
            _dicom(x12, bits_stored=12, extra={"WindowCenter": [2000, 1000], "WindowWidth": [3000, 500]}),
            "xray",
            "ok",
            "multi-valued window: the first one is used",
            size=(48, 64),
            note="VOI window applied (centre 2000, width 3000",
        )
    )
    add(
        CorpusFile(
            "bad_window.dcm",
            _dicom(x12, bits_stored=12, extra={"WindowCenter": 60000, "WindowWidth": 10}),
            "xray",
            "ok",
            "window far outside the data: ignored, percentiles used",
            size=(48, 64),
            note="does not fit",
        )
    )
    add(
        CorpusFile(
            "zero_window.dcm",
            _dicom(x12, bits_stored=12, extra={"WindowCenter": 2000, "WindowWidth": 0}),
            "xray",
            "ok",
            "window width 0: ignored",
            size=(48, 64),
            note="invalid",
        )
    )
    add(
        CorpusFile(
            "rescaled.dcm",
            _dicom(x12, bits_stored=12, extra={"RescaleSlope": 2, "RescaleIntercept": -1024}),
            "xray",
            "ok",
            "valid rescale slope/intercept",
            size=(48, 64),
            note="RescaleSlope/Intercept applied",
        )
    )
    add(
        CorpusFile(
            "slope_zero.dcm",
            _dicom(x12, bits_stored=12, extra={"RescaleSlope": 0, "RescaleIntercept": 0}),
            "xray",
            "ok",
            "RescaleSlope 0 (would flatten the image): ignored",
            size=(48, 64),
            note="RescaleSlope '0",
        )
    )
    add(
        CorpusFile(
            "slope_negative.dcm",
            _dicom(x12, bits_stored=12, extra={"RescaleSlope": -1, "RescaleIntercept": 0}),
            "xray",
            "ok",
            "negative RescaleSlope: ignored",
            size=(48, 64),
            note="is invalid",
        )
    )
    add(
        CorpusFile(
            "slope_text.dcm",
            _dicom(x12, bits_stored=12, raw_tags={0x00281053: b"abc ", 0x00281052: b"NaN "}),
            "xray",
            "ok",
            "RescaleSlope 'abc', RescaleIntercept 'NaN': ignored",
            size=(48, 64),
            note="is invalid",
        )
    )
    add(
        CorpusFile(
            "window_text.dcm",
            _dicom(x12, bits_stored=12, raw_tags={0x00281050: b"high", 0x00281051: b"wide"}),
            "xray",
            "ok",
            "WindowCenter/Width as text: ignored",
            size=(48, 64),
            note="invalid",
        )
    )
    rgb = np.stack([x12 >> 4, (x12 >> 4) // 2, 255 - (x12 >> 4)], axis=-1).astype(np.uint8)
    add(
        CorpusFile(
            "rgb.dcm",
            _dicom(rgb, photometric="RGB"),
            "xray",
            "ok",
            "RGB DICOM: grey with a note",
            size=(48, 64),
            note="colour DICOM converted to grey",
        )
    )
    three = np.concatenate([x12, 4095 - x12, x12 // 2]).reshape(3, 64, 48)
    add(
        CorpusFile(
            "multiframe.dcm",
            _dicom(three[0], bits_stored=12, frames=3, pixel_bytes=three.tobytes()),
            "xray",
            "ok",
            "3 frames: the first one is shown by default",
            size=(48, 64),
            note="frame 1 of 3",
        )
    )
    add(
        CorpusFile(
            "no_preamble",
            _dicom(x12, bits_stored=12, preamble=False),
            "xray",
            "ok",
            "raw dataset, no preamble/DICM/file meta, no extension: force-read fallback",
            size=(48, 64),
        )
    )
    add(
        CorpusFile(
            "png_named.dcm",
            _save(Image.fromarray((x12 >> 4).astype(np.uint8)), "PNG"),
            "xray",
            "ok",
            "a PNG named .dcm: the content decides",
            size=(48, 64),
        )
    )
    add(
        CorpusFile(
            "colour_photo_xray.jpg",
            _save(_gradient(64, 48), "JPEG", quality=90),
            "xray",
            "ok",
            "a colour photo given to read_xray: works, with a note",
            size=(64, 48),
            note="colour",
        )
    )

    # -- errors --------------------------------------------------------------------------
    add(CorpusFile("no_pixels.dcm", _dicom(None), "xray", "error", "DICOM without Pixel Data"))
    full = _dicom(x12, bits_stored=12)
    add(CorpusFile("truncated_pixels.dcm", full[: len(full) - 2000], "xray", "error", "pixel data cut short"))
    add(
        CorpusFile(
            "garbage_after_magic.dcm",
            b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4,
            "xray",
            "error",
            "DICM marker followed by junk",
        )
    )
    add(CorpusFile("zero_rows.dcm", _dicom(np.zeros((0, 8), np.uint16)), "xray", "error", "Rows = 0"))
    add(
        CorpusFile(
            "declares_60000.dcm",
            _dicom(x12, bits_stored=12, extra={"Rows": 60000, "Columns": 60000}),
            "xray",
            "error",
            "header declares 60000x60000 (3.6 GP): refused before decoding",
        )
    )
    add(
        CorpusFile(
            "jpegls.dcm",
            _dicom(x12, bits_stored=12, pixel_bytes=b"\xff\xd8" + b"\x00" * 64, transfer_syntax=JPEGLSLossless),
            "xray",
            "error",
            "JPEG-LS transfer syntax with junk data: damaged (the decoders are installed)",
        )
    )
    add(
        CorpusFile(
            "deflated.dcm",
            _dicom(x12, bits_stored=12, transfer_syntax="1.2.840.10008.1.2.1.99"),
            "xray",
            "error",
            "valid deflated DICOM: refused anyway (pydicom inflates without a size bound)",
        )
    )
    add(CorpusFile("notes.dcm", b"just some text\n" * 30, "xray", "error", "text named .dcm"))
    return files


def build_corpus(tmp_dir: Path) -> list[CorpusFile]:
    """Generate the corpus, write each file to ``tmp_dir / name`` and return them.

    Args:
        tmp_dir: an existing, writable folder (pytest's ``tmp_path``).

    Returns:
        The files, images first then X-ray/DICOM files; names are unique.
    """
    tmp_dir = Path(tmp_dir)
    out: list[CorpusFile] = []
    for f in _image_files() + _xray_files():
        path = tmp_dir / f.name
        path.write_bytes(f.data)
        out.append(CorpusFile(**{**f.__dict__, "path": path}))
    names = [f.name for f in out]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return out

"""What a file is, from its first bytes: image magic numbers, DICOM markers and the formats refused."""

from __future__ import annotations

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


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start with the magic number of an accepted image format."""
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def describe(data: bytes) -> str | None:
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


def is_dicom(data: bytes, name: str | None) -> bool:
    """Whether the bytes are DICOM: the DICM marker, a .dcm name on non-image content, or a raw dataset."""
    if data[128:132] == b"DICM":
        return True
    if looks_like_image(data):
        return False  # content wins over a misleading name
    if name and name.lower().endswith((".dcm", ".dicom", ".dic")):
        return True
    # Preamble-less DICOM (raw dataset) starts with a group 0002 or 0008 tag, little endian.
    return data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"

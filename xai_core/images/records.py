"""What reading a file returns: the pixels of an X-ray and the record of how it was read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

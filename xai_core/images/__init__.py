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

One job per module: ``source`` (the bytes, within the byte limit), ``sniff`` (what the
bytes are), ``raster`` (Pillow's allow-listed decoders, the pixel limit, RGB and grey),
``dicom`` (pydicom decoding, LUTs and windowing, chest warnings), ``xray`` (either route
to display pixels, and the models' range), ``records`` (the result types) and
``messages`` (the user-facing errors). The names above are re-exported here.
"""

from xai_core.images.raster import IMAGE_FORMATS, MAX_PIXELS, read_image, to_gray_float, to_rgb
from xai_core.images.records import ReadRecord, XrayImage
from xai_core.images.source import MAX_UPLOAD_BYTES, image_digest
from xai_core.images.xray import read_xray, xray_to_model_input

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

"""Preprocessing per model family, keeping track of the geometry.

The map a model produces explains the view the model saw (after resize and crop), so
every preprocessing step returns that view and where it sits in the uploaded image;
``render.place_on_original`` uses that box to put a map back on the full image without
stretching it (ALGORITHMS.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xai_core.errors import ImageError
from xai_core.images import to_gray_float, to_rgb


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input.

    Attributes:
        kind: ``"imagenet"`` (RGB, resize the short side, centre crop, mean/std) or
            ``"xray"`` (grey, centre square crop, resize, scaled to [-1024, 1024]).
        input_size: ``(H, W)`` fed to the model.
        resize: short side before the crop (ImageNet); ``None`` for X-ray.
        mean, std: per-channel normalisation (ImageNet).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        channels: 3 for RGB models, 1 for grey.
    """

    kind: str
    input_size: tuple[int, int]
    resize: int | None = None
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    channels: int = 3


@dataclass(frozen=True)
class PreparedInput:
    """A model input together with what the model saw.

    Attributes:
        tensor: ``[1, C, H, W]`` float32, ready for the model.
        view: ``[H, W, 3]`` uint8, the cropped and resized image the model saw (RGB).
        crop_box: ``(left, top, right, bottom)`` of the view in the original image's pixels.
        original_size: ``(width, height)`` of the original image.
    """

    tensor: torch.Tensor
    view: np.ndarray
    crop_box: tuple[float, float, float, float]
    original_size: tuple[int, int]


def _as_float_image(image: Image.Image | np.ndarray, channels: int) -> np.ndarray:
    """Return ``[H, W, channels]`` float32 in [0, 1] from a PIL image or an array."""
    if isinstance(image, Image.Image):
        if channels == 1:
            arr = to_gray_float(image)[..., None]
        else:
            arr = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    elif isinstance(image, np.ndarray):
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ImageError(f"Expected an image array [H, W] or [H, W, 3], got shape {tuple(image.shape)}.")
        arr = arr[..., :3]
        if arr.size and float(np.nanmax(arr)) > 1.0:
            arr = arr / 255.0
        if channels == 1 and arr.shape[2] == 3:
            arr = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        elif channels == 3 and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
    else:
        raise ImageError(f"Expected a PIL image or a numpy array, got {type(image).__name__}.")
    if not np.isfinite(arr).all():
        raise ImageError("The image contains NaN or infinite values.")
    return np.clip(arr, 0.0, 1.0)


def _resize(t: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode=mode, align_corners=False, antialias=True)


def prepare(image: Image.Image | np.ndarray, pre: Preprocessing) -> PreparedInput:
    """Turn an image into the model's input and remember the geometry.

    Args:
        image: a PIL image (any mode) or a float array in [0, 1] (``[H, W]`` grey or ``[H, W, 3]``).
        pre: the model's :class:`Preprocessing`.

    Returns:
        A :class:`PreparedInput`.
    """
    arr = _as_float_image(image, pre.channels)
    h0, w0 = arr.shape[:2]
    if h0 < 1 or w0 < 1:
        raise ImageError("The image is empty.")
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    out_h, out_w = pre.input_size
    if pre.kind == "imagenet":
        # Resize the short side to `resize`, then centre-crop `input_size`: computed as the
        # matching box in the original image, cropped first and resized once, so a
        # 3x5000 strip never becomes a 256x426667 intermediate.
        resize = pre.resize or min(out_h, out_w)
        scale = resize / min(h0, w0)
        box_w, box_h = min(w0, out_w / scale), min(h0, out_h / scale)
        left, top = (w0 - box_w) / 2, (h0 - box_h) / 2
        x0, y0 = int(np.floor(left)), int(np.floor(top))
        x1, y1 = min(w0, int(np.ceil(left + box_w))), min(h0, int(np.ceil(top + box_h)))
        t = _resize(t[..., y0:y1, x0:x1], (out_h, out_w), pre.interpolation)
        box = (float(x0), float(y0), float(x1), float(y1))
        view = t.clamp(0, 1)
        mean = torch.tensor(pre.mean, dtype=t.dtype).view(1, -1, 1, 1)
        std = torch.tensor(pre.std, dtype=t.dtype).view(1, -1, 1, 1)
        tensor = (t - mean) / std
    elif pre.kind == "xray":
        # torchxrayvision: centre square crop on the long side, resize, scale to [-1024, 1024].
        side = min(h0, w0)
        top, left = (h0 - side) // 2, (w0 - side) // 2
        t = t[..., top : top + side, left : left + side]
        t = _resize(t, (out_h, out_w), "bilinear").clamp(0, 1)
        box = (float(left), float(top), float(left + side), float(top + side))
        view = t
        tensor = (2.0 * t - 1.0) * 1024.0
    else:
        raise ImageError(f"Unknown preprocessing kind {pre.kind!r}.")
    view_np = (view[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    if view_np.shape[2] == 1:
        view_np = np.repeat(view_np, 3, axis=2)
    return PreparedInput(tensor.contiguous().float(), view_np, box, (w0, h0))

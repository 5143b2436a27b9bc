"""Shared helpers of the metrics: argument checks, pixel ranking, the blur, batched scoring.

Everything here is pure: new tensors out, arguments untouched. The model enters only as
``predict(batch [B, C, H, W]) -> probabilities [B, N]``; it is called under
``torch.inference_mode`` in chunks of at most ``batch_size`` images.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xai_core.errors import MethodError, XaiCoreError

Predict = Callable[[torch.Tensor], torch.Tensor]
"""``predict(batch [B, C, H, W]) -> class probabilities [B, N]`` (softmax or sigmoid applied)."""

# A probability returned by ``predict`` may exceed [0, 1] by this much (float round-off).
_PROB_TOLERANCE = 1e-4


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; bools and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise XaiCoreError(f"{name} must be an integer >= {minimum}; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise XaiCoreError(f"{name} must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_fraction(name: str, value: object, *, allow_zero: bool = False, allow_one: bool = True) -> float:
    """``value`` as a float in (0, 1] (bounds per the flags)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise XaiCoreError(f"{name} must be a number in [0, 1]; got {value!r}.")
    v = float(value)
    low_ok = v >= 0.0 if allow_zero else v > 0.0
    high_ok = v <= 1.0 if allow_one else v < 1.0
    if not (low_ok and high_ok):
        interval = ("[" if allow_zero else "(") + "0, 1" + ("]" if allow_one else ")")
        raise XaiCoreError(f"{name} must lie in {interval}; got {v}.")
    return v


def check_image(name: str, x: object) -> torch.Tensor:
    """Check one normalised model input ``[1, C, H, W]`` (floating point)."""
    if not isinstance(x, torch.Tensor):
        raise XaiCoreError(f"{name} must be a torch.Tensor of shape [1, C, H, W]; got {type(x).__name__}.")
    if x.ndim != 4 or x.shape[0] != 1:
        raise XaiCoreError(
            f"{name} must have shape [1, C, H, W] (one normalised image); got {list(x.shape)}. "
            "Pass several images to average_drop_increase as a list or a [B, C, H, W] tensor."
        )
    if not x.is_floating_point():
        raise XaiCoreError(f"{name} must be a floating-point tensor (the normalised input); got dtype {x.dtype}.")
    if x.shape[2] < 1 or x.shape[3] < 1 or x.shape[1] < 1:
        raise XaiCoreError(f"{name} has an empty dimension: shape {list(x.shape)}.")
    return x


def check_saliency(name: str, saliency: object, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Check a map at input resolution and return it as float64 ``[H, W]`` on ``device``.

    Accepts a tensor or numpy array of shape ``[H, W]``, or with leading size-1 dims
    (``[1, H, W]``, ``[1, 1, H, W]``). The argument itself is never modified.
    """
    if isinstance(saliency, np.ndarray):
        saliency = torch.from_numpy(np.array(saliency, dtype=np.float64, copy=True))
    if not isinstance(saliency, torch.Tensor):
        raise XaiCoreError(
            f"{name} must be a torch.Tensor or numpy array of shape [H, W]; got {type(saliency).__name__}."
        )
    s = saliency.detach()
    while s.ndim > 2 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2 or tuple(s.shape) != (height, width):
        raise XaiCoreError(
            f"{name} must have shape [H, W] = [{height}, {width}] (the input's spatial size; "
            f"upsample the map to the input resolution first); got {list(saliency.shape)}."
        )
    if s.dtype == torch.bool or s.is_complex():
        raise XaiCoreError(f"{name} must hold real numbers; got dtype {s.dtype}.")
    s = s.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(s).all()):
        raise XaiCoreError(f"{name} contains NaN or infinite values; fix the map before evaluating it.")
    return s


def check_class_idx(name: str, class_idx: object) -> int:
    """``class_idx`` as a non-negative int (the upper bound is checked against ``predict``'s output)."""
    return check_int(name, class_idx, 0)


def check_blur(kernel_size: object, sigma: object) -> tuple[int, float]:
    """Validate the Gaussian blur's parameters."""
    k = check_int("kernel_size", kernel_size, 1)
    if k % 2 == 0:
        raise XaiCoreError(f"kernel_size must be odd (the kernel is centred on each pixel); got {k}.")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (float(sigma) > 0.0):
        raise XaiCoreError(f"sigma must be a positive number; got {sigma!r}.")
    if not math.isfinite(float(sigma)):
        raise XaiCoreError(f"sigma must be finite; got {sigma!r}.")
    return k, float(sigma)


def gaussian_blur(x: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of a (normalised) image batch, channel by channel.

    ``torchvision.transforms.v2.functional.gaussian_blur``: the kernel is
    ``exp(-t**2 / (2 * sigma**2))`` for ``t = -(k-1)/2 .. (k-1)/2``, normalised to sum 1,
    with reflect padding at the borders. An image too small for reflect padding
    (``min(H, W) <= kernel_size // 2``) is first padded by replicating its edge pixels
    and cropped back after the blur. Defaults are the papers' (FG-CAM; Petsiuk et al.):
    kernel 11, sigma 5, applied to the normalised input.

    Args:
        x: images ``[B, C, H, W]``, floating point (any ``C``).
        kernel_size: odd kernel width in pixels.
        sigma: standard deviation of the Gaussian in pixels.

    Returns:
        A new tensor ``[B, C, H, W]``, same dtype and device as ``x``.

    Raises:
        XaiCoreError: ``x`` is not a floating ``[B, C, H, W]`` tensor or the parameters are invalid.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise XaiCoreError(f"x must be a tensor of shape [B, C, H, W]; got {shape}.")
    if not x.is_floating_point():
        raise XaiCoreError(f"x must be a floating-point tensor; got dtype {x.dtype}.")
    # Imported here, not at the top: torchvision costs a second of start-up for every
    # `import xai_core` (the model listing must stay light), and only the metrics blur.
    from torchvision.transforms.v2.functional import gaussian_blur as tv_gaussian_blur

    k, s = check_blur(kernel_size, sigma)
    _, _, h, w = x.shape
    half = k // 2
    image = x.detach()
    if min(h, w) > half:
        return tv_gaussian_blur(image, [k, k], [s, s]).clone()
    padded = F.pad(image, (half, half, half, half), mode="replicate")
    return tv_gaussian_blur(padded, [k, k], [s, s])[:, :, half : half + h, half : half + w].contiguous()


def rank_of_pixels(saliency: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel, 0 = most important, ties broken in row-major order.

    Args:
        saliency: map ``[H, W]`` (any scale, signed allowed: pixels are ranked by value).

    Returns:
        int64 ``[H * W]``: ``rank[p]`` is the position of flat pixel ``p`` in the order
        most to least important. A stable sort makes equal values keep their
        row-major order, so the result is deterministic.
    """
    flat = saliency.reshape(-1)
    order = torch.argsort(-flat, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def count_for_fraction(fraction: float, n_pixels: int) -> int:
    """Number of pixels in ``fraction`` of ``n_pixels``, rounded half up."""
    return min(n_pixels, int(math.floor(fraction * n_pixels + 0.5)))


def top_mask(saliency: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean ``[1, 1, H, W]`` mask of the ``count`` most important pixels (stable ties)."""
    h, w = saliency.shape
    return (rank_of_pixels(saliency) < count).view(1, 1, h, w)


def class_probabilities(
    predict: Predict, images: Sequence[torch.Tensor] | torch.Tensor, class_idxs: Sequence[int], batch_size: int
) -> torch.Tensor:
    """``predict`` on many images, the given class of each, in chunks of ``batch_size``.

    Consecutive images of the same shape share a batch. ``predict`` runs under
    ``torch.inference_mode``; its output is checked (``[B, N]``, probabilities,
    ``class_idx < N``).

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, N]``.
        images: ``[M, C, H, W]`` tensor, or a sequence of ``[1, C, H, W]`` / ``[C, H, W]`` tensors.
        class_idxs: one class index per image (length ``M``).
        batch_size: largest batch passed to ``predict``.

    Returns:
        float64 ``[M]`` on the CPU: the probability of each image's class.

    Raises:
        MethodError: ``predict`` is not callable or returns something other than ``[B, N]`` probabilities.
        XaiCoreError: a class index is out of range.
    """
    if not callable(predict):
        raise XaiCoreError(f"predict must be a callable batch -> probabilities; got {type(predict).__name__}.")
    stacked = isinstance(images, torch.Tensor)
    items = images if stacked else [im[0] if im.ndim == 4 else im for im in images]
    if len(items) != len(class_idxs):
        raise XaiCoreError(f"Got {len(items)} images but {len(class_idxs)} class indices.")
    out = torch.empty(len(items), dtype=torch.float64)
    start = 0
    with torch.inference_mode():
        while start < len(items):
            stop = start + 1
            while (
                stop < len(items) and stop - start < batch_size and (stacked or items[stop].shape == items[start].shape)
            ):
                stop += 1
            batch = items[start:stop] if stacked else torch.stack(items[start:stop])
            probs = predict(batch)
            _check_predict_output(probs, stop - start, class_idxs[start:stop])
            idx = torch.as_tensor(class_idxs[start:stop], dtype=torch.long, device=probs.device)
            picked = probs.gather(1, idx.view(-1, 1)).view(-1)
            out[start:stop] = picked.detach().to(device="cpu", dtype=torch.float64)
            start = stop
    return out


def _check_predict_output(probs: object, batch: int, class_idxs: Sequence[int]) -> None:
    if not isinstance(probs, torch.Tensor):
        raise MethodError(f"predict must return a torch.Tensor [B, N] of probabilities; got {type(probs).__name__}.")
    if probs.ndim != 2 or probs.shape[0] != batch:
        raise MethodError(
            f"predict must return probabilities of shape [B, N] = [{batch}, N] for a batch of {batch}; "
            f"got {list(probs.shape)}."
        )
    n = probs.shape[1]
    bad = [c for c in class_idxs if c >= n]
    if bad:
        raise XaiCoreError(f"class_idx {bad[0]} is out of range: predict returns {n} classes (valid 0..{n - 1}).")
    if probs.numel() and not probs.is_floating_point():
        raise MethodError(f"predict must return floating-point probabilities; got dtype {probs.dtype}.")
    if probs.numel():
        lo, hi = float(probs.min()), float(probs.max())
        if not (lo >= -_PROB_TOLERANCE and hi <= 1.0 + _PROB_TOLERANCE):
            raise MethodError(
                f"predict must return probabilities in [0, 1] (apply softmax or sigmoid to the logits); "
                f"got values in [{lo:.4g}, {hi:.4g}]."
            )


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``fractions`` (both ``[K]``, fractions increasing)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    return float(np.sum(np.diff(fractions) * (values[1:] + values[:-1]) / 2.0))

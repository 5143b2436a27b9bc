"""ROAD: RemOve And Debias (Rong et al., ICML 2022), with noisy linear imputation.

A faithfulness metric: remove a fraction of the pixels in the map's order, fill them by
*noisy linear imputation*, and read the class probability the model gives the result.
Most-relevant-first (MoRF) should make the probability fall fast, least-relevant-first
(LeRF) should keep it; the imputation (each removed pixel the weighted mean of its 8
neighbours, 1/6 for edge and 1/12 for corner neighbours, solved jointly, plus Gaussian
noise) leaks far less of the removed shape to the model than a constant or a blur.

Implementation notes (differences from pytorch-grad-cam 1.5.7, each shown by a test in
``tests/test_road.py``):

* exactly ``round(q H W)`` pixels are removed, ranked by the map with ties broken in
  row-major order (:func:`~xai_core.metrics._common.rank_of_pixels`).
  pytorch-grad-cam thresholds at a percentile with a strict ``<``: on a ReLU'd map whose
  zeros fill more than the kept share, the threshold is 0 and *every* pixel is removed;
* the linear system is solved by batched conjugate gradients on the tensors' device (all
  images and colour channels of one removed fraction at once, the fractions in turn), not
  by SciPy on the CPU; same solution. Each fraction's solve stops when it converges, so
  one fraction at a time is also faster than all at once (9 fractions x 2 orders of one
  224 x 224 Grad-CAM map, one CPU thread: 40 s against 166 s, the same scores);
* the noise comes from a generator seeded per image (reproducible, also in a batch);
  pytorch-grad-cam's ``NoisyLinearImputer`` ignores its ``weighting`` argument.

The model enters as ``predict(batch [B, C, H, W]) -> probabilities [B, n]``. Long runs
report ``progress(done, total)`` (perturbed images scored so far) after each removed
fraction, and with the same numbers before every solver iteration; an exception raised
by the callback (a Stop button's signal) ends the run there. Bad arguments raise
:class:`~xai_core.errors.MethodError`, a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xai_core.errors import MethodError, XaiCoreError
from xai_core.metrics._common import Predict, check_fraction, check_int, count_for_fraction, rank_of_pixels

Progress = Callable[[int, int], None]
"""``progress(done, total)``: perturbed images scored so far, of all; may raise to stop the run."""

ORDERS = ("morf", "lerf")
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_NOISE = 0.01
"""Standard deviation of the imputation noise, in input units (the ROAD authors' and pytorch-grad-cam's)."""
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
"""The ROAD authors' imputation weights: 1/6 for the 4 edge neighbours, 1/12 for the corners."""


def noisy_linear_impute(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = DEFAULT_NOISE,
    seed: int | Sequence[int] = 0,
    tol: float = 1e-6,
    max_iter: int | None = None,
    on_iteration: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Fill the removed pixels of each image by noisy linear imputation.

    Each removed pixel ``i`` satisfies ``sum_j w_ij (x_i - x_j) = 0`` over its neighbours
    ``j`` inside the image (weights :data:`NEIGHBOUR_WEIGHTS`); kept pixels are fixed.
    The system is symmetric positive definite (as long as some pixel is kept) and is
    solved per image and channel by conjugate gradients, batched; then Gaussian noise of
    standard deviation ``noise`` is added to the filled pixels.

    Args:
        x: images ``[N, C, H, W]``.
        removed: boolean ``[N, H, W]``, True where a pixel is removed.
        noise: standard deviation of the added noise (0: none).
        seed: seed of each image's noise generator (one seed for all, or one per image).
        tol: relative residual at which the solver stops.
        max_iter: solver iterations at most (default ``4 (H + W) + 100``).
        on_iteration: called with no argument before each solver iteration; whatever it
            raises ends the solve (how a caller stops a long imputation).

    Returns:
        New ``[N, C, H, W]`` tensor; ``x`` is unchanged.

    Raises:
        MethodError: bad shapes, or an image with every pixel removed.
    """
    if x.dim() != 4 or removed.shape != (x.shape[0], *x.shape[2:]):
        raise MethodError(
            f"x must be [N, C, H, W] and removed [N, H, W]; got {tuple(x.shape)}, {tuple(removed.shape)}."
        )
    n, c, h, w = x.shape
    u = removed.to(device=x.device, dtype=torch.bool)
    if bool(u.reshape(n, -1).all(dim=1).any()):
        raise MethodError("Every pixel of an image is removed: nothing is left to impute from.")
    dtype = torch.float32 if x.device.type == "mps" else torch.float64  # float32 CG stalls above 1e-6
    kernel = torch.tensor(NEIGHBOUR_WEIGHTS, dtype=dtype, device=x.device)[None, None]
    um = u[:, None].expand(n, c, h, w).reshape(n * c, 1, h, w).to(dtype)
    v = x.reshape(n * c, 1, h, w).to(dtype)
    degree = F.conv2d(torch.ones(1, 1, h, w, dtype=dtype, device=x.device), kernel, padding=1)

    def apply(p: torch.Tensor) -> torch.Tensor:
        return um * (degree * p - F.conv2d(um * p, kernel, padding=1))

    b = um * F.conv2d((1 - um) * v, kernel, padding=1)
    sol = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dim=(1, 2, 3), keepdim=True)
    stop = (tol * b.flatten(1).norm(dim=1)).pow(2).reshape(-1, 1, 1, 1)
    for _ in range(int(max_iter) if max_iter else 4 * (h + w) + 100):
        if bool((rs <= stop).all()):
            break
        if on_iteration is not None:
            on_iteration()
        ap = apply(p)
        alpha = rs / (p * ap).sum(dim=(1, 2, 3), keepdim=True).clamp(min=1e-300)
        alpha = torch.where(rs <= stop, torch.zeros_like(alpha), alpha)
        sol = sol + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dim=(1, 2, 3), keepdim=True)
        p = r + (rs_new / rs.clamp(min=1e-300)) * p
        rs = rs_new
    filled = sol.reshape(n, c, h, w).to(x.dtype)
    if noise:
        seeds = [int(seed)] * n if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
        draws = [torch.randn((c, h, w), generator=torch.Generator().manual_seed(s)) for s in seeds]
        filled = filled + noise * torch.stack(draws).to(device=x.device, dtype=x.dtype)
    mask = u[:, None]
    return torch.where(mask, filled, x)


@dataclass(frozen=True)
class RoadResult:
    """ROAD scores of N images.

    Attributes:
        order: ``"morf"`` or ``"lerf"``.
        fractions: ``[F]`` shares of pixels removed.
        scores: ``[N, F]`` class probability after removing each share.
        base: ``[N]`` class probability of the unperturbed image.
    """

    order: str
    fractions: np.ndarray
    scores: np.ndarray
    base: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``[N]`` the mean score over the fractions (MoRF: lower is better; LeRF: higher)."""
        return self.scores.mean(axis=1)


def _as_method_error(check, *args, **kwargs):
    """A shared argument check whose bad-value error is re-raised as :class:`MethodError` (a ValueError)."""
    try:
        return check(*args, **kwargs)
    except MethodError:
        raise
    except XaiCoreError as err:
        raise MethodError(str(err)) from None


def even_fractions(points: int) -> tuple[float, ...]:
    """``points`` evenly spaced shares of pixels to remove, ``i / (points + 1)``: 9 gives :data:`DEFAULT_FRACTIONS`.

    Raises:
        MethodError: ``points`` is not an integer >= 1.
    """
    points = _as_method_error(check_int, "points", points, 1)
    return tuple(i / (points + 1) for i in range(1, points + 1))


def removal_masks(saliency: torch.Tensor, fractions: Sequence[float], order: str) -> torch.Tensor:
    """Boolean ``[N, F, H, W]``: the ``round(q H W)`` most (MoRF) or least (LeRF) relevant pixels of each map."""
    n, h, w = saliency.shape
    masks = []
    for s in saliency:
        rank = rank_of_pixels(s if order == "morf" else -s).view(h, w)
        masks.append(torch.stack([rank < count_for_fraction(q, h * w) for q in fractions]))
    return torch.stack(masks)


def road_scores(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: Sequence[int] | torch.Tensor,
    *,
    orders: Sequence[str] = ORDERS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = DEFAULT_NOISE,
    seed: int = 0,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> dict[str, RoadResult]:
    """ROAD scores (remove and debias) of N images' maps in several orders (default MoRF and LeRF).

    For each order and each fraction ``q`` (in turn), every image's ``round(q H W)``
    pixels are removed, imputed (:func:`noisy_linear_impute`, all images at once) and
    scored. The unperturbed images are scored once for all orders.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, n]``.
        x: prepared inputs ``[N, C, H, W]`` (or ``[C, H, W]`` for one image).
        saliency: maps ``[N, h, w]`` (or ``[h, w]``); resized (bilinear) to ``H x W`` if needed.
        class_idx: the class of each image ``[N]``.
        orders: some of :data:`ORDERS`, each once.
        fractions: shares of pixels removed, each in (0, 1).
        noise: standard deviation of the imputation noise (in input units).
        seed: seed of image n's noise is ``seed + n``.
        batch_size: perturbed images per model call.
        progress: ``progress(done, total)`` with the perturbed images scored so far out of
            ``len(orders) * N * len(fractions)``: after each fraction, and with the same
            numbers before every solver iteration. Whatever it raises ends the run
            (nothing is returned; the arguments are untouched).

    Returns:
        ``{order: RoadResult}`` in the order of ``orders``.

    Raises:
        MethodError: a bad argument (the message names it).
    """
    orders = tuple(orders)
    if not orders or len(set(orders)) != len(orders) or not set(orders) <= set(ORDERS):
        raise MethodError(f"orders must be distinct names among {', '.join(ORDERS)}; got {orders!r}.")
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or not x.is_floating_point():
        raise MethodError("x must be a floating-point tensor [N, C, H, W].")
    x = (x[None] if x.dim() == 3 else x).detach()
    n, _, h, w = x.shape
    s = torch.as_tensor(np.asarray(saliency) if isinstance(saliency, np.ndarray) else saliency).detach()
    s = s[None] if s.dim() == 2 else s
    if s.dim() != 3 or s.shape[0] != n:
        raise MethodError(f"saliency must be [N, h, w] with N = {n}; got {tuple(s.shape)}.")
    s = s.to(device=x.device, dtype=torch.float32)
    if tuple(s.shape[-2:]) != (h, w):
        s = F.interpolate(s[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    fr = [_as_method_error(check_fraction, "fraction", q, allow_one=False) for q in fractions]
    if not fr:
        raise MethodError("fractions must hold at least one share of pixels to remove, in (0, 1).")
    batch_size = _as_method_error(check_int, "batch_size", batch_size, 1)
    classes = torch.as_tensor(class_idx, device=x.device).long().reshape(-1)
    if classes.numel() != n:
        raise MethodError(f"class_idx must give one class per image ({n}); got {classes.numel()}.")
    f = len(fr)
    total = len(orders) * n * f
    done = 0

    def tick() -> None:
        if progress is not None:
            progress(done, total)

    tick()
    with torch.inference_mode():
        base = predict(x).float().gather(1, classes[:, None])[:, 0]
    seeds = [seed + i for i in range(n)]
    out: dict[str, RoadResult] = {}
    for order in orders:
        masks = removal_masks(s, fr, order)  # [N, F, H, W]
        scores = torch.empty(n, f, dtype=torch.float32, device=x.device)
        for j in range(f):
            imputed = noisy_linear_impute(x, masks[:, j], noise=noise, seed=seeds, on_iteration=tick)
            with torch.inference_mode():
                for start in range(0, n, batch_size):
                    rows = slice(start, start + batch_size)
                    scores[rows, j] = predict(imputed[rows]).float().gather(1, classes[rows, None])[:, 0]
            done += n
            tick()
        out[order] = RoadResult(order, np.asarray(fr), scores.cpu().numpy(), base.cpu().numpy())
    return out


def road(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: Sequence[int] | torch.Tensor,
    *,
    order: str = "morf",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = DEFAULT_NOISE,
    seed: int = 0,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> RoadResult:
    """ROAD scores (remove and debias) of N images' maps, MoRF or LeRF.

    Args:
        predict: ``batch [B, C, H, W] -> probabilities [B, n]``.
        x: prepared inputs ``[N, C, H, W]`` (or ``[C, H, W]`` for one image).
        saliency: maps ``[N, h, w]`` (or ``[h, w]``); resized (bilinear) to ``H x W`` if needed.
        class_idx: the class of each image ``[N]``.
        order: ``"morf"`` (most relevant first) or ``"lerf"``.
        fractions: shares of pixels removed, each in (0, 1).
        noise: standard deviation of the imputation noise (in input units).
        seed: seed of image n's noise is ``seed + n``.
        batch_size: perturbed images per model call.
        progress: ``progress(done, total)``, perturbed images scored of ``N * len(fractions)``
            (see :func:`road_scores`); whatever it raises ends the run.

    Returns:
        A :class:`RoadResult`.

    Raises:
        MethodError: a bad argument (the message names it).
    """
    if order not in ORDERS:
        raise MethodError(f"order must be one of {', '.join(ORDERS)}; got {order!r}.")
    return road_scores(
        predict,
        x,
        saliency,
        class_idx,
        orders=(order,),
        fractions=fractions,
        noise=noise,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )[order]


def road_combined(
    predict: Predict,
    x: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    class_idx: Sequence[int] | torch.Tensor,
    **kwargs: object,
) -> np.ndarray:
    """``[N]``: mean over fractions of ``(LeRF - MoRF) / 2`` (pytorch-grad-cam's ``ROADCombined``): higher is better."""
    both = road_scores(predict, x, saliency, class_idx, orders=("morf", "lerf"), **kwargs)
    return ((both["lerf"].scores - both["morf"].scores) / 2).mean(axis=1)

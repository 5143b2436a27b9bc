"""Randomisation checks: does the map change when what it claims to explain is destroyed?

* **Model-parameter randomisation** (Adebayo et al., *Sanity Checks for Saliency Maps*,
  NeurIPS 2018): the layers' parameters are re-initialised one after another from the
  output down (``order="cascading"``: each step keeps the previous steps' random layers)
  or one at a time (``order="independent"``: only that layer random), and the map of each
  randomised model is compared with the map of the trained one. A map that explains the
  model must change; one that stays similar reflects the image (edges), not the model.
* **Random logit** (Sixt et al., *When Explanations Lie*, ICML 2020): the map of the
  explained class is compared with the map of a randomly chosen other class. A
  class-sensitive method gives different maps.

Everything follows Quantus 0.6.0 (``quantus.MPRT`` and ``quantus.RandomLogit``), the
oracle the tests compare against: the randomised layers are the modules with a
``reset_parameters`` method (convolutions, linear layers, batch norms, ...) in
``named_modules`` order, reversed for the cascade; before each layer is re-initialised
the global torch generator is seeded with ``seed + 1`` (inside :func:`torch.random.fork_rng`
here, so the caller's random state is left as found); the other class of the random-logit
test of image ``i`` is entry ``np.random.RandomState(seed).randint(0, n - 1, N)[i]`` of the
classes without the true one.
The model is randomised on a deep copy: the model passed in is never changed.

Maps are compared at input resolution: each method's map of the explained class,
signed, upsampled bilinearly where it lives at a layer (:func:`attributions`).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.api import explain
from xai_core.errors import MethodError, UnknownNameError
from xai_core.methods.registry import get_explainer
from xai_core.models.preprocess import prepare
from xai_core.models.registry import LoadedModel, load_model
from xai_core.trust.similarity import SIMILARITIES

ORDERS = ("cascading", "independent")
DEFAULT_SIMILARITIES = ("spearman", "spearman_abs", "ssim", "hog")

Progress = Callable[[int, int], None]
Stop = Callable[[], bool] | threading.Event


@dataclass
class SanityResult:
    """The outcome of a randomisation check.

    Attributes:
        method: the registry key of the method checked.
        test: ``"cascading"``, ``"independent"`` or ``"random_logit"``.
        steps: what was randomised at each step: layer names in the order used (for
            the random-logit test the single step ``"random_logit"``).
        scores: similarity name -> ``[len(steps), N]`` similarity of each step's map with
            the original map, per image (``nan`` rows for steps not run after a stop).
        class_idx: ``[N]`` the explained classes (the original model's prediction unless given).
        other_class: ``[N]`` the random-logit test's other class (``None`` otherwise).
        maps: ``[1 + len(steps), N, H, W]`` float32 maps, the original first, when
            ``keep_maps`` was asked for (``None`` otherwise).
        stopped: the stop flag ended the check early; ``completed`` steps were run.
        completed: how many steps were run.
    """

    method: str
    test: str
    steps: list[str]
    scores: dict[str, np.ndarray]
    class_idx: np.ndarray
    other_class: np.ndarray | None = None
    maps: np.ndarray | None = None
    stopped: bool = False
    completed: int = 0
    params: dict = field(default_factory=dict)

    def mean(self, name: str = "spearman_abs") -> np.ndarray:
        """``[len(steps)]`` the mean over images of similarity ``name`` per step."""
        return np.nanmean(self.scores[name], axis=1) if self.completed else np.full(len(self.steps), np.nan)


# ----------------------------------------------------------------------------- helpers


def randomisable_layers(module: nn.Module) -> list[str]:
    """Names of the modules a randomisation check re-initialises, in ``named_modules`` order.

    As Quantus: every module with a ``reset_parameters`` method (the root module too, if
    it has one; its name is then ``""``).
    """
    return [name for name, m in module.named_modules() if hasattr(m, "reset_parameters")]


def with_module(model: LoadedModel, module: nn.Module) -> LoadedModel:
    """``model`` (its spec: preprocessing, labels, default layer) around another ``module``."""
    return dataclasses.replace(model, module=module, weights_source=f"{model.weights_source} (randomised copy)")


def _batch(model: LoadedModel, images: object) -> torch.Tensor:
    """Prepared ``[N, C, H, W]`` inputs from one image, a list of images or a prepared tensor."""
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images[None]
        return images.detach().float()
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise MethodError("No images to check: the list is empty.")
    return torch.cat([prepare(im, model.spec.preprocessing).tensor for im in images])


def attributions(
    model: LoadedModel,
    x: torch.Tensor,
    method: str,
    class_idx: Sequence[int],
    *,
    layer: str | None = None,
    max_batch: int | None = None,
    **params: object,
) -> np.ndarray:
    """The maps a randomisation check compares: ``[N, H, W]`` float32 at input resolution.

    Each image's map of its class ``class_idx[i]`` by ``method``, signed as the method
    gives it; maps at a layer's resolution are upsampled bilinearly (``align_corners=False``)
    to the input's ``H x W``.
    """
    exps = explain(
        model,
        x,
        method=method,
        layer=layer,
        class_idx=[[int(c)] for c in class_idx],
        max_batch=max_batch,
        **params,
    )
    maps = torch.stack([e.cams[0] for e in exps]).float()
    size = tuple(x.shape[-2:])
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps.numpy().astype(np.float32)


def _stopped(stop: Stop | None) -> bool:
    if stop is None:
        return False
    return stop.is_set() if isinstance(stop, threading.Event) else bool(stop())


def _reset(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` as Quantus does (global generator seeded with ``seed + 1``), state restored."""
    device = next(iter(module.parameters(recurse=False)), None)
    devices = [device.device.index or 0] if device is not None and device.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1)
        module.reset_parameters()


def _choose_steps(order: list[str], layers: Sequence[str] | int | None) -> list[str]:
    if layers is None:
        return list(order)
    if isinstance(layers, int):
        if layers < 1:
            raise MethodError(f"layers must be at least 1; got {layers}.")
        idx = np.unique(np.round(np.linspace(0, len(order) - 1, min(layers, len(order)))).astype(int))
        return [order[i] for i in idx]
    unknown = [name for name in layers if name not in order]
    if unknown:
        raise UnknownNameError("randomisable layer", unknown[0], order)
    chosen = set(layers)
    return [name for name in order if name in chosen]


def _scores(names: Sequence[str], original: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    return {name: SIMILARITIES[name](original, other) for name in names}


def _check_similarities(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if name not in SIMILARITIES:
            raise UnknownNameError("similarity", name, list(SIMILARITIES))
    return tuple(names)


def _setup(
    model: LoadedModel | str, images: object, method: str, class_idx: Sequence[int] | None, layer, max_batch, params
):
    if isinstance(model, str):
        model = load_model(model)
    get_explainer(method)  # unknown method: fail before any work
    x = _batch(model, images)
    if class_idx is None:
        with torch.no_grad():
            class_idx = model.predict(x).argmax(dim=1).cpu().numpy()
    class_idx = np.asarray(class_idx, dtype=np.int64).reshape(-1)
    if len(class_idx) != len(x):
        raise MethodError(f"class_idx needs one class per image ({len(x)}); got {len(class_idx)}.")

    def maps_of(m: LoadedModel, classes: np.ndarray) -> np.ndarray:
        return attributions(m, x, method, classes, layer=layer, max_batch=max_batch, **params)

    return model, x, class_idx, maps_of


def display_maps(result: SanityResult) -> np.ndarray:
    """``[1 + completed, N, H, W]`` maps for the paper's figure: absolute values, each map scaled to [0, 1].

    As Adebayo et al.'s figures: the absolute value of each map (the quantity the
    ``spearman_abs`` curve ranks), divided by its own maximum so that every map uses the
    whole colour scale (an all-zero map stays zero). Steps not run after a stop are left out.
    """
    if result.maps is None:
        raise MethodError("The check kept no maps: run it with keep_maps=True.")
    maps = np.abs(result.maps[: 1 + result.completed]).astype(np.float32)
    top = maps.max(axis=(-2, -1), keepdims=True)
    return np.divide(maps, top, out=np.zeros_like(maps), where=top > 0)


def step_label(name: str) -> str:
    """A short name for a randomisation step: the layer's parent block (``_blocks.12._bn1`` -> ``_blocks.12``).

    Names with at most two parts are kept (``_fc``, ``features.3``, ``head.fc``).
    """
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else (name or "(model)")


# ----------------------------------------------------------------------------- the checks


def model_randomisation(
    model: LoadedModel | str,
    images: object,
    method: str = "grad_cam",
    *,
    order: str = "cascading",
    layers: Sequence[str] | int | None = None,
    seed: int = 42,
    similarities: Sequence[str] = DEFAULT_SIMILARITIES,
    class_idx: Sequence[int] | None = None,
    layer: str | None = None,
    max_batch: int | None = None,
    keep_maps: bool = False,
    progress: Progress | None = None,
    stop: Stop | None = None,
    **params: object,
) -> SanityResult:
    """Model-parameter randomisation test of ``method`` on ``images`` (Adebayo et al. 2018).

    Args:
        model: a :class:`LoadedModel` or a registry key; it is never changed (a deep copy
            on the same device is randomised).
        images: one image, a list of images, or a prepared ``[N, C, H, W]`` tensor.
        method: a registered method key.
        order: ``"cascading"`` (from the output layer down, randomised layers kept) or
            ``"independent"`` (one layer at a time, the others trained).
        layers: after which layers maps are compared: ``None`` = every randomisable layer
            (as Quantus), an int = that many evenly spaced along the order (first and
            last included), or a list of names. The cascade still re-initialises every
            layer in order, so its numbers at a chosen layer equal the full run's there.
        seed: Quantus's ``seed`` (each layer re-initialised after ``manual_seed(seed + 1)``).
        similarities: keys of :data:`~xai_core.trust.similarity.SIMILARITIES`.
        class_idx: the class explained per image (default: the trained model's prediction,
            kept for every randomised model).
        layer: the method's layer (default the model's).
        max_batch: images per pass (default from the memory budget).
        keep_maps: keep every step's maps in the result (for the paper's figure).
        progress: ``progress(done, total)`` after the original maps and after each step.
        stop: a :class:`threading.Event` or a callable; when set, the check ends after the
            current step and returns what it has (``stopped=True``).
        **params: the method's parameters.

    Returns:
        A :class:`SanityResult` (``test`` = ``order``).
    """
    if order not in ORDERS:
        raise MethodError(f"order must be one of {', '.join(ORDERS)}; got {order!r}.")
    names = _check_similarities(similarities)
    model, x, class_idx, maps_of = _setup(model, images, method, class_idx, layer, max_batch, params)
    all_layers = randomisable_layers(model.module)
    if not all_layers:
        raise MethodError("The model has no layer with parameters to randomise.")
    walk = all_layers[::-1] if order == "cascading" else all_layers
    steps = _choose_steps(walk, layers)
    total = len(steps) + 1
    scores = {n: np.full((len(steps), len(x)), np.nan) for n in names}
    result = SanityResult(method, order, steps, scores, class_idx, params=dict(params))
    original = maps_of(model, class_idx)
    kept = [original] if keep_maps else None
    if progress:
        progress(1, total)
    copy_module = copy.deepcopy(model.module)
    rand = with_module(model, copy_module)
    modules = dict(copy_module.named_modules())
    wanted = set(steps)
    done = 0
    for name in walk:
        if done == len(steps):
            break
        if name in wanted and _stopped(stop):
            result.stopped = True
            break
        target = modules[name]
        if order == "independent":
            if name not in wanted:
                continue
            saved = {k: v.clone() for k, v in target.state_dict().items()}
        _reset(target, seed)
        if name in wanted:
            maps = maps_of(rand, class_idx)
            for n, values in _scores(names, original, maps).items():
                scores[n][done] = values
            if kept is not None:
                kept.append(maps)
            done += 1
            result.completed = done
            if progress:
                progress(done + 1, total)
        if order == "independent":
            target.load_state_dict(saved)
    if kept is not None:
        result.maps = np.stack(kept)
    return result


def random_logit(
    model: LoadedModel | str,
    images: object,
    method: str = "grad_cam",
    *,
    seed: int = 42,
    num_classes: int | None = None,
    similarities: Sequence[str] = DEFAULT_SIMILARITIES,
    class_idx: Sequence[int] | None = None,
    layer: str | None = None,
    max_batch: int | None = None,
    keep_maps: bool = False,
    progress: Progress | None = None,
    stop: Stop | None = None,
    **params: object,
) -> SanityResult:
    """Random-logit test (Sixt et al. 2020): the map of the class against one of another class.

    The other class of image ``i`` is drawn as Quantus's ``RandomLogit`` does for a batch:
    ``np.random.RandomState(seed).randint(0, num_classes - 1, N)[i]``-th of the classes
    without ``class_idx[i]`` (Quantus re-seeds for every batch of its ``batch_size``; with
    all images in one batch the classes are the same). Arguments as in
    :func:`model_randomisation`; ``num_classes`` defaults to the model's outputs.
    """
    names = _check_similarities(similarities)
    model, x, class_idx, maps_of = _setup(model, images, method, class_idx, layer, max_batch, params)
    n_cls = int(num_classes or len(model.labels))
    picks = np.random.RandomState(seed).randint(0, n_cls - 1, len(x))
    other = np.array([[c for c in range(n_cls) if c != t][p] for t, p in zip(class_idx, picks)], dtype=np.int64)
    scores = {n: np.full((1, len(x)), np.nan) for n in names}
    result = SanityResult(method, "random_logit", ["random_logit"], scores, class_idx, other, params=dict(params))
    original = maps_of(model, class_idx)
    if progress:
        progress(1, 2)
    if _stopped(stop):
        result.stopped = True
        if keep_maps:
            result.maps = original[None]
        return result
    maps = maps_of(model, other)
    for n, values in _scores(names, original, maps).items():
        scores[n][0] = values
    result.completed = 1
    if keep_maps:
        result.maps = np.stack([original, maps])
    if progress:
        progress(2, 2)
    return result

"""Methods for the evaluation: parsed from the explainer registry, turned into maps for a batch.

This module is the only place where the evaluation meets the explainers. A method on the
command line is a registry key with optional parameters, ``KEY[:NAME=VALUE[:NAME=VALUE]]``
(``grad_cam``, ``fm_g_cam:k=3``, ``fg_cam:base=score_cam``, ``lrp``). :func:`make_maps`
returns, for a batch of prepared images and one class per image, the maps the metrics
score, at input resolution:

- maps at a layer (CAM methods, FM-G-CAM, relevance at a hidden layer) are ReLU-ed and
  upsampled bilinearly (the FG-CAM paper's Table 1 to 3 setting; CAM methods are also
  min-max scaled, as :meth:`~xai_core.Explanation.saliency`);
- relevance maps at ``input`` (FG-CAM, LRP) stay signed (``signed=True``): pixels are
  ranked by signed value and Average Drop keeps only positive pixels.
- FM-G-CAM over K classes: the explained class first, then the K-1 most probable other
  classes; the map scored is the explained class's channel of the fused map (filtered,
  L2 "reference" normalisation, ReLU, joint scaling), i.e. what the fused picture shows
  for that class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.api import explain
from xai_core.errors import MethodError, UnknownNameError, XaiCoreError
from xai_core.explainers import FGCamCompute
from xai_core.hooks.capture import capture
from xai_core.methods.registry import Param, get_explainer, list_explainers
from xai_core.relevance import DEFAULT_RULES, WeightInputs, denoise_components, propagate_relevance
from xai_core.render.colour import resize_map

INPUT = "input"


class UsageError(XaiCoreError, ValueError):
    """A bad command-line argument (exit status 2)."""


# Parameters the evaluation sets itself: the layer comes from METHOD@LAYER, batch sizes
# from --forward-batch. Everything else a registry entry declares can be set on the command line.
SET_BY_THE_EVALUATION = ("target_layer", "batch_size")
# Fusions take the number of classes fused as K from the command line (``fm_g_cam:k=3``).
FUSION_K = Param("k", "Classes fused", 3, minimum=1, maximum=1000)


@dataclass(frozen=True)
class MethodInfo:
    """What the evaluation needs to know about one registered explainer.

    Attributes:
        key: registry key.
        label: display name.
        family: ``"cam"`` (a map at a layer), ``"fusion"`` (FM-G-CAM over K classes) or
            ``"relevance"`` (FG-CAM, LRP: signed relevance, possible at the input).
        params: the parameters settable on the command line (the registry's ``Param``).
        class_specific: False for maps that are the same for every class.
    """

    key: str
    label: str
    family: str
    params: tuple[Param, ...]
    class_specific: bool = True

    @property
    def relevance(self) -> bool:
        """FG-CAM and LRP: signed relevance maps, possible at the input."""
        return self.family == "relevance"

    def param(self, name: str) -> Param:
        """The parameter called ``name``."""
        return next(p for p in self.params if p.name == name)


def catalogue() -> dict[str, MethodInfo]:
    """Every method the evaluation can run: the explainer registry's entries."""
    out = {}
    for spec in list_explainers():
        if spec.family == "fusion":
            family = "fusion"
        elif spec.resolution == "input":
            family = "relevance"
        else:
            family = "cam"
        params = tuple(p for p in spec.params if p.name not in SET_BY_THE_EVALUATION)
        if family == "fusion":
            params += (FUSION_K,)
        out[spec.key] = MethodInfo(spec.key, spec.label, family, params, spec.class_specific)
    return out


@dataclass(frozen=True)
class Method:
    """One parsed ``--methods`` entry: a registry key and its parameters.

    Attributes:
        info: the registry entry.
        params: ``(name, value)`` of every parameter, defaults filled in, sorted by name.
    """

    info: MethodInfo
    params: tuple[tuple[str, object], ...]

    @property
    def key(self) -> str:
        """Canonical name written in the results: the key, then K and any non-default choice."""
        fusion_k = self.info.family == "fusion" and FUSION_K.name
        extra = [f"{n}={v}" for n, v in self.params if v != self.info.param(n).default or n == fusion_k]
        return ":".join([self.info.key, *extra])

    @property
    def k(self) -> int:
        """Classes the method needs ranked (a fusion's K; 1 otherwise)."""
        return int(self.param("k")) if self.info.family == "fusion" else 1

    def param(self, name: str) -> object:
        """A parameter's value."""
        return dict(self.params)[name]

    def has(self, name: str) -> bool:
        """Whether the method has a parameter ``name``."""
        return name in dict(self.params)

    def registry_params(self) -> dict[str, object]:
        """The parameters passed to the explainer (without the evaluation's own K)."""
        return {n: v for n, v in self.params if n != FUSION_K.name}


def _convert(param: Param, raw: str) -> object:
    kind = param.type
    if kind == "bool":
        return {"true": True, "1": True, "false": False, "0": False}.get(raw.lower(), raw)
    if kind == "choice" and param.choices and all(isinstance(c, int) for c in param.choices):
        return int(raw) if raw.lstrip("+-").isdigit() else raw
    return raw


def parse_method(text: str) -> Method:
    """Parse ``KEY[:NAME=VALUE...]`` against the explainer registry.

    Raises:
        UsageError: unknown key or parameter, or a value out of range.
    """
    known = catalogue()
    key, *parts = [p.strip() for p in text.strip().split(":")]
    if key not in known:
        raise UsageError("--methods: " + str(UnknownNameError("method", key, sorted(known))))
    info = known[key]
    values = {p.name: p.default for p in info.params}
    for part in parts:
        name, eq, raw = part.partition("=")
        if not eq or name not in values:
            names = ", ".join(f"{n}=..." for n in values) or "none"
            raise UsageError(f"--methods: {text!r}: {info.label} takes NAME=VALUE parameters ({names}); got {part!r}.")
        try:
            values[name] = info.param(name).check(_convert(info.param(name), raw), info.label)
        except MethodError as exc:
            raise UsageError(f"--methods: {text!r}: {exc}") from None
    return Method(info, tuple(sorted(values.items())))


def method_keys() -> list[str]:
    """Every method key, with its parameters, for help texts."""
    return [key + "".join(f"[:{p.name}=...]" for p in info.params) for key, info in catalogue().items()]


# ----------------------------------------------------------------------------- maps


class ScoreComponents:
    """FG-Score-CAM's channel components per (image, class), shared by layers and variants.

    Score-CAM weights need one masked forward pass per channel of the CAM layer; they
    depend only on the image and the class, so every target layer and the denoised
    variant reuse them. Cleared per batch.
    """

    def __init__(self) -> None:
        self._store: dict[tuple[object, ...], torch.Tensor] = {}
        self._batch: object = None

    def for_batch(self, batch_id: object) -> ScoreComponents:
        """Start a batch (forgets the previous one's components)."""
        if batch_id != self._batch:
            self._store.clear()
            self._batch = batch_id
        return self

    def components(self, key: tuple[object, ...], denoise: bool, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The components stored for ``key`` (denoised with ``denoise``), computing them once.

        Args:
            key: what the components depend on besides denoising (image, class, CAM layer).
            denoise: FG-CAM_D's denoised components (made from the plain ones).
            compute: makes the plain components ``[1, 1, C, h, w]``.
        """
        plain = (*key, False)
        if plain not in self._store:
            self._store[plain] = compute()
        if not denoise:
            return self._store[plain]
        denoised = (*key, True)
        if denoised not in self._store:
            self._store[denoised] = denoise_components(self._store[plain])
        return self._store[denoised]


def shares_score_components(method: Method) -> bool:
    """FG-CAM over a masked-forward base (Score-CAM): its channel weights are worth sharing."""
    if not (method.info.relevance and method.has("base")):
        return False
    return "masked_forwards" in get_explainer(str(method.param("base"))).needs


def make_maps(
    model,
    x: torch.Tensor,
    method: Method,
    layer: str,
    class_idx: Sequence[int],
    ranked: Sequence[Sequence[int]],
    *,
    cam_layer: str,
    batch_size: int = 32,
    cache: ScoreComponents | None = None,
    image_ids: Sequence[object] | None = None,
) -> tuple[torch.Tensor, bool]:
    """Maps of one method at one layer for a batch, one class per image.

    Every method runs batched through :func:`xai_core.explain` (one forward and one
    backward pass per chunk of images, as in ``explain``: a relevance method image by
    image costs its per-pass overhead, the hooks and the Python of every rule, once per
    image); FG-Score-CAM runs image by image, sharing its channel weights between layers
    and variants through ``cache``.

    Args:
        model: the :class:`~xai_core.models.registry.LoadedModel`.
        x: prepared images ``[B, C, H, W]`` on the model's device.
        method: the parsed method.
        layer: the explained (or target) layer, or ``"input"``.
        class_idx: the explained class of each image.
        ranked: each image's classes, most probable first (a fusion's other classes).
        cam_layer: FG-CAM's CAM layer.
        batch_size: masked forward passes per batch (Score-CAM, Ablation-CAM).
        cache: FG-Score-CAM components shared across calls on the same batch.
        image_ids: a key per image for ``cache``.

    Returns:
        ``(maps [B, H, W] float64 on x's device, signed)``; ``signed`` for relevance at the input.
    """
    family = method.info.family
    if family in ("cam", "fusion"):
        return _layer_maps(model, x, method, layer, class_idx, ranked, batch_size).to(x.device), False
    ids = list(image_ids) if image_ids is not None else list(range(x.shape[0]))
    maps, signed = _relevance_maps(
        model, x, method, layer, [int(c) for c in class_idx], cam_layer, batch_size, cache, ids
    )
    return maps.to(device=x.device, dtype=torch.float64), signed


def _layer_maps(model, x, method: Method, layer, class_idx, ranked, batch_size) -> torch.Tensor:
    spec = get_explainer(method.info.key)
    params = method.registry_params()
    if any(p.name == "batch_size" for p in spec.params):
        params["batch_size"] = batch_size
    if method.info.family == "cam":
        classes = [[int(c)] for c in class_idx]
    else:
        classes = [[int(c)] + [o for o in r if o != c][: method.k - 1] for c, r in zip(class_idx, ranked, strict=True)]
    exps = explain(model, x, method=spec.key, layer=layer, class_idx=classes, **params)
    size = tuple(x.shape[-2:])
    if method.info.family == "cam":  # ReLU, upsampled, min-max scaled (Explanation.saliency)
        maps = [np.asarray(e.saliency(0), dtype=np.float64) for e in exps]
    else:  # the explained class's channel of the fused map, upsampled
        maps = [np.asarray(resize_map(e.cams[0], size), dtype=np.float64) for e in exps]
    return torch.from_numpy(np.stack(maps))


def _relevance_maps(model, x, method: Method, layer, class_idx, cam_layer, batch_size, cache, image_ids):
    """Relevance maps ``[B, H, W]`` (float64, CPU) of a batch, one class per image."""
    size = tuple(x.shape[-2:])
    spec = get_explainer(method.info.key)
    if isinstance(spec.compute, FGCamCompute) and shares_score_components(method) and cache is not None:
        denoise = spec.compute.denoise
        relevance = torch.stack(
            [
                _fg_score_cam_shared(
                    model, x[i : i + 1], method, denoise, layer, c, cam_layer, batch_size, cache, image_ids[i]
                ).cpu()
                for i, c in enumerate(class_idx)
            ]
        )
    else:
        params = method.registry_params()
        if any(p.name == "batch_size" for p in spec.params):
            params["batch_size"] = batch_size
        exps = explain(
            model, x, method=spec.key, layer=cam_layer, class_idx=[[c] for c in class_idx], target_layer=layer, **params
        )
        relevance = torch.stack([e.cams[0] for e in exps])
    relevance = relevance.detach().to(torch.float64)
    if layer == INPUT:
        return relevance, True
    maps = [np.asarray(resize_map(r.clamp(min=0), size), dtype=np.float64) for r in relevance]
    return torch.from_numpy(np.stack(maps)), False


def _fg_score_cam_shared(
    model, x, method: Method, denoise, layer, class_idx, cam_layer, batch_size, cache, image_id
) -> torch.Tensor:
    """FG-Score-CAM with the masked passes of one image and class shared across layers and denoising.

    The components are the base's registry entry's channel weights (the one Score-CAM
    weight function) times the CAM layer's activations, then propagated with FG-CAM's rules.
    """
    module = model.module
    params = method.registry_params()
    rules = str(params.get("rules", DEFAULT_RULES))
    base = get_explainer(str(params["base"]))

    def compute() -> torch.Tensor:
        with capture(module, cam_layer, grad=False) as cap, torch.inference_mode():
            logits = module(x)
        acts = cap[cam_layer]
        classes = torch.tensor([[int(class_idx)]], device=x.device)
        inputs = WeightInputs(module, x, cam_layer, acts, None, classes, logits, model.probabilities)
        weights = base.channel_weights(inputs, batch_size=batch_size)  # [1, 1, C]
        return weights[..., None, None] * acts[:, None]  # [1, 1, C, h, w]

    comps = cache.components((image_id, class_idx, cam_layer), bool(denoise), compute)
    if layer == cam_layer:
        return comps.sum(dim=2)[0, 0]
    out = propagate_relevance(module, x, comps, start_layer=cam_layer, target_layer=layer, rules=rules)
    return out.relevance.sum(dim=2)[0, 0]

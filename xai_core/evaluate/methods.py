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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.errors import UnknownNameError, XaiCoreError

INPUT = "input"


class UsageError(XaiCoreError, ValueError):
    """A bad command-line argument (exit status 2)."""


@dataclass(frozen=True)
class MethodInfo:
    """What the evaluation needs to know about one registered explainer.

    Attributes:
        key: registry key.
        label: display name.
        family: ``"cam"`` (a map at a layer), ``"fusion"`` (FM-G-CAM) or ``"relevance"``
            (FG-CAM, LRP: signed relevance, possible at the input).
        params: parameter name -> (default, allowed values or None, minimum or None).
        class_specific: False for maps that are the same for every class.
    """

    key: str
    label: str
    family: str
    params: dict[str, tuple[object, tuple[object, ...] | None, float | None]]
    class_specific: bool = True

    @property
    def relevance(self) -> bool:
        """FG-CAM and LRP: signed relevance maps, possible at the input."""
        return self.family == "relevance"


def catalogue() -> dict[str, MethodInfo]:
    """Every method the evaluation can run, keyed by registry key."""
    from xai_core.methods import METHODS

    cams = {key: spec for key, spec in METHODS.items()}
    class_specific = tuple(k for k, s in cams.items() if s.class_specific)
    out = {
        key: MethodInfo(key, spec.label, "cam", {}, spec.class_specific) for key, spec in cams.items()
    }
    # Until the explainer registry (issue 10) lands, the relevance entries are described here.
    out["fm_g_cam"] = MethodInfo(
        "fm_g_cam", "FM-G-CAM", "fusion", {"k": (3, None, 1), "base": ("grad_cam", class_specific, None)}
    )
    for key, label in (("fg_cam", "FG-CAM"), ("fg_cam_d", "FG-CAM_D")):
        out[key] = MethodInfo(key, label, "relevance", {"base": ("grad_cam", ("grad_cam", "score_cam"), None)})
    for key, label in (("lrp", "LRP"), ("clrp", "CLRP"), ("sglrp", "SGLRP")):
        out[key] = MethodInfo(key, label, "relevance", {})
    return out


@dataclass(frozen=True)
class Method:
    """One parsed ``--methods`` entry: a registry key and its parameters.

    Attributes:
        info: the registry entry.
        params: parameter values (defaults filled in).
    """

    info: MethodInfo
    params: tuple[tuple[str, object], ...]

    @property
    def key(self) -> str:
        """Canonical name written in the results: the key, then its counts and non-default choices."""
        extra = [f"{n}={v}" for n, v in self.params if v != self.info.params[n][0] or not isinstance(v, str)]
        return ":".join([self.info.key, *extra])

    @property
    def k(self) -> int:
        """Classes the method needs ranked (FM-G-CAM's K; 1 otherwise)."""
        return int(dict(self.params).get("k", 1)) if self.info.family == "fusion" else 1

    def param(self, name: str) -> object:
        """A parameter's value."""
        return dict(self.params)[name]


def parse_method(text: str) -> Method:
    """Parse ``KEY[:NAME=VALUE...]`` against the registry.

    Raises:
        UsageError: unknown key or parameter, or a value out of range.
    """
    known = catalogue()
    key, *parts = [p.strip() for p in text.strip().split(":")]
    if key not in known:
        raise UsageError("--methods: " + str(UnknownNameError("method", key, sorted(known))))
    info = known[key]
    values = {name: spec[0] for name, spec in info.params.items()}
    for part in parts:
        name, eq, raw = part.partition("=")
        if not eq or name not in info.params:
            names = ", ".join(f"{n}=..." for n in info.params) or "none"
            raise UsageError(f"--methods: {text!r}: {info.label} takes NAME=VALUE parameters ({names}); got {part!r}.")
        default, allowed, minimum = info.params[name]
        if isinstance(default, int):
            if not raw.lstrip("+").isdigit():
                raise UsageError(f"--methods: {text!r}: {name} must be an integer; got {raw!r}.")
            value: object = int(raw)
            if minimum is not None and value < minimum:
                raise UsageError(f"--methods: {text!r}: {name} must be >= {minimum:g}; got {value}.")
        else:
            value = raw
        if allowed is not None and value not in allowed:
            raise UsageError(
                f"--methods: {text!r}: " + str(UnknownNameError(f"{info.label} {name}", str(value), list(allowed)))
            )
        values[name] = value
    return Method(info, tuple(sorted(values.items())))


def method_keys() -> list[str]:
    """Every method key, with its parameters, for help texts."""
    out = []
    for key, info in catalogue().items():
        out.append(key + "".join(f"[:{n}=...]" for n in info.params))
    return out


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

    Args:
        model: the :class:`~xai_core.models.registry.LoadedModel`.
        x: prepared images ``[B, C, H, W]`` on the model's device.
        method: the parsed method.
        layer: the explained (or target) layer, or ``"input"``.
        class_idx: the explained class of each image.
        ranked: each image's classes, most probable first (FM-G-CAM's other classes).
        cam_layer: FG-CAM's CAM layer.
        batch_size: masked forward passes per batch (Score-CAM, Ablation-CAM).
        cache: FG-Score-CAM components shared across calls on the same batch.
        image_ids: a key per image for ``cache``.

    Returns:
        ``(maps [B, H, W] float64 on x's device, signed)``; ``signed`` for relevance at the input.
    """
    maps, signed = [], False
    ids = list(image_ids) if image_ids is not None else list(range(x.shape[0]))
    for i in range(x.shape[0]):
        m, signed = _one_map(
            model, x[i : i + 1], method, layer, int(class_idx[i]), ranked[i], cam_layer, batch_size, cache, ids[i]
        )
        maps.append(m.to(device=x.device, dtype=torch.float64))
    return torch.stack(maps), signed


def _one_map(model, x, method: Method, layer, class_idx, ranked, cam_layer, batch_size, cache, image_id):
    from xai_core.methods import METHODS
    from xai_core.methods.base import compute_cams
    from xai_core.render.colour import minmax, resize_map

    size = tuple(x.shape[-2:])
    family = method.info.family
    if family in ("cam", "fusion"):
        base = method.info.key if family == "cam" else str(method.param("base"))
        names = {p.name for p in METHODS[base].params}
        extra = {"batch_size": batch_size} if "batch_size" in names else {}
        classes = [class_idx]
        if family == "fusion":
            classes += [c for c in ranked if c != class_idx][: method.k - 1]
        with model.lock:
            result = compute_cams(
                model.module,
                x,
                method=base,
                layer=layer,
                class_idx=classes,
                probabilities=model.probabilities,
                valid_outputs=model.valid_outputs,
                **extra,
            )
        if family == "cam":
            return torch.from_numpy(np.asarray(minmax(resize_map(result.cams[0].clamp(min=0), size)), np.float64)), False
        from xai_core.fusion import fm_g_cam

        fused = fm_g_cam(result.cams[: len(classes)], channels=result.channels)
        return torch.from_numpy(np.asarray(resize_map(fused.maps[0], size), dtype=np.float64)), False
    if method.info.key in ("fg_cam", "fg_cam_d"):
        relevance = _fg_cam(model, x, method, layer, class_idx, cam_layer, batch_size, cache, image_id)
    else:
        from xai_core.relevance import lrp

        relevance = lrp(model.module, x, class_idx=[class_idx], variant=method.info.key, target_layer=layer)[0]
    relevance = relevance.detach().to(torch.float64)
    if layer == INPUT:
        return relevance, True
    return torch.from_numpy(np.asarray(resize_map(relevance.clamp(min=0), size), dtype=np.float64)), False


def _fg_cam(model, x, method: Method, layer, class_idx, cam_layer, batch_size, cache, image_id) -> torch.Tensor:
    from xai_core.relevance import denoise_components, fg_cam, propagate_relevance, score_cam_weights

    module = model.module
    denoise = method.info.key == "fg_cam_d"
    if method.param("base") == "grad_cam" or cache is None:
        return fg_cam(
            module,
            x,
            cam_layer=cam_layer,
            target_layer=layer,
            class_idx=[class_idx],
            base=str(method.param("base")),
            denoise=denoise,
            score_batch_size=batch_size,
        )[0]
    store = cache._store
    key = (image_id, class_idx, cam_layer, denoise)
    if key not in store:
        plain = (image_id, class_idx, cam_layer, False)
        if plain not in store:
            from xai_core.hooks.capture import capture

            with capture(module, cam_layer, grad=False) as cap, torch.inference_mode():
                module(x)
            acts = cap[cam_layer]
            weights = score_cam_weights(module, x, acts, [class_idx], batch_size=batch_size)
            store[plain] = weights[:, :, None, None] * acts
        if denoise:
            store[key] = denoise_components(store[plain])
    comps = store[key]
    if layer == cam_layer:
        return comps.sum(dim=1)[0]
    return propagate_relevance(module, x, comps, start_layer=cam_layer, target_layer=layer).sum(dim=1)[0]

"""FG-CAM: fine-grained CAM by relevance propagation (ALGORITHMS.md section 3; fg-cam.txt).

1. Explanation components at the CAM layer L: ``I = w * A`` ``[K, C, h, w]``, not summed
   over channels. The channel weights ``w`` come from a *base*: any registered CAM method
   that yields per-channel weights at a layer (Grad-CAM, Score-CAM, ...: the explainer
   registry registers them here with :func:`register_base`; :func:`fgcam_bases` lists them).
2. Optional denoising (FG-CAM_D): row-centred SVD, keep ``int(0.1 * n)`` components,
   means not added back (the official code; the golden data follows it).
3. Relevance propagation from L down to the target layer with the rules of
   :mod:`xai_core.relevance.rules`; the map is the channel sum at the target's output.

One hooked forward pass gives both the true gradients of the logits w.r.t. A (the
network above L runs on a detached leaf) and the rule graph below L; the K classes go
down the rule graph in one batched backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.hooks.layers import resolve_layer
from xai_core.hooks.tokens import model_layout
from xai_core.relevance.composite import (
    DEFAULT_RULES,
    Composite,
    check_rule_set,
    check_supported,
    relevance_rules,
    rule_for,
)
from xai_core.relevance.rule import RelevancePass
from xai_core.relevance.rules import safe_divide

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TargetLayer:
    """A layer FG-CAM can bring the explanation down to.

    Attributes:
        name: dotted module name, or ``"input"``.
        label: display text, for example ``"layer1 (56x56)"`` or ``"input (224x224)"``.
        shape: ``(C, h, w)`` of the layer output for the traced example.
    """

    name: str
    label: str
    shape: tuple[int, ...]


# ----------------------------------------------------------------------------- results and classes

#: Classes to explain: one list for every image (``[K]``), one row per image (``[N, K]``,
#: a LongTensor or nested lists), or a callable mapping the logits ``[N, n]`` of the same
#: forward pass to a ``[N, K]`` LongTensor (for example the top-K).
ClassSpec = torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RelevanceResult:
    """Relevance maps of a batch and what they explain.

    Attributes:
        relevance: signed relevance ``[N, K, h, w]`` (channel-summed) or
            ``[N, K, C, h, w]`` (:func:`propagate_relevance`), on the input's device.
        class_idx: the explained classes ``[N, K]`` (LongTensor), row n for image n.
        logits: the model's output ``[N, n_outputs]`` from the same forward pass (detached;
            computed with the canonized model, equal to the original up to float rounding).
    """

    relevance: torch.Tensor
    class_idx: torch.Tensor
    logits: torch.Tensor


def resolve_classes(class_idx: ClassSpec, logits: torch.Tensor) -> torch.Tensor:
    """The ``[N, K]`` LongTensor of classes for logits ``[N, n]``, on the logits' device.

    Raises:
        MethodError: empty, wrongly shaped or out-of-range classes.
    """
    n_img, n_out = logits.shape
    if callable(class_idx):
        idx = class_idx(logits.detach())
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx)
    elif isinstance(class_idx, torch.Tensor):
        idx = class_idx
    else:
        try:
            idx = torch.as_tensor(class_idx)
        except (TypeError, ValueError) as err:
            raise MethodError(f"class_idx must be a [K] or [N, K] list of class indices; got {class_idx!r}.") from err
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise MethodError(f"class_idx must hold integer class indices, got dtype {idx.dtype}.")
    idx = idx.to(device=logits.device, dtype=torch.long)
    if idx.dim() == 1:
        idx = idx[None].expand(n_img, -1)
    if idx.dim() != 2 or idx.shape[0] != n_img or idx.shape[1] == 0:
        raise MethodError(
            f"class_idx must give K >= 1 classes per image, as [K] or [{n_img}, K]; got shape {tuple(idx.shape)}."
        )
    bad = idx[(idx < 0) | (idx >= n_out)]
    if bad.numel():
        raise MethodError(
            f"class_idx {sorted(set(bad.tolist()))} out of range: the model has {n_out} outputs (0..{n_out - 1})."
        )
    return idx.contiguous()


def check_input(x: torch.Tensor) -> None:
    """Raise :class:`MethodError` unless ``x`` is an ``[N, C, H, W]`` tensor with N >= 1."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] < 1:
        raise MethodError(f"x must be an [N, C, H, W] tensor, got {tuple(getattr(x, 'shape', ()))}.")


def check_logits(logits: torch.Tensor, n_img: int) -> None:
    """Raise :class:`MethodError` unless the model returned logits ``[n_img, n]``."""
    if logits.dim() != 2 or logits.shape[0] != n_img:
        raise MethodError(f"The model must return logits [{n_img}, n]; got shape {tuple(logits.shape)}.")


# ----------------------------------------------------------------------------- components


@dataclass(frozen=True)
class WeightInputs:
    """What a base's channel weights are computed from (the fields of a CAM method's context).

    Attributes:
        module: the network (eval mode, parameters frozen; no relevance hooks attached).
        x: the inputs ``[N, C_in, H, W]``.
        layer_name: the CAM layer.
        activations: its output ``A`` ``[N, C, h, w]`` (detached).
        grads: ``[N, K, C, h, w]`` true gradients of each image's K class logits w.r.t.
            ``A``, or None for a base that needs none.
        class_idx: ``[N, K]`` the explained classes.
        logits: ``[N, n]`` the model's output.
        probabilities: logits ``[B, n]`` -> probabilities (softmax by default).
        progress: optional ``progress(done, total)`` callback.
    """

    module: nn.Module
    x: torch.Tensor
    layer_name: str
    activations: torch.Tensor
    grads: torch.Tensor | None
    class_idx: torch.Tensor
    logits: torch.Tensor
    probabilities: Callable[[torch.Tensor], torch.Tensor]
    progress: Progress | None = None


class ChannelWeights(Protocol):
    """A CAM method that yields per-channel weights at a layer: an FG-CAM base.

    The explainer registry's entries with this capability (``Explainer.channel_weights``)
    satisfy it.
    """

    key: str
    needs_gradients: bool

    def channel_weights(self, inputs: WeightInputs, **params: object) -> torch.Tensor:
        """Channel weights ``[N, K, C]``."""
        ...


_BASES: dict[str, ChannelWeights] = {}


def register_base(base: ChannelWeights) -> None:
    """Make ``base`` choosable as ``fg_cam(base=base.key)`` (the explainer registry calls this)."""
    _BASES[base.key] = base


def unregister_base(key: str) -> None:
    """Forget the base registered as ``key`` (if any)."""
    _BASES.pop(key, None)


def fgcam_bases() -> tuple[str, ...]:
    """Keys of the registered FG-CAM bases."""
    return tuple(_BASES)


def resolve_base(base: str | ChannelWeights) -> ChannelWeights:
    """The base registered as ``base`` (or ``base`` itself).

    Raises:
        MethodError: an unknown key, or one whose method yields no per-channel weights.
    """
    if not isinstance(base, str):
        return base
    if base not in _BASES:
        raise MethodError(
            f"Unknown FG-CAM base {base!r}: FG-CAM needs a CAM method with per-channel weights. "
            f"Valid choices: {', '.join(_BASES)}."
        )
    return _BASES[base]


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def denoise_components(components: torch.Tensor) -> torch.Tensor:
    """FG-CAM_D denoising of explanation components, one map at a time.

    Each ``I_k`` is reshaped to ``M`` ``[C, h*w]``; its rows are centred, ``M`` is
    decomposed by SVD and rebuilt from the first ``int(0.1 * n)`` components (n = number
    of singular values); the row means are not added back (official code). With n < 10
    nothing is kept and the result is zero.

    Args:
        components: ``I`` ``[..., C, h, w]`` (any leading dimensions, e.g. ``[N, K]``).

    Returns:
        Denoised components of the same shape.
    """
    *lead, c, h, w = components.shape
    m = torch.nan_to_num(components).reshape(-1, c, h * w)
    m = m - m.mean(dim=2, keepdim=True)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    d = int(0.1 * s.shape[-1])
    rebuilt = (u[..., :d] * s[..., None, :d]) @ vh[..., :d, :]
    return rebuilt.reshape(*lead, c, h, w)


# ----------------------------------------------------------------------------- public API


def fg_cam(
    model: nn.Module,
    x: torch.Tensor,
    *,
    cam_layer: str,
    target_layer: str,
    class_idx: ClassSpec,
    base: str | ChannelWeights = "grad_cam",
    denoise: bool = False,
    rules: str | Composite = DEFAULT_RULES,
    probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None,
    score_batch_size: int = 32,
    progress: Progress | None = None,
) -> RelevanceResult:
    """FG-CAM relevance of K classes per image at the output of ``target_layer``.

    One hooked forward pass of the whole batch gives the logits, the true gradients at
    the CAM layer and the rule graph below it; the ``N * K`` maps go down that graph in
    one batched backward.

    Args:
        model: the network (any mode; left as found: mode, ``requires_grad``, parameters
            bit-for-bit, no hooks, no parameter ``.grad``).
        x: input ``[N, C, H, W]``; every tensor made here lives on its device.
        cam_layer: layer L whose output ``A`` ``[N, C, h, w]`` gives the components.
        target_layer: module name whose output the relevance is brought to, ``cam_layer``
            itself (no propagation: the channel sum of the components), or ``"input"``.
        class_idx: the classes, see :data:`ClassSpec` (a callable gets the logits of
            this very forward pass, e.g. ``lambda z: z.topk(3).indices``).
        base: the CAM whose channel weights give the components: a key of
            :func:`fgcam_bases` (``"grad_cam"``, ``"score_cam"``, ...) or a
            :class:`ChannelWeights` object (the explainer registry passes its entry).
        denoise: apply FG-CAM_D's SVD denoising to the components.
        rules: ``"crisp"`` (default: ``"canonized"`` plus strided convolutions run at
            stride 1 on relevance shared over their stride-1 grid, no stride checkerboard),
            ``"canonized"`` (BatchNorm folded into the adjacent convolution,
            squeeze-excitation gates constant; keeps the evidence on real weights) or
            ``"authors"`` (BatchNorm as identity, the official code; the golden cases).
        probabilities: the model's logits-to-probabilities function for the Score-CAM
            base (default softmax; sigmoid for multi-label X-ray models).
        score_batch_size: masked inputs per forward pass (bases with a ``batch_size``
            parameter, such as Score-CAM).
        progress: ``progress(done, total)`` callback for the base's masked passes.

    Returns:
        :class:`RelevanceResult` with signed relevance summed over channels
        ``[N, K, h_t, w_t]`` (``[N, K, H, W]`` for "input").

    Raises:
        MethodError: unknown base or rule set, bad input or class, or a layer without a rule on the way.
        LayerNotFoundError: unknown layer name.
        LayerError: a layer that runs twice, or a target that is not below the CAM layer.
    """
    weigher = resolve_base(base)
    check_rule_set(rules)
    check_input(x)
    resolve_layer(model, cam_layer)
    if target_layer != "input":
        resolve_layer(model, target_layer)
    at_cam = target_layer == cam_layer
    n_img = x.shape[0]
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        target = None if at_cam else target_layer
        with relevance_rules(model, x_in, start_layer=cam_layer, target_layer=target, rules=rules) as st:
            logits = model(x_in)
            if st.start is None:
                raise LayerError(f"CAM layer {cam_layer!r} did not run during the forward pass.")
            check_logits(logits, n_img)
            classes = resolve_classes(class_idx, logits)
            check_supported(st)
            acts = st.start_leaf.detach()
            grads = _class_gradients(logits, st.start_leaf, classes) if weigher.needs_gradients else None
            out_logits = logits.detach()
            del logits
        # the base runs on the restored model, no hooks (Score-CAM's masked passes)
        inputs = WeightInputs(
            model,
            x.detach(),
            cam_layer,
            acts,
            grads,
            classes,
            out_logits,
            probabilities if probabilities is not None else _softmax,
            progress,
        )
        weights = weigher.channel_weights(inputs, batch_size=score_batch_size)  # [N, K, C]
        comps = weights[..., None, None] * acts[:, None]
        if denoise:
            comps = denoise_components(comps)
        if at_cam:
            relevance = comps.sum(dim=2).detach()
        else:
            relevance = propagate_pass(st, x_in, comps, target_layer, cam_layer)
    return RelevanceResult(relevance, classes, out_logits)


def _class_gradients(logits: torch.Tensor, leaf: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """True gradients ``[N, K, C, h, w]`` of each image's K class logits w.r.t. ``leaf``: one batched backward."""
    k = classes.shape[1]
    eye = torch.zeros(k, *logits.shape, dtype=logits.dtype, device=logits.device)
    eye.scatter_(2, classes.T[:, :, None], 1.0)  # row k: class_idx[n, k] of image n
    if k == 1:
        grads = torch.autograd.grad(logits, leaf, eye[0])[0][None]
    else:
        (grads,) = torch.autograd.grad(logits, leaf, eye, is_grads_batched=True)
    return grads.transpose(0, 1)


def propagate_pass(
    st: RelevancePass,
    x_in: torch.Tensor,
    relevance: torch.Tensor,
    target_layer: str,
    start_name: str,
    *,
    sum_channels: bool = True,
) -> torch.Tensor:
    """Send relevance ``[N, K, ...]`` at ``st.start`` down the rule graph to the target's output.

    The rule functions captured the weights the forward pass used, so this may run
    after the canonizers are undone. Returns ``[N, K, h_t, w_t]`` (channel sum) or
    ``[N, K, C_t, h_t, w_t]``.
    """
    g0 = safe_divide(relevance, st.start.detach()[:, None]).transpose(0, 1)  # [K, N, ...]; R = a * g
    if target_layer == "input":
        inputs = [x_in] + [b for pair in st.bounds for b in pair]
    else:
        if st.target is None:
            raise LayerError(
                f"Target layer {target_layer!r} does not run before {start_name!r}; choose a layer between the "
                "input and the CAM layer (fgcam_target_layers lists them)."
            )
        inputs = [st.target]
    if g0.shape[0] == 1:  # one class per image: a plain backward, no vmap overhead
        grads = torch.autograd.grad(st.start, inputs, g0[0], allow_unused=True)
        grads = tuple(g if g is None else g[None] for g in grads)
    else:
        grads = torch.autograd.grad(st.start, inputs, g0, is_grads_batched=True, allow_unused=True)
    if grads[0] is None:
        raise LayerError(
            f"No relevance reaches {target_layer!r} from {start_name!r}: it is not on the path to that layer."
        )
    total = sum(t.detach() * g for t, g in zip(inputs, grads) if g is not None).transpose(0, 1)  # [N, K, ...]
    return (total.sum(dim=2) if sum_channels else total).detach()


def propagate_relevance(
    model: nn.Module,
    x: torch.Tensor,
    relevance: torch.Tensor,
    *,
    start_layer: str,
    target_layer: str = "input",
    rules: str | Composite = DEFAULT_RULES,
) -> RelevanceResult:
    """Bring a given relevance at ``start_layer``'s output down to ``target_layer`` (FG-CAM step 3).

    Args:
        model: the network (left as found).
        x: input ``[N, C, H, W]``.
        relevance: ``[N, K, C, h, w]``, the relevance at the output of ``start_layer``
            (for example explanation components), all ``N * K`` maps in one backward.
        start_layer: the layer the relevance lives at; its own rule is the first step.
        target_layer: module name or ``"input"``.
        rules: ``"canonized"`` or ``"authors"`` (see :func:`fg_cam`).

    Returns:
        :class:`RelevanceResult`: relevance per channel at the target's output
        ``[N, K, C_t, h_t, w_t]``; ``class_idx`` is ``arange(K)`` per image (the rows given).
    """
    check_input(x)
    check_rule_set(rules)
    resolve_layer(model, start_layer)
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        with relevance_rules(model, x_in, start_layer=start_layer, target_layer=target_layer, rules=rules) as st:
            logits = model(x_in)
            if st.start is None:
                raise LayerError(f"Layer {start_layer!r} did not run during the forward pass.")
            check_supported(st)
            expected = (x.shape[0], "K", *st.start.shape[1:])
            if relevance.dim() != st.start.dim() + 1 or (
                relevance.shape[0] != x.shape[0] or tuple(relevance.shape[2:]) != tuple(st.start.shape[1:])
            ):
                raise MethodError(
                    f"relevance has shape {tuple(relevance.shape)}; expected {list(expected)} "
                    f"to match the output of {start_layer!r}."
                )
            rel = relevance.to(device=st.start.device, dtype=st.start.dtype)
            out = propagate_pass(st, x_in, rel, target_layer, start_layer, sum_channels=False)
    k = relevance.shape[1]
    classes = torch.arange(k, device=x.device).expand(x.shape[0], k)
    return RelevanceResult(out, classes, logits.detach() if isinstance(logits, torch.Tensor) else logits)


def fgcam_target_layers(model: nn.Module, example: torch.Tensor, cam_layer: str) -> list[TargetLayer]:
    """Meaningful FG-CAM target layers from ``cam_layer`` down to the input, deep to shallow.

    The candidates are the modules that run once before the CAM layer and sit at the
    network's "stage" level (their parents are ancestors of the CAM layer or containers
    that are never called, like ``ModuleList``): ResNet ``layer1..3``, DenseNet
    ``features.denseblock*``, EfficientNet ``_blocks.N``, VGG ``features.N``. For each
    output resolution the last such module is kept, containers and pooling layers first
    (a stage's output, a VGG pool). The list starts with the CAM layer itself (no
    propagation) and ends with ``"input"``. Shapes come from tracing ``example``.

    Args:
        model: the network.
        example: an input ``[1, C, H, W]`` of the size that will be explained.
        cam_layer: the CAM layer name.

    Returns:
        The :class:`TargetLayer` list.
    """
    resolve_layer(model, cam_layer)
    if model_layout(model) is not None:
        raise MethodError(
            f"FG-CAM's relevance rules cover CNN layers; {type(model).__name__} is a vision transformer "
            "(LayerNorm, attention and GELU have no rule here). Its transformer version carries the CAM's "
            "evidence to the pixels with AttnLRP's rules: xc.explain(model, x, method='fg_attn_lrp')."
        )
    if example.dim() != 4:
        raise MethodError(f"example must be [1, C, H, W], got {tuple(example.shape)}.")
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    counts: dict[str, int] = {}
    modules = dict(model.named_modules())
    handles = []

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: tuple, out: object) -> None:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == 1:
                order.append(name)
                if isinstance(out, torch.Tensor):
                    shapes[name] = tuple(out.shape)

        return hook

    with model_lock(model), eval_mode(model, freeze_params=False):
        try:
            for name, module in modules.items():
                if name:
                    handles.append(module.register_forward_hook(make_hook(name)))
            with torch.inference_mode():
                model(example)
        finally:
            for h in handles:
                h.remove()
    if cam_layer not in shapes or len(shapes[cam_layer]) != 4:
        raise LayerError(f"CAM layer {cam_layer!r} did not give a [1, C, h, w] feature map for this input.")
    cam_pos = order.index(cam_layer)
    parts = cam_layer.split(".")
    cam_ancestors = {".".join(parts[:i]) for i in range(len(parts))}

    def stage_level(name: str) -> bool:
        p = name.split(".")
        for i in range(len(p) - 1, 0, -1):
            parent = ".".join(p[:i])
            if parent in cam_ancestors:
                return True
            if parent in counts:  # a called container that is not on the CAM layer's path
                return False
        return True  # a top-level module (its parent is the model)

    by_res: dict[tuple[int, int], list[str]] = {}
    for name in order[:cam_pos]:
        shape = shapes.get(name)
        if name in cam_ancestors or counts[name] != 1 or shape is None or len(shape) != 4 or not stage_level(name):
            continue
        by_res.setdefault((shape[2], shape[3]), []).append(name)

    def preferred(name: str) -> bool:
        m = modules[name]
        is_container = rule_for(m) is None and bool(list(m.children()))  # not a padded conv
        return is_container or isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))

    chosen = []
    for names in by_res.values():
        pref = [n for n in names if preferred(n)]
        chosen.append((pref or names)[-1])
    chosen.sort(key=order.index, reverse=True)

    def entry(name: str) -> TargetLayer:
        shape = shapes[name][1:]
        return TargetLayer(name, f"{name} ({shape[1]}x{shape[2]})", tuple(shape))

    result = [entry(cam_layer)] + [entry(n) for n in chosen]
    c, h, w = example.shape[1:]
    result.append(TargetLayer("input", f"input ({h}x{w})", (c, h, w)))
    return result

"""FG-CAM: fine-grained CAM by relevance propagation (ALGORITHMS.md section 3; fg-cam.txt).

1. Explanation components at the CAM layer L: ``I = w * A`` ``[K, C, h, w]``, not summed
   over channels (Grad-CAM or Score-CAM weights ``w``).
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

import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import LayerError, MethodError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.hooks.layers import resolve_layer
from xai_core.relevance.composite import check_supported, relevance_rules, rule_for
from xai_core.relevance.rules import safe_divide

BASES = ("grad_cam", "score_cam")
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


# ----------------------------------------------------------------------------- components


def grad_cam_components(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM explanation components ``I = mean_ij(dy_c/dA) * A``, not channel-summed.

    Args:
        activations: ``A`` ``[1, C, h, w]``.
        grads: ``dy_c/dA`` for K classes ``[K, C, h, w]``.

    Returns:
        ``I`` ``[K, C, h, w]``.
    """
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return weights * activations


def score_cam_weights(
    model: nn.Module,
    x: torch.Tensor,
    activations: torch.Tensor,
    class_idx: Sequence[int],
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Score-CAM channel weights: softmax probability of each class for ``x * M_c``.

    ``M_c`` is ``A_c`` upsampled (bilinear, ``align_corners=False``) to the input size
    and min-max scaled to [0, 1]; a constant channel gives an all-zero mask (the
    official code divides by ``max - min`` and adds 1e-9 only for all-zero channels).
    The masked inputs run in batches under ``torch.inference_mode``.

    Args:
        model: the network, already in eval mode.
        x: input ``[1, C_in, H, W]``.
        activations: ``A`` ``[1, C, h, w]``.
        class_idx: the K classes.
        batch_size: masked inputs per forward pass.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        Weights ``[K, C]``.
    """
    if batch_size < 1:
        raise MethodError(f"score_batch_size must be >= 1, got {batch_size}.")
    idx = torch.as_tensor(list(class_idx), device=x.device)
    with torch.inference_mode():
        up = F.interpolate(activations.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        flat = up.flatten(1)
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
        masks = safe_divide(up - lo[:, None, None], (hi - lo)[:, None, None])  # [C, H, W]
        n = masks.shape[0]
        out = []
        for start in range(0, n, batch_size):
            m = masks[start : start + batch_size]
            logits = model(x.detach() * m[:, None])
            out.append(torch.softmax(logits.float(), dim=1)[:, idx])
            if progress is not None:
                progress(min(start + batch_size, n), n)
    return torch.cat(out).T.clone().to(activations.dtype)


def denoise_components(components: torch.Tensor) -> torch.Tensor:
    """FG-CAM_D denoising of explanation components, one class at a time.

    Each ``I_k`` is reshaped to ``M`` ``[C, h*w]``; its rows are centred, ``M`` is
    decomposed by SVD and rebuilt from the first ``int(0.1 * n)`` components (n = number
    of singular values); the row means are not added back (official code). With n < 10
    nothing is kept and the result is zero.

    Args:
        components: ``I`` ``[K, C, h, w]``.

    Returns:
        Denoised components ``[K, C, h, w]``.
    """
    k, c, h, w = components.shape
    m = torch.nan_to_num(components).reshape(k, c, h * w)
    m = m - m.mean(dim=2, keepdim=True)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    d = int(0.1 * s.shape[-1])
    rebuilt = (u[..., :d] * s[..., None, :d]) @ vh[..., :d, :]
    return rebuilt.reshape(k, c, h, w)


# ----------------------------------------------------------------------------- public API


def _check_inputs(model: nn.Module, x: torch.Tensor, class_idx: Sequence[int]) -> list[int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
        raise MethodError(f"x must be a [1, C, H, W] tensor, got {tuple(getattr(x, 'shape', ()))}.")
    classes = [int(c) for c in class_idx]
    if not classes:
        raise MethodError("class_idx is empty; give at least one class index.")
    return classes


def _check_classes(classes: list[int], n: int) -> None:
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise MethodError(f"class_idx {bad} out of range: the model has {n} outputs (0..{n - 1}).")


def fg_cam(
    model: nn.Module,
    x: torch.Tensor,
    *,
    cam_layer: str,
    target_layer: str,
    class_idx: Sequence[int],
    base: str = "grad_cam",
    denoise: bool = False,
    score_batch_size: int = 32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """FG-CAM relevance of K classes at the output of ``target_layer``.

    Args:
        model: the network (any mode; left as found: mode, ``requires_grad``, no hooks,
            no parameter ``.grad``).
        x: input ``[1, C, H, W]``.
        cam_layer: layer L whose output ``A`` ``[1, C, h, w]`` gives the components.
        target_layer: module name whose output the relevance is brought to, ``cam_layer``
            itself (no propagation: the channel sum of the components), or ``"input"``.
        class_idx: the K classes to explain.
        base: ``"grad_cam"`` or ``"score_cam"``.
        denoise: apply FG-CAM_D's SVD denoising to the components.
        score_batch_size: masked inputs per forward pass (Score-CAM only).
        progress: ``progress(done, total)`` callback for the Score-CAM masks.

    Returns:
        Signed relevance summed over channels, ``[K, h_t, w_t]`` (``[K, H, W]`` for "input").

    Raises:
        MethodError: unknown base, bad input or class, or a layer without a rule on the way.
        LayerNotFoundError: unknown layer name.
        LayerError: a layer that runs twice, or a target that is not below the CAM layer.
    """
    if base not in BASES:
        raise MethodError(f"Unknown FG-CAM base {base!r}. Valid choices: {', '.join(BASES)}.")
    classes = _check_inputs(model, x, class_idx)
    resolve_layer(model, cam_layer)
    if target_layer != "input":
        resolve_layer(model, target_layer)
    at_cam = target_layer == cam_layer
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        with relevance_rules(model, x_in, start_layer=cam_layer, target_layer=None if at_cam else target_layer) as st:
            logits = model(x_in)
        if st.start is None:
            raise LayerError(f"CAM layer {cam_layer!r} did not run during the forward pass.")
        if logits.dim() != 2:
            raise MethodError(f"The model must return logits [1, N]; got shape {tuple(logits.shape)}.")
        _check_classes(classes, logits.shape[1])
        check_supported(st)
        acts = st.start_leaf.detach()
        k = len(classes)
        if base == "grad_cam":
            eye = torch.zeros(k, *logits.shape, dtype=logits.dtype, device=logits.device)
            eye[torch.arange(k), 0, classes] = 1
            (grads,) = torch.autograd.grad(logits, st.start_leaf, eye, is_grads_batched=True)
            comps = grad_cam_components(acts, grads[:, 0])
        else:
            del logits
            weights = score_cam_weights(model, x, acts, classes, batch_size=score_batch_size, progress=progress)
            comps = weights[:, :, None, None] * acts
        if denoise:
            comps = denoise_components(comps)
        if at_cam:
            return comps.sum(dim=1).detach()
        return _propagate(st, x_in, comps, target_layer, cam_layer)


def _propagate(
    st, x_in: torch.Tensor, relevance: torch.Tensor, target_layer: str, start_name: str, *, sum_channels: bool = True
) -> torch.Tensor:
    """Send relevance ``[K, ...]`` at ``st.start`` down the rule graph to the target's output.

    Returns ``[K, h_t, w_t]`` (channel sum) or ``[K, C_t, h_t, w_t]``.
    """
    g0 = safe_divide(relevance, st.start.detach())[:, None]  # [K, 1, ...]; R = a * g
    if target_layer == "input":
        inputs = [x_in] + [b for pair in st.bounds for b in pair]
    else:
        if st.target is None:
            raise LayerError(
                f"Target layer {target_layer!r} does not run before {start_name!r}; choose a layer between the "
                "input and the CAM layer (fgcam_target_layers lists them)."
            )
        inputs = [st.target]
    if g0.shape[0] == 1:  # one class: a plain backward, no vmap overhead
        grads = torch.autograd.grad(st.start, inputs, g0[0], allow_unused=True)
        grads = tuple(g if g is None else g[None] for g in grads)
    else:
        grads = torch.autograd.grad(st.start, inputs, g0, is_grads_batched=True, allow_unused=True)
    if grads[0] is None:
        raise LayerError(
            f"No relevance reaches {target_layer!r} from {start_name!r}: it is not on the path to that layer."
        )
    total = sum(t.detach() * g for t, g in zip(inputs, grads) if g is not None)[:, 0]
    return (total.sum(dim=1) if sum_channels else total).detach()


def propagate_relevance(
    model: nn.Module,
    x: torch.Tensor,
    relevance: torch.Tensor,
    *,
    start_layer: str,
    target_layer: str = "input",
) -> torch.Tensor:
    """Bring a given relevance at ``start_layer``'s output down to ``target_layer`` (FG-CAM step 3).

    Args:
        model: the network (left as found).
        x: input ``[1, C, H, W]``.
        relevance: ``[K, C, h, w]``, the relevance at the output of ``start_layer``
            (for example explanation components), K maps propagated in one backward.
        start_layer: the layer the relevance lives at; its own rule is the first step.
        target_layer: module name or ``"input"``.

    Returns:
        Relevance per channel at the target's output, ``[K, C_t, h_t, w_t]``.
    """
    _check_inputs(model, x, [0])
    resolve_layer(model, start_layer)
    x_in = x.detach().clone().requires_grad_(True)
    with model_lock(model), eval_mode(model, freeze_params=True), torch.enable_grad():
        with relevance_rules(model, x_in, start_layer=start_layer, target_layer=target_layer) as st:
            model(x_in)
        if st.start is None:
            raise LayerError(f"Layer {start_layer!r} did not run during the forward pass.")
        check_supported(st)
        if tuple(relevance.shape[1:]) != tuple(st.start.shape[1:]):
            expected = ", ".join(map(str, st.start.shape[1:]))
            raise MethodError(
                f"relevance has shape {tuple(relevance.shape)}; expected [K, {expected}] "
                f"to match the output of {start_layer!r}."
            )
        return _propagate(st, x_in, relevance.to(st.start.dtype), target_layer, start_layer, sum_channels=False)


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

"""Single images fast on a GPU: the CAM driver's passes captured once, then replayed.

At batch 1 a GPU waits on Python and kernel launches, not on arithmetic (on an H200,
EfficientNet-Lite0's forward + backward to the layer took 7.2 ms at batch 1 against
0.1 ms per image at batch 128). Here the part of a CAM-family explanation that launches
hundreds of kernels runs as one CUDA graph: the forward pass with the explained layer
captured, the class choice (``torch.topk`` on the device, or fixed classes copied in),
and the batched backward pass of the chosen scores to the layer. The graph is captured
once per model, layer, input shape and dtype, class choice (top-K or K fixed classes),
precision and differentiated target, and replayed with each new image copied into its
static input. The method's own maths (channel weights, the weighted sum, principal
component smoothing) then runs as in the eager driver on the graph's outputs, so
Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, Layer-CAM, ... and FM-G-CAM over any of them
share one graph.

Modes (``xai_core.explain(..., accelerate=...)``, :data:`MODES`):

* ``"off"`` (default): eager.
* ``"auto"``: a CUDA graph for one image on a CUDA device (the launch-bound case);
  eager for batches and on the CPU or MPS.
* ``"cuda_graph"``: a CUDA graph on a CUDA device, at any batch size. Each graph keeps
  the memory of its pass for as long as it is cached (a chunk of 64 images keeps 64
  images' activations), and each chunk size captures its own graph: for batches, prefer
  ``max_batch`` chunks of one size, or eager, which batches well already.
* ``"compile"``: ``torch.compile`` of the same pass (mode ``"reduce-overhead"`` on CUDA,
  which captures CUDA graphs itself; the default mode elsewhere, the CPU included). The
  first call per shape compiles (about 40 s for EfficientNet-Lite0 on a 2-core CPU).

Whatever cannot be accelerated runs eager and never raises because of the switch:
:class:`~xai_core.methods.context.MapResult` (and ``Explanation``) ``path`` says how the
passes ran and ``path_note`` why they ran eager. Not covered: methods with masked forward
passes (Score-CAM, Ablation-CAM), second derivatives (ShapleyCAM), relevance methods,
several layers, test-time augmentation, ``extra_classes`` and a custom class choice. A
capture that fails is remembered (no retry per call) and logged once.

The first call of a key runs eager (all checks and messages as usual), warms the pass up
on a side stream, captures it and replays it; its result is the replay's. Graphs are kept
per model (at most :data:`MAX_GRAPHS`, least recently used dropped) and rebuilt when the
model's parameters move (``model.to(...)``, ``param.data = ...``; weights loaded in place
are read by the replay). A model whose sub-modules are replaced needs :func:`clear`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from xai_core.errors import MethodError, XaiCoreError
from xai_core.hooks.capture import capture
from xai_core.hooks.state import model_lock
from xai_core.methods.base import ClassSelection, class_gradients, layer_maps
from xai_core.methods.context import CamContext, ExplainRequest, MapResult

log = logging.getLogger(__name__)

MODES = ("off", "auto", "cuda_graph", "compile")
"""The values of ``accelerate``."""
MAX_GRAPHS = 16
"""Captured passes kept per model (each holds its own memory pool on the GPU)."""
WARMUP_PASSES = 3
"""Passes run on a side stream before a capture (PyTorch's CUDA-graph recipe)."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a :class:`MethodError` listing them."""
    if mode not in MODES:
        raise MethodError(f"accelerate must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
    return mode


@dataclass(frozen=True)
class PassKey:
    """What one captured pass computes; the cache key (per model).

    Attributes:
        mode: ``"cuda_graph"`` or ``"compile"``.
        layer: the explained layer.
        shape, dtype, device: of the input batch.
        top_k: K of a top-K choice made inside the pass; ``None`` for K fixed classes.
        k: classes per image.
        autocast: the forward pass's autocast dtype (``None``: float32).
        needs_gradients: the pass differentiates (else forward only).
        target: what is differentiated instead of the class logits (``None``: the logits).
        target_params: the method's parameters, when a target reads them.
    """

    mode: str
    layer: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    top_k: int | None
    k: int
    autocast: torch.dtype | None
    needs_gradients: bool
    target: Callable | None
    target_params: tuple


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
"""``(logits [N, n], class_idx [N, K], activations [N, C, h, w], grads [N, K, C, h, w] or None)``."""


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    # cache_enabled=False: autocast's cast cache must be off inside a CUDA-graph capture.
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def static_pass(
    module: nn.Module,
    key: PassKey,
    x: torch.Tensor,
    fixed_idx: torch.Tensor | None,
    valid: torch.Tensor | None,
    params: dict,
) -> Outputs:
    """The captured pass: forward with the layer captured, the class choice, the gradients.

    Nothing in it waits for the device (no ``.item()``, no ``.tolist()``, no boolean
    indexing), so it can be captured in a CUDA graph: top-K masks the outputs without a
    class name with ``masked_fill`` and takes ``torch.topk`` on the device; fixed classes
    come in as ``fixed_idx``. The same computation as the eager CAM driver
    (:func:`~xai_core.methods.base._one_pass`) up to the method's maths.
    """
    with capture(module, key.layer, grad=key.needs_gradients) as cap:
        with contextlib.nullcontext() if key.needs_gradients else torch.no_grad(), _autocast(x.device, key.autocast):
            logits = module(x)
        activations = cap[key.layer]
        if fixed_idx is None:
            scores = logits.detach().float()
            if valid is not None:
                scores = scores.masked_fill(~valid, float("-inf"))
            idx = torch.topk(scores, key.k, dim=1).indices
        else:
            idx = fixed_idx
        grads = None
        if key.needs_gradients:
            chosen = logits.gather(1, idx) if key.target is None else key.target(logits, idx, params)
            # torch.compile's backward has no batching rule (vmap) for every op: K backward passes there.
            grads = class_gradients(chosen, activations, batched=key.mode != "compile").float()
    return logits.detach(), idx, activations.detach(), grads


class _Failed:
    """A key whose capture or compile failed: later calls run eager at once."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Graph:
    """One captured CUDA graph with its static input and outputs."""

    def __init__(self, module: nn.Module, key: PassKey, x: torch.Tensor, fixed_idx, valid, params: dict) -> None:
        self.static_x = x.detach().clone()
        self.static_idx = None if fixed_idx is None else fixed_idx.clone()
        self.valid = valid
        run = functools.partial(static_pass, module, key, self.static_x, self.static_idx, valid, params)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_PASSES):
                run()
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = run()

    def __call__(self, x: torch.Tensor, fixed_idx: torch.Tensor | None) -> Outputs:
        self.static_x.copy_(x)
        if self.static_idx is not None:
            self.static_idx.copy_(fixed_idx)
        self.graph.replay()
        return self.outputs


class _Compiled:
    """The pass under ``torch.compile`` (``reduce-overhead`` on CUDA).

    Holds the model weakly (the cache is keyed by it). Compiled code is shared by every
    key and told apart by guards; past ``torch._dynamo.config.cache_size_limit`` keys,
    torch runs the pass uncompiled (with a warning of its own).
    """

    def __init__(self, module: nn.Module, key: PassKey, valid, params: dict) -> None:
        self.module = weakref.ref(module)
        self.key, self.valid, self.params = key, valid, params
        mode = "reduce-overhead" if key.device.type == "cuda" else "default"
        self.fn = torch.compile(static_pass, mode=mode, dynamic=False)

    def __call__(self, x: torch.Tensor, fixed_idx: torch.Tensor | None) -> Outputs:
        return self.fn(self.module(), self.key, x, fixed_idx, self.valid, self.params)


@dataclass
class _Entry:
    runner: _Graph | _Compiled | _Failed
    tensors: tuple[torch.Tensor, ...]  # the parameters and buffers at capture
    addresses: tuple[int, ...]  # and where their data was
    n_outputs: int  # the model's outputs (fixed classes are checked against it)

    def moved(self) -> bool:
        """A parameter's data moved since the capture (``model.to(...)``, ``param.data = ...``)."""
        return tuple(t.data_ptr() for t in self.tensors) != self.addresses


_CACHE: weakref.WeakKeyDictionary[nn.Module, OrderedDict[PassKey, _Entry]] = weakref.WeakKeyDictionary()
_CACHE_GUARD = threading.Lock()


def _entry(runner: _Graph | _Compiled | _Failed, module: nn.Module | None, n_outputs: int) -> _Entry:
    """A cache entry that remembers where ``module``'s weights were (a capture reads them by address)."""
    tensors = () if module is None else (*module.parameters(), *module.buffers())
    return _Entry(runner, tensors, tuple(t.data_ptr() for t in tensors), n_outputs)


def cached_passes(module: nn.Module) -> list[PassKey]:
    """The keys of the passes kept for ``module``, least recently used first."""
    with _CACHE_GUARD:
        return list(_CACHE.get(module, {}))


def clear(module: nn.Module | None = None) -> None:
    """Drop the captured passes of ``module`` (default: of every model), freeing their memory."""
    with _CACHE_GUARD:
        if module is None:
            _CACHE.clear()
        else:
            _CACHE.pop(module, None)


def _lookup(module: nn.Module, key: PassKey) -> _Entry | None:
    with _CACHE_GUARD:
        table = _CACHE.get(module)
        if table is None or key not in table:
            return None
        table.move_to_end(key)
        return table[key]


def _store(module: nn.Module, key: PassKey, entry: _Entry) -> None:
    with _CACHE_GUARD:
        table = _CACHE.setdefault(module, OrderedDict())
        table[key] = entry
        table.move_to_end(key)
        while len(table) > MAX_GRAPHS:
            table.popitem(last=False)


def why_eager(mode: str, spec: object, req: ExplainRequest, params: dict) -> str:
    """Why ``spec`` on ``req`` runs eager under ``mode`` (``""``: it can be accelerated).

    ``spec`` is the registry entry (read by attribute: ``label``, ``needs``, ``hessian``).
    """
    label = spec.label  # type: ignore[attr-defined]
    if mode == "off":
        return ""
    device = req.x.device
    if mode in ("auto", "cuda_graph") and device.type != "cuda":
        return f"CUDA graphs need a CUDA device; this model runs on {device.type}."
    if mode == "auto" and req.x.shape[0] != 1:
        return f"accelerate='auto' replays graphs for one image; a batch of {req.x.shape[0]} runs eager."
    if "masked_forwards" in spec.needs:  # type: ignore[attr-defined]
        return f"{label} runs masked forward passes, already batched; only one-pass methods are accelerated."
    if spec.hessian:  # type: ignore[attr-defined]
        return f"{label} needs second derivatives, which the accelerated pass does not compute."
    if not isinstance(req.layer_name, str):
        return "Several layers are fused; the accelerated pass explains one layer."
    if params.get("aug_smooth"):
        return "Test-time augmentation runs six passes; the accelerated pass is one."
    choice = req.choose
    if not isinstance(choice, ClassSelection):
        return "The classes are chosen by a custom function; the accelerated pass needs top-K or fixed classes."
    if choice.extra is not None:
        return "Extra classes depend on the top-K on the CPU; the accelerated pass takes top-K or fixed classes."
    return ""


def _key(mode: str, spec: object, req: ExplainRequest, own: dict) -> PassKey:
    choice: ClassSelection = req.choose  # type: ignore[assignment]
    target = spec.target  # type: ignore[attr-defined]
    if choice.class_idx is None:
        top_k = k = 1 if choice.top_k is None else int(choice.top_k)  # as select_classes
    else:
        top_k, k = None, max(len(dict.fromkeys(r)) for r in choice.class_idx)
    return PassKey(
        mode="cuda_graph" if mode == "auto" else mode,
        layer=str(req.layer_name),
        shape=tuple(req.x.shape),
        dtype=req.x.dtype,
        device=req.x.device,
        top_k=top_k,
        k=k,
        autocast=req.autocast,
        needs_gradients=spec.needs_gradients,  # type: ignore[attr-defined]
        target=target,
        target_params=tuple(sorted(own.items())) if target is not None else (),
    )


def _fixed(req: ExplainRequest, key: PassKey, n_outputs: int) -> torch.Tensor | None:
    """The fixed classes ``[N, K]`` on the device, checked and padded as the eager choice does."""
    if key.top_k is not None:
        return None
    # select_classes reads only the logits' shape for fixed classes: no pass needed to check them.
    idx = req.choose(torch.zeros(key.shape[0], n_outputs))
    return idx.to(key.device)


def run(
    spec: object,
    req: ExplainRequest,
    params: dict,
    own: dict,
    eager: Callable[[], MapResult],
) -> MapResult:
    """``spec`` on ``req`` through the accelerated pass where it applies, else ``eager()``.

    Args:
        spec: the registry entry (``label``, ``needs``, ``hessian``, ``needs_gradients``,
            ``target``, ``compute``).
        req: the request; ``req.accelerate`` is the mode.
        params: every parameter (the CAM driver's included).
        own: the method's own parameters (what its maths and target take).
        eager: runs the eager CAM driver.

    Returns:
        The :class:`MapResult`, with ``path`` and, when it ran eager, ``path_note``.
    """
    mode = check_mode(req.accelerate)
    reason = why_eager(mode, spec, req, params)
    if mode == "off":
        return eager()
    if reason:
        return replace(eager(), path_note=reason)
    module = req.module
    key = _key(mode, spec, req, own)
    with model_lock(module):
        entry = _lookup(module, key)
        if entry is not None and entry.moved():
            entry = None  # the parameters moved: the capture would read stale addresses
        if entry is not None and isinstance(entry.runner, _Failed):
            return replace(eager(), path_note=entry.runner.reason)
        # A new key runs eager first: it checks classes, layer and shapes with the usual messages.
        first = eager() if entry is None else None
        try:
            if entry is None:
                valid = req.choose.valid  # type: ignore[attr-defined]
                valid = None if valid is None else valid.to(key.device)
                n_outputs = int(first.logits.shape[1])
                fixed = _fixed(req, key, n_outputs)
                if key.mode == "cuda_graph":
                    runner: _Graph | _Compiled = _Graph(module, key, req.x, fixed, valid, own)
                else:
                    runner = _Compiled(module, key, valid, own)
                entry = _entry(runner, module, n_outputs)
                _store(module, key, entry)
            else:
                fixed = _fixed(req, key, entry.n_outputs)
            outputs = entry.runner(req.x, fixed)  # type: ignore[operator]
        except XaiCoreError:
            raise
        except Exception as err:  # noqa: BLE001 - a capture or compile that fails means: run eager
            what = "Capturing a CUDA graph" if key.mode == "cuda_graph" else "torch.compile"
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            reason = f"{what} failed ({type(err).__name__}: {first_line}); the passes run eager."
            log.warning("%s: %s", spec.label, reason)  # type: ignore[attr-defined]
            _store(module, key, _entry(_Failed(reason), None, 0))
            return replace(first if first is not None else eager(), path_note=reason)
        return _finish(spec, req, params, own, key, outputs)


def _finish(spec: object, req: ExplainRequest, params: dict, own: dict, key: PassKey, outputs: Outputs) -> MapResult:
    """The method's maths on the pass's outputs, copied out of the static buffers."""
    logits, idx, activations, grads = outputs
    logits, idx = logits.float().clone(), idx.clone()
    ctx = CamContext(
        req.module, req.x, key.layer, activations.float(), grads, idx, logits, req.probabilities, req.progress, None
    )
    maps = layer_maps(
        ctx,
        spec.compute,  # type: ignore[attr-defined]
        label=spec.label,  # type: ignore[attr-defined]
        autocast=req.autocast,
        eigen_smooth=bool(params.get("eigen_smooth", False)),
        params=own,
    )
    return MapResult(maps.clone(), idx, logits, int(activations.shape[1]), path=key.mode)

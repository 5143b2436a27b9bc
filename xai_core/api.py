"""The notebook-level API: pick a model, explain images (:func:`explain`), fuse them.

Drawing them is :mod:`xai_core.render` (``xc.render_map``, ``xc.render_fused``, ...).

Example:
    >>> import xai_core as xc
    >>> model = xc.load_model("efficientnet_lite0")           # offline weights
    >>> image = xc.read_image("samples/imagenet/cat_dog.png")
    >>> exp = xc.explain(model, image, method="grad_cam", top_k=3)
    >>> exp.predictions[0]                                     # (class, name, probability)
    (243, 'bull mastiff', 0.33...)
    >>> fused = exp.fused(k=2, activation="relu")              # FM-G-CAM, maps in [0, 1]
    >>> picture = xc.render_fused(exp, fused)                  # uint8 [224, 224, 3]
    >>> exps = xc.explain(model, [image, image], method="fg_cam")   # a batch: one Explanation each

An :class:`Explanation` holds the raw signed maps of the K_max explained classes of one
image. Everything shown from it afterwards (any K up to K_max, end activation,
normalisation, colour map, opacity) is computed from those maps without the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from xai_core.errors import MethodError
from xai_core.explainers import COMPOSITE_EXPLAINERS  # noqa: F401 - registers FG-CAM, LRP, FM-G-CAM
from xai_core.fusion.fmgcam import FusedMap, fm_g_cam
from xai_core.methods.accelerate import check_mode
from xai_core.methods.base import ClassSelection, class_rows, unique_rows
from xai_core.methods.context import ExplainRequest, Progress
from xai_core.methods.registry import Explainer, get_explainer
from xai_core.models.device import CPU_MEMORY_BUDGET, default_memory_budget, images_in_budget
from xai_core.models.preprocess import PreparedInput, prepare
from xai_core.models.registry import LoadedModel, load_model
from xai_core.render.colour import minmax, resize_map
from xai_core.render.relevance import scale_relevance

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_MEMORY_BUDGET = CPU_MEMORY_BUDGET
"""Bytes one explain pass may use on the CPU (on CUDA: from the free memory, see :func:`images_per_pass`)."""


@dataclass(frozen=True)
class Explanation:
    """Raw result of explaining one image (signed maps where the method's map lives).

    Attributes:
        model_key, method: what produced it.
        layer: where the maps live: the explained layer, or for relevance methods the
            target layer (``"input"`` for input pixels; the CAM layer is in ``params``).
        class_idx: the K_max explained classes, most likely first (or as requested).
        labels: their names.
        probs: their probabilities.
        cams: ``[K_max, h, w]`` signed maps on the CPU (``sum_c w_c A_c`` for CAMs).
        channels: C of the explained layer (FM-G-CAM's 1/C); 1 for relevance maps.
        all_probs: ``[n]`` probabilities of every output.
        prepared: the model input and the view the model saw, with its crop box
            (``view`` is ``None`` when a prepared tensor was explained).
        params: method parameters used (defaults filled in).
        seconds: compute time of this image (a batch's time shared equally by its images).
        path: how the passes ran: ``"eager"``, ``"cuda_graph"`` or ``"compile"`` (see
            ``accelerate`` in :func:`explain`).
        path_note: why they ran eager when an acceleration was asked for (else ``""``).
    """

    model_key: str
    method: str
    layer: str
    class_idx: tuple[int, ...]
    labels: tuple[str, ...]
    probs: tuple[float, ...]
    cams: torch.Tensor
    channels: int
    all_probs: np.ndarray
    prepared: PreparedInput
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    path: str = "eager"
    path_note: str = ""

    @property
    def k_max(self) -> int:
        """How many classes were computed (any K up to this needs no model call)."""
        return len(self.class_idx)

    @property
    def predictions(self) -> list[tuple[int, str, float]]:
        """``(class index, name, probability)`` per explained class."""
        return list(zip(self.class_idx, self.labels, self.probs))

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return tuple(self.prepared.tensor.shape[-2:])

    def fused(
        self,
        k: int | None = None,
        *,
        normalise: str = "reference",
        activation: str = "relu",
        brightness: str = "normalised",
        clip_percentile: float | None = None,
    ) -> FusedMap:
        """FM-G-CAM over the first ``k`` classes (default all computed).

        ``brightness="probability"`` scales each class's map by its probability relative
        to the most probable class shown (see :func:`~xai_core.fusion.brightness_caption`).
        ``clip_percentile`` (for relevance maps at input resolution, e.g. FG-CAM's 99.5):
        the K maps are first clipped at that percentile of ``|R|`` over all of them, one
        shared limit (:func:`xai_core.render.relevance.scale_relevance`), so that a few
        extreme edge pixels do not set the fused map's scale and leave the rest black.
        """
        k = self.k_max if k is None else int(k)
        if not 1 <= k <= self.k_max:
            raise MethodError(f"k must be between 1 and {self.k_max} (the classes computed), got {k}.")
        cams = self.cams[:k]
        if clip_percentile is not None:
            cams = torch.from_numpy(scale_relevance(cams.detach().cpu().numpy(), percentile=clip_percentile))
        return fm_g_cam(
            cams,
            channels=self.channels,
            normalise=normalise,
            activation=activation,
            brightness=brightness,
            probs=self.probs[:k],
        )

    def saliency(self, i: int = 0, *, relu: bool = True) -> np.ndarray:
        """Class ``i``'s map at input resolution ``[H, W]``: ReLU (optional), upsampled, min-max scaled."""
        cam = self.cams[i]
        if relu:
            cam = cam.clamp(min=0)
        return minmax(resize_map(cam, self.input_size))


# ----------------------------------------------------------------------------- inputs


def _prepare_all(model: LoadedModel, images: object) -> tuple[list[PreparedInput], bool]:
    """Prepared inputs of one image, a list of images, or a prepared ``[N, C, H, W]`` tensor.

    Returns:
        ``(prepared, single)``: ``single`` when one image (not a list) was given.
    """
    pre = model.spec.preprocessing
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != pre.channels:
            raise MethodError(
                f"A prepared tensor must be [N, {pre.channels}, H, W] for {model.spec.label}; "
                f"got shape {tuple(images.shape)}. Pass PIL images or arrays to have them prepared."
            )
        h, w = images.shape[-2:]
        x = images.detach().float()
        return [
            PreparedInput(x[i : i + 1], None, (0.0, 0.0, float(w), float(h)), (int(w), int(h))) for i in range(len(x))
        ], False
    if isinstance(images, (list, tuple)):
        if not images:
            raise MethodError("No images to explain: the list is empty.")
        return [prepare(im, pre) for im in images], False
    return [prepare(images, pre)], True


def images_per_pass(model: LoadedModel, k: int, memory_budget: int | None = None) -> int:
    """How many images one forward + backward pass may take within ``memory_budget`` bytes.

    The estimate: per image, every traced layer output kept for the backward pass
    (float32, twice: forward values and autograd's saved tensors), plus K gradient
    copies of the largest layer output. It is deliberately coarse; pass ``max_batch``
    to :func:`explain` to choose the chunk size yourself. The default budget comes from
    the model's device (:func:`xai_core.models.device.default_memory_budget`: half the
    available memory on CUDA, 2 GiB on the CPU).
    """
    budget = default_memory_budget(model.device) if memory_budget is None else int(memory_budget)
    # math.prod, not np.prod: on EfficientNet-Lite0's 166 layers np.prod costs about 1 ms per call.
    sizes = [math.prod(layer.shape) for layer in model.layers] or [int(model.example_input().numel())]
    per_image = 4 * (2 * sum(sizes) + k * max(sizes))
    return images_in_budget(per_image, budget)


def _memory_format(x: torch.Tensor, spec: Explainer) -> torch.Tensor:
    """The memory format of a chunk's input, chosen deliberately.

    Batches of gradient-CAM methods go in ``channels_last`` on the CPU: oneDNN's batched
    convolutions are about 2x faster in it for EfficientNet-Lite0, while one image is
    faster in the default format (``benchmarks/batch.py`` measures both). Methods whose
    maps divide by or subtract nearly equal numbers keep the default format, so a batch
    gives the same maps as single images to float32 rounding: Ablation-CAM divides by the
    class logit, CLRP/SGLRP subtract relevances, and the other relevance rules share
    their graph (masked batches choose their own format).
    """
    if x.device.type == "cpu" and x.shape[0] > 1 and spec.gradients_only:
        return x.contiguous(memory_format=torch.channels_last)
    return x


# ----------------------------------------------------------------------------- explain


def explain(
    model: LoadedModel | str,
    images: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray] | torch.Tensor,
    *,
    method: str = "grad_cam",
    layer: str | Sequence[str] | None = None,
    top_k: int = 5,
    class_idx: Sequence[int] | Sequence[Sequence[int]] | None = None,
    extra_classes: Sequence[int] | Sequence[Sequence[int]] | None = None,
    progress: Progress | None = None,
    max_batch: int | None = None,
    memory_budget: int | None = None,
    precision: str = "fp32",
    accelerate: str = "off",
    **params: object,
) -> Explanation | list[Explanation]:
    """Explain each image's top-K classes (or chosen classes) with any registered method.

    Gradient methods run one forward pass and one batched backward pass for all images
    and classes of a chunk; FG-CAM and LRP likewise; Score-CAM and Ablation-CAM share
    their masked passes across images. Everything runs on the model's device.

    Args:
        model: a :class:`LoadedModel` or a registry key.
        images: one PIL image or array (returns one :class:`Explanation`), a list of them,
            or a prepared ``[N, C, H, W]`` tensor (returns a list).
        method: a key of the explainer registry (``xai_core.list_explainers()``).
        layer: dotted layer name; default the model's ``default_layer``. For relevance
            methods, the layer the CAM components are taken at (FG-CAM). CAM-family
            methods also take a list of names: their maps are fused (parameter
            ``layer_fusion``), and ``Explanation.layer`` joins the names with ``+``.
        top_k: explain each image's K most likely classes.
        class_idx: explain these classes instead: one list for all images, or one per image.
        extra_classes: classes explained after the top-K (or ``class_idx``): one list for
            all images or one per image; classes already chosen are not repeated.
        progress: ``progress(done, total)`` for slow methods (per chunk of images).
        max_batch: images per forward/backward pass (default from ``memory_budget``).
        memory_budget: bytes a pass may use (default from the device: half the available
            memory on CUDA, 2 GiB on the CPU; see :func:`images_per_pass`).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: autocast for the
            forward passes of CAM-family methods and FM-G-CAM (README gives the measured
            difference from fp32); relevance and guided methods run in float32.
        accelerate: ``"off"`` (default, eager), ``"auto"`` (on a CUDA device, one image's
            forward + backward pass captured once as a CUDA graph and replayed; eager for
            batches and elsewhere), ``"cuda_graph"`` (graphs at any batch size) or
            ``"compile"`` (``torch.compile`` of the same pass, also on the CPU; its first
            call compiles for tens of seconds). Covers the one-pass CAM family (Grad-CAM,
            Grad-CAM++, XGrad-CAM, HiResCAM, Layer-CAM, ...) and FM-G-CAM over them; the rest
            runs eager. Never raises because of the switch: ``Explanation.path`` says how
            the passes ran, ``path_note`` why they ran eager (:mod:`xai_core.methods.accelerate`).
        **params: method parameters (``get_explainer(method).params``).

    Returns:
        One :class:`Explanation` per image (one, not a list, for a single image).

    Raises:
        UnknownNameError: unknown method, layer or model.
        MethodError: bad parameters, classes or inputs.
    """
    if isinstance(model, str):
        model = load_model(model)
    spec = get_explainer(method)
    params = spec.check_params(params)
    check_mode(accelerate)
    if precision not in PRECISIONS:
        raise MethodError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision != "fp32" and not spec.mixed_precision:
        raise MethodError(
            f"Mixed precision applies to the CAM family (and FM-G-CAM over it); {spec.label} runs its own "
            "passes in float32. Use precision='fp32'."
        )
    prepared, single = _prepare_all(model, images)
    layer = layer or model.spec.default_layer
    n = len(prepared)
    rows = None if class_idx is None else class_rows(class_idx, n)
    extra = None if extra_classes is None else class_rows(extra_classes, n)
    k_guess = max(len(r) for r in rows) if rows else int(top_k) + (max(len(r) for r in extra) if extra else 0)
    chunk = int(max_batch) if max_batch else images_per_pass(model, max(k_guess, 1), memory_budget)
    if chunk < 1:
        raise MethodError(f"max_batch must be at least 1, got {max_batch}.")
    device = model.device
    out: list[Explanation] = []
    for start in range(0, n, chunk):
        part = prepared[start : start + chunk]
        out.extend(
            _explain_chunk(
                model, spec, part, layer, top_k, rows, extra, start, device, progress, precision, params, accelerate
            )
        )
    return out[0] if single else out


def _explain_chunk(
    model: LoadedModel,
    spec: Explainer,
    part: list[PreparedInput],
    layer: str,
    top_k: int,
    rows: list[list[int]] | None,
    extra: list[list[int]] | None,
    start: int,
    device: torch.device,
    progress: Progress | None,
    precision: str,
    params: dict,
    accelerate: str = "off",
) -> list[Explanation]:
    """One forward (and backward) pass over ``part``; one Explanation per image."""
    x = _memory_format(torch.cat([p.tensor for p in part]).to(device), spec)
    stop = start + len(part)
    valid = model.valid_outputs

    choose = ClassSelection(
        top_k=top_k,
        class_idx=None if rows is None else rows[start:stop],
        extra=None if extra is None else extra[start:stop],
        valid=valid,
    )
    req = ExplainRequest(
        model.module, x, layer, choose, model.probabilities, progress, PRECISIONS[precision], accelerate
    )
    began = time.perf_counter()
    result = spec.run(req, **params)
    seconds = (time.perf_counter() - began) / len(part)
    probs = model.probabilities(result.logits.float()).cpu()
    maps = result.maps.detach().float().cpu()
    where = spec.map_layer(layer, params)
    used = {**params, "cam_layer": layer} if spec.resolution == "input" else dict(params)
    explanations = []
    for i, (classes, prep) in enumerate(zip(unique_rows(result.class_idx), part)):
        explanations.append(
            Explanation(
                model_key=model.key,
                method=spec.key,
                layer=str(where),
                class_idx=classes,
                labels=tuple(model.labels[c] for c in classes),
                probs=tuple(float(probs[i, c]) for c in classes),
                cams=maps[i, : len(classes)].clone(),
                channels=result.channels,
                all_probs=probs[i].numpy(),
                prepared=prep,
                params=used,
                seconds=seconds,
                path=result.path,
                path_note=result.path_note,
            )
        )
    return explanations


def explain_fine(
    model: LoadedModel,
    exp: Explanation,
    *,
    target_layer: str = "input",
    base: str = "grad_cam",
    denoise: bool = False,
    k: int | None = None,
    progress: Progress | None = None,
    **params: object,
) -> Explanation:
    """FG-CAM maps of ``exp``'s first ``k`` classes (default all) at ``target_layer``.

    A convenience over ``explain(model, ..., method="fg_cam")`` for the classes and CAM
    layer of an existing explanation: the components are taken at ``exp.layer`` with the
    ``base`` method, optionally denoised (FG-CAM_D), and carried down to ``target_layer``
    (a layer name or ``"input"``). The result fuses (``.fused``) and renders like any
    other explanation: FM-G-CAM over FG-CAM maps gives the fine-grained fused map.
    """
    k = exp.k_max if k is None else int(k)
    if not 1 <= k <= exp.k_max:
        raise MethodError(f"k must be between 1 and {exp.k_max}, got {k}.")
    fine = explain(
        model,
        exp.prepared.tensor,
        method="fg_cam_d" if denoise else "fg_cam",
        layer=exp.layer,
        class_idx=list(exp.class_idx[:k]),
        progress=progress,
        base=base,
        target_layer=target_layer,
        **params,
    )[0]
    return replace(fine, prepared=exp.prepared)

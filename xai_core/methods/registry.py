"""The explainer registry: every method a user can pick, as data. One entry per method.

Every caller reads this registry: :func:`xai_core.explain`, the evaluation command and
every dashboard page (widgets come from the entries' :class:`Param` lists). No other list
of method names exists.

Adding a method is one function plus one entry:

* a CAM-family method (``driver="cam"``) is ``compute(ctx: CamContext, **params)``
  returning channel weights ``[N, K, C]``, per-position components ``[N, K, C, h, w]``
  or finished maps ``[N, K, h, w]``: the driver (:func:`~xai_core.methods.base._run_cams`)
  has already run one forward pass and, if ``needs`` holds ``"gradients"``, one batched
  backward pass (of the class logits, or of the entry's ``target`` scores); it sums the
  weighted activations and adds what every CAM-family entry offers (the parameters in
  :data:`CAM_DRIVER_PARAMS`: test-time augmentation and principal-component smoothing,
  fusion of several layers);
* any other method (``driver="own"``) is ``compute(req: ExplainRequest, **params) ->
  MapResult`` and runs its own passes (relevance methods, fusions).

Then :func:`register_explainer` (or one more entry in :data:`EXPLAINERS` below). The
registry-wide contract tests (``tests/test_registry.py``) pick it up with no edit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from xai_core.errors import MethodError, UnknownNameError
from xai_core.hooks.layers import linear_head
from xai_core.methods import accelerate, activation, gradient, guided, noisy, score
from xai_core.methods.base import _run_cams
from xai_core.methods.context import CamContext, ExplainRequest, MapResult
from xai_core.methods.smoothing import FUSIONS

NEEDS = frozenset({"gradients", "relevance_rules", "masked_forwards"})
FAMILIES = ("gradient", "linear", "activation", "perturbation", "relevance", "fusion", "transformer")


@dataclass(frozen=True)
class Param:
    """A tunable method parameter, with what a widget and a validator need.

    Attributes:
        name: keyword argument of the method.
        label: widget label (says what it is, e.g. "Masked inputs per batch").
        default: default value; its type is the parameter's type unless ``kind`` says otherwise.
        choices: the allowed values (a select box), or ``None``.
        minimum, maximum: inclusive range of numbers.
        help: widget help text.
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"layer"`` (a layer name
            or ``"input"``); derived from ``default``/``choices`` when empty.
    """

    name: str
    label: str
    default: object
    choices: tuple[object, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    kind: str = ""

    @property
    def type(self) -> str:
        """The parameter's kind (see ``kind``)."""
        if self.kind:
            return self.kind
        if self.choices is not None:
            return "choice"
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "float"
        return "str"

    def check(self, value: object, method: str) -> object:
        """``value`` converted to the parameter's type, or a :class:`MethodError` saying what is valid."""
        kind = self.type
        where = f"{method} parameter {self.name!r}"
        if kind == "choice":
            if value not in self.choices:
                raise MethodError(f"{where} must be one of {', '.join(map(repr, self.choices))}; got {value!r}.")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise MethodError(f"{where} must be True or False; got {value!r}.")
            return value
        if kind in ("int", "float"):
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise MethodError(f"{where} must be a number; got {value!r}.") from None
            if not math.isfinite(number) or (kind == "int" and number != int(number)):
                raise MethodError(
                    f"{where} must be a{'n integer' if kind == 'int' else ' finite number'}; got {value!r}."
                )
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not low <= number <= high:
                raise MethodError(f"{where} must be between {self.minimum} and {self.maximum}; got {value!r}.")
            return int(number) if kind == "int" else number
        if not isinstance(value, str) or not value:
            raise MethodError(f"{where} must be a non-empty name; got {value!r}.")
        return value


@dataclass(frozen=True)
class Explainer:
    """One method a user can pick.

    Attributes:
        key: registry key (snake case).
        label: display name.
        family: one of :data:`FAMILIES`.
        compute: the method (see the module docstring for the two signatures).
        paper: citation.
        summary: one paragraph for the home page and README.
        driver: ``"cam"`` (the CAM driver runs the passes) or ``"own"``.
        needs: what it uses, a subset of :data:`NEEDS` (gradients, relevance rules,
            masked forward passes).
        resolution: ``"layer"`` (maps at the explained layer's resolution) or
            ``"input"`` (relevance carried down to ``target_layer``: a shallower layer or
            the input pixels).
        params: tunable parameters.
        class_specific: False for class-agnostic maps (Eigen-CAM).
        slow: runs many forward passes (the page warns and shows progress).
        per_class_maps: gives one map per class that FM-G-CAM can fuse.
        target: for CAM-family methods, what is differentiated instead of the class
            logits, ``target(logits [N, n], class_idx [N, K], params) -> [N, K]``.
        hessian: the CAM driver also computes ``ctx.hvp`` (Hessian-vector products).
        gives_weights: ``compute`` returns per-channel weights ``[N, K, C]`` from the
            activations and the class-logit gradients (or none): FG-CAM can start from it
            (:meth:`channel_weights`; the entry becomes a choice of FG-CAM's ``base``).
    """

    key: str
    label: str
    family: str
    compute: Callable[..., object]
    paper: str
    summary: str
    driver: str = "cam"
    needs: frozenset[str] = frozenset()
    resolution: str = "layer"
    params: tuple[Param, ...] = field(default_factory=tuple)
    class_specific: bool = True
    slow: bool = False
    per_class_maps: bool = True
    target: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor] | None = None
    hessian: bool = False
    gives_weights: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}; got {self.family!r}.")
        if self.driver not in ("cam", "own") or self.resolution not in ("layer", "input"):
            raise ValueError(f"{self.key}: driver must be 'cam' or 'own', resolution 'layer' or 'input'.")
        if not self.needs <= NEEDS:
            raise ValueError(f"{self.key}: needs must be a subset of {sorted(NEEDS)}; got {sorted(self.needs)}.")

    @property
    def needs_gradients(self) -> bool:
        """The CAM driver computes ``ctx.grads`` (one batched backward pass)."""
        return "gradients" in self.needs

    def channel_weights(self, inputs: Any, **params: object) -> torch.Tensor:
        """Per-channel weights ``[N, K, C]`` at ``inputs.layer_name`` (an FG-CAM base).

        ``inputs`` has the fields of :class:`xai_core.relevance.WeightInputs`, read by name
        (the registry sits beside ``relevance``, not above it).

        ``params`` the method does not take are ignored; the others are checked.

        Raises:
            MethodError: the method yields no per-channel weights.
        """
        if not self.gives_weights:
            raise MethodError(f"{self.label} gives no per-channel weights, so FG-CAM cannot start from it.")
        driver = {p.name for p in CAM_DRIVER_PARAMS}
        own = {p.name for p in self.params} - driver
        checked = self.check_params({k: v for k, v in params.items() if k in own})
        ctx = CamContext(
            module=inputs.module,
            x=inputs.x,
            layer_name=inputs.layer_name,
            activations=inputs.activations,
            grads=inputs.grads,
            class_idx=inputs.class_idx,
            logits=inputs.logits,
            probabilities=inputs.probabilities,
            progress=inputs.progress,
        )
        return self.compute(ctx, **{k: v for k, v in checked.items() if k in own})  # type: ignore[return-value]

    @property
    def is_cam(self) -> bool:
        """A CAM-family method: the CAM driver runs its passes (and adds :data:`CAM_DRIVER_PARAMS`)."""
        return self.driver == "cam"

    @property
    def fusable(self) -> bool:
        """A CAM-family method with one map per class: a base a fusion (FM-G-CAM) can fuse."""
        return self.is_cam and self.per_class_maps

    @property
    def mixed_precision(self) -> bool:
        """Runs under autocast when asked (CAM-family methods and fusions over them); the rest run in float32."""
        return self.is_cam or self.family == "fusion"

    @property
    def gradients_only(self) -> bool:
        """Uses one forward and one backward pass and nothing else (no masked passes, no relevance rules)."""
        return self.needs == frozenset({"gradients"})

    def map_layer(self, layer: str | list[str] | tuple[str, ...], params: dict[str, object]) -> str:
        """Where this explainer's maps live for the explained ``layer``: the layer, or ``target_layer``.

        Several fused layers are named joined by ``+``.
        """
        where = params.get("target_layer", layer) if self.resolution == "input" else layer
        return where if isinstance(where, str) else "+".join(where)  # type: ignore[arg-type]

    def param(self, name: str) -> Param:
        """The parameter called ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise UnknownNameError(f"{self.label} parameter", name, [p.name for p in self.params])

    def check_params(self, params: dict[str, object]) -> dict[str, object]:
        """Every parameter, defaults filled in, each checked against its type and range.

        Raises:
            MethodError: an unknown parameter or a value out of range.
        """
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise MethodError(
                f"{self.label} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are {', '.join(known) or 'none'}."
            )
        return {name: p.check(params[name], self.label) if name in params else p.default for name, p in known.items()}

    def run(self, req: ExplainRequest, **params: object) -> MapResult:
        """Run on a batch (``params`` already checked by :meth:`check_params`).

        With ``req.accelerate`` other than ``"off"``, CAM-family passes go through
        :mod:`xai_core.methods.accelerate` (a CUDA graph or ``torch.compile``) where it
        applies; the result's ``path`` and ``path_note`` say how they ran.
        """
        accelerate.check_mode(req.accelerate)
        if not self.is_cam:
            if not isinstance(req.layer_name, str):
                raise MethodError(f"{self.label} explains one layer; only CAM-family methods fuse several layers.")
            result: MapResult = self.compute(req, **params)  # type: ignore[assignment]
            if req.accelerate != "off" and result.path == "eager" and not result.path_note:
                note = f"{self.label} runs its own passes; the accelerated pass covers the CAM family and FM-G-CAM."
                result = replace(result, path_note=note)
            return result

        def eager() -> MapResult:
            return _run_cams(
                req.module,
                req.x,
                self.compute,
                label=self.label,
                layer=req.layer_name,
                choose=req.choose,
                needs_gradients=self.needs_gradients,
                probabilities=req.probabilities,
                progress=req.progress,
                autocast=req.autocast,
                target=self.target,
                hessian=self.hessian,
                **params,
            )

        if req.accelerate == "off":
            return eager()
        driver = {p.name for p in CAM_DRIVER_PARAMS}
        own = {k: v for k, v in params.items() if k not in driver}
        return accelerate.run(self, req, params, own, eager)


# ------------------------------------------------------------------ method glue (small, per family)


def _from_gradients(maths: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(maths)
    def compute(ctx: CamContext) -> torch.Tensor:
        return maths(ctx.activations, ctx.grads)

    return compute


def _finer(ctx: CamContext, *, alpha: float, references: int, comparison: str) -> torch.Tensor:
    return gradient.grad_cam_weights(ctx.activations, ctx.grads)


def _finer_target(logits: torch.Tensor, class_idx: torch.Tensor, params: dict) -> torch.Tensor:
    return gradient.finer_target(
        logits, class_idx, alpha=params["alpha"], references=params["references"], comparison=params["comparison"]
    )


def _shapley(ctx: CamContext) -> torch.Tensor:
    return gradient.shapley_cam_weights(ctx.activations, ctx.grads, ctx.hvp)


def _fem(ctx: CamContext, *, k: float) -> torch.Tensor:
    return activation.fem_weights(ctx.activations, k).expand(-1, ctx.class_idx.shape[1], -1).clone()


def _random(ctx: CamContext, *, seed: int) -> torch.Tensor:
    return activation.random_weights(ctx.class_idx, ctx.activations.shape[1], seed, ctx.activations.dtype)


def _kpca(ctx: CamContext, *, kernel: str, gamma: float) -> torch.Tensor:
    maps = activation.kpca_cam(ctx.activations, kernel=kernel, gamma=gamma)
    return maps.expand(-1, ctx.class_idx.shape[1], -1, -1).clone()


def _cam(ctx: CamContext) -> torch.Tensor:
    weight = linear_head(ctx.module, ctx.activations.shape[1])
    if weight is None:
        raise MethodError(
            f"CAM needs a model whose layer {ctx.layer_name!r} is followed only by global average pooling "
            f"and one linear layer with {ctx.activations.shape[1]} inputs; this model has none. "
            "Use Grad-CAM, which equals CAM on such models and works on any CNN."
        )
    weight = weight.to(device=ctx.activations.device, dtype=ctx.activations.dtype)
    return weight[ctx.class_idx]


def _eigen(ctx: CamContext) -> torch.Tensor:
    return activation.eigen_cam(ctx.activations).expand(-1, ctx.class_idx.shape[1], -1, -1).clone()


_BATCH = Param(
    "batch_size",
    "Masked inputs per batch",
    32,
    minimum=1,
    maximum=1024,
    help="Masked copies of the images run through the model per forward pass: larger is faster but uses more memory.",
)
CAM_DRIVER_PARAMS: tuple[Param, ...] = (
    Param(
        "aug_smooth",
        "Test-time augmentation smoothing",
        False,
        help="Average the ReLU'd, scaled maps of 6 augmented copies of each image (horizontal flip x brightness "
        "0.9/1/1.1), as pytorch-grad-cam's aug_smooth: less noisy maps, 6 times the cost.",
    ),
    Param(
        "eigen_smooth",
        "Principal-component smoothing",
        False,
        help="Project the weighted feature maps on their first principal component instead of summing them "
        "(pytorch-grad-cam's eigen_smooth): less noise. No effect on methods that are already a projection.",
    ),
    Param(
        "layer_fusion",
        "Fuse several layers by",
        "mean",
        choices=FUSIONS,
        help="When several layers are explained: the mean (pytorch-grad-cam) or the maximum (torchcam fuse_cams) "
        "of the ReLU'd, min-max scaled maps.",
    ),
)
"""Parameters the CAM driver adds to every ``driver="cam"`` entry (see :func:`~xai_core.methods.base._run_cams`)."""


def _with_driver_params(spec: Explainer) -> Explainer:
    """``spec`` with :data:`CAM_DRIVER_PARAMS` appended if it is a CAM-family entry."""
    if not spec.is_cam:
        return spec
    names = {p.name for p in spec.params}
    return replace(spec, params=spec.params + tuple(p for p in CAM_DRIVER_PARAMS if p.name not in names))


_SEED = Param("seed", "Random seed", 0, minimum=0, maximum=2**31 - 1, help="Seed of the random numbers (reproducible).")


EXPLAINERS: dict[str, Explainer] = {
    spec.key: _with_driver_params(spec)
    for spec in [
        Explainer(
            "grad_cam",
            "Grad-CAM",
            "gradient",
            _from_gradients(gradient.grad_cam_weights),
            "Selvaraju et al., Grad-CAM, ICCV 2017",
            "Weights each feature map by the average gradient of the class score over it: where the "
            "features that raise the score are.",
            needs=frozenset({"gradients"}),
            gives_weights=True,
        ),
        Explainer(
            "grad_cam_pp",
            "Grad-CAM++",
            "gradient",
            _from_gradients(gradient.grad_cam_pp_weights),
            "Chattopadhay et al., Grad-CAM++, WACV 2018",
            "Weights positive gradients by higher-order terms, so several instances of a class are all lit.",
            needs=frozenset({"gradients"}),
            gives_weights=True,
        ),
        Explainer(
            "xgrad_cam",
            "XGrad-CAM",
            "gradient",
            _from_gradients(gradient.xgrad_cam_weights),
            "Fu et al., Axiom-based Grad-CAM, BMVC 2020",
            "Gradient times activation, normalised per channel: satisfies the sensitivity and conservation axioms.",
            needs=frozenset({"gradients"}),
            gives_weights=True,
        ),
        Explainer(
            "hires_cam",
            "HiResCAM",
            "gradient",
            _from_gradients(gradient.hires_cam_components),
            "Draelos & Carin, HiResCAM, 2020",
            "Element-wise gradient times activation, no averaging: provably shows the locations the score used.",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "layer_cam",
            "Layer-CAM",
            "gradient",
            _from_gradients(gradient.layer_cam_components),
            "Jiang et al., LayerCAM, IEEE TIP 2021",
            "Positive gradients weight each position separately: sharper maps, also at shallow layers.",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "cam",
            "CAM",
            "linear",
            _cam,
            "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016",
            "The original class activation map: the last linear layer's weights applied to the final feature "
            "maps. Only for models ending in global average pooling and one linear layer.",
        ),
        Explainer(
            "score_cam",
            "Score-CAM",
            "perturbation",
            score.score_cam_channel_weights,
            "Wang et al., Score-CAM, CVPRW 2020",
            "Gradient-free: each feature map, used as a mask on the image, is weighted by the class "
            "probability the model gives the masked image. Slow: one forward pass per channel.",
            needs=frozenset({"masked_forwards"}),
            slow=True,
            gives_weights=True,
            params=(
                _BATCH,
                Param(
                    "variant",
                    "Score",
                    "probability",
                    choices=score.VARIANTS,
                    help="'probability': the authors' definition; 'logit_softmax': pytorch-grad-cam's variant.",
                ),
            ),
        ),
        Explainer(
            "ablation_cam",
            "Ablation-CAM",
            "perturbation",
            score.ablation_cam_weights,
            "Desai & Ramaswamy, Ablation-CAM, WACV 2020",
            "Gradient-free: each feature map is weighted by how much the class score drops when it is "
            "removed. Slow: one partial forward pass per channel.",
            needs=frozenset({"masked_forwards"}),
            slow=True,
            params=(_BATCH,),
        ),
        Explainer(
            "eigen_cam",
            "Eigen-CAM",
            "activation",
            _eigen,
            "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020",
            "The first principal component of the feature maps: where the dominant features are, "
            "whatever the class (the same map for every class).",
            class_specific=False,
            per_class_maps=False,
        ),
        Explainer(
            "finer_cam",
            "Finer-CAM",
            "gradient",
            _finer,
            "Zhang et al., Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation, CVPR 2025",
            "Grad-CAM of the class score minus the scores of the most similar classes (closest logits): the "
            "details that tell the class apart from its look-alikes, not everything they share.",
            needs=frozenset({"gradients"}),
            target=_finer_target,
            params=(
                Param(
                    "alpha",
                    "Comparison strength",
                    1.0,
                    minimum=0.0,
                    maximum=10.0,
                    help="How much of the similar classes' scores is subtracted (torchcam's gamma, 0.6 by default "
                    "there; pytorch-grad-cam's alpha, 1).",
                ),
                Param(
                    "references",
                    "Similar classes compared",
                    3,
                    minimum=1,
                    maximum=100,
                    help="The classes whose logits are closest to the explained class's.",
                ),
                Param(
                    "comparison",
                    "Combine the similar classes by",
                    "mean",
                    choices=gradient.COMPARISONS,
                    help="'mean': their mean score (torchcam, the paper); 'probability': a probability-weighted "
                    "mean of the differences (pytorch-grad-cam).",
                ),
            ),
        ),
        Explainer(
            "eigen_grad_cam",
            "EigenGrad-CAM",
            "gradient",
            _from_gradients(gradient.eigen_grad_cam),
            "Gildenblat et al., PyTorch library for CAM methods (pytorch-grad-cam), 2021: Eigen-CAM "
            "(Muhammad & Yeasin, IJCNN 2020) on gradient x activation",
            "The first principal component of gradient x activation: Eigen-CAM made class-specific, with less "
            "noise than the element-wise products.",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "kpca_cam",
            "KPCA-CAM",
            "activation",
            _kpca,
            "Karmani et al., KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA, "
            "MMSP 2024",
            "The first kernel principal component of the feature maps: Eigen-CAM with a non-linear kernel "
            "(the same map for every class). Slow at shallow layers: its kernel matrix has (h*w)^2 entries "
            "(202 s at a 112x112 layer of EfficientNet-Lite0 on 2 CPU cores, 0.05 s at 7x7).",
            class_specific=False,
            per_class_maps=False,
            slow=True,
            params=(
                Param("kernel", "Kernel", "sigmoid", choices=activation.KERNELS),
                Param(
                    "gamma",
                    "Kernel coefficient",
                    0.0,
                    minimum=0.0,
                    maximum=1e6,
                    help="0: scikit-learn's default, 1 / channels.",
                ),
            ),
        ),
        Explainer(
            "grad_cam_elementwise",
            "Grad-CAM element-wise",
            "gradient",
            _from_gradients(gradient.grad_cam_elementwise_components),
            "Gildenblat et al., PyTorch library for CAM methods (pytorch-grad-cam), 2021",
            "Gradient x activation per position with negative products dropped before the channel sum: "
            "HiResCAM without cancellation between channels.",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "shapley_cam",
            "ShapleyCAM",
            "gradient",
            _shapley,
            "Cai, CAMs as Shapley Value-based Explainers (ShapleyCAM), The Visual Computer 2025",
            "Channel weights from a second-order estimate of each feature map's Shapley value (gradient minus "
            "half the Hessian-vector product); equals Grad-CAM where the rest of the network is piecewise linear.",
            needs=frozenset({"gradients"}),
            hessian=True,
        ),
        Explainer(
            "fem",
            "FEM",
            "activation",
            _fem,
            "Fuad et al., Features Understanding in 3D CNNs for Actions Recognition in Video, IPTA 2020",
            "Gradient-free and class-agnostic: each feature map weighted by the share of its positions above "
            "mean + k standard deviations, so channels with unusually strong responses dominate.",
            class_specific=False,
            per_class_maps=False,
            params=(Param("k", "Standard deviations (k-sigma rule)", 2.0, minimum=0.0, maximum=10.0),),
        ),
        Explainer(
            "random_cam",
            "RandomCAM",
            "activation",
            _random,
            "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (the random baseline of pytorch-grad-cam)",
            "A sanity baseline: feature maps weighted by random numbers in [-1, 1] (seeded, per class). A method "
            "whose maps or scores are no better than this one's explains nothing.",
            params=(_SEED,),
        ),
        Explainer(
            "smooth_grad_cam_pp",
            "Smooth Grad-CAM++",
            "gradient",
            noisy.smooth_grad_cam_pp,
            "Omeiza et al., Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep "
            "Convolutional Neural Network Models, 2019",
            "Grad-CAM++ whose derivatives are averaged over noisy copies of the image (SmoothGrad): steadier "
            "weights, the map still on the clean image's features.",
            needs=frozenset({"gradients"}),
            params=(
                Param("num_samples", "Noisy copies", 4, minimum=1, maximum=256),
                Param(
                    "std",
                    "Noise standard deviation",
                    0.3,
                    minimum=0.0,
                    maximum=10.0,
                    help="In the units of the prepared (normalised) input.",
                ),
                _SEED,
            ),
        ),
        Explainer(
            "ss_cam",
            "SS-CAM",
            "perturbation",
            noisy.ss_cam,
            "Wang et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization, 2020",
            "Score-CAM with Gaussian noise added to every mask, scores averaged over samples. Very slow: "
            "samples x channels forward passes.",
            needs=frozenset({"masked_forwards"}),
            slow=True,
            params=(
                _BATCH,
                Param("num_samples", "Noisy samples per mask", 35, minimum=1, maximum=1000),
                Param("std", "Noise standard deviation", 2.0, minimum=0.0, maximum=100.0),
                _SEED,
            ),
        ),
        Explainer(
            "is_cam",
            "IS-CAM",
            "perturbation",
            noisy.is_cam,
            "Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based explanations, 2020",
            "Score-CAM whose mask scores are integrated along a path of increasing mask strength (as integrated "
            "gradients): less saturation. Slow: samples x channels forward passes.",
            needs=frozenset({"masked_forwards"}),
            slow=True,
            params=(_BATCH, Param("num_samples", "Integration steps", 10, minimum=1, maximum=1000)),
        ),
        Explainer(
            "fullgrad",
            "FullGrad",
            "gradient",
            guided.fullgrad,
            "Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019",
            "Input-gradient x input plus the bias-gradients of every convolution and batch norm, each channel "
            "scaled and upsampled: a map at the input pixels that uses the whole network (not one layer).",
            driver="own",
            needs=frozenset({"gradients"}),
            resolution="input",
        ),
        Explainer(
            "guided_backprop",
            "Guided Backprop",
            "gradient",
            guided.guided_backprop,
            "Springenberg et al., Striving for Simplicity: The All Convolutional Net, ICLR 2015 workshop",
            "The input gradient with only positive gradients passed back through every ReLU: fine edges and "
            "textures at the input pixels (weakly class-specific).",
            driver="own",
            needs=frozenset({"gradients"}),
            resolution="input",
        ),
        Explainer(
            "guided_grad_cam",
            "Guided Grad-CAM",
            "gradient",
            guided.guided_grad_cam,
            "Selvaraju et al., Grad-CAM, ICCV 2017",
            "Guided Backprop masked by the upsampled Grad-CAM map: fine detail, only where the class evidence is.",
            driver="own",
            needs=frozenset({"gradients"}),
            resolution="input",
        ),
    ]
}


def _refresh_fusion_bases() -> None:
    """Give every fusion entry's ``base`` parameter the CAM-family methods with per-class maps as choices."""
    bases = tuple(k for k, e in EXPLAINERS.items() if e.fusable)
    for key, spec in list(EXPLAINERS.items()):
        if spec.family == "fusion":
            params = tuple(replace(p, choices=bases) if p.name == "base" else p for p in spec.params)
            EXPLAINERS[key] = replace(spec, params=params)


def get_explainer(key: str) -> Explainer:
    """The explainer registered as ``key``.

    Raises:
        UnknownNameError: with close matches and the valid keys.
    """
    if key not in EXPLAINERS:
        raise UnknownNameError("method", key, list(EXPLAINERS))
    return EXPLAINERS[key]


def list_explainers(
    family: str | None = None, *, resolution: str | None = None, per_class_maps: bool | None = None
) -> list[Explainer]:
    """Registered explainers, optionally filtered by family, resolution or per-class maps."""
    return [
        e
        for e in EXPLAINERS.values()
        if (family is None or e.family == family)
        and (resolution is None or e.resolution == resolution)
        and (per_class_maps is None or e.per_class_maps == per_class_maps)
    ]


def register_explainer(spec: Explainer, *, replace: bool = False) -> Explainer:
    """Add a method (see README "Adding a method")."""
    if spec.key in EXPLAINERS and not replace:
        raise ValueError(f"A method called {spec.key!r} is already registered.")
    EXPLAINERS[spec.key] = _with_driver_params(spec)
    _refresh_fusion_bases()
    for listener in _LISTENERS:
        listener()
    return EXPLAINERS[spec.key]


def unregister_explainer(key: str) -> None:
    """Remove the method registered as ``key`` (the choices that offered it follow)."""
    get_explainer(key)
    del EXPLAINERS[key]
    _refresh_fusion_bases()
    for listener in _LISTENERS:
        listener()


_LISTENERS: list[Callable[[], None]] = []


def on_register(listener: Callable[[], None]) -> None:
    """Call ``listener()`` after every :func:`register_explainer` (layers above keep their choices in step)."""
    _LISTENERS.append(listener)


_refresh_fusion_bases()

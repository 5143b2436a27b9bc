"""The explainer registry: every method a user can pick, as data. One entry per method.

Every caller reads this registry: :func:`xai_core.explain`, the evaluation command and
every dashboard page (widgets come from the entries' :class:`Param` lists). No other list
of method names exists.

Adding a method is one function plus one entry:

* a CAM-family method (``driver="cam"``) is ``compute(ctx: CamContext, **params)``
  returning channel weights ``[N, K, C]``, per-position components ``[N, K, C, h, w]``
  or finished maps ``[N, K, h, w]``: the driver (:func:`~xai_core.methods.base.run_cams`)
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

import torch

from xai_core.errors import MethodError, UnknownNameError
from xai_core.fusion.fmgcam import ACTIVATIONS, NORMALISATIONS
from xai_core.methods import activation, gradient, guided, noisy, score
from xai_core.methods.base import run_cams
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
        peers: the peer libraries that offer the method (``"pytorch-grad-cam"``,
            ``"torchcam"``), for the feature table.
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
    peers: tuple[str, ...] = ()

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
        """Run on a batch (``params`` already checked by :meth:`check_params`)."""
        if self.driver == "own":
            if not isinstance(req.layer_name, str):
                raise MethodError(f"{self.label} explains one layer; only CAM-family methods fuse several layers.")
            return self.compute(req, **params)  # type: ignore[return-value]
        return run_cams(
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
    from xai_core.hooks.layers import linear_head

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


def _fg_cam(
    req: ExplainRequest, *, denoise: bool, base: str, target_layer: str, rules: str, batch_size: int
) -> MapResult:
    from xai_core.relevance import fg_cam

    out = fg_cam(
        req.module,
        req.x,
        cam_layer=req.layer_name,
        target_layer=target_layer,
        class_idx=req.choose,
        base=base,
        denoise=denoise,
        rules=rules,
        probabilities=req.probabilities,
        score_batch_size=batch_size,
        progress=req.progress,
    )
    return MapResult(out.relevance.float(), out.class_idx, out.logits.float(), 1)


def _lrp(req: ExplainRequest, *, variant: str, target_layer: str, rules: str) -> MapResult:
    from xai_core.relevance import lrp

    out = lrp(req.module, req.x, class_idx=req.choose, variant=variant, target_layer=target_layer, rules=rules)
    return MapResult(out.relevance.float(), out.class_idx, out.logits.float(), 1)


def _fm_g_cam(req: ExplainRequest, *, base: str, normalise: str, activation: str) -> MapResult:
    from xai_core.fusion import fm_g_cam

    spec = get_explainer(base)
    raw = spec.run(req, **spec.check_params({}))
    fused = torch.stack(
        [fm_g_cam(m, channels=raw.channels, normalise=normalise, activation=activation).maps for m in raw.maps]
    )
    return MapResult(fused, raw.class_idx, raw.logits, 1)


_FUSION_BASE_HELP = "Any CAM-family method that gives one map per class (its default parameters)."
_BATCH = Param(
    "batch_size",
    "Masked inputs per batch",
    32,
    minimum=1,
    maximum=1024,
    help="Masked copies of the images run through the model per forward pass: larger is faster but uses more memory.",
)
_TARGET = Param(
    "target_layer",
    "Carry the relevance down to",
    "input",
    kind="layer",
    help="'input' for a map at the input pixels, or a layer below the CAM layer.",
)
# The rule sets and FG-CAM bases of xai_core.relevance (RULE_SETS, BASES; importing them
# here would be circular: tests/test_registry.py checks the copies agree).
_RULES = Param(
    "rules",
    "Relevance rules",
    "canonized",
    choices=("canonized", "authors"),
    help="'canonized': BatchNorm folded into the layer before it, evidence kept on real weights (default); "
    "'authors': the FG-CAM authors' rules (BatchNorm as identity), as in the paper's code.",
)
_CAM_PAPERS = {
    "fg_cam": "Qiu et al., Empowering CAM-Based Methods with Capability to Generate Fine-Grained and "
    "High-Faithfulness Explanations, AAAI 2024",
    "lrp": "Bach et al., On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
    "Propagation, PLoS ONE 2015",
}


def _fg_entry(key: str, label: str, denoise: bool, summary: str) -> Explainer:
    return Explainer(
        key,
        label,
        "relevance",
        functools.partial(_fg_cam, denoise=denoise),
        _CAM_PAPERS["fg_cam"],
        summary,
        driver="own",
        needs=frozenset({"gradients", "relevance_rules"}),
        resolution="input",
        params=(
            Param(
                "base",
                "CAM the components come from",
                "grad_cam",
                choices=("grad_cam", "score_cam"),
                help="Grad-CAM (one backward pass) or Score-CAM (one masked forward pass per channel: slow).",
            ),
            _TARGET,
            _RULES,
            _BATCH,
        ),
    )


def _lrp_entry(key: str, label: str, paper: str, summary: str) -> Explainer:
    return Explainer(
        key,
        label,
        "relevance",
        functools.partial(_lrp, variant=key),
        paper,
        summary,
        driver="own",
        needs=frozenset({"relevance_rules"}),
        resolution="input",
        params=(_TARGET, _RULES),
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
"""Parameters the CAM driver adds to every ``driver="cam"`` entry (see :func:`~xai_core.methods.base.run_cams`)."""


def _with_driver_params(spec: Explainer) -> Explainer:
    """``spec`` with :data:`CAM_DRIVER_PARAMS` appended if it is a CAM-family entry."""
    if spec.driver != "cam":
        return spec
    names = {p.name for p in spec.params}
    return replace(spec, params=spec.params + tuple(p for p in CAM_DRIVER_PARAMS if p.name not in names))


_PGC, _TC = "pytorch-grad-cam", "torchcam"
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
        ),
        Explainer(
            "grad_cam_pp",
            "Grad-CAM++",
            "gradient",
            _from_gradients(gradient.grad_cam_pp_weights),
            "Chattopadhay et al., Grad-CAM++, WACV 2018",
            "Weights positive gradients by higher-order terms, so several instances of a class are all lit.",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "xgrad_cam",
            "XGrad-CAM",
            "gradient",
            _from_gradients(gradient.xgrad_cam_weights),
            "Fu et al., Axiom-based Grad-CAM, BMVC 2020",
            "Gradient times activation, normalised per channel: satisfies the sensitivity and conservation axioms.",
            needs=frozenset({"gradients"}),
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
            peers=(_PGC, _TC),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_TC,),
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
            peers=(_TC,),
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
            peers=(_TC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
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
            peers=(_PGC,),
        ),
        _fg_entry(
            "fg_cam",
            "FG-CAM",
            False,
            "A CAM's per-channel explanation components carried back layer by layer with relevance rules: "
            "a fine-grained map at a shallower layer or at the input pixels, with the CAM's class evidence.",
        ),
        _fg_entry(
            "fg_cam_d",
            "FG-CAM (denoised)",
            True,
            "FG-CAM whose explanation components are first denoised (row-centred SVD, 10 % of the components "
            "kept): less texture noise in the fine-grained map.",
        ),
        _lrp_entry(
            "lrp",
            "LRP",
            _CAM_PAPERS["lrp"],
            "Layer-wise relevance propagation from the class logit (z+ in hidden layers, z^B at the input).",
        ),
        _lrp_entry(
            "clrp",
            "CLRP",
            "Gu et al., Understanding Individual Decisions of CNNs via Contrastive Backpropagation, ACCV 2018",
            "Contrastive LRP: the class's relevance minus that of a dual target made of all other classes.",
        ),
        _lrp_entry(
            "sglrp",
            "SGLRP",
            "Iwana et al., Explaining Convolutional Neural Networks using Softmax Gradient LRP, ICCVW 2019",
            "Softmax-gradient LRP: the starting relevance is the softmax gradient, so other classes' evidence "
            "is subtracted.",
        ),
        Explainer(
            "fm_g_cam",
            "FM-G-CAM",
            "fusion",
            _fm_g_cam,
            "Rammuni Silva & Bird, FM-G-CAM: A Holistic Approach for Explainable AI in Computer Vision, 2023",
            "The top-K classes' maps fused: each position keeps only its strongest class, maps are "
            "L2-normalised, passed through an end activation and scaled together; each class in its own colour.",
            driver="own",
            needs=frozenset({"gradients"}),
            params=(
                Param("base", "Base method", "grad_cam", choices=("grad_cam",), help=_FUSION_BASE_HELP),
                Param("normalise", "L2 normalisation", "reference", choices=NORMALISATIONS),
                Param("activation", "End activation", "relu", choices=ACTIVATIONS),
            ),
            per_class_maps=True,
        ),
    ]
}


def _refresh_fusion_bases() -> None:
    """Give every fusion entry's ``base`` parameter the CAM-family methods with per-class maps as choices."""
    bases = tuple(k for k, e in EXPLAINERS.items() if e.driver == "cam" and e.per_class_maps)
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
    return EXPLAINERS[spec.key]


_refresh_fusion_bases()


# The names of the first version, kept so existing notebooks run: the same registry.
METHODS = EXPLAINERS
MethodSpec = Explainer
get_method = get_explainer
list_methods = list_explainers
register_method = register_explainer

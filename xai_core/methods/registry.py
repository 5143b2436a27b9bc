"""Method registry: key -> :class:`MethodSpec`. Adding a method is one entry here.

Pages build their widgets from these specs (label, summary, parameters), so a new
method appears in the dashboard without touching ``pages/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from xai_core.errors import MethodError, UnknownNameError
from xai_core.methods import activation, gradient, score
from xai_core.methods.context import CamContext


@dataclass(frozen=True)
class Param:
    """A tunable method parameter, with what a widget needs."""

    name: str
    label: str
    default: object
    choices: tuple[object, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """One CAM-family method.

    Attributes:
        key: registry key (snake case).
        label: display name.
        family: ``"gradient"``, ``"activation"``, ``"linear"`` or ``"perturbation"``.
        fn: ``fn(ctx: CamContext, **params) -> Tensor[K, h, w]`` (signed maps).
        needs_gradients: the driver computes ``ctx.grads`` (one batched backward).
        class_specific: False for class-agnostic maps (Eigen-CAM).
        slow: runs many forward passes (the page warns and shows progress).
        paper: citation.
        summary: one paragraph for the home page.
        params: tunable parameters.
    """

    key: str
    label: str
    family: str
    fn: Callable[..., torch.Tensor]
    needs_gradients: bool
    paper: str
    summary: str
    class_specific: bool = True
    slow: bool = False
    params: tuple[Param, ...] = field(default_factory=tuple)


def _from_gradients(maths: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    def run(ctx: CamContext) -> torch.Tensor:
        return maths(ctx.activations, ctx.grads)

    run.__doc__ = maths.__doc__
    return run


def _cam(ctx: CamContext) -> torch.Tensor:
    from xai_core.hooks.layers import linear_head

    weight = linear_head(ctx.module, ctx.activations.shape[1])
    if weight is None:
        raise MethodError(
            f"CAM needs a model whose layer {ctx.layer_name!r} is followed only by global average pooling "
            f"and one linear layer with {ctx.activations.shape[1]} inputs; this model has none. "
            "Use Grad-CAM, which equals CAM on such models and works on any CNN."
        )
    return activation.cam(ctx.activations, weight[ctx.class_idx].to(ctx.activations.dtype))


def _eigen(ctx: CamContext) -> torch.Tensor:
    return activation.eigen_cam(ctx.activations).expand(len(ctx.class_idx), -1, -1).clone()


_BATCH = Param(
    "batch_size", "Masks per batch", 32, minimum=1, maximum=256, help="Larger is faster but uses more memory."
)

METHODS: dict[str, MethodSpec] = {
    spec.key: spec
    for spec in [
        MethodSpec(
            "grad_cam",
            "Grad-CAM",
            "gradient",
            _from_gradients(gradient.grad_cam),
            True,
            "Selvaraju et al., Grad-CAM, ICCV 2017",
            "Weights each feature map by the average gradient of the class score over it: where the "
            "features that raise the score are.",
        ),
        MethodSpec(
            "grad_cam_pp",
            "Grad-CAM++",
            "gradient",
            _from_gradients(gradient.grad_cam_pp),
            True,
            "Chattopadhay et al., Grad-CAM++, WACV 2018",
            "Weights positive gradients by higher-order terms, so several instances of a class are all lit.",
        ),
        MethodSpec(
            "xgrad_cam",
            "XGrad-CAM",
            "gradient",
            _from_gradients(gradient.xgrad_cam),
            True,
            "Fu et al., Axiom-based Grad-CAM, BMVC 2020",
            "Gradient times activation, normalised per channel: satisfies the sensitivity and conservation axioms.",
        ),
        MethodSpec(
            "hires_cam",
            "HiResCAM",
            "gradient",
            _from_gradients(gradient.hires_cam),
            True,
            "Draelos & Carin, HiResCAM, 2020",
            "Element-wise gradient times activation, no averaging: provably shows the locations the score used.",
        ),
        MethodSpec(
            "layer_cam",
            "Layer-CAM",
            "gradient",
            _from_gradients(gradient.layer_cam),
            True,
            "Jiang et al., LayerCAM, IEEE TIP 2021",
            "Positive gradients weight each position separately: sharper maps, also at shallow layers.",
        ),
        MethodSpec(
            "cam",
            "CAM",
            "linear",
            _cam,
            False,
            "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016",
            "The original class activation map: the last linear layer's weights applied to the final feature "
            "maps. Only for models ending in global average pooling and one linear layer.",
        ),
        MethodSpec(
            "score_cam",
            "Score-CAM",
            "perturbation",
            score.score_cam,
            False,
            "Wang et al., Score-CAM, CVPRW 2020",
            "Gradient-free: each feature map, used as a mask on the image, is weighted by the class "
            "probability the model gives the masked image. Slow: one forward pass per channel.",
            slow=True,
            params=(
                _BATCH,
                Param(
                    "variant",
                    "Score",
                    "probability",
                    choices=("probability", "logit_softmax"),
                    help="'probability': the authors' definition; 'logit_softmax': pytorch-grad-cam's variant.",
                ),
            ),
        ),
        MethodSpec(
            "ablation_cam",
            "Ablation-CAM",
            "perturbation",
            score.ablation_cam,
            False,
            "Desai & Ramaswamy, Ablation-CAM, WACV 2020",
            "Gradient-free: each feature map is weighted by how much the class score drops when it is "
            "removed. Slow: one partial forward pass per channel.",
            slow=True,
            params=(_BATCH,),
        ),
        MethodSpec(
            "eigen_cam",
            "Eigen-CAM",
            "activation",
            _eigen,
            False,
            "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020",
            "The first principal component of the feature maps: where the dominant features are, "
            "whatever the class (the same map for every class).",
            class_specific=False,
        ),
    ]
}


def get_method(key: str) -> MethodSpec:
    """The method registered as ``key``."""
    if key not in METHODS:
        raise UnknownNameError("method", key, list(METHODS))
    return METHODS[key]


def list_methods(family: str | None = None) -> list[MethodSpec]:
    """Registered methods, optionally of one family."""
    return [m for m in METHODS.values() if family is None or m.family == family]


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method (see README "Adding a method")."""
    if spec.key in METHODS and not replace:
        raise ValueError(f"A method called {spec.key!r} is already registered.")
    METHODS[spec.key] = spec
    return spec

"""Explainers made of several parts: FG-CAM and LRP (relevance rules) and FM-G-CAM (fusion over any CAM).

:mod:`xai_core.methods` holds the registry and the methods that need nothing above it;
the entries here combine a CAM or the registry with :mod:`xai_core.relevance` or
:mod:`xai_core.fusion`, so they live one layer above all three and register themselves
when ``xai_core`` is imported (:mod:`xai_core.api` imports this module). They are
appended after the other entries, in this order.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import torch

from xai_core.fusion import fm_g_cam
from xai_core.fusion.fmgcam import ACTIVATIONS, NORMALISATIONS
from xai_core.methods.context import ExplainRequest, MapResult
from xai_core.methods.registry import (
    _BATCH,
    EXPLAINERS,
    Explainer,
    Param,
    get_explainer,
    on_register,
    register_explainer,
)
from xai_core.relevance import (
    DEFAULT_RULES,
    RULE_SETS,
    fg_cam,
    fgcam_bases,
    lrp,
    on_rule_set_registered,
    register_base,
    unregister_base,
)


class FGCamCompute:
    """The compute of an FG-CAM entry: FG-CAM with its base chosen from the registry.

    Attributes:
        denoise: FG-CAM_D (the components denoised before propagation).
    """

    def __init__(self, *, denoise: bool) -> None:
        self.denoise = denoise

    def __call__(self, req: ExplainRequest, *, base: str, target_layer: str, rules: str, batch_size: int) -> MapResult:
        """Run FG-CAM on the request."""
        out = fg_cam(
            req.module,
            req.x,
            cam_layer=req.layer_name,
            target_layer=target_layer,
            class_idx=req.choose,
            base=get_explainer(base),
            denoise=self.denoise,
            rules=rules,
            probabilities=req.probabilities,
            score_batch_size=batch_size,
            progress=req.progress,
        )
        return MapResult(out.relevance.float(), out.class_idx, out.logits.float(), 1)


def _lrp(req: ExplainRequest, *, variant: str, target_layer: str, rules: str) -> MapResult:
    out = lrp(req.module, req.x, class_idx=req.choose, variant=variant, target_layer=target_layer, rules=rules)
    return MapResult(out.relevance.float(), out.class_idx, out.logits.float(), 1)


def _fm_g_cam(req: ExplainRequest, *, base: str, normalise: str, activation: str) -> MapResult:
    spec = get_explainer(base)
    raw = spec.run(req, **spec.check_params({}))
    fused = torch.stack(
        [fm_g_cam(m, channels=raw.channels, normalise=normalise, activation=activation).maps for m in raw.maps]
    )
    return replace(raw, maps=fused, channels=1)  # keeps how the base's passes ran (path, path_note)


_FUSION_BASE_HELP = "Any CAM-family method that gives one map per class (its default parameters)."
_TARGET = Param(
    "target_layer",
    "Carry the relevance down to",
    "input",
    kind="layer",
    help="'input' for a map at the input pixels, or a layer below the CAM layer.",
)
_RULES = Param(
    "rules",
    "Relevance rules",
    DEFAULT_RULES,
    choices=tuple(RULE_SETS),
    help="'crisp': as 'canonized', and strided convolutions share their relevance over the stride-1 grid, "
    "so input maps have no stride checkerboard; "
    "'canonized': BatchNorm folded into the layer before it, evidence kept on real weights; "
    "'authors': the FG-CAM authors' rules (BatchNorm as identity), as in the paper's code. "
    f"Default: '{DEFAULT_RULES}'.",
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
        FGCamCompute(denoise=denoise),
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
                choices=("grad_cam",),  # every entry that gives channel weights: _refresh_fgcam_bases
                help="A CAM with per-channel weights: Grad-CAM (one backward pass), Score-CAM (one masked "
                "forward pass per channel: slow), ...",
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


COMPOSITE_EXPLAINERS: tuple[Explainer, ...] = (
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
)
"""The entries this module registers (FG-CAM, FG-CAM (denoised), LRP, CLRP, SGLRP, FM-G-CAM)."""

for _spec in COMPOSITE_EXPLAINERS:
    if _spec.key not in EXPLAINERS:  # importing twice (a reload) registers nothing new
        register_explainer(_spec)


def _refresh_fgcam_bases() -> None:
    """Register every entry that gives channel weights as an FG-CAM base, and offer it as ``base``."""
    bases = [e for e in EXPLAINERS.values() if e.gives_weights]
    for key in fgcam_bases():
        unregister_base(key)
    for spec in bases:
        register_base(spec)
    keys = tuple(e.key for e in bases)
    for key, spec in list(EXPLAINERS.items()):
        if isinstance(spec.compute, FGCamCompute):
            params = tuple(replace(p, choices=keys) if p.name == "base" else p for p in spec.params)
            EXPLAINERS[key] = replace(spec, params=params)


def _refresh_rule_choices() -> None:
    """Offer every registered rule set (:func:`xai_core.relevance.register_rule_set`) as ``rules``."""
    names = tuple(RULE_SETS)
    for key, spec in list(EXPLAINERS.items()):
        if "relevance_rules" in spec.needs and any(p.name == "rules" for p in spec.params):
            params = tuple(replace(p, choices=names) if p.name == "rules" else p for p in spec.params)
            EXPLAINERS[key] = replace(spec, params=params)


on_register(_refresh_fgcam_bases)
on_rule_set_registered(_refresh_rule_choices)
_refresh_fgcam_bases()

"""Explanations made for vision transformers: rollout, Chefer's rollout, LeGrad, AttnLRP, FG-AttnLRP.

Every method runs one forward pass and one batched backward pass for N images x K
classes (FG-AttnLRP: two autograd calls over disjoint parts of the graph, logits to the
layer for the CAM's weights, then the layer to the pixels carrying them down: each part
traversed once) and leaves the model as found: hooks live inside ``with``
blocks, timm's fused attention is switched off only where attention weights are needed
(:func:`unfused_attention`) and restored, parameters are never differentiated.

Attention weights ``[N, H, L, L]`` (post-softmax, per head) come from timm's
``Attention`` modules (``fused_attn`` off, the weights caught at ``attn_drop``) or from
torchvision's ``nn.MultiheadAttention`` (weights asked for per head and the output
recomputed from them, as torchcam 0.5.0's LeGrad does). Windowed attention (Swin) does
not relate every token to every other: rollout-type methods refuse it, AttnLRP explains it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from xai_core.errors import MethodError
from xai_core.hooks.capture import eval_mode, model_lock
from xai_core.hooks.layers import resolve_layer
from xai_core.hooks.tokens import NHWC, TokenLayout, model_layout, token_hook, unfused_attention
from xai_core.methods.context import ExplainRequest, MapResult
from xai_core.methods.registry import EXPLAINERS, Explainer, Param, register_explainer

# ----------------------------------------------------------------------------- model access


def _global_layout(model: nn.Module, method: str) -> TokenLayout:
    layout = model_layout(model)
    if layout is None:
        raise MethodError(
            f"{method} explains vision transformers (attention between tokens); {type(model).__name__} has no "
            "token layout. Use a CAM-family method for a CNN."
        )
    if layout.kind == NHWC:
        raise MethodError(
            f"{method} needs global attention (every token attending to every token, as in ViT and DeiT); "
            f"{type(model).__name__} attends within local windows (Swin), so attention maps do not chain over "
            "the image. Use AttnLRP or a CAM-family method."
        )
    return layout


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """Self-attention modules in forward (definition) order: timm ``Attention`` or torchvision MHA."""
    found = []
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) or (
            hasattr(m, "qkv") and hasattr(m, "attn_drop") and hasattr(m, "num_heads")
        ):
            found.append(m)
    return found


@contextlib.contextmanager
def attention_weights(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect every self-attention's weights ``[N, H, L, L]`` (in the graph) during forwards in the block."""
    modules = _attention_modules(model)
    if not modules:
        raise MethodError(f"{type(model).__name__} has no self-attention module whose weights can be read.")
    store: list[torch.Tensor] = []
    handles = []

    def timm_hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        store.append(out)

    def mha_pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
        return args[:3], kwargs

    def mha_post(m: nn.MultiheadAttention, args: tuple, _kwargs: dict, out: tuple) -> tuple:
        # torchvision's MHA returns weights computed beside its output: recompute the output
        # from them so the weights are what the rest of the network uses (torchcam's LeGrad does so).
        attn, value = out[1], args[2]
        b, n, d = value.shape
        v = F.linear(value, m.in_proj_weight[2 * d :], None if m.in_proj_bias is None else m.in_proj_bias[2 * d :])
        v = v.reshape(b, n, m.num_heads, d // m.num_heads).transpose(1, 2)
        result = m.out_proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        store.append(attn)
        return result, attn

    with model_lock(model), unfused_attention(model):
        try:
            for m in modules:
                if isinstance(m, nn.MultiheadAttention):
                    if not m.batch_first or m.bias_k is not None or m._qkv_same_embed_dim is False:
                        raise MethodError("Only batch-first self-attention with one input projection is supported.")
                    handles.append(m.register_forward_pre_hook(mha_pre, with_kwargs=True))
                    handles.append(m.register_forward_hook(mha_post, with_kwargs=True))
                else:
                    handles.append(m.attn_drop.register_forward_hook(timm_hook))
            yield store
        finally:
            for h in handles:
                h.remove()


def batched_grads(
    scores: torch.Tensor, inputs: list[torch.Tensor], *, retain_graph: bool = False
) -> list[torch.Tensor]:
    """Gradients of each image's K ``scores`` ``[N, K]`` w.r.t. each of ``inputs``: ``[N, K, ...]`` each.

    One batched backward pass (``is_grads_batched`` over the K unit vectors).
    """
    n, k = scores.shape
    eye = torch.eye(k, dtype=scores.dtype, device=scores.device)[:, None, :].expand(k, n, k)
    grads = torch.autograd.grad(
        scores, inputs, grad_outputs=eye, is_grads_batched=True, allow_unused=True, retain_graph=retain_graph
    )
    return [
        torch.zeros((n, k, *i.shape[1:]), dtype=i.dtype, device=i.device) if g is None else g.transpose(0, 1)
        for g, i in zip(grads, inputs)
    ]


def _to_grid(rows: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per-token scores ``[..., L]`` to maps ``[..., h, w]`` (prefix tokens dropped)."""
    h, w = layout.grid  # type: ignore[misc]
    patches = rows[..., layout.prefix :]
    if patches.shape[-1] != h * w:
        side = int(round(patches.shape[-1] ** 0.5))
        h = w = side
    return patches.reshape(*rows.shape[:-1], h, w)


def _query_rows(matrix: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """The rows of ``[..., L, L]`` the head reads: the prefix tokens' (mean), or all tokens' when there are none."""
    rows = matrix[..., : layout.prefix, :] if layout.prefix else matrix
    return rows.mean(dim=-2)


# ----------------------------------------------------------------------------- maths


def rollout(attentions: list[torch.Tensor], *, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020, eq. 1): ``R = Â_L ... Â_1``, ``Â = 0.5 A + 0.5 I``.

    Args:
        attentions: per block ``[N, H, L, L]`` (rows sum to 1), first block first.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over the heads.

    Returns:
        ``[N, L, L]``: how much each token's input flows into each token's output.
    """
    fuse = {"mean": lambda a: a.mean(dim=1), "max": lambda a: a.amax(dim=1), "min": lambda a: a.amin(dim=1)}
    if head_fusion not in fuse:
        raise MethodError(f"head_fusion must be one of {sorted(fuse)}; got {head_fusion!r}.")
    result = None
    for a in attentions:
        fused = fuse[head_fusion](a)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        a_hat = fused + eye
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        result = a_hat if result is None else a_hat @ result
    return result  # type: ignore[return-value]


def chefer_rollout(attentions: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted rollout (Chefer, Gur & Wolf, CVPR 2021, eqs. 13-14).

    ``Ā_b = E_h[(∇A_b ⊙ A_b)^+]``, ``R = R + Ā_b R`` from ``R = I``, block by block.
    The attention's relevance ``R^(n_b)`` of eq. 13 is taken as the attention itself,
    as in the authors' generic follow-up (Chefer et al., ICCV 2021) and their ViT code.

    Args:
        attentions: per block ``[N, H, L, L]``.
        grads: per block ``[N, K, H, L, L]``, the class scores' gradients w.r.t. them.

    Returns:
        ``[N, K, L, L]``.
    """
    n, k = grads[0].shape[:2]
    length = attentions[0].shape[-1]
    r = torch.eye(length, dtype=grads[0].dtype, device=grads[0].device).expand(n, k, length, length)
    for a, g in zip(attentions, grads):
        a_bar = (g * a[:, None]).clamp(min=0).mean(dim=2)  # [N, K, L, L]
        r = r + a_bar @ r
    return r


def legrad(grads: list[torch.Tensor]) -> torch.Tensor:
    """LeGrad (Bousselham et al., 2024): positive attention gradients, averaged over heads, queries and blocks.

    Per block, the gradient of that block's own score ``s^l`` w.r.t. its attention.

    Args:
        grads: per block ``[N, K, H, L, L]``.

    Returns:
        ``[N, K, L]`` per-key relevance.
    """
    return torch.stack([g.clamp(min=0).mean(dim=(2, 3)) for g in grads]).mean(dim=0)


# ----------------------------------------------------------------------------- AttnLRP rules


def _scale_grad(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``x`` unchanged; its gradient multiplied by ``scale`` (lxt's ``divide_gradient``)."""
    return x.detach() + scale * (x - x.detach())


def _identity_rule(x: torch.Tensor, out: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """``out`` unchanged; its gradient w.r.t. ``x`` is ``out / x`` (AttnLRP eq. 9, lxt's ``identity_rule_implicit``)."""
    return out.detach() + (out / (x + eps)).detach() * (x - x.detach())


def _layer_norm_rule(m: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm with the standard deviation held constant (AttnLRP's identity rule; lxt's ``layer_norm_forward``)."""
    mean = x.mean(dim=-1, keepdim=True)
    std = ((x - mean) ** 2).mean(dim=-1, keepdim=True).add(m.eps).sqrt()
    y = (x - mean) / std.detach()
    if m.weight is not None:
        y = y * m.weight
    if m.bias is not None:
        y = y + m.bias
    return y


ATTENTION_RULES = ("cp", "uniform")


@dataclass
class _RuleState:
    active: bool = True


@contextlib.contextmanager
def attn_lrp_rules(model: nn.Module, *, below: nn.Module | None = None, attention: str = "cp") -> Iterator[None]:
    """AttnLRP (Achtibat et al., ICML 2024) as gradient x input: rules on this model instance only.

    - LayerNorm: standard deviation constant (identity rule on the normalisation);
    - GELU and other element-wise activations: identity rule (gradient ``f(x)/x``);
    - attention, ``attention="uniform"``: AttnLRP's uniform rule for the two matrix
      products (gradient of ``q`` and ``k`` divided by 4, of ``v`` by 2, at the ``qkv``
      projection), softmax by its gradient (lxt's ``divide_gradient``); this loses the
      relevance the softmax's rule gives its bias term (measured: about half on a
      random-weight ViT, whose attention logits are near zero);
      ``attention="cp"`` (default): the attention weights held constant, all relevance
      through the values (CP-LRP, Ali et al., ICML 2022), conservative; what lxt 2.1
      uses inside the attention of vision transformers (``lxt/efficient/models/vit_torch.py``);
    - linear layers, residual additions, pooling: the plain gradient (epsilon rule).

    The forward values are unchanged. With ``below``, only modules that run before that
    layer's output is produced get rules (FG-AttnLRP: plain gradients above it).
    """
    state = _RuleState()
    handles = []

    def rule(fn):
        def hook(m: nn.Module, inputs: tuple, out: object) -> object:
            if not state.active or not isinstance(out, torch.Tensor) or not torch.is_grad_enabled():
                return None
            return fn(m, inputs[0], out)

        return hook

    if attention not in ATTENTION_RULES:
        raise MethodError(f"attention must be one of {ATTENTION_RULES}; got {attention!r}.")
    qk, v = (0.25, 0.5) if attention == "uniform" else (0.0, 1.0)

    def qkv_rule(m: nn.Module, _x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        d = out.shape[-1] // 3
        scale = out.new_full((out.shape[-1],), qk)
        scale[2 * d :] = v
        return _scale_grad(out, scale)

    with model_lock(model):
        try:
            for m in model.modules():
                if isinstance(m, nn.LayerNorm) and not type(m).__name__.endswith("2d"):
                    handles.append(m.register_forward_hook(rule(lambda m, x, _o: _layer_norm_rule(m, x))))
                elif isinstance(m, nn.GELU | nn.SiLU | nn.Tanh | nn.Sigmoid):
                    handles.append(m.register_forward_hook(rule(lambda _m, x, o: _identity_rule(x, o))))
                elif hasattr(m, "qkv") and hasattr(m, "num_heads") and isinstance(m.qkv, nn.Linear):
                    handles.append(m.qkv.register_forward_hook(rule(qkv_rule)))
                elif isinstance(m, nn.MultiheadAttention):
                    raise MethodError(
                        "AttnLRP here supports timm's attention (a qkv projection); torchvision's "
                        "MultiheadAttention is not supported: load the timm version of the model."
                    )
            if below is not None:
                handles.append(below.register_forward_hook(lambda *_: setattr(state, "active", False)))
                handles.append(model.register_forward_pre_hook(lambda *_: setattr(state, "active", True)))
            yield
        finally:
            for h in handles:
                h.remove()


# ----------------------------------------------------------------------------- explainers


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if logits.dim() != 2:
        raise MethodError(f"The model must return logits [N, n]; it returned shape {tuple(logits.shape)}.")
    return logits


def explain_rollout(req: ExplainRequest, *, head_fusion: str = "mean") -> MapResult:
    """Attention rollout maps ``[N, K, h, w]`` (the same map for every class)."""
    layout = _global_layout(req.module, "Attention rollout")
    with eval_mode(req.module), attention_weights(req.module) as attns, torch.no_grad():
        logits = _logits(req.module, req.x)
    idx = req.choose(logits)
    flow = _query_rows(rollout([a.double() for a in attns], head_fusion=head_fusion), layout)  # [N, L]
    maps = _to_grid(flow.float(), layout)[:, None].expand(-1, idx.shape[1], -1, -1).clone()
    return MapResult(maps, idx, logits.float(), 1)


def explain_chefer(req: ExplainRequest) -> MapResult:
    """Chefer et al.'s gradient-weighted rollout maps ``[N, K, h, w]``."""
    layout = _global_layout(req.module, "Chefer's relevance rollout")
    with eval_mode(req.module), attention_weights(req.module) as attns, torch.enable_grad():
        x = req.x.detach().clone().requires_grad_(True)  # attention in the graph; parameters frozen
        logits = _logits(req.module, x)
        idx = req.choose(logits.detach())
        grads = batched_grads(logits.gather(1, idx), attns)
    r = chefer_rollout([a.detach().float() for a in attns], [g.float() for g in grads])  # [N, K, L, L]
    maps = _to_grid(_query_rows(r, layout), layout)
    return MapResult(maps, idx, logits.detach().float(), 1)


def _block_scores(model: nn.Module, tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """A block's tokens ``[N, L, D]`` read by the model's own final norm and head: ``[N, n]`` (LeGrad's ``s^l``)."""
    norm = getattr(model, "norm", None) or getattr(getattr(model, "encoder", None), "ln", None)
    head = getattr(model, "head", None) or getattr(model, "heads", None)
    if norm is None or head is None:
        raise MethodError("LeGrad needs the model's final norm and head (timm or torchvision ViT).")
    fc_norm = getattr(model, "fc_norm", None)
    pool = getattr(model, "global_pool", "token")
    if isinstance(getattr(model, "head_dist", None), nn.Module):  # distilled DeiT: mean of both heads
        z = norm(tokens)
        return (head(z[:, 0]) + model.head_dist(z[:, 1])) / 2
    if pool == "avg":
        pooled = norm(tokens)[:, layout.prefix :].mean(dim=1)
        return head(fc_norm(pooled) if isinstance(fc_norm, nn.Module) else pooled)
    if hasattr(model, "heads"):  # torchvision: torchcam's projection (mean of all tokens)
        return head(norm(tokens.mean(dim=1)))
    return head(norm(tokens)[:, 0])


def explain_legrad(req: ExplainRequest, *, last_blocks: int = 0) -> MapResult:
    """LeGrad maps ``[N, K, h, w]`` over the last ``last_blocks`` blocks (0: all)."""
    model = req.module
    layout = _global_layout(model, "LeGrad")
    blocks = _blocks(model)
    chosen = blocks if not last_blocks else blocks[-int(last_blocks) :]
    outputs: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(lambda _m, _i, out, i=i: outputs.__setitem__(i, out)) for i, b in enumerate(chosen)
    ]
    try:
        with eval_mode(model), attention_weights(model) as attns, torch.enable_grad():
            x = req.x.detach().clone().requires_grad_(True)  # attention in the graph; parameters frozen
            logits = _logits(model, x)
            idx = req.choose(logits.detach())
            offset = len(blocks) - len(chosen)
            per_block = [_block_scores(model, outputs[i], layout).gather(1, idx) for i in range(len(chosen))]
            # Block i's score depends on its own and earlier attentions; LeGrad differentiates each
            # block's score w.r.t. its own attention only: one batched pass over the stacked scores.
            stacked = torch.cat(per_block, dim=1)  # [N, B*K]
            k = idx.shape[1]
            grads_all = batched_grads(stacked, [attns[offset + i] for i in range(len(chosen))])
            grads = [g[:, i * k : (i + 1) * k] for i, g in enumerate(grads_all)]
    finally:
        for h in handles:
            h.remove()
    rel = legrad([g.float() for g in grads])  # [N, K, L]
    return MapResult(_to_grid(rel, layout), idx, logits.detach().float(), 1)


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        blocks = getattr(getattr(model, "encoder", None), "layers", None)
    if blocks is None or not len(blocks):
        raise MethodError(f"{type(model).__name__} has no list of transformer blocks (blocks / encoder.layers).")
    return list(blocks)


def explain_attn_lrp(req: ExplainRequest, *, attention: str = "cp") -> MapResult:
    """AttnLRP relevance at the input pixels ``[N, K, H, W]`` (summed over colour channels)."""
    model = req.module
    if model_layout(model) is None:
        raise MethodError(
            f"AttnLRP explains transformers (attention, LayerNorm, GELU); {type(model).__name__} has no token "
            "layout. Use LRP for a CNN."
        )
    with eval_mode(model), attn_lrp_rules(model, attention=attention), torch.enable_grad():
        x = req.x.detach().clone().requires_grad_(True)
        logits = _logits(model, x)
        idx = req.choose(logits.detach())
        (g,) = batched_grads(logits.gather(1, idx), [x])
    relevance = (g * x.detach()[:, None]).sum(dim=2)
    return MapResult(relevance.float(), idx, logits.detach().float(), 1)


def explain_fg_attn_lrp(req: ExplainRequest, *, attention: str = "cp") -> MapResult:
    """FG-CAM's idea on a transformer: Grad-CAM's components at ``layer`` carried to the pixels by AttnLRP.

    Above the layer, plain gradients give Grad-CAM's weights ``w_kc`` (mean gradient over
    the patch positions); the layer's relevance ``R_c(p) = w_kc A_c(p)`` (patch tokens;
    prefix tokens get none) goes down with AttnLRP's rules: ``R_in = x ⊙ ∂̃(Σ w A)/∂x``.
    """
    model = req.module
    if model_layout(model) is None:
        raise MethodError(f"FG-AttnLRP explains transformers; {type(model).__name__} has no token layout.")
    layer = resolve_layer(model, req.layer_name)  # type: ignore[arg-type]
    captured: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: tuple, out: torch.Tensor) -> torch.Tensor:
        captured.append(out)
        return out.clone()

    with eval_mode(model), attn_lrp_rules(model, below=layer, attention=attention), torch.enable_grad():
        # Registered after the rules: this hook runs last on the layer and sees what the model goes on with.
        handle = layer.register_forward_hook(token_hook(model, keep))
        try:
            x = req.x.detach().clone().requires_grad_(True)
            logits = _logits(model, x)
        finally:
            handle.remove()
        idx = req.choose(logits.detach())
        if not captured:
            raise MethodError(f"Layer {req.layer_name!r} did not run during the forward pass.")
        a = captured[0]  # [N, C, h, w]
        # Two calls, each over its own part of the graph: autograd runs only the nodes between
        # the outputs and the inputs asked for, so the first stops at the layer and the second
        # starts there (the seed needs the first's result: no single call can do both).
        (g,) = batched_grads(logits.gather(1, idx), [a], retain_graph=True)  # [N, K, C, h, w], plain above
        seed = g.mean(dim=(3, 4), keepdim=True).expand_as(g)  # Grad-CAM weights w_kc at every position
        (gx,) = torch.autograd.grad(a, x, grad_outputs=seed.transpose(0, 1).contiguous(), is_grads_batched=True)
    relevance = (gx.transpose(0, 1) * x.detach()[:, None]).sum(dim=2)
    return MapResult(relevance.float(), idx, logits.detach().float(), 1)


# ----------------------------------------------------------------------------- registry entries


def _attention_param() -> Param:
    return Param(
        "attention",
        "Rule inside attention",
        "cp",
        choices=ATTENTION_RULES,
        help="'cp': attention weights held constant, relevance through the values (conservative; lxt's choice "
        "for vision transformers); 'uniform': AttnLRP's uniform rule through the softmax too (loses the "
        "softmax's bias share).",
    )


_WHY_ROLLOUT = "Needs global self-attention (timm or torchvision ViT, DeiT); refuses CNNs and Swin."


def _entries() -> list[Explainer]:
    return [
        Explainer(
            "attention_rollout",
            "Attention rollout",
            "transformer",
            explain_rollout,
            "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020",
            "Attention of every block, heads fused and the residual added (0.5 A + 0.5 I), multiplied from the "
            "first block to the last: how much each patch flows into the class token. The same map for every "
            "class. " + _WHY_ROLLOUT,
            driver="own",
            params=(Param("head_fusion", "Fuse the heads by", "mean", choices=("mean", "max", "min")),),
            class_specific=False,
            per_class_maps=False,
        ),
        Explainer(
            "chefer",
            "Gradient-weighted rollout (Chefer)",
            "transformer",
            explain_chefer,
            "Chefer, Gur & Wolf, Transformer Interpretability Beyond Attention Visualization, CVPR 2021",
            "Each block's attention weighted by the class score's gradient (positive part, averaged over heads) "
            "and rolled out with the residual (R = R + Ā R): class-specific rollout. " + _WHY_ROLLOUT,
            driver="own",
            needs=frozenset({"gradients"}),
        ),
        Explainer(
            "legrad",
            "LeGrad",
            "transformer",
            explain_legrad,
            "Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation "
            "Sensitivity, 2024",
            "Per block, the gradient of that block's own class score (its tokens through the final norm and "
            "head) w.r.t. its attention, positive part averaged over heads, queries and blocks. " + _WHY_ROLLOUT,
            driver="own",
            needs=frozenset({"gradients"}),
            params=(Param("last_blocks", "Blocks used (0: all)", 0, minimum=0, maximum=1000),),
        ),
        Explainer(
            "attn_lrp",
            "AttnLRP",
            "transformer",
            explain_attn_lrp,
            "Achtibat et al., AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for Transformers, ICML 2024",
            "Layer-wise relevance propagation through attention (uniform rule on its matrix products), "
            "LayerNorm and GELU (identity rules), as gradient x input: a conservative map at the input pixels. "
            "Any timm transformer (ViT, DeiT, Swin); not CNNs.",
            driver="own",
            needs=frozenset({"gradients", "relevance_rules"}),
            resolution="input",
            params=(_attention_param(),),
        ),
        Explainer(
            "fg_attn_lrp",
            "FG-CAM for transformers (AttnLRP)",
            "transformer",
            explain_fg_attn_lrp,
            "Qiu et al., FG-CAM, AAAI 2024, with the rules of Achtibat et al., AttnLRP, ICML 2024",
            "Grad-CAM's per-channel evidence at the explained token layer carried down to the pixels with "
            "AttnLRP's rules: a fine-grained map with the CAM's class evidence. Any timm transformer; not CNNs.",
            driver="own",
            needs=frozenset({"gradients", "relevance_rules"}),
            resolution="input",
            params=(_attention_param(),),
        ),
    ]


def register_transformer_explainers() -> None:
    """Add the transformer-native methods to the explainer registry (once)."""
    for entry in _entries():
        if entry.key not in EXPLAINERS:
            register_explainer(entry)


register_transformer_explainers()

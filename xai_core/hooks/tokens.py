"""Token layouts of vision transformers, read from the model, and token <-> ``[C, h, w]`` maps.

The CAM family, FM-G-CAM and the metrics work on feature maps ``[B, C, h, w]``. A vision
transformer's blocks give token sequences ``[B, L, D]`` (ViT, DeiT, BEiT, EVA: a few
prefix tokens, then one token per patch, row by row) or channels-last grids
``[B, h, w, C]`` (Swin). :func:`layer_layout` says which, for one layer of one model,
from the model itself (never a hard-coded 14x14):

- timm ``VisionTransformer`` and its kin: ``num_prefix_tokens`` (1 for ViT, 2 for a
  distilled DeiT: class and distillation tokens; more with register tokens) and the
  patch grid ``patch_embed.grid_size``;
- torchvision ``VisionTransformer``: one class token, grid ``image_size // patch_size``;
- channels-last grids: every non-convolution layer of a model whose ``output_fmt`` is
  ``"NHWC"`` (timm's Swin) or of torchvision's ``SwinTransformer``, and, in any model, a
  4-D output of an ``nn.Linear`` or a plain ``nn.LayerNorm`` (both act on the last
  dimension, so it holds the channels: ConvNeXt's inner layers).

:func:`token_hook` wraps a forward hook so it sees ``[B, C, h, w]`` and whatever it
returns goes back into the model in the layer's own layout (prefix tokens kept). The
capture code (:mod:`xai_core.hooks.capture`, the CAM driver's in-graph capture) wraps its
hooks with it; nothing else needs to know about tokens.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from xai_core.errors import LayerError
from xai_core.hooks.layers import LayerInfo, trace_modules

TOKENS = "tokens"
NHWC = "nhwc"


@dataclass(frozen=True)
class TokenLayout:
    """How one layer's output holds a ``[C, h, w]`` map.

    Attributes:
        kind: ``"tokens"`` (``[B, prefix + h*w, C]``) or ``"nhwc"`` (``[B, h, w, C]``).
        prefix: tokens before the patch tokens (class, distillation, register tokens).
        grid: the patch grid ``(h, w)`` (``None`` for ``"nhwc"``: read from the tensor).
    """

    kind: str
    prefix: int = 0
    grid: tuple[int, int] | None = None

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output as a map ``[B, C, h, w]`` (a view where possible; prefix tokens dropped)."""
        if self.kind == NHWC:
            return output.permute(0, 3, 1, 2)
        b, n, c = output.shape
        h, w = self.grid  # type: ignore[misc]
        if n != self.prefix + h * w:
            raise LayerError(
                f"The layer gives {n} tokens; the model's layout is {self.prefix} prefix tokens and a "
                f"{h}x{w} patch grid ({self.prefix + h * w} tokens)."
            )
        return output[:, self.prefix :].reshape(b, h, w, c).permute(0, 3, 1, 2)

    def to_output(self, cam_map: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A map ``[B', C, h, w]`` back in the layer's layout.

        Prefix tokens come from ``like`` (the layer's real output ``[B or 1, L, C]``),
        repeated when ``like`` holds one image and the map several (perturbation batches).
        """
        if self.kind == NHWC:
            return cam_map.permute(0, 2, 3, 1)
        b, c = cam_map.shape[:2]
        patches = cam_map.permute(0, 2, 3, 1).reshape(b, -1, c)
        if not self.prefix:
            return patches
        prefix = like[:, : self.prefix]
        if prefix.shape[0] != b:
            if prefix.shape[0] != 1:
                raise LayerError(
                    f"Cannot put a batch of {b} maps back into a layer output of {prefix.shape[0]} images."
                )
            prefix = prefix.expand(b, -1, -1)
        return torch.cat([prefix.to(patches.dtype), patches], dim=1)

    def describe(self) -> str:
        """One line for a model picker or an error message."""
        if self.kind == NHWC:
            return "channels-last token grid [h, w, C], read as [C, h, w]"
        h, w = self.grid  # type: ignore[misc]
        return f"{self.prefix} prefix token(s) + {h}x{w} patch tokens, read as a {h}x{w} map"


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside a wrapper module (``model.model`` / ``model.module``) when there is one."""
    for attr in ("model", "module", "net"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and _sequence_layout(inner) is not None:
            return inner
    return model


def _sequence_layout(model: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """``(prefix tokens, patch grid)`` of a ViT-type model, else ``None``."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and hasattr(model, "num_prefix_tokens") and getattr(embed, "grid_size", None):
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            return None
        grid = tuple(int(v) for v in embed.grid_size)
        return int(model.num_prefix_tokens), (grid[0], grid[-1])
    try:
        from torchvision.models import VisionTransformer
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    if isinstance(model, VisionTransformer):
        side = int(model.image_size) // int(model.patch_size)
        return 1, (side, side)
    return None


def _channels_last_model(model: nn.Module) -> bool:
    if getattr(model, "output_fmt", None) == "NHWC":
        return True
    try:
        from torchvision.models import SwinTransformer
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, SwinTransformer)


def _acts_on_last_dim(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # timm's LayerNorm2d (a LayerNorm subclass) permutes to normalise channels-first maps.
    return isinstance(module, nn.LayerNorm) and not type(module).__name__.endswith("2d")


def is_transformer(model: nn.Module) -> bool:
    """True for a model whose feature maps are token sequences or channels-last grids."""
    inner = _unwrap(model)
    return _sequence_layout(inner) is not None or _channels_last_model(inner)


def model_layout(model: nn.Module) -> TokenLayout | None:
    """The model's token layout for its blocks' outputs (``None`` for a CNN)."""
    inner = _unwrap(model)
    seq = _sequence_layout(inner)
    if seq is not None:
        return TokenLayout(TOKENS, seq[0], seq[1])
    if _channels_last_model(inner):
        return TokenLayout(NHWC)
    return None


def layer_layout(model: nn.Module, module: nn.Module, output: torch.Tensor) -> TokenLayout | None:
    """How ``module``'s ``output`` in ``model`` holds a map; ``None`` when it is ``[B, C, h, w]`` already.

    Args:
        model: the whole network (its attributes give the layout).
        module: the layer.
        output: the layer's output tensor.
    """
    inner = _unwrap(model)
    if output.dim() == 3:
        seq = _sequence_layout(inner)
        if seq is None:
            return None
        prefix, grid = seq
        n = output.shape[1] - prefix
        if n != grid[0] * grid[1]:
            side = math.isqrt(max(n, 0))
            if side * side != n:
                return None
            grid = (side, side)  # another input size than the model's default: a square grid
        return TokenLayout(TOKENS, prefix, grid)
    if output.dim() == 4:
        # Convolutions are channels-first; so is torchvision's ``Permute`` closing its Swin's trunk.
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) or type(module).__name__ == "Permute":
            return None
        if _channels_last_model(inner) or _acts_on_last_dim(module):
            return TokenLayout(NHWC)
    return None


@contextlib.contextmanager
def unfused_attention(model: nn.Module) -> Iterator[None]:
    """Switch timm's fused attention (``attn.fused_attn``) off in the block; restore each flag on exit.

    Fused kernels (``scaled_dot_product_attention``) never materialise the attention
    weights; the unfused path computes the same attention with them.
    """
    changed = [m for m in model.modules() if getattr(m, "fused_attn", False) is True]
    try:
        for m in changed:
            m.fused_attn = False
        yield
    finally:
        for m in changed:
            m.fused_attn = True


Hook = Callable[[nn.Module, tuple, torch.Tensor], object]


def token_hook(model: nn.Module, hook: Hook) -> Hook:
    """Wrap a forward hook so that it sees ``[B, C, h, w]`` maps whatever the layer's layout.

    The hook gets the output as a map (a token layer's patch tokens, a channels-last grid
    permuted); a tensor it returns is put back in the layer's layout (prefix tokens from
    the real output) before the model goes on. A CNN layer's hook is called unchanged.
    """

    def wrapped(module: nn.Module, inputs: tuple, output: object) -> object:
        if not isinstance(output, torch.Tensor):
            return hook(module, inputs, output)
        layout = layer_layout(model, module, output)
        if layout is None:
            return hook(module, inputs, output)
        result = hook(module, inputs, layout.to_map(output))
        if isinstance(result, torch.Tensor):
            return layout.to_output(result, output)
        return result

    return wrapped


def token_candidate_layers(model: nn.Module, example: torch.Tensor) -> list:
    """:func:`~xai_core.hooks.layers.candidate_layers` for a vision transformer.

    Every layer that runs once and whose output holds a map (token layers read through
    :func:`layer_layout`, convolutions as they are), with the map's ``(C, h, w)``, in
    forward order.
    """
    modules = dict(model.named_modules())
    layers = []
    for t in trace_modules(model, example).values():
        if t.calls != 1 or t.shape is None or len(t.shape) not in (3, 4) or t.kind.startswith("Adaptive"):
            continue
        layout = layer_layout(model, modules[t.name], torch.empty(t.shape, device="meta"))
        if layout is not None:
            shape = tuple(layout.to_map(torch.empty(t.shape, device="meta")).shape[1:])
        elif len(t.shape) == 4:
            shape = t.shape[1:]
        else:
            continue
        if min(shape[1:]) >= 2:
            layers.append(LayerInfo(t.name, t.kind, shape, t.calls))
    return layers


def default_token_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The default CAM layer of a vision transformer; ``None`` for a CNN.

    - Class-token models (timm ``global_pool="token"``: ViT, DeiT; torchvision's ViT):
      the last block's first normalisation (``blocks.{-1}.norm1``, ``ln_1``). The head
      reads the class (and distillation) token only, and after the last block's
      attention nothing mixes tokens any more: the last block's output, or the final
      ``norm``, gets a gradient on the prefix tokens alone, so every patch token's
      gradient is exactly zero and Grad-CAM is blank. The input of the last attention
      is the deepest point where the patch tokens still reach the class token.
    - Pooled models (``global_pool="avg"``: BEiT, EVA; Swin): every token reaches the
      head, so the last block's output (Swin: the final ``norm``), as for a CNN.
    """
    inner = _unwrap(model)
    prefix = "" if inner is model else next(n for n, m in model.named_modules() if m is inner) + "."
    seq = _sequence_layout(inner)
    if seq is not None:
        if isinstance(getattr(inner, "blocks", None), nn.Sequential | nn.ModuleList) and len(inner.blocks):
            last = f"blocks.{len(inner.blocks) - 1}"
            pooled = getattr(inner, "global_pool", "token") in ("avg", "avgmax", "max")
            if pooled:
                return prefix + last
            block = inner.blocks[-1]
            for norm in ("norm1", "ln_1", "norm"):
                if isinstance(getattr(block, norm, None), nn.Module):
                    return f"{prefix}{last}.{norm}"
            return prefix + last
        layers = getattr(getattr(inner, "encoder", None), "layers", None)
        if isinstance(layers, nn.Sequential) and len(layers):  # torchvision's VisionTransformer
            name, block = list(layers.named_children())[-1]
            return f"{prefix}encoder.layers.{name}.ln_1"
    layers = token_candidate_layers(model, example)
    if not layers:
        return None
    return layers[-1].name

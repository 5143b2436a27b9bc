"""A benchmark where the true evidence is known: one object decides the class.

:func:`make_dataset` draws small images (default 64 x 64) on a noisy dark background:
one *class object* (an X, a ring or a hollow square; the class is its shape)
and ``distractors`` filled shapes (disc, square, triangle) that occur in every class,
all in random colours at random places without overlap. Colour, position and the
distractors carry no information about the class, so a model that classifies well has
to use the class object, and a map that explains it should point there. The mask of
each image is the class object's footprint (its square cell, where the shape is drawn).
A fourth class, ``"none"``, has distractors only (and an empty mask): without it a model
learns all shapes but one and calls that one by the others' absence, and its maps for
that class point at the distractors (measured with a fourth shape, a plus: Grad-CAM
found the plus in 13 % of plus images; a plus was also too close to the filled square
at this size to be learnt in the time).

:func:`train` fits any ``nn.Module`` on such data reproducibly (seeded initialisation
and order, a fixed number of torch threads, restored afterwards); :func:`train_tiny_cnn`
builds and trains the benchmark's small CNN and returns it as a
:class:`~xai_core.models.registry.LoadedModel` that every registered method explains
(:func:`as_loaded` wraps any other module the same way; :func:`train_tiny_vit` does it for
a tiny timm ViT).
:func:`localisation` scores maps against the masks: the pointing game (the map's
maximum lies in the object) and the share of the positive map mass inside the object.
Chance for both is about the object's share of the image (:func:`chance`).

Data randomisation (Adebayo et al. 2018): train the same model on permuted labels
(``shuffle_labels=True``); its maps must differ from the trained model's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import MethodError
from xai_core.models.preprocess import Preprocessing
from xai_core.models.registry import LoadedModel
from xai_core.models.spec import ModelSpec

CLASSES = ("cross", "ring", "hollow square", "none")
"""The classes: the class object's shape, or ``"none"`` (distractors only, an empty mask)."""
DISTRACTORS = ("disc", "square", "triangle")


def _shape(name: str, side: int) -> np.ndarray:
    """Boolean ``[side, side]`` footprint of shape ``name`` drawn in its square cell."""
    c = (np.arange(side) + 0.5 - side / 2) / (side / 2)  # pixel centres in [-1, 1]
    y, x = np.meshgrid(c, c, indexing="ij")
    r = np.hypot(x, y)
    if name == "plus":
        return (np.abs(x) < 0.28) | (np.abs(y) < 0.28)
    if name == "cross":
        return (np.abs(x - y) < 0.4) | (np.abs(x + y) < 0.4)
    if name == "ring":
        return (r > 0.55) & (r < 1.0)
    if name == "hollow square":
        return np.maximum(np.abs(x), np.abs(y)) > 0.6
    if name == "disc":
        return r < 0.9
    if name == "square":
        return np.maximum(np.abs(x), np.abs(y)) < 0.8
    if name == "triangle":
        return (y > -0.85) & (y < 0.85) & (np.abs(x) < (y + 0.85) / 1.7 * 0.9)
    raise MethodError(f"Unknown shape {name!r}.")


def _place(rng: np.random.Generator, size: int, sides: Sequence[int], gap: int = 2) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping squares of ``sides`` in a ``size`` image (rejection sampling)."""
    for _ in range(1000):
        boxes: list[tuple[int, int, int]] = []
        for s in sides:
            for _ in range(100):
                top, left = (int(v) for v in rng.integers(0, size - s + 1, 2))
                if all(
                    top + s + gap <= t or t + u + gap <= top or left + s + gap <= lf or lf + u + gap <= left
                    for t, lf, u in boxes
                ):
                    boxes.append((top, left, s))
                    break
            else:
                break
        if len(boxes) == len(sides):
            return [(t, lf) for t, lf, _ in boxes]
    raise MethodError(f"Cannot place {len(sides)} objects in a {size} x {size} image; use fewer or a larger size.")


def make_dataset(
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    distractors: int = 3,
    object_size: tuple[int, int] = (12, 16),
    p_none: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` seeded images whose class is decided by one object among distractors.

    Args:
        n: number of images.
        size: side of the square images in pixels.
        seed: the same seed gives the same images, labels and masks.
        distractors: filled shapes per image, drawn from :data:`DISTRACTORS`.
        object_size: smallest and largest side of an object's square cell.
        p_none: probability of an image of class ``"none"`` (no class object).

    Returns:
        ``(images [n, 3, size, size] float32 in [0, 1], labels [n] int64 indices into
        :data:`CLASSES`, masks [n, size, size] bool: the class object's cell)``.
    """
    if n < 1 or size < 2 * object_size[1]:
        raise MethodError(f"Need n >= 1 and size >= {2 * object_size[1]}; got n={n}, size={size}.")
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(0.12, 0.05, (n, 3, size, size)), 0.0, 1.0).astype(np.float32)
    shapes = len(CLASSES) - 1
    labels = np.where(rng.random(n) < p_none, shapes, rng.integers(0, shapes, n))
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        first = [CLASSES[labels[i]]] if labels[i] < shapes else []
        names = first + [DISTRACTORS[k] for k in rng.integers(0, len(DISTRACTORS), distractors)]
        sides = [int(s) for s in rng.integers(object_size[0], object_size[1] + 1, len(names))]
        for k, ((top, left), name, side) in enumerate(zip(_place(rng, size, sides), names, sides)):
            colour = rng.uniform(0.35, 1.0, 3).astype(np.float32)
            shape = _shape(name, side)
            patch = images[i, :, top : top + side, left : left + side]
            patch[:, shape] = colour[:, None]
            if k == 0 and first:
                masks[i, top : top + side, left : left + side] = True
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


# ----------------------------------------------------------------------------- models


class TinyCNN(nn.Module):
    """Three 3x3 convolutions (the first strided, then a max-pool), global average pooling, a linear layer.

    The class maps of its last ReLU are a quarter of the input's side (16 x 16 at 64 px),
    each unit seeing 18 px: about one object.
    """

    def __init__(self, classes: int = len(CLASSES), width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]`` of images ``[N, 3, H, W]`` in ``[0, 1]``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train(
    module: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 5e-3,
    threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> nn.Module:
    """Fit ``module`` with Adam (one-cycle learning rate) and cross-entropy, reproducibly; returns it in eval mode.

    The parameters are re-initialised from ``seed`` (modules with ``reset_parameters``,
    in order), the batches drawn from a generator seeded with ``seed``, and torch runs
    ``threads`` threads (the caller's count is restored): the same call gives the same
    weights bit for bit on the same machine and torch build.
    """
    device = next(module.parameters()).device
    x, y = images.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(seed)
    with _threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        module.train()
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        steps = epochs * ((len(x) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        done = 0
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=gen).to(device)
                for start in range(0, len(x), batch_size):
                    idx = order[start : start + batch_size]
                    loss = F.cross_entropy(module(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    done += 1
                    if progress:
                        progress(done, steps)
    return module.eval()


def as_loaded(module: nn.Module, size: int, default_layer: str, *, key: str = "synthetic") -> LoadedModel:
    """``module`` (trained on :func:`make_dataset` images) as a model every method explains.

    Its preprocessing takes a ``size x size`` RGB image to ``[0, 1]`` (mean 0, std 1), so
    the prepared input equals :func:`make_dataset`'s images; the labels are :data:`CLASSES`.
    """
    spec = ModelSpec(
        key=key,
        label=f"Tiny model on the synthetic benchmark ({key})",
        family="imagenet",
        build=lambda: module,
        fetch_weights=None,
        preprocessing=Preprocessing("imagenet", (size, size), size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        labels=CLASSES,
        default_layer=default_layer,
        description="Trained on xai_core.trust.synthetic.make_dataset.",
    )
    return LoadedModel(spec, module.eval(), "trained on the synthetic benchmark")


def train_tiny_cnn(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    epochs: int = 10,
    shuffle_labels: bool = False,
    threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedModel:
    """The benchmark's :class:`TinyCNN` trained on ``images``/``labels`` (see :func:`train`).

    ``shuffle_labels=True`` trains on a seeded permutation of the labels (the
    data-randomisation check): same architecture, seed and schedule, nothing to learn.
    """
    if shuffle_labels:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + 1))]
    with torch.random.fork_rng(devices=[]):  # construction draws weights; train() re-draws them from seed
        module = TinyCNN()
    module = train(module, images, labels, seed=seed, epochs=epochs, threads=threads, progress=progress)
    return as_loaded(
        module, int(images.shape[-1]), "features.6", key="tiny_cnn_shuffled" if shuffle_labels else "tiny_cnn"
    )


def train_tiny_vit(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    epochs: int = 10,
    embed_dim: int = 48,
    depth: int = 3,
    num_heads: int = 4,
    patch_size: int = 8,
    lr: float = 2e-3,
    threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedModel:
    """A tiny timm ``VisionTransformer`` (class token) trained on ``images``/``labels`` (see :func:`train`).

    ``patch_size`` 8 on 64 px images gives an 8 x 8 patch grid (one patch about half an
    object). The whole model, class token and position embedding included, is drawn
    from ``seed`` (the linear and normalisation layers again by :func:`train`), so the
    same call gives the same weights. Its default layer is the one
    :func:`xai_core.hooks.tokens.default_token_layer` picks for a class-token ViT, the
    last block's ``norm1``.
    """
    from timm.models.vision_transformer import VisionTransformer

    from xai_core.hooks.tokens import default_token_layer

    size = int(images.shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = VisionTransformer(
            img_size=size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=2.0,
            num_classes=len(CLASSES),
        )
    module = train(module, images, labels, seed=seed, epochs=epochs, lr=lr, threads=threads, progress=progress)
    layer = default_token_layer(module, images[:1])
    return as_loaded(module, size, layer or f"blocks.{depth - 1}.norm1", key="tiny_vit")


def accuracy(model: LoadedModel, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` whose most probable class is ``labels``."""
    return float((model.predict(images).argmax(1).cpu() == labels.cpu()).float().mean())


# ----------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class Localisation:
    """How well maps find the class object.

    Attributes:
        pointing_game: share of maps whose maximum lies inside the object (a map with no
            single maximum above its minimum, e.g. all zero, misses).
        mass_in_object: mean over maps of the share of positive mass inside the object.
        n: number of maps.
    """

    pointing_game: float
    mass_in_object: float
    n: int


def localisation(maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor) -> Localisation:
    """Pointing game and positive mass in the object of ``maps`` ``[N, H, W]`` given ``masks`` ``[N, H, W]``.

    Images with an empty mask (class ``"none"``) are left out: there is nothing to find.
    """
    m = np.asarray(maps, dtype=np.float64)
    k = np.asarray(masks, dtype=bool)
    if m.shape != k.shape or m.ndim != 3:
        raise MethodError(f"maps and masks must both be [N, H, W]; got {m.shape} and {k.shape}.")
    keep = k.reshape(len(k), -1).any(axis=1)
    if not keep.any():
        raise MethodError("No mask has an object: nothing to localise.")
    m, k = m[keep], k[keep]
    flat = m.reshape(len(m), -1)
    top = flat.argmax(axis=1)
    has_peak = flat.max(axis=1) > flat.min(axis=1)
    hits = k.reshape(len(k), -1)[np.arange(len(k)), top] & has_peak
    pos = np.clip(flat, 0.0, None)
    total = pos.sum(axis=1)
    inside = (pos * k.reshape(len(k), -1)).sum(axis=1)
    share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
    return Localisation(float(hits.mean()), float(share.mean()), len(m))


def chance(masks: np.ndarray | torch.Tensor) -> float:
    """The object's mean share of the image (images with an object): a map's score when it ignores the image."""
    k = np.asarray(masks, dtype=bool)
    k = k[k.reshape(len(k), -1).any(axis=1)]
    return float(k.mean())

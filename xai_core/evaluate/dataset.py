"""Images for the evaluation: a ``torch.utils.data`` dataset and its loader.

Worker processes decode each file with the project's safe reader
(:func:`xai_core.images.read_image`, or :func:`~xai_core.images.read_xray` for X-ray
models), prepare it as the model expects (:func:`xai_core.models.preprocess.prepare`)
and keep its crop box. A file that cannot be read becomes an item carrying the reason,
so the run goes on and writes error rows for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from xai_core.errors import XaiCoreError
from xai_core.images import read_image, read_xray
from xai_core.models.preprocess import Preprocessing, prepare


@dataclass(frozen=True)
class Item:
    """One image as the loader delivers it.

    Attributes:
        index: position in the run's image list.
        path: the file.
        label: the true class, when known.
        tensor: the prepared input ``[C, H, W]`` (``None`` when unreadable).
        crop_box: ``(left, top, right, bottom)`` of the model's view in the original image.
        error: why the file could not be used (``None`` when it could).
    """

    index: int
    path: Path
    label: int | None
    tensor: torch.Tensor | None
    crop_box: tuple[float, float, float, float] | None
    error: str | None


def one_line(text: str) -> str:
    """``text`` on one line (for the ``error`` column)."""
    return " ".join(str(text).split())


class ImageFiles(Dataset):
    """The images of a run, decoded and prepared on access.

    Args:
        files: ``(path, label or None)`` per image.
        preprocessing: the model's preprocessing.
        family: the model family (``"xray"`` reads X-ray pixels, anything else an image).
    """

    def __init__(self, files: Sequence[tuple[Path, int | None]], preprocessing: Preprocessing, family: str) -> None:
        self.files = list(files)
        self.preprocessing = preprocessing
        self.family = family

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        path, label = self.files[index]
        try:
            if self.family == "xray":
                image = read_xray(path).pixels
            else:
                image = read_image(path)
            prepared = prepare(image, self.preprocessing)
        except (XaiCoreError, OSError, ValueError) as exc:
            return Item(index, path, label, None, None, one_line(f"{type(exc).__name__}: {exc}"))
        return Item(index, path, label, prepared.tensor[0], prepared.crop_box, None)


def keep_items(batch: list[Item]) -> list[Item]:
    """The loader's collate function: the items as they are (errors stay visible)."""
    return batch


def make_loader(dataset: ImageFiles, batch_size: int, workers: int) -> DataLoader:
    """A loader over ``dataset`` in order, ``batch_size`` images at a time, ``workers`` decoding processes."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=keep_items,
        persistent_workers=False,
    )

"""Reading weight files safely, and downloading them where there is a network.

Weights files are PyTorch state dicts or ``.safetensors`` files (recognised by their
content, whatever their name; read with ``safetensors``, which never runs code).
Only ``torch.load(..., weights_only=True)`` is used on files a user supplies: a
checkpoint that needs arbitrary unpickling (and could therefore run code) is refused with
instructions to re-save it as a ``state_dict``. The one exception is a torchxrayvision
file that the library itself downloaded from its official address into its own cache,
which it stores as a whole pickled model; that is read as torchxrayvision reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from xai_core.errors import WeightsError


def torch_checkpoint_dir() -> Path:
    """Folder where torchvision weights are looked for and cached (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _unwrap(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Accept a state_dict, ``{"state_dict": ...}``, ``{"model": ...}`` or a whole module."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            prefix = "module."
            if all(k.startswith(prefix) for k in obj):  # saved from DataParallel
                obj = {k[len(prefix) :]: v for k, v in obj.items()}
            return dict(obj)
    raise WeightsError(
        f"{source} does not contain model weights (a state_dict mapping parameter names to tensors); "
        f"found {type(obj).__name__}. Save weights with torch.save(model.state_dict(), path)."
    )


def _looks_like_safetensors(path: Path) -> bool:
    """The safetensors layout: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise WeightsError(f"{path.name!r} is a .safetensors file: pip install safetensors to read it.") from err
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"Could not read weights file {path.name!r}: it is truncated or not a safetensors file ({str(err)[:200]})."
        ) from err
    return _unwrap(state, repr(path.name))


def save_safetensors(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save a model's weights (or a state_dict) as a ``.safetensors`` file that :func:`read_state_dict` reads.

    Tensors are copied to the CPU and made contiguous; tensors sharing memory (tied
    weights) are stored once each as separate copies.
    """
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}, str(path))
    return Path(path)


def read_state_dict(path: str | os.PathLike, *, allow_pickled_module: bool = False) -> dict[str, torch.Tensor]:
    """Read a weights file into a state_dict.

    Args:
        path: the file.
        allow_pickled_module: also accept a whole pickled model (arbitrary unpickling).
            Only for files from a trusted, official download; never for user files.

    Raises:
        WeightsError: missing, empty, truncated, not a weights file, or unsafe to read.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"Weights file {str(p)!r} does not exist.")
    if p.stat().st_size == 0:
        raise WeightsError(f"Weights file {str(p)!r} is empty (0 bytes); download it again.")
    if p.suffix.lower() == ".safetensors" or _looks_like_safetensors(p):
        return _read_safetensors(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        text = str(err)
        needs_pickle = "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text
        with open(p, "rb") as fh:  # torch.save writes a zip archive (PK) or, legacy, a pickle (protocol 0x80)
            needs_pickle = needs_pickle and fh.read(2)[:1] in (b"P", b"\x80")
        if needs_pickle and allow_pickled_module:
            try:
                obj = torch.load(p, map_location="cpu", weights_only=False)
            except Exception as err2:  # noqa: BLE001
                raise WeightsError(f"Could not read weights file {str(p)!r}: {err2}") from err2
        elif needs_pickle:
            raise WeightsError(
                f"Refused to load {p.name!r}: it is not a plain weights file but a pickled Python object, which "
                "could run code when loaded. Load it in a trusted Python session and re-save it with "
                "torch.save(model.state_dict(), path), then use that file."
            ) from err
        else:
            raise WeightsError(
                f"Could not read weights file {p.name!r}: it is truncated or not a PyTorch weights file ({text[:200]})."
            ) from err
    return _unwrap(obj, repr(p.name))


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly, turning mismatches into one readable error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of the wrong shape (e.g. {k!r}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise WeightsError(
            f"The weights in {source} do not fit this architecture: {'; '.join(parts)}. "
            "Check that the file was trained for the model you picked."
        )
    model.load_state_dict(state, strict=True)


def fetch(url: str, folder: Path, *, what: str, filename: str | None = None) -> Path:
    """Return the local copy of ``url`` in ``folder``, downloading it if needed.

    Args:
        url: the address.
        folder: where the file is looked for and stored.
        what: the model, for messages.
        filename: the local file name (default: the last part of ``url``).

    Raises:
        WeightsError: naming the file, the address and where to put it by hand.
    """
    target = folder / (filename or Path(url).name)
    if target.is_file() and target.stat().st_size > 0:
        return target
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(tmp), progress=False)
        tmp.replace(target)
    except Exception as err:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise WeightsError(
            f"Could not download the weights of {what} ({type(err).__name__}: {str(err)[:160]}). "
            f"Download {url} on a machine with internet access and put the file at {target} "
            f"(named {target.name!r}, in the folder {str(folder)!r}); it is picked up next time. "
            "Or run `python -m xai_core.download` while online to fetch every model at once."
        ) from err
    return target


def read_downloaded(path: Path, url: str, *, what: str, allow_pickled_module: bool = False) -> dict[str, torch.Tensor]:
    """:func:`read_state_dict` for a file :func:`fetch` returned; a damaged copy says how to fix it."""
    try:
        return read_state_dict(path, allow_pickled_module=allow_pickled_module)
    except WeightsError as err:
        raise WeightsError(
            f"{err} The local copy of the weights of {what} at {path} is damaged: delete that file and "
            f"reload to download it again, or replace it with a good copy of {url}."
        ) from err

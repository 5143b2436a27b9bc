"""Devices: which accelerator a model runs on, chosen by name.

``"cpu"``, ``"cuda"`` (the current CUDA device), ``"cuda:N"``, ``"mps"`` (Apple
silicon) or ``"auto"`` (CUDA if available, else MPS, else the CPU). The dashboard takes
its device from the environment variable ``XAI_DEVICE`` through :func:`default_device`.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from xai_core.errors import DeviceError

#: The environment variable the dashboard reads its device from.
DEVICE_ENV = "XAI_DEVICE"
#: The device used when ``XAI_DEVICE`` is not set.
FALLBACK_DEVICE = "cpu"

_NAMES = "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device names that work on this machine, CPU first (``"auto"`` always works too)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
        names.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    if _mps_available():
        names.append("mps")
    return names


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Turn a device name into a :class:`torch.device` that exists on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` (CUDA if
            available, else MPS, else CPU), a :class:`torch.device`, or ``None`` (the
            CPU). Case and surrounding spaces are ignored.

    Returns:
        The device; ``"cuda"`` becomes ``cuda:<current device>``.

    Raises:
        DeviceError: for an unknown name or a device this machine does not have; the
            message lists the devices that work here.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise DeviceError(f"device must be a string such as {_NAMES}, got {type(device).__name__}.")
    here = f"Devices on this machine: {', '.join(available_devices() + ['auto'])}."
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(f"Device {device!r}: CUDA is not available (no GPU or no CUDA build of torch). {here}")
        index = torch.cuda.current_device() if match.group(1) is None else int(match.group(1))
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"Device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0. {here}"
            )
        return torch.device("cuda", index)
    if name in ("mps", "mps:0"):
        if not _mps_available():
            raise DeviceError(f"Device {device!r}: Apple MPS is not available on this machine. {here}")
        return torch.device("mps")
    raise DeviceError(f"Unknown device {device!r}: choose {_NAMES}. {here}")


def default_device() -> str:
    """The device name the dashboard uses: ``$XAI_DEVICE``, else ``"cpu"``.

    Checked with :func:`resolve_device`, so a wrong value fails here with a message
    naming the variable, before any model is loaded.

    Raises:
        DeviceError: ``XAI_DEVICE`` names an unknown or unavailable device.
    """
    name = os.environ.get(DEVICE_ENV, "").strip() or FALLBACK_DEVICE
    try:
        resolve_device(name)
    except DeviceError as err:
        raise DeviceError(f"The environment variable {DEVICE_ENV}={name!r} is not usable here: {err}") from err
    return name


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU when it has none)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- memory budget

#: Bytes one explain pass may use on the CPU (and on MPS, whose free memory torch cannot query).
CPU_MEMORY_BUDGET = 2 * 1024**3
#: Share of the CUDA device's available memory one explain pass may use by default: half,
#: leaving the rest to the model's weights, cuDNN workspaces, the maps being gathered and
#: other processes sharing the GPU.
CUDA_MEMORY_FRACTION = 0.5
#: Most images one pass takes, whatever the budget (the batched speed-up is flat beyond it).
MAX_IMAGES_PER_PASS = 256


def cuda_available_bytes(device: torch.device) -> int:
    """Bytes a new allocation on CUDA ``device`` can get: free memory plus torch's cached, unused blocks.

    ``torch.cuda.mem_get_info`` counts what torch's caching allocator holds as used; the
    blocks it holds but no tensor uses (``memory_reserved - memory_allocated``) are free
    for the next pass, so they count too.
    """
    free, _total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(int(cached), 0)


def default_memory_budget(device: torch.device | str | None) -> int:
    """Bytes one explain pass may use on ``device`` when the caller gives no ``memory_budget``.

    The rule: on CUDA, :data:`CUDA_MEMORY_FRACTION` of the memory available now
    (:func:`cuda_available_bytes`, read at each call, so a GPU shared with other work gets
    smaller chunks); on the CPU and MPS, :data:`CPU_MEMORY_BUDGET` (2 GiB).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "cuda":
        return int(CUDA_MEMORY_FRACTION * cuda_available_bytes(device))
    return CPU_MEMORY_BUDGET


def images_in_budget(bytes_per_image: int, budget: int, *, most: int = MAX_IMAGES_PER_PASS) -> int:
    """How many images of ``bytes_per_image`` fit in ``budget`` bytes: at least 1, at most ``most``."""
    return int(max(1, min(most, int(budget) // max(int(bytes_per_image), 1))))

"""Errors raised by xai_core.

Every error a user can cause is an :class:`XaiCoreError`, with a message that names the
argument, the value seen, the valid choices where there are any, and what to do. The
dashboard shows these messages as they are; anything else is a bug. Errors about a bad
value (an unknown name, a layer that cannot be explained, bad method parameters, an
unreadable image) also subclass :class:`ValueError`, so ``except ValueError`` code written
without xai_core in mind still catches them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XaiCoreError(Exception):
    """Base class of every error xai_core raises on purpose."""


class UnknownNameError(XaiCoreError, KeyError, ValueError):
    """A name (model, method, layer, colour map, ...) that is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[str], hint: str = "") -> None:
        choices = list(choices)
        close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
        msg = f"Unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
        if len(choices) <= 40:
            msg += f" Valid choices: {', '.join(choices)}."
        else:
            msg += f" There are {len(choices)} valid choices; list them with the matching list_* function."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)
        self.kind, self.name, self.choices = kind, name, choices

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class LayerNotFoundError(UnknownNameError):
    """A layer name that is not a module of the model."""

    def __init__(self, name: object, choices: Iterable[str]) -> None:
        super().__init__("layer", name, choices, hint="Layer names are dotted paths from model.named_modules().")


class LayerError(XaiCoreError, ValueError):
    """A layer that exists but cannot be explained (called twice, not a feature map, ...)."""


class MethodError(XaiCoreError, ValueError):
    """A method cannot run with the given model, layer or parameters."""


class WeightsError(XaiCoreError):
    """Model weights are missing, could not be downloaded, or do not fit the architecture."""


class ImageError(XaiCoreError, ValueError):
    """An image or DICOM file that cannot be read or is outside the accepted limits."""


class DeviceError(XaiCoreError, ValueError):
    """A device name that is not valid, or a device this machine does not have."""

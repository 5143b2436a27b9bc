"""Timing harness: interleaved cases, the floor as the issue defines it, machine details.

Every timed case is a :class:`Case`: an untimed ``setup`` (for example freezing or
unfreezing parameters, so a case pays only for its own work), the timed ``run(x)`` and
an untimed ``teardown``. :func:`interleave` runs all cases on image 1, then all on
image 2, and so on, so a change in machine load hits every case alike; ratios to the
floor are taken per image (paired) and then the median is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Case:
    """One timed measurement.

    Attributes:
        name: the row label.
        run: ``run(x)``, timed; ``x`` is the prepared input ``[1, 3, H, W]``.
        setup, teardown: untimed, around each run.
        group: section of the table.
        target: the target's text (for the table), ratio limit in ``limit``.
    """

    name: str
    run: Callable[[torch.Tensor], object]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    group: str = ""
    target: str = ""
    limit: float | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    error: str | None = None

    def once(self, x: torch.Tensor) -> tuple[float, float]:
        if self.setup:
            self.setup()
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            self.run(x)
            return time.perf_counter() - t0, time.process_time() - c0
        finally:
            if self.teardown:
                self.teardown()


def interleave(
    cases: list[Case],
    inputs: list[torch.Tensor],
    *,
    warmup: int = 2,
    log: Callable[[str], None] = print,
    settle: float = 0.0,
) -> None:
    """Warm each case up, then time every case once per input, case after case.

    A case that raises is marked with its error (first line) and skipped afterwards.
    ``settle`` seconds of idle (untimed) go before each timed call: BLAS threads keep
    spinning for a while after a NumPy call returns (OpenBLAS waits busily), so the case
    after, say, pytorch-grad-cam's full-matrix SVD would pay for it (measured: 85 ms right
    after it, 52 ms after a 0.3 s pause).
    """
    for case in cases:
        for j in range(warmup):
            try:
                w, _ = case.once(inputs[0])
            except Exception as err:  # a peer that fails: report the reason, go on
                case.error = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
                log(f"  ! {case.name}: {case.error}")
                break
            if j == warmup - 1:
                log(f"  warm-up {w * 1000:9.1f} ms  {case.name}")
    for i, x in enumerate(inputs):
        for case in cases:
            if case.error:
                continue
            if settle:
                time.sleep(settle)
            try:
                w, c = case.once(x)
            except Exception as err:
                case.error = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
                log(f"  ! {case.name}: {case.error}")
                continue
            case.wall.append(w)
            case.cpu.append(c)
        if (i + 1) % max(1, len(inputs) // 5) == 0:
            log(f"  {i + 1}/{len(inputs)} images")


def percentile(values: list[float], q: float) -> float:
    """``q``-th percentile (linear interpolation), ``q`` in [0, 100]."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def paired_ratio(case: Case, floor: Case, kind: str = "wall") -> float:
    """Median over images of ``time(case) / time(floor)`` on the same image."""
    a, b = getattr(case, kind), getattr(floor, kind)
    n = min(len(a), len(b))
    if n == 0:
        return float("nan")
    return statistics.median(a[i] / b[i] for i in range(n))


# ----------------------------------------------------------------------------- the floor


class FloorHarness:
    """The physical floor of a gradient CAM, written independently of xai_core.

    Forward with grad enabled, where the explained layer's output is made a fresh leaf
    (so autograd records only the part after it), parameters frozen (no parameter
    gradient is possible), then ``torch.autograd.grad`` of the top class logit to that
    leaf only. The hook is registered and parameters frozen in the untimed setup.
    """

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model, self.layer = model, layer
        self.handle = None
        self.leaf: torch.Tensor | None = None
        self.flags: list[tuple[nn.Parameter, bool]] = []

    def _hook(self, _m: nn.Module, _i: tuple, out: torch.Tensor) -> torch.Tensor:
        self.leaf = out.detach().requires_grad_(True)
        return self.leaf

    def setup(self) -> None:
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.flags:
            p.requires_grad_(False)
        self.handle = self.layer.register_forward_hook(self._hook)

    def teardown(self) -> None:
        self.handle.remove()
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.leaf = None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            logits = self.model(x)
            c = int(logits[0].argmax())
            (grad,) = torch.autograd.grad(logits[0, c], self.leaf)
        return grad


def full_backward_case(model: nn.Module, name: str = "forward + full backward (param grads)") -> Case:
    """Forward and ``backward()`` of the top logit with every parameter's ``.grad`` filled."""
    state: dict[str, list] = {}

    def setup() -> None:
        state["flags"] = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in state["flags"]:
            p.requires_grad_(True)
            p.grad = None

    def teardown() -> None:
        for p, flag in state["flags"]:
            p.grad = None
            p.requires_grad_(flag)

    def run(x: torch.Tensor) -> None:
        with torch.enable_grad():
            logits = model(x)
            logits[0, int(logits[0].argmax())].backward()

    return Case(name, run, setup, teardown)


def forward_case(model: nn.Module) -> Case:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return Case("forward, no grad (inference_mode)", run)


def requires_grad_setup(model: nn.Module) -> Callable[[], None]:
    """Setup for peers: parameters require grad, as in a freshly loaded model.

    (xai-inference-engine leaves them frozen after each call; pytorch-grad-cam and
    torchcam expect a model as loaded.)
    """

    def setup() -> None:
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None

    return setup


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_details() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "mkldnn": str(torch.backends.mkldnn.is_available()),
        "platform": platform.platform(),
        "grad-cam": package_version("grad-cam"),
        "torchcam": package_version("torchcam"),
        "xai-inference-engine": package_version("xai-inference-engine"),
    }

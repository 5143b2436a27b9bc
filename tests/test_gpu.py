"""GPU readiness, checked on the CPU: the device-aware memory budget (CUDA mocked).

The cases that need a real CUDA device skip here; ``benchmarks/gpu_check.sh`` runs them
where there is one.
"""

from __future__ import annotations

import math

import pytest
import torch

from xai_core.api import images_per_pass
from xai_core.models import device as dev
from xai_core.models.registry import LoadedModel

GB = 10**9
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")


def _fake_cuda(monkeypatch, free: int, reserved: int = 0, allocated: int = 0) -> None:
    """Make every model report a CUDA device with ``free`` bytes free (nothing runs on it)."""
    monkeypatch.setattr(LoadedModel, "device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 141 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)


def test_the_default_chunk_on_a_40_gb_free_gpu_is_at_least_64_images(lite0, monkeypatch) -> None:
    on_cpu = images_per_pass(lite0, 1)
    _fake_cuda(monkeypatch, free=40 * GB)
    on_gpu = images_per_pass(lite0, 1)
    assert on_gpu >= 64, on_gpu
    assert on_cpu == 11  # the CPU keeps its 2 GiB budget
    assert dev.default_memory_budget(torch.device("cuda", 0)) == int(dev.CUDA_MEMORY_FRACTION * 40 * GB)


def test_the_cuda_budget_follows_the_free_memory_and_counts_cached_blocks(lite0, monkeypatch) -> None:
    _fake_cuda(monkeypatch, free=1 * GB)
    small = images_per_pass(lite0, 1)
    assert 1 <= small < 11  # half of 1 GB: fewer images than the CPU's 2 GiB
    _fake_cuda(monkeypatch, free=1 * GB, reserved=8 * GB, allocated=1 * GB)  # 7 GB cached, unused
    assert dev.cuda_available_bytes(torch.device("cuda", 0)) == 8 * GB
    assert images_per_pass(lite0, 1) > small
    _fake_cuda(monkeypatch, free=1000 * GB)
    assert images_per_pass(lite0, 1) == dev.MAX_IMAGES_PER_PASS


def test_an_explicit_memory_budget_overrides_the_device(lite0, monkeypatch) -> None:
    _fake_cuda(monkeypatch, free=40 * GB)
    assert images_per_pass(lite0, 1, memory_budget=2 * 1024**3) == 11
    assert images_per_pass(lite0, 1, memory_budget=1) == 1
    assert images_per_pass(lite0, 5) < images_per_pass(lite0, 1)  # K gradient copies count


def test_max_batch_overrides_the_budget(lite0, monkeypatch) -> None:
    import xai_core as xc

    chunks: list[int] = []
    real = xc.api._explain_chunk
    monkeypatch.setattr(
        xc.api, "_explain_chunk", lambda model, spec, part, *a: chunks.append(len(part)) or real(model, spec, part, *a)
    )
    x = torch.rand(3, 3, 224, 224)
    xc.explain(lite0, x, method="grad_cam", top_k=1, max_batch=2)
    assert chunks == [2, 1]
    chunks.clear()
    xc.explain(lite0, x, method="grad_cam", top_k=1, memory_budget=1)
    assert chunks == [1, 1, 1]


def test_the_estimate_bounds_what_a_full_backward_graph_keeps(lite0) -> None:
    """The per-image estimate is not below the bytes autograd saves for a pass to the input."""
    sizes = [math.prod(layer.shape) for layer in lite0.layers]
    estimate = 4 * (2 * sum(sizes) + max(sizes))
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.rand(2, 3, 224, 224, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lite0.module(x)
    per_image = sum(saved.values()) / 2
    assert 0.25 * estimate < per_image <= estimate, (per_image, estimate)


@needs_cuda
def test_on_a_real_gpu_a_pass_at_the_default_chunk_fits(lite0) -> None:
    import xai_core as xc

    model = xc.load_model("efficientnet_lite0", device="cuda")
    budget = dev.default_memory_budget(model.device)
    chunk = images_per_pass(model, 1)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    xc.explain(model, torch.rand(chunk, 3, 224, 224), method="grad_cam", top_k=1)
    assert torch.cuda.max_memory_allocated() - before <= budget

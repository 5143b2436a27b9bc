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


# ----------------------------------------------------------------------------- Ray on GPUs


def test_gpus_per_worker_values_are_checked() -> None:
    from xai_core.evaluate.cli import check_gpus_per_worker
    from xai_core.evaluate.methods import UsageError

    check_gpus_per_worker(0.0, local_ray=True)
    check_gpus_per_worker(2.0, local_ray=False)
    for bad in (-1.0, 1.5):
        with pytest.raises(UsageError, match="gpus-per-worker"):
            check_gpus_per_worker(bad, local_ray=False)
    if not CUDA:  # a local Ray instance would wait for GPUs forever
        with pytest.raises(UsageError, match="no CUDA device"):
            check_gpus_per_worker(0.5, local_ray=True)


def test_a_gpu_worker_runs_on_cuda_with_its_share_of_a_gpu() -> None:
    from xai_core.evaluate.compute import Settings
    from xai_core.evaluate.engines import RayOptions, worker_options, worker_settings

    settings = Settings(model="efficientnet_lite0", threads=1)
    options = RayOptions(workers=4, gpus_per_worker=0.5, cpus_per_worker=0.25)
    assert worker_settings(settings, options).device == "cuda"
    assert worker_options(settings, options) == {
        "num_cpus": 0.25,
        "num_gpus": 0.5,
        "max_restarts": options.retries,
        "max_task_retries": options.retries,
    }


@pytest.mark.slow
def test_ray_puts_two_half_gpu_workers_on_each_gpu() -> None:
    """Ray's scheduler, told the machine has 2 GPUs, with the evaluation's own worker options."""
    import os
    from collections import Counter

    ray = pytest.importorskip("ray")
    from xai_core.evaluate.compute import Settings
    from xai_core.evaluate.engines import RayOptions, worker_options

    settings = Settings(model="efficientnet_lite0", threads=1)
    options = RayOptions(workers=4, gpus_per_worker=0.5, cpus_per_worker=0.25)
    assert not ray.is_initialized()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:

        class Probe:
            def where(self) -> tuple[list, str | None]:
                return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

        actor = ray.remote(Probe).options(**worker_options(settings, options))
        workers = [actor.remote() for _ in range(options.workers)]
        places = ray.get([w.where.remote() for w in workers], timeout=120)
        gpus = Counter()
        for ids, visible in places:
            assert len(ids) == 1 and visible == str(ids[0])  # each worker sees exactly its GPU, as "cuda"
            gpus[int(ids[0])] += 1
        assert gpus == Counter({0: 2, 1: 2})  # two workers share each GPU
        fifth = actor.remote()  # 2 GPUs at 0.5 hold 4 workers: a fifth waits for a free share
        ready, _ = ray.wait([fifth.where.remote()], timeout=3)
        assert not ready
        ray.kill(workers[0])
        assert ray.get(fifth.where.remote(), timeout=60)[0] == places[0][0]  # it takes the freed share
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- the evaluation


def test_prefetched_keeps_order_passes_errors_and_stops_when_closed() -> None:
    import threading

    from xai_core.evaluate.engines import prefetched

    assert list(prefetched(iter(range(7)), depth=2)) == list(range(7))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = prefetched(failing())
    assert next(got) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(got)

    pulled: list[int] = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield i
            i += 1

    stream = prefetched(endless(), depth=1)
    assert next(stream) == 0
    stream.close()
    for thread in threading.enumerate():
        if thread.name == "xai-evaluate-prefetch":
            thread.join(timeout=5)
    assert not any(t.name == "xai-evaluate-prefetch" for t in threading.enumerate())
    assert len(pulled) <= 4  # the producer ran at most a couple of items ahead, then stopped


def _tiny_rows(tmp_path, *extra: str) -> list[dict]:
    import shutil
    from pathlib import Path

    from tests.eval_tiny_model import TINY
    from xai_core.evaluate import main, read_rows

    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    root = Path(__file__).resolve().parents[1] / "samples" / "imagenet"
    for name in ("ILSVRC2012_val_00000001.JPEG", "cat_dog.png"):
        shutil.copy(root / name, images / name)
    out = tmp_path / ("out" + "_".join(extra).replace("-", ""))
    argv = [str(images), "--model", TINY, "--out", str(out), "--pixels-per-step", "64", "--quiet"]
    argv += ["--import", "tests.eval_tiny_model", "--methods", "grad_cam,lrp@input", *extra]
    assert main(argv) == 0
    return sorted(read_rows([out]), key=lambda r: (r["file"], r["method"]))


def test_metric_precision_bf16_scores_close_to_fp32_and_keeps_the_class(tmp_path) -> None:
    fp32 = _tiny_rows(tmp_path)
    bf16 = _tiny_rows(tmp_path, "--metric-precision", "bf16")
    assert len(fp32) == len(bf16) == 4
    moved = 0.0
    for a, b in zip(fp32, bf16, strict=True):
        assert (a["file"], a["method"], a["class_idx"]) == (b["file"], b["method"], b["class_idx"])
        for name in ("insertion_auc", "deletion_auc", "average_drop"):
            assert b[name] == pytest.approx(a[name], abs=2.0)  # percent points
            moved = max(moved, abs(b[name] - a[name]))
    assert moved > 0  # the option really changes the metrics' arithmetic


def test_memory_format_auto_is_channels_last_on_cpu_and_cuda() -> None:
    from xai_core.evaluate.cli import _settings, build_parser

    def settings(*argv: str):
        return _settings(build_parser().parse_args(["samples/imagenet", *argv]))

    assert settings().channels_last
    assert settings("--device", "cuda").channels_last
    assert not settings("--device", "mps").channels_last
    assert not settings("--memory-format", "contiguous").channels_last
    assert settings("--metric-precision", "bf16").metric_precision == "bf16"


# ----------------------------------------------------------------------------- the one-command check


@pytest.mark.slow
def test_gpu_check_runs_every_part_quickly_and_prints_its_summary() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu_check.sh"), "--quick"],
        cwd=root,
        env={**__import__("os").environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "## GPU check summary (quick" in out
    for target in ("CUDA tests", "Grad-CAM / floor", "FM-G-CAM K=5 / floor", "FG-CAM to the input / floor"):
        assert f"| {target}" in out
    assert "| Grad-CAM at batch 1, ms | <= 3 ms |" in out
    evaluation = next(line for line in out.splitlines() if line.startswith("| evaluation, 5 methods"))
    assert "10 rows, 0 errors" in evaluation  # 2 images x 5 methods, every row scored
    for method in ("grad_cam", "fg_cam", "lrp", "sglrp"):
        assert f"evaluation {method}" in out
    if not CUDA:
        assert "memory of a pass: not run (CUDA only)" in out
        assert "| Grad-CAM at batch 1, ms | <= 3 ms | not run (CUDA graphs: CUDA only; eager here " in out


def test_gpu_check_scores_batch_one_by_the_graphed_figure_with_its_maps() -> None:
    from benchmarks.gpu_check import _batch_one

    table = {("grad_cam", 1): {"ms_per_image": 7.2}}
    assert _batch_one(table, {}).line() == (
        "| Grad-CAM at batch 1, ms | <= 3 ms | not run (CUDA graphs: CUDA only; eager here 7.2 ms) | not run |"
    )

    def single(ms: float, same: bool) -> dict:
        graphed = {"ms": ms, "max_rel_diff": 1e-6, "same_classes": same}
        return {"floor": {"ms": 7.2}, "eager": {"ms": 7.9}, "cuda_graph": graphed}

    met = _batch_one(table, single(1.4, True))
    assert met.ok and met.value == 1.4
    assert "graphed 1.40 (eager 7.90, floor 7.20), maps vs eager 1e-06, same classes True" in met.line()
    assert _batch_one(table, single(3.5, True)).ok is False
    assert _batch_one(table, single(1.4, False)).ok is False  # fast but other classes: not met


# ----------------------------------------------------------------------------- one image fast: CUDA graphs


@pytest.fixture(scope="module")
def lite0_cuda():
    """EfficientNet-Lite0 on the GPU; its captured passes are dropped afterwards."""
    if not CUDA:
        pytest.skip("no CUDA GPU on this machine")
    import xai_core as xc
    from xai_core.methods import accelerate

    model = xc.load_model("efficientnet_lite0", device="cuda")
    yield model
    accelerate.clear(model.module)


def _samples(n: int) -> list:
    from pathlib import Path

    import xai_core as xc

    files = sorted((Path(__file__).resolve().parents[1] / "samples" / "imagenet").glob("*.*"))[:n]
    return [xc.read_image(f) for f in files]


def _assert_maps_close(fast, plain) -> None:
    assert fast.class_idx == plain.class_idx
    scale = float(plain.cams.abs().max())
    torch.testing.assert_close(fast.cams, plain.cams, rtol=1e-4, atol=1e-4 * scale)


@needs_cuda
@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("grad_cam", {"top_k": 3}),
        ("grad_cam_pp", {"class_idx": [243, 281]}),
        ("xgrad_cam", {"top_k": 1}),
        ("fm_g_cam", {"top_k": 3}),
        ("finer_cam", {"top_k": 2}),
        ("layer_cam", {"top_k": 2, "eigen_smooth": True}),
    ],
)
def test_cuda_graph_maps_equal_eager_image_after_image(lite0_cuda, method, kwargs) -> None:
    import xai_core as xc

    for image in _samples(3):  # each replay gets its own image: a replay that kept the first would differ
        plain = xc.explain(lite0_cuda, image, method=method, **kwargs)
        fast = xc.explain(lite0_cuda, image, method=method, accelerate="auto", **kwargs)
        assert fast.path == "cuda_graph", fast.path_note
        _assert_maps_close(fast, plain)


@needs_cuda
def test_cuda_graph_in_bf16_stays_close_to_eager_bf16(lite0_cuda) -> None:
    import xai_core as xc

    image = _samples(1)[0]
    plain = xc.explain(lite0_cuda, image, method="grad_cam", top_k=2, precision="bf16")
    fast = xc.explain(lite0_cuda, image, method="grad_cam", top_k=2, precision="bf16", accelerate="cuda_graph")
    assert fast.path == "cuda_graph", fast.path_note
    assert fast.class_idx == plain.class_idx
    scale = float(plain.cams.abs().max())
    torch.testing.assert_close(fast.cams, plain.cams, rtol=1e-2, atol=2e-2 * scale)


@needs_cuda
def test_cuda_auto_runs_batches_eager_and_cuda_graph_takes_them(lite0_cuda) -> None:
    import xai_core as xc

    images = _samples(2)
    plain = xc.explain(lite0_cuda, images, method="grad_cam", top_k=2)
    auto = xc.explain(lite0_cuda, images, method="grad_cam", top_k=2, accelerate="auto")
    assert {e.path for e in auto} == {"eager"} and "batch of 2" in auto[0].path_note
    for _ in range(2):
        graphed = xc.explain(lite0_cuda, images, method="grad_cam", top_k=2, accelerate="cuda_graph")
        for fast, ref in zip(graphed, plain, strict=True):
            assert fast.path == "cuda_graph", fast.path_note
            _assert_maps_close(fast, ref)


@needs_cuda
def test_cuda_graph_is_faster_than_eager_for_one_image(lite0_cuda) -> None:
    import statistics
    import time

    import xai_core as xc

    x = xc.prepare(_samples(1)[0], lite0_cuda.spec.preprocessing).tensor.to(lite0_cuda.device)

    def median_ms(mode: str) -> float:
        times = []
        for _ in range(30):
            torch.cuda.synchronize()
            start = time.perf_counter()
            xc.explain(lite0_cuda, x, method="grad_cam", top_k=1, accelerate=mode)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times[5:])

    eager, graphed = median_ms("off"), median_ms("cuda_graph")
    assert graphed < eager, (graphed, eager)


@needs_cuda
def test_cuda_graph_is_rebuilt_when_the_model_moves(lite0_cuda) -> None:
    import xai_core as xc
    from xai_core.methods import accelerate

    image = _samples(1)[0]
    before = xc.explain(lite0_cuda, image, method="grad_cam", top_k=1, accelerate="cuda_graph")
    key = accelerate.cached_passes(lite0_cuda.module)[-1]
    held = [t.data for t in (*lite0_cuda.module.parameters(), *lite0_cuda.module.buffers())]  # not freed, so
    lite0_cuda.module.to("cpu")
    lite0_cuda.module.to(lite0_cuda.device)  # every parameter now lives at another address
    del held
    assert accelerate._lookup(lite0_cuda.module, key).moved()
    after = xc.explain(lite0_cuda, image, method="grad_cam", top_k=1, accelerate="cuda_graph")
    assert after.path == "cuda_graph" and not accelerate._lookup(lite0_cuda.module, key).moved()
    _assert_maps_close(after, before)


class _SyncingNet(torch.nn.Module):
    """A network whose forward asks the CPU for a value (``.item()``): it cannot be captured."""

    def __init__(self) -> None:
        super().__init__()
        from tests.conftest import TinyGapNet

        torch.manual_seed(0)
        self.net = TinyGapNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if x.abs().max().item() >= 0 else 0.0  # a device-to-host copy
        return self.net(x) * scale


@needs_cuda
def test_cuda_graph_capture_that_fails_runs_eager_with_the_reason() -> None:
    import xai_core as xc
    from xai_core.models import ModelSpec, Preprocessing, register

    register(
        ModelSpec(
            key="test-gpu-syncing",
            label="Syncing",
            family="imagenet",
            build=_SyncingNet,
            fetch_weights=None,
            preprocessing=Preprocessing(kind="imagenet", input_size=(16, 16), resize=18),
            labels=("a", "b", "c", "d", "e"),
            default_layer="net.features.3",
        ),
        replace=True,
    )
    model = xc.load_model("test-gpu-syncing", weights=None, device="cuda")
    x = torch.rand(1, 3, 16, 16)
    plain = xc.explain(model, x, method="grad_cam", top_k=2)[0]
    notes = []
    for _ in range(2):  # the failure is remembered: no second capture
        exp = xc.explain(model, x, method="grad_cam", top_k=2, accelerate="auto")[0]
        assert exp.path == "eager"
        notes.append(exp.path_note)
        assert torch.equal(exp.cams, plain.cams)
    assert notes[0].startswith("Capturing a CUDA graph failed (") and notes[0] == notes[1]
    again = xc.explain(model, x, method="grad_cam", top_k=2)[0]  # CUDA still works after the failed capture
    assert torch.equal(again.cams, plain.cams)

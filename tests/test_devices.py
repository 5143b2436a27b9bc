"""Devices: names, XAI_DEVICE, and a LoadedModel working on its device.

CUDA cases run only where a GPU is present and are skipped otherwise.
"""

from __future__ import annotations

import pytest
import torch

import xai_core as xc
from xai_core.errors import XaiCoreError
from xai_core.models import DeviceError, ModelSpec, Preprocessing, default_device, register, resolve_device
from xai_core.models.device import available_devices

from .conftest import TinyGapNet

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")
TINY = "test-devices-tiny"


@pytest.fixture(scope="module", autouse=True)
def tiny() -> None:
    register(
        ModelSpec(
            key=TINY,
            label="Tiny",
            family="imagenet",
            build=TinyGapNet,
            fetch_weights=None,
            preprocessing=Preprocessing(kind="imagenet", input_size=(12, 16), resize=14),
            labels=("a", "b", "", "d", "e"),
            default_layer="features.3",
        ),
        replace=True,
    )


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    expected = "cuda" if CUDA else ("mps" if "mps" in available_devices() else "cpu")
    assert resolve_device("auto").type == expected
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_unknown_device_names_list_the_choices(name: str) -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device(name)
    assert isinstance(info.value, XaiCoreError) and isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'" in msg and "Devices on this machine: cpu" in msg


def test_a_device_name_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(DeviceError, match="must be a string"):
        resolve_device(0)


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_says_so(name: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        xc.load_model(TINY, weights=None, device=name)
    assert "Devices on this machine: cpu" in str(info.value)


def test_a_cuda_index_beyond_the_machine_is_refused() -> None:
    name = f"cuda:{torch.cuda.device_count() + 3}"
    with pytest.raises(DeviceError, match="CUDA"):
        resolve_device(name)


@pytest.mark.skipif("mps" in available_devices(), reason="this machine has MPS")
def test_mps_without_apple_silicon_says_so() -> None:
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


def test_xai_device_environment_variable(monkeypatch) -> None:
    monkeypatch.delenv("XAI_DEVICE", raising=False)
    assert default_device() == "cpu"
    monkeypatch.setenv("XAI_DEVICE", "auto")
    assert default_device() == "auto"
    monkeypatch.setenv("XAI_DEVICE", "  ")
    assert default_device() == "cpu"
    monkeypatch.setenv("XAI_DEVICE", "gpu0")
    with pytest.raises(DeviceError, match="XAI_DEVICE='gpu0'"):
        default_device()


def test_loaded_model_works_on_its_device() -> None:
    model = xc.load_model(TINY, weights=None, device="cpu")
    assert model.device == torch.device("cpu")
    assert model.example_input().shape == (1, 3, 12, 16) and model.example_input(4).shape[0] == 4
    assert model.valid_outputs.tolist() == [True, True, False, True, True] and model.n_valid == 4
    assert [layer.name for layer in model.layers][-2:] == ["features.3", "features"]
    probs = model.predict(torch.randn(2, 3, 12, 16))
    assert probs.shape == (2, 5) and torch.allclose(probs.sum(1), torch.ones(2))


def test_the_model_cache_keys_on_the_device() -> None:
    a = xc.load_model(TINY, weights=None, device="cpu")
    assert xc.load_model(TINY, weights=None, device=torch.device("cpu")) is a
    if resolve_device("auto").type == "cpu":
        assert xc.load_model(TINY, weights=None, device="auto") is a  # the same device, the same entry
    assert xc.build_model(TINY, weights=None, device="cpu") is not a


def test_the_lock_is_the_hooks_lock() -> None:
    from xai_core.hooks.capture import model_lock

    model = xc.build_model(TINY, weights=None)
    assert model.lock is model_lock(model.module)


@needs_cuda
def test_model_on_cuda_gives_the_cpu_results() -> None:
    cpu = xc.build_model(TINY, weights=None, device="cpu")
    gpu = xc.build_model(TINY, weights=None, device="cuda")
    gpu.module.load_state_dict(cpu.module.state_dict())
    assert gpu.device.type == "cuda"
    assert gpu.example_input().device.type == "cuda" and gpu.valid_outputs.device.type == "cuda"
    assert [layer.name for layer in gpu.layers] == [layer.name for layer in cpu.layers]
    x = torch.randn(3, 3, 12, 16)
    p_gpu = gpu.predict(x)  # a CPU batch is moved to the model's device
    assert p_gpu.device.type == "cuda"
    torch.testing.assert_close(p_gpu.cpu(), cpu.predict(x), atol=1e-5, rtol=1e-4)
    assert xc.load_model(TINY, weights=None, device="cuda") is not xc.load_model(TINY, weights=None, device="cpu")

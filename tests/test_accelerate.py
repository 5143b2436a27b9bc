"""The ``accelerate`` switch of ``xc.explain`` on the CPU (CUDA cases: tests/test_gpu.py).

What runs here for real: the pass a CUDA graph captures (:func:`static_pass`: forward,
class choice on the device, batched backward) against the eager CAM driver; the
``torch.compile`` path end to end (it compiles on the CPU); the cache keys; the eager
fallback and its reasons; a compile that fails on a machine without a C++ compiler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import xai_core as xc
from xai_core.errors import MethodError
from xai_core.methods import accelerate as acc
from xai_core.methods import get_explainer
from xai_core.methods.base import ClassSelection, softmax
from xai_core.methods.context import ExplainRequest
from xai_core.models import ModelSpec, Preprocessing, register

from .conftest import TinyGapNet

TINY = "test-accelerate-tiny"
LAYER = "features.3"
ROOT = Path(__file__).resolve().parents[1]


def _build() -> TinyGapNet:
    torch.manual_seed(0)
    net = TinyGapNet()
    with torch.no_grad():
        net.fc.bias[2] = 10.0
    return net


def tiny_model() -> xc.LoadedModel:
    """A seeded tiny CNN whose output 2 has no class name and the largest logit (top-K must skip it)."""
    register(
        ModelSpec(
            key=TINY,
            label="Tiny",
            family="imagenet",
            build=_build,
            fetch_weights=None,
            preprocessing=Preprocessing(kind="imagenet", input_size=(16, 16), resize=18),
            labels=("a", "b", "", "d", "e"),
            default_layer=LAYER,
        ),
        replace=True,
    )
    return xc.load_model(TINY, weights=None)


@pytest.fixture(scope="module")
def tiny() -> xc.LoadedModel:
    model = tiny_model()
    yield model
    acc.clear(model.module)


def _x(n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _ex(model: xc.LoadedModel, seed: int = 1, **kwargs) -> xc.Explanation:
    """``xc.explain`` of one random image (a prepared tensor: a list of one explanation)."""
    return xc.explain(model, _x(seed=seed), **kwargs)[0]


def _request(model: xc.LoadedModel, x: torch.Tensor, choice: ClassSelection, mode: str = "off", layer=LAYER):
    return ExplainRequest(model.module, x, layer, choice, model.probabilities, None, None, mode)


def _static(model, method: str, x, choice: ClassSelection, mode: str, **params):
    """The accelerated computation without capture: static_pass + the method's maths (what a replay gives)."""
    spec = get_explainer(method)
    params = spec.check_params(params)
    own = {k: v for k, v in params.items() if k not in ("aug_smooth", "eigen_smooth", "layer_fusion")}
    req = _request(model, x, choice, mode)
    key = acc._key(mode, spec, req, own)
    fixed = acc._fixed(req, key, len(model.labels))
    valid = None if choice.valid is None else choice.valid.to(x.device)
    outputs = acc.static_pass(model.module, key, x, fixed, valid, own)
    return acc._finish(spec, req, params, own, key, outputs), spec.run(_request(model, x, choice), **params)


# ----------------------------------------------------------------------------- the captured pass


@pytest.mark.parametrize("mode", ["cuda_graph", "compile"])  # batched backward / K backward passes
@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("grad_cam", {}),
        ("grad_cam_pp", {}),
        ("layer_cam", {"eigen_smooth": True}),
        ("finer_cam", {"alpha": 0.8}),  # a target: differentiates a contrast of logits
        ("eigen_cam", {}),  # forward only
    ],
)
def test_the_captured_pass_gives_the_eager_maps_with_top_k_on_the_device(tiny, mode, method, params) -> None:
    choice = ClassSelection(top_k=3, valid=tiny.valid_outputs)
    fast, eager = _static(tiny, method, _x(2), choice, mode, **params)
    assert 2 not in fast.class_idx.tolist()[0]  # the unnamed output has the largest logit: masked, not chosen
    assert torch.equal(fast.class_idx, eager.class_idx)
    torch.testing.assert_close(fast.logits, eager.logits)
    torch.testing.assert_close(fast.maps, eager.maps, rtol=1e-5, atol=1e-6)
    assert fast.channels == eager.channels == 6
    assert fast.maps.abs().sum() > 0


def _covered() -> list[str]:
    """Every registry entry the accelerated pass covers (a new method is picked up with no edit)."""
    req = ExplainRequest(torch.nn.Identity(), torch.zeros(1, 3, 4, 4), LAYER, ClassSelection(top_k=1), softmax)
    return [
        key
        for key, spec in xc.methods.EXPLAINERS.items()
        if spec.is_cam and not acc.why_eager("compile", spec, req, spec.check_params({}))
    ]


def test_the_covered_methods_are_the_one_pass_cam_family() -> None:
    covered = set(_covered())
    assert {"grad_cam", "grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam", "finer_cam", "eigen_cam"} <= covered
    assert not covered & {"score_cam", "ablation_cam", "shapley_cam", "ss_cam", "is_cam"}


@pytest.mark.parametrize("method", _covered())
def test_every_covered_method_gives_its_eager_maps_from_the_captured_pass(tiny, method) -> None:
    choice = ClassSelection(top_k=2, valid=tiny.valid_outputs)
    fast, eager = _static(tiny, method, _x(2), choice, "cuda_graph")
    assert torch.equal(fast.class_idx, eager.class_idx)
    torch.testing.assert_close(fast.maps, eager.maps, rtol=1e-5, atol=1e-6)


def test_the_captured_pass_takes_fixed_classes_padded_per_image(tiny) -> None:
    choice = ClassSelection(top_k=None, class_idx=[[4, 1, 4], [0]])  # deduplicated, padded to K = 2
    fast, eager = _static(tiny, "grad_cam", _x(2), choice, "cuda_graph")
    assert fast.class_idx.tolist() == [[4, 1], [0, 0]] == eager.class_idx.tolist()
    torch.testing.assert_close(fast.maps, eager.maps, rtol=1e-5, atol=1e-6)


def test_the_unnamed_output_would_win_without_the_mask(tiny) -> None:
    """The masked-top-K test above can fail: unmasked, output 2 is every image's first class."""
    assert (tiny.module(_x(2)).argmax(dim=1) == 2).all()


# ----------------------------------------------------------------------------- the switch and its fallback


def test_accelerate_off_is_the_eager_path_unchanged(tiny) -> None:
    plain = _ex(tiny, method="grad_cam", top_k=2)
    off = _ex(tiny, method="grad_cam", top_k=2, accelerate="off")
    assert plain.path == off.path == "eager" and plain.path_note == off.path_note == ""
    assert torch.equal(plain.cams, off.cams)


@pytest.mark.parametrize("mode", ["auto", "cuda_graph"])
def test_cuda_graphs_on_the_cpu_run_eager_and_say_why(tiny, mode) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    plain = _ex(tiny, method="grad_cam", top_k=2)
    exp = _ex(tiny, method="grad_cam", top_k=2, accelerate=mode)
    assert exp.path == "eager"
    assert exp.path_note == "CUDA graphs need a CUDA device; this model runs on cpu."
    assert torch.equal(exp.cams, plain.cams) and exp.class_idx == plain.class_idx
    assert acc.cached_passes(tiny.module) == [] or all(k.mode == "compile" for k in acc.cached_passes(tiny.module))


def test_an_unknown_mode_is_refused_before_any_work(tiny) -> None:
    with pytest.raises(MethodError, match="accelerate must be one of 'off', 'auto', 'cuda_graph', 'compile'"):
        _ex(tiny, accelerate="fast")


@pytest.mark.parametrize(
    ("method", "kwargs", "reason"),
    [
        ("lrp", {}, "LRP runs its own passes"),
        ("score_cam", {}, "Score-CAM runs masked forward passes"),
        ("shapley_cam", {}, "second derivatives"),
        ("grad_cam", {"aug_smooth": True}, "Test-time augmentation"),
        ("grad_cam", {"layer": ["features.1", LAYER]}, "Several layers"),
        ("grad_cam", {"extra_classes": [0]}, "Extra classes"),
    ],
)
def test_what_the_accelerated_pass_does_not_cover_runs_eager_with_the_reason(tiny, method, kwargs, reason) -> None:
    plain = _ex(tiny, method=method, top_k=1, **kwargs)
    exp = _ex(tiny, method=method, top_k=1, accelerate="compile", **kwargs)
    assert exp.path == "eager" and reason in exp.path_note, exp.path_note
    assert torch.equal(exp.cams, plain.cams)


# ----------------------------------------------------------------------------- torch.compile (real, on the CPU)


def test_compiled_explanations_equal_eager_and_share_one_pass_per_key(tiny) -> None:
    acc.clear(tiny.module)
    for method in ("grad_cam", "grad_cam_pp", "xgrad_cam", "fm_g_cam"):
        plain = _ex(tiny, method=method, top_k=2)
        for seed in (1, 2):  # the second call reuses the pass, with a new image
            exp = _ex(tiny, seed=seed, method=method, top_k=2, accelerate="compile")
            ref = plain if seed == 1 else _ex(tiny, seed=seed, method=method, top_k=2)
            assert exp.path == "compile" and exp.path_note == ""
            assert exp.class_idx == ref.class_idx
            torch.testing.assert_close(exp.cams, ref.cams, rtol=1e-5, atol=1e-6)
    keys = acc.cached_passes(tiny.module)
    assert len(keys) == 1  # every gradient CAM (and FM-G-CAM over Grad-CAM) shares the top-2 pass
    assert (keys[0].top_k, keys[0].k, keys[0].shape, keys[0].layer) == (2, 2, (1, 3, 16, 16), LAYER)

    fixed = _ex(tiny, method="grad_cam", class_idx=[4, 0], accelerate="compile")
    assert fixed.class_idx == (4, 0) and fixed.path == "compile"
    other = _ex(tiny, method="grad_cam", class_idx=[1, 3], accelerate="compile")  # same key
    torch.testing.assert_close(other.cams, _ex(tiny, method="grad_cam", class_idx=[1, 3]).cams)
    _ex(tiny, method="grad_cam", top_k=3, accelerate="compile")
    _ex(tiny, method="grad_cam", top_k=1, layer="features.1", accelerate="compile")
    keys = acc.cached_passes(tiny.module)
    assert [(k.top_k, k.k, k.layer) for k in keys] == [
        (2, 2, LAYER),
        (None, 2, LAYER),
        (3, 3, LAYER),
        (1, 1, "features.1"),
    ]
    with pytest.raises(MethodError, match="class_idx must be class numbers"):  # checked on every call
        _ex(tiny, method="grad_cam", class_idx=[4, 9], accelerate="compile")


def test_the_pass_cache_drops_the_least_recently_used_and_notices_moved_weights(tiny, monkeypatch) -> None:
    acc.clear(tiny.module)
    monkeypatch.setattr(acc, "MAX_GRAPHS", 2)
    for k in (1, 2, 1, 3):
        _ex(tiny, method="grad_cam", top_k=k, accelerate="compile")
    assert [key.k for key in acc.cached_passes(tiny.module)] == [1, 3]  # 2 was least recently used
    entry = acc._lookup(tiny.module, acc.cached_passes(tiny.module)[-1])
    assert not entry.moved()
    weight = tiny.module.fc.weight
    old = weight.data
    weight.data = old.clone()  # what model.to(...) does to every parameter
    try:
        assert entry.moved()
        exp = _ex(tiny, method="grad_cam", top_k=3, accelerate="compile")
        assert exp.path == "compile"
        assert not acc._lookup(tiny.module, acc.cached_passes(tiny.module)[-1]).moved()  # rebuilt
    finally:
        weight.data = old
    acc.clear(tiny.module)
    assert acc.cached_passes(tiny.module) == []


@pytest.mark.slow
def test_a_compile_that_fails_runs_eager_with_the_reason_once(tmp_path) -> None:
    """A machine without a working C++ compiler: torch.compile fails, the explanation does not."""
    script = textwrap.dedent(
        """
        import torch, xai_core as xc
        from tests.test_accelerate import _x, tiny_model
        model = tiny_model()
        plain = xc.explain(model, _x(), method="grad_cam", top_k=2)[0]
        for _ in range(2):
            exp = xc.explain(model, _x(), method="grad_cam", top_k=2, accelerate="compile")[0]
            assert exp.path == "eager", exp.path
            assert exp.path_note.startswith("torch.compile failed (") and "compiler" in exp.path_note, exp.path_note
            assert torch.equal(exp.cams, plain.cams)
        print("ok", exp.path_note)
        """
    )
    env = {
        **os.environ,
        "CXX": "/nonexistent/g++",
        "TORCHINDUCTOR_CACHE_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"inductor-nocxx-{os.getpid()}"),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("ok torch.compile failed") == 1
    assert done.stderr.count("torch.compile failed") == 1  # logged once, not retried per call


@pytest.mark.slow
def test_compiled_lite0_equals_eager(lite0, cat_dog) -> None:
    """EfficientNet-Lite0 on a real image: the compiled pass's maps equal eager to float tolerance."""
    for method, kwargs in (("grad_cam", {"top_k": 3}), ("fm_g_cam", {"top_k": 3}), ("grad_cam_pp", {"class_idx": [5]})):
        plain = xc.explain(lite0, cat_dog, method=method, **kwargs)
        exp = xc.explain(lite0, cat_dog, method=method, accelerate="compile", **kwargs)
        assert exp.path == "compile", exp.path_note
        assert exp.class_idx == plain.class_idx
        torch.testing.assert_close(exp.cams, plain.cams, rtol=1e-4, atol=1e-5)
    acc.clear(lite0.module)


def test_the_dashboard_explains_one_image_with_accelerate_auto(tiny) -> None:
    """pages/_ui/compute.py asks for 'auto': a CUDA graph on a GPU, eager (saying why) on the CPU."""
    from pages._ui import compute

    image = (_x()[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
    exp = compute.explanation_work(tiny, image, LAYER, "grad_cam", (), (4, 1))(lambda done, total: None)
    assert exp.class_idx == (4, 1)
    assert exp.path == "eager"  # the tiny model is on the CPU
    assert exp.path_note == "CUDA graphs need a CUDA device; this model runs on cpu."

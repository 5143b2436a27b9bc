"""Randomisation checks (xai_core.trust.sanity): Quantus 0.6.0 is the oracle."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from xai_core.errors import MethodError, UnknownNameError
from xai_core.models.preprocess import Preprocessing
from xai_core.models.registry import LoadedModel
from xai_core.models.spec import ModelSpec
from xai_core.trust import sanity
from xai_core.trust.similarity import SIMILARITIES, hog_correlation, spearman, ssim


class BnNet(nn.Module):
    """Conv / batch norm / max-pool / GAP + linear (batch norms with non-trivial statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.BatchNorm2d(12),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class MlpHeadNet(nn.Module):
    """Strided convs and a two-layer head (a different layer list and order)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 10, 3, padding=1, stride=2), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(10 * 12 * 12, 16), nn.ReLU(), nn.Linear(16, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _loaded(cls: type, size: int, classes: int, layer: str) -> LoadedModel:
    torch.manual_seed(0)
    module = cls().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    labels = tuple(f"class {i}" for i in range(classes))
    spec = ModelSpec(
        cls.__name__, cls.__name__, "imagenet", cls, None, Preprocessing("imagenet", (size, size), size), labels, layer
    )
    return LoadedModel(spec, module, "seeded")


MODELS = {
    "bn": lambda: _loaded(BnNet, 32, 10, "features.6"),
    "mlp": lambda: _loaded(MlpHeadNet, 24, 7, "features.3"),
}


def _inputs(model: LoadedModel, n: int = 4) -> tuple[torch.Tensor, np.ndarray]:
    h, w = model.spec.preprocessing.input_size
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(1))
    return x, model.predict(x).argmax(1).numpy()


@pytest.mark.parametrize(
    "model_key", [pytest.param("bn", marks=pytest.mark.slow), "mlp"]
)  # the batch-norm model: about 15 s per method here
@pytest.mark.parametrize("method", ["grad_cam", "guided_backprop"])
def test_equals_quantus(model_key: str, method: str) -> None:
    quantus = pytest.importorskip("quantus")
    model = MODELS[model_key]()
    x, y = _inputs(model)

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        loaded = sanity.with_module(base, model)  # the randomised copy Quantus passes
        return sanity.attributions(loaded, torch.as_tensor(inputs), method, targets)[:, None]

    base = model
    spearman_q = quantus.similarity_func.correlation_spearman
    for order, q_order, absolute in (("cascading", "top_down", True), ("independent", "independent", False)):
        metric = quantus.MPRT(
            similarity_func=spearman_q, layer_order=q_order, seed=42, abs=absolute, disable_warnings=True
        )
        theirs = metric(model=model.module, x_batch=x.numpy(), y_batch=y, explain_func=explain_func, device="cpu")
        name = "spearman_abs" if absolute else "spearman"
        ours = sanity.model_randomisation(model, x, method, order=order, similarities=(name,), class_idx=y)
        assert list(theirs)[1:] == ours.steps  # same layers, same order
        for i, step in enumerate(ours.steps):
            np.testing.assert_allclose(ours.scores[name][i], theirs[step], atol=1e-9, err_msg=f"{order} {step}")
        assert np.ptp(ours.scores[name]) > 0.05  # the randomisation did something
    n_cls = len(model.labels)
    metric = quantus.RandomLogit(similarity_func=spearman_q, num_classes=n_cls, seed=42, disable_warnings=True)
    theirs = metric(model=model.module, x_batch=x.numpy(), y_batch=y, explain_func=explain_func, device="cpu")
    ours = sanity.random_logit(model, x, method, similarities=("spearman",), class_idx=y)
    np.testing.assert_allclose(ours.scores["spearman"][0], theirs, atol=1e-9)
    assert np.all(ours.other_class != y)


@pytest.mark.parametrize("order", sanity.ORDERS)
def test_model_left_bit_identical(order: str) -> None:
    model = MODELS["bn"]()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    rng_before = torch.random.get_rng_state()
    x, _ = _inputs(model, 2)
    result = sanity.model_randomisation(model, x, "grad_cam", order=order, layers=3)
    assert result.completed == 3
    after = model.module.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # seeding done in a forked generator


def test_checkpoints_equal_the_full_cascade() -> None:
    model = MODELS["bn"]()
    x, y = _inputs(model, 3)
    full = sanity.model_randomisation(model, x, "grad_cam", similarities=("spearman",), class_idx=y)
    some = sanity.model_randomisation(model, x, "grad_cam", similarities=("spearman",), class_idx=y, layers=3)
    assert some.steps == [full.steps[0], full.steps[len(full.steps) // 2], full.steps[-1]]
    for i, step in enumerate(some.steps):
        np.testing.assert_allclose(some.scores["spearman"][i], full.scores["spearman"][full.steps.index(step)])
    named = sanity.model_randomisation(model, x, "grad_cam", layers=["fc", "features.0"], keep_maps=True)
    assert named.steps == ["fc", "features.0"]
    assert named.maps.shape == (3, 3, 32, 32)
    # Randomising everything changes the map; nothing randomised yet would give 1.
    assert np.all(named.scores["spearman"][-1] < 0.9)
    with pytest.raises(UnknownNameError):
        sanity.model_randomisation(model, x, "grad_cam", layers=["nope"])
    with pytest.raises(MethodError):
        sanity.model_randomisation(model, x, "grad_cam", order="bottom_up")


def test_progress_and_stop() -> None:
    model = MODELS["bn"]()
    x, _ = _inputs(model, 2)
    seen: list[tuple[int, int]] = []
    flag = threading.Event()

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2:
            flag.set()

    result = sanity.model_randomisation(model, x, "grad_cam", layers=4, progress=progress, stop=flag)
    assert result.stopped and result.completed == 1
    assert seen == [(1, 5), (2, 5)]
    assert np.isfinite(result.scores["spearman"][0]).all() and np.isnan(result.scores["spearman"][1:]).all()
    stopped = sanity.random_logit(model, x, "grad_cam", stop=lambda: True)
    assert stopped.stopped and stopped.completed == 0


def test_similarities() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 32, 32))
    b = a + rng.normal(size=a.shape)
    expected = [scipy.stats.spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(a, b)]
    np.testing.assert_allclose(spearman(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(spearman(a, -a), -1.0)
    np.testing.assert_allclose(spearman(a, -a, absolute=True), 1.0)
    for name, fn in SIMILARITIES.items():
        np.testing.assert_allclose(fn(a, a), 1.0, atol=1e-9, err_msg=name)
        assert np.all(fn(a, b) < 0.9), name
    assert np.isnan(hog_correlation(np.zeros((1, 32, 32)), a[:1]))[0]
    assert ssim(a[:, :5, :5], b[:, :5, :5]).shape == (3,)  # small maps: a smaller window


def test_display_maps_and_step_labels() -> None:
    """The figure's maps: absolute, each scaled to its maximum, steps not run left out; short step names."""
    maps = np.zeros((3, 1, 2, 2), np.float32)
    maps[0, 0] = [[-4.0, 2.0], [0.0, 1.0]]
    maps[1, 0] = [[0.5, -0.25], [0.0, 0.0]]  # maps[2] was not run (stopped after one step)
    scores = {"spearman_abs": np.array([[0.5], [np.nan]])}
    result = sanity.SanityResult("grad_cam", "cascading", ["fc", "a.b"], scores, np.array([0]), maps=maps, completed=1)
    shown = sanity.display_maps(result)
    assert shown.shape == (2, 1, 2, 2)
    np.testing.assert_allclose(shown[0, 0], [[1.0, 0.5], [0.0, 0.25]])
    np.testing.assert_allclose(shown[1, 0], [[1.0, 0.5], [0.0, 0.0]])
    result.maps = None
    with pytest.raises(MethodError):
        sanity.display_maps(result)
    assert [sanity.step_label(n) for n in ("_fc", "_blocks.12._bn1", "features.3", "")] == [
        "_fc",
        "_blocks.12",
        "features.3",
        "(model)",
    ]

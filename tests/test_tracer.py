"""The one module tracer (``xai_core.hooks.layers.trace_modules``) and what is built on it."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from xai_core.errors import LayerError
from xai_core.hooks.capture import model_lock
from xai_core.hooks.layers import call_counts, candidate_layers, final_feature_layer, trace_modules


class Reuse(nn.Module):
    """A stem, a block run twice (shared weights), a stage, an Identity, then GAP + linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.stage = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.neck = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)
        self.seen_lock_from_other_thread: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Another thread cannot take the model's lock while the traced forward runs.
        got: list[bool] = []
        t = threading.Thread(target=lambda: got.append(model_lock(self).acquire(blocking=False)))
        t.start()
        t.join()
        if got[0]:
            model_lock(self).release()
        self.seen_lock_from_other_thread = got[0]
        x = self.shared(self.shared(self.stem(x)))
        x = self.neck(self.stage(x))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture()
def net() -> Reuse:
    torch.manual_seed(0)
    return Reuse().train()  # in training mode on purpose: the trace must use eval mode and restore this


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_trace_counts_shapes_and_order(net: Reuse) -> None:
    trace = trace_modules(net, torch.randn(2, 3, 8, 10))
    assert trace["shared"].calls == 2
    assert trace["stem.0"].calls == 1 and trace["stem.0"].kind == "Conv2d"
    assert trace["stage"].shape == (2, 6, 4, 5)
    assert trace["pool"].shape == (2, 6, 1, 1) and trace["fc"].shape == (2, 3)
    order = list(trace)
    # forward order by finish: children before their parent, stem before the stage
    assert order.index("stem.2") < order.index("stem") < order.index("shared") < order.index("stage.1")
    assert order.index("stage.1") < order.index("stage") < order.index("neck") < order.index("fc")
    assert "" not in trace  # the model itself is not a named module


def test_trace_output_ids_and_passthrough(net: Reuse) -> None:
    trace = trace_modules(net, torch.randn(1, 3, 8, 8))
    # a Sequential returns its last child's tensor; the Identity passes it on untouched
    assert trace["stage"].output_id == trace["stage.1"].output_id == trace["neck"].output_id
    assert trace["neck"].passthrough and not trace["stage"].passthrough
    # the in-place ReLU returns the BatchNorm's tensor object, changed: not the same contents
    assert trace["stem.2"].passthrough
    assert trace["stem.1"].output_id != trace["stem.2"].output_id
    assert trace["stem.0"].output_id != trace["stem.1"].output_id


def test_trace_runs_in_eval_mode_under_the_lock_and_leaves_no_trace(net: Reuse) -> None:
    modes: list[bool] = []
    net.stem[1].register_forward_pre_hook(lambda m, _i: modes.append(m.training))
    before = _hooks_left(net)
    running_mean = net.stem[1].running_mean.clone()
    trace_modules(net, torch.randn(1, 3, 8, 8))
    assert modes == [False]
    assert net.seen_lock_from_other_thread is False
    assert net.training and all(m.training for m in net.modules())
    assert _hooks_left(net) == before
    torch.testing.assert_close(net.stem[1].running_mean, running_mean)  # eval mode: statistics untouched
    assert all(p.grad is None for p in net.parameters())


def test_trace_removes_hooks_when_the_forward_fails(net: Reuse) -> None:
    before = _hooks_left(net)
    with pytest.raises(RuntimeError):
        trace_modules(net, torch.randn(1, 5, 8, 8))  # wrong channel count
    assert _hooks_left(net) == before and net.training
    assert model_lock(net).acquire(blocking=False)  # the lock was released
    model_lock(net).release()


def test_candidate_layers_and_call_counts_come_from_the_trace(net: Reuse) -> None:
    x = torch.randn(1, 3, 8, 8)
    names = [layer.name for layer in candidate_layers(net, x)]
    assert "shared" not in names  # runs twice
    assert "pool" not in names  # 1x1
    assert names[:4] == ["stem.0", "stem.1", "stem.2", "stem"]
    assert call_counts(net, x)["shared"] == 2
    trace = trace_modules(net, x)
    assert candidate_layers(net, x, trace=trace) == candidate_layers(net, x)


def test_final_feature_layer_picks_the_outermost_block_at_the_final_resolution(net: Reuse) -> None:
    # stage, stage.1 and neck return the same final map; neck only passes it on, and
    # stage's own first conv already works at the final resolution: stage is chosen.
    assert final_feature_layer(net, torch.randn(1, 3, 8, 8)) == "stage"


def test_final_feature_layer_prefers_the_last_block_over_a_stage_that_starts_larger() -> None:
    torch.manual_seed(0)
    block = nn.Sequential  # a stage whose first conv still runs at the larger resolution
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        block(block(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 8, 3, stride=2, padding=1)), block(nn.Conv2d(8, 8, 1), nn.ReLU())),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    assert final_feature_layer(model, torch.randn(1, 3, 8, 8)) == "1.1"


def test_final_feature_layer_refuses_a_network_without_a_feature_map() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with pytest.raises(LayerError, match="spatial feature map"):
        final_feature_layer(mlp, torch.randn(1, 3, 2, 2))


class _Trunk(nn.Module):
    """The whole trunk in one Sequential closed by an in-place ReLU (torchvision's MNASNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(True)
        )
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x).mean((2, 3)))


def test_final_feature_layer_falls_back_to_the_innermost_module_of_the_final_map() -> None:
    # trunk spans the 8x8 convolution, the ReLU only passes its (changed) input on: the ReLU is named,
    # not the BatchNorm before it, whose output at its own hook was still unrectified.
    assert final_feature_layer(_Trunk(), torch.randn(1, 3, 8, 8)) == "trunk.3"


class _Tokens(nn.Module):
    """A patch embedding followed by token layers: a vision transformer in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.block = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.block(self.patch(x).flatten(2).transpose(1, 2))  # [B, L, D]
        return self.head(tokens.mean(1))


def test_final_feature_layer_refuses_a_transformer() -> None:
    with pytest.raises(LayerError, match="not a CNN.*'block' gives \\[1, 4, 8\\]"):
        final_feature_layer(_Tokens(), torch.randn(1, 3, 8, 8))

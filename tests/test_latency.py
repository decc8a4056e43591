"""Tests for mobilenet_search.measure.latency: timing logic, restored state, device resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.errors import UserError
from mobilenet_search.measure import latency as latency_module
from mobilenet_search.measure.latency import Latency, measure_latency, resolve_device

SEEN: list = []  # what modules observe during forward; module-level so the measured deep copy shares it


class Recorder(nn.Module):
    """Records torch's thread count, its own mode and grad mode at each forward pass."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.append((torch.get_num_threads(), self.training, torch.is_inference_mode_enabled()))
        return self.conv(x)


@pytest.fixture(autouse=True)
def clear_seen():
    SEEN.clear()
    yield
    SEEN.clear()


def test_result_fields_are_sane():
    result = measure_latency(nn.Conv2d(3, 8, 1), (4, 3, 16, 16), repeats=5, threads=1)
    assert isinstance(result, Latency)
    assert 0 < result.q1_ms <= result.ms <= result.q3_ms < 1000
    assert (result.batch_size, result.repeats) == (4, 5)
    assert result.device.startswith("cpu: ") and result.device.endswith("(1 thread)")
    assert "(R)" not in result.device
    assert f"{result.ms:.2f} ms" in str(result)


def test_latency_is_the_median_of_the_timed_runs_after_warmup(monkeypatch):
    # The module advances a fake clock by a known time per pass; warm-up passes are not timed.
    durations_ms = [500.0, 3.0, 1.0, 50.0, 2.0, 4.0]
    clock = {"now": 0.0}

    class Ticking(nn.Module):
        def forward(self, x):
            clock["now"] += durations_ms.pop(0) / 1e3
            return x

    monkeypatch.setattr(latency_module, "perf_counter", lambda: clock["now"])
    result = measure_latency(Ticking(), (1, 3), warmup=1, repeats=5)
    assert durations_ms == []
    assert result.ms == pytest.approx(3.0)
    assert (result.q1_ms, result.q3_ms) == (pytest.approx(2.0), pytest.approx(4.0))


def test_single_repeat_is_its_own_spread(monkeypatch):
    clock = {"now": 0.0}

    class Ticking(nn.Module):
        def forward(self, x):
            clock["now"] += 0.007
            return x

    monkeypatch.setattr(latency_module, "perf_counter", lambda: clock["now"])
    result = measure_latency(Ticking(), (1,), warmup=0, repeats=1)
    assert (result.q1_ms, result.ms, result.q3_ms) == pytest.approx((7.0, 7.0, 7.0))


def test_runs_with_the_asked_thread_count_in_eval_and_inference_mode_then_restores_threads():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = measure_latency(Recorder(), (1, 3, 8, 8), warmup=1, repeats=3, threads=1)
        assert SEEN == [(1, False, True)] * 4
        assert torch.get_num_threads() == 2
        assert result.device.endswith("(1 thread)")
        SEEN.clear()
        result = measure_latency(Recorder(), (1, 3, 8, 8), warmup=0, repeats=2, threads=None)
        assert [threads for threads, _, _ in SEEN] == [2, 2]
        assert result.device.endswith("(2 threads)")
    finally:
        torch.set_num_threads(previous)


def test_thread_count_is_restored_when_the_model_fails():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match="boom"):
            measure_latency(Broken(), (1, 3), threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_callers_model_keeps_its_modes_device_and_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), Recorder(8))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model must stay as it was
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    measure_latency(model, (2, 3, 16, 16), repeats=3)
    assert [m.training for m in model.modules()] == modes
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(training is False for _, training, _ in SEEN)


def test_a_big_network_measures_slower_than_a_tiny_one():
    # MobileNetV2 1.0/224 (300M MAdds) against a 1x1 convolution on 32x32: about 100x apart
    # on this machine; a 5x margin keeps the test steady on a busy shared CPU.
    big = measure_latency(build_model(ArchSpec.mobilenet_v2()), (1, 3, 224, 224), repeats=5)
    small = measure_latency(nn.Conv2d(3, 8, 1), (1, 3, 32, 32), repeats=5)
    assert big.ms > 5 * small.ms


@pytest.mark.parametrize(("arguments", "message"), [
    ({"input_shape": ()}, "input_shape"),
    ({"input_shape": (0, 3)}, "input_shape"),
    ({"input_shape": (1, 3), "repeats": 0}, "repeats"),
    ({"input_shape": (1, 3), "warmup": -1}, "warmup"),
    ({"input_shape": (1, 3), "threads": 0}, "threads"),
])
def test_bad_arguments_are_programming_errors(arguments, message):
    with pytest.raises(ValueError, match=message) as caught:
        measure_latency(nn.Identity(), **arguments)
    assert not isinstance(caught.value, UserError)


def test_resolve_device_auto_follows_cuda_availability(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


def test_resolve_device_errors_are_user_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="'cuda:1' does not exist"):
        resolve_device("cuda:1")


def test_measuring_on_cuda_without_a_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="cuda"):
        measure_latency(nn.Identity(), (1, 3), device="cuda")

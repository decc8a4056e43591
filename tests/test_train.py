"""Proxy training: it learns, it is seeded, it reports each epoch, it stops on divergence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import load_dataset
from mobilenet_search.measure.train import TrainConfig, TrainingDiverged, recalibrate_batchnorm, train_and_evaluate


@pytest.fixture(scope="module")
def stripes():
    return load_dataset("synthetic:256", 32, cache_dir=None)


def _small_cnn(in_channels: int = 1, num_classes: int = 4) -> nn.Module:
    # A shallow net learns the stripes in a few dozen steps; a MobileNetV2 needs far more.
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def test_training_beats_chance_clearly_in_a_few_epochs(stripes):
    torch.manual_seed(0)
    result = train_and_evaluate(_small_cnn(), stripes, TrainConfig(epochs=4, batch_size=16))
    assert result.accuracy >= 0.7  # chance is 0.25
    assert result.balanced_accuracy >= 0.7
    assert len(result.history) == 4 and result.history[-1] == result.accuracy
    assert result.train_seconds > 0 and result.eval_seconds > 0 and result.images_per_second > 0


def test_same_seed_gives_the_same_result_on_cpu(stripes):
    small = load_dataset("synthetic:64", 32, cache_dir=None)
    spec = ArchSpec.mobilenet_v2(0.35, 96, num_classes=4, in_channels=1)
    config = TrainConfig(epochs=2, batch_size=16, seed=3)
    results, weights = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(spec)
        results.append(train_and_evaluate(model, small, config).history)
        weights.append(model.classifier[1].weight.detach().clone())
    assert results[0] == results[1]
    assert torch.equal(weights[0], weights[1])
    torch.manual_seed(0)
    other = build_model(spec)
    train_and_evaluate(other, small, TrainConfig(epochs=2, batch_size=16, seed=4))
    assert not torch.equal(other.classifier[1].weight, weights[0])


def test_training_leaves_the_callers_random_state_alone():
    model, data = _small_cnn(), load_dataset("synthetic:32", 16, cache_dir=None)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train_and_evaluate(model, data, TrainConfig(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_on_epoch_is_called_after_each_epoch_with_the_history(stripes):
    calls = []
    result = train_and_evaluate(_small_cnn(), stripes, TrainConfig(epochs=3, batch_size=32),
                                on_epoch=lambda epoch, accuracy: calls.append((epoch, accuracy)))
    assert calls == list(enumerate(result.history))


def test_evaluating_after_the_last_epoch_only_gives_the_same_network_and_accuracy():
    # MobileNetV2 has dropout, which draws random numbers during the skipped recalibrations too.
    data = load_dataset("synthetic:64", 32, cache_dir=None)
    spec = ArchSpec.mobilenet_v2(0.35, 96, num_classes=4, in_channels=1)
    runs = []
    for every in (True, False):
        calls = []
        model = build_model(spec, seed=0)
        result = train_and_evaluate(model, data, TrainConfig(epochs=3, batch_size=16, eval_every_epoch=every),
                                    on_epoch=lambda epoch, accuracy, calls=calls: calls.append((epoch, accuracy)))
        runs.append((result, model.state_dict(), calls))
    (every, every_weights, every_calls), (last, last_weights, last_calls) = runs
    assert len(every.history) == 3 and last.history == every.history[-1:]
    assert (last.accuracy, last.balanced_accuracy) == (every.accuracy, every.balanced_accuracy)
    assert torch.equal(last.predictions, every.predictions) and last.loss_history == every.loss_history
    assert all(torch.equal(v, last_weights[k]) for k, v in every_weights.items())
    assert every_calls == list(enumerate(every.history))
    assert last_calls == [(0, None), (1, None), (2, last.accuracy)]
    assert len(last.loss_history) == 3 and all(loss > 0 for loss in last.loss_history)


def test_exception_from_on_epoch_propagates_and_stops_training(stripes):
    class Pruned(Exception):
        pass

    calls = []

    def prune(epoch: int, accuracy: float) -> None:
        calls.append(epoch)
        raise Pruned

    with pytest.raises(Pruned):
        train_and_evaluate(_small_cnn(), stripes, TrainConfig(epochs=3, batch_size=32), on_epoch=prune)
    assert calls == [0]


def test_huge_learning_rate_raises_training_diverged(stripes):
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        train_and_evaluate(_small_cnn(), stripes, TrainConfig(epochs=2, batch_size=32, lr=1e12, optimizer="sgd"))


def test_model_producing_nan_raises_training_diverged(stripes):
    class NaNHead(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    model = nn.Sequential(_small_cnn(), NaNHead())
    with pytest.raises(TrainingDiverged, match="nan"):
        train_and_evaluate(model, stripes, TrainConfig(epochs=1, batch_size=32))


def test_batchnorm_recalibration_replaces_stale_running_statistics():
    model = _small_cnn()
    bn = model[1]
    inputs = [torch.randn(8, 1, 16, 16) * 3 + 5 for _ in range(4)]
    recalibrate_batchnorm(model, inputs)
    assert not torch.allclose(bn.running_mean, torch.zeros(16))
    # The plain average over the batches, as running statistics with momentum None give.
    with torch.no_grad():
        conv = torch.cat([model[0](x) for x in inputs])
    assert torch.allclose(bn.running_mean, conv.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1  # restored
    before = bn.running_mean.clone()
    recalibrate_batchnorm(model, [])
    assert torch.equal(bn.running_mean, before)


def test_recalibration_in_training_changes_the_evaluated_statistics(stripes):
    running_var = {}
    for batches in (0, 8):
        torch.manual_seed(0)
        model = _small_cnn()
        train_and_evaluate(model, stripes, TrainConfig(epochs=1, batch_size=32, bn_recalibration=batches))
        running_var[batches] = model[1].running_var.clone()
    assert not torch.allclose(running_var[0], running_var[8])


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("optimizer", "adam"), ("lr", 0.0), ("device", "tpu"), ("label_smoothing", 1.0),
])
def test_bad_settings_raise_user_error(field, value):
    with pytest.raises(UserError, match=field):
        TrainConfig(**{field: value})

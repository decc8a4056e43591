"""The evaluation pipeline: the accuracy source gives the one network of a candidate, which is timed and scored."""

from __future__ import annotations

import torch

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.latency import Latency
from mobilenet_search.measure.supernet_train import calibration_indices, score_subnet
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate
from mobilenet_search.measure.zero_cost import PROXIES, fixed_batch, scores
from mobilenet_search.results.records import pack_correct
from mobilenet_search.search.evaluate import ZERO_COST_BATCH, Pipeline, ScratchTraining, init_seed
from mobilenet_search.search.space import load_space, supernet_envelope
from mobilenet_search.search.strategies import InheritedWeights

SPACE = load_space("tiny")
DATA = DataCache("synthetic:96", 32)
PROXY_SIZE = 32
BUDGET = Budget.parse("1G-madds")  # above every member of the tiny space


def _members(count: int):
    """The first ``count`` members of the tiny space in a fixed order (distinct architectures)."""
    choices = list(SPACE.searched.items())
    return [SPACE.spec({name: values[(i >> k) % len(values)] for k, (name, values) in enumerate(choices)},
                       num_classes=DATA.num_classes, in_channels=DATA.in_channels) for i in range(count)]


class Timed:
    """A latency function that records which network it was given (and times nothing)."""

    def __init__(self) -> None:
        self.models: list[torch.nn.Module] = []

    def __call__(self, model, shape, device="cpu") -> Latency:
        self.models.append(model)
        return Latency(ms=1.0, q1_ms=1.0, q3_ms=1.0, device="cpu: fake", batch_size=shape[0], repeats=1)


def test_a_supernet_candidate_is_one_network_built_once_timed_and_scored():
    built = []

    def counting_build(spec, seed=None):
        built.append(spec)
        return build_model(spec, seed=seed)

    net = Supernet(supernet_envelope(SPACE, num_classes=DATA.num_classes, in_channels=DATA.in_channels), seed=0,
                   build=counting_build)
    source, timed = InheritedWeights(net, bn_images=32), Timed()
    pipeline = Pipeline(budget=BUDGET, data=DATA, accuracy=source, proxy_size=PROXY_SIZE, latency=timed)
    specs = _members(3)
    built.clear()  # the envelope, built once with the supernet
    records = [pipeline.measure(spec, pipeline.check(spec)) for spec in specs]

    assert built == specs  # exactly one network a candidate, and the pipeline built none of its own
    for spec, model, record in zip(specs, timed.models, records, strict=True):
        # The network timed carries the inherited weights (the supernet's first channels), in the builder's layout.
        stem = model.features[0][0].weight
        assert torch.equal(stem, net.features[0][0].weight[:stem.shape[0], :stem.shape[1]])
        assert stem.is_contiguous()
        # Its accuracy is the one the supernet's scorer gives that member (extract, recalibrate, evaluate).
        data = DATA(record.attrs["proxy_resolution"])
        expected, _ = score_subnet(net, spec, data, calibration=calibration_indices(data, 32, 0))
        assert record.attrs["accuracy"] == expected.accuracy
        assert record.attrs["strategy"] == "supernet" and record.attrs["time_score"] > 0
        assert not any(key.startswith("zc_") for key in record.attrs)  # trained weights: no zero-cost scores


def test_a_scratch_candidate_records_what_its_initial_network_scores_and_trains_to():
    # Scratch training's record is that of build_model(spec, seed=init_seed(spec, seed)): zero-cost scores at those
    # initial weights on the fixed batch, then the proxy training of the same network. The numbers a scratch study
    # records stay what they were before the accuracy source gave the network.
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01)
    pipeline = Pipeline(budget=BUDGET, data=DATA, accuracy=ScratchTraining(config), proxy_size=PROXY_SIZE, seed=3,
                        latency=Timed())
    spec = _members(1)[0]
    record = pipeline.measure(spec, pipeline.check(spec))

    data = DATA(record.attrs["proxy_resolution"])
    model = build_model(spec, seed=init_seed(spec, 3))
    expected_scores = scores(model, *fixed_batch(data, ZERO_COST_BATCH, seed=3))
    result = train_and_evaluate(model, data, config)
    assert {name: record.attrs[f"zc_{name}"] for name in PROXIES} == expected_scores
    assert record.attrs["accuracy"] == result.accuracy
    assert record.attrs["accuracy_history"] == list(result.history)
    assert record.attrs["val_correct"] == pack_correct((result.predictions == data.val_labels).numpy())

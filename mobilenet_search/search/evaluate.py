"""How one candidate gets its numbers: cost, budget, latency, zero-cost scores, then accuracy.

The pipeline knows nothing of Optuna: it takes an :class:`ArchSpec` and fills one
:class:`Record` (the user attributes a trial stores, the budget's excess per kind, how it
ended). What it needs is passed in -- the dataset cache, the latency function, and the
*accuracy source* -- so a strategy or a test swaps any of them without patching a module:

- :class:`ScratchTraining` trains the candidate from its initial weights (the proxy);
- :class:`mobilenet_search.search.strategies.InheritedWeights` scores it with weights
  inherited from a trained supernet.

The accuracy source also gives the candidate's network (``source.model(spec, data, seed)``):
the network it scores is the one the pipeline times, and nothing is built to be thrown away.

Cheap before expensive, as Archai's evaluators do: :meth:`Pipeline.check` counts the
candidate from its spec alone (microseconds) and rejects it when over budget; only then does
:meth:`Pipeline.measure` build, time, score and train it.
"""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.cost import MemoryEstimate, count_madds, count_params, format_bytes, training_memory
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.data import ImageData, proxy_resolution
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.latency import Latency, measure_latency
from mobilenet_search.measure.memory import available_memory as _available_memory
from mobilenet_search.measure.train import TrainConfig, TrainingDiverged, input_transform, train_and_evaluate
from mobilenet_search.measure.zero_cost import PROXIES, fixed_batch
from mobilenet_search.measure.zero_cost import scores as zero_cost_scores
from mobilenet_search.results.frame import interval_attrs
from mobilenet_search.results.records import (
    CORRECT_ATTR,
    LEARNED_NOTHING_ATTR,
    TEST_CORRECT_ATTR,
    TEST_SIZE_ATTR,
    VAL_SIZE_ATTR,
    Outcome,
    Strategy,
    learned_nothing,
    pack_correct,
    quality_attr,
    trivial_accuracy,
)
from mobilenet_search.results.stats import balanced_accuracy

ZERO_COST_BATCH = 64  # images in the fixed mini-batch the zero-cost proxies score
OnEpoch = Callable[[int, float | None], None]  # (epoch counted from 0, validation accuracy or None if not evaluated)


def init_seed(spec: ArchSpec, seed: int) -> int:
    """The seed of a candidate's initial weights: the same architecture starts from the same weights
    in every trial, retry and fidelity retraining, whatever ran before it in the process."""
    return (zlib.crc32(spec.to_string().encode()) + seed) % 2**63


@dataclass
class Record:
    """What evaluating one candidate produced, filled stage by stage (kept when a stage fails)."""

    attrs: dict[str, Any] = field(default_factory=dict)  # the trial's user attributes
    excess: dict[str, float] = field(default_factory=dict)  # per budget kind; <= 0 inside (Optuna constraints)
    outcome: Outcome | None = None
    reason: str | None = None  # why it was rejected or failed
    quality: float | None = None  # accuracy, or the zero-cost score searched on
    model: torch.nn.Module | None = None  # the network as scored (trained from scratch; None otherwise)

    def reject(self, reason: str) -> Record:
        self.outcome, self.reason = Outcome.OVER_BUDGET, reason
        return self


@dataclass(frozen=True)
class Scored:
    """An accuracy source's answer for one candidate."""

    accuracy: float
    balanced_accuracy: float
    predictions: torch.Tensor | None  # the predicted class of every validation image, in the split's order
    attrs: dict[str, Any] = field(default_factory=dict)  # what else to record (history, seconds per phase)
    test_predictions: torch.Tensor | None = None  # the predicted class of every test image, when scored there


class AccuracySource(Protocol):
    """How a candidate gets its network, ``source.model(spec, data, seed)``, and that network's accuracy,
    ``source(spec, model, data, on_epoch=...) -> Scored``.

    ``at_initialisation``: whether :meth:`model` gives the network at its initial weights, where zero-cost
    proxies are defined (they are scored on it then, before training).
    """

    strategy: Strategy
    at_initialisation: bool

    def model(self, spec: ArchSpec, data: ImageData, seed: int) -> torch.nn.Module: ...

    def __call__(self, spec: ArchSpec, model: torch.nn.Module, data: ImageData, *,
                 on_epoch: OnEpoch | None = None) -> Scored: ...


@torch.no_grad()
def check_trained(model: torch.nn.Module, data: ImageData, predictions: torch.Tensor, lr: float) -> None:
    """Refuse a result that only looks trained: non-finite weights after the last step, or a collapsed
    classifier -- one class for every validation image from an output that no longer depends on the input
    (what a diverging learning rate leaves; BatchNorm keeps its loss finite). An undertrained network that
    answers the majority class from varying outputs is a real, poor candidate, and is kept."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingDiverged(f"training diverged: non-finite weights after the last step (lr={lr:g}); "
                               "try a lower learning rate")
    predicted = torch.unique(predictions)
    if len(predicted) > 1 or len(torch.unique(data.val_labels)) < 2:
        return
    device = next(model.parameters()).device
    model.eval()
    outputs = model(input_transform(data, device)(data.val_images[:256])).float()
    if not bool(torch.isfinite(outputs).all()) or outputs.std(0).max() <= 1e-5 * outputs.abs().max():
        raise TrainingDiverged(f"collapsed classifier: its output no longer depends on the input, every validation "
                               f"image is class {int(predicted[0])} (lr={lr:g}); try a lower learning rate")


def initial_model(spec: ArchSpec, seed: int, build: Callable[..., torch.nn.Module] = build_model) -> torch.nn.Module:
    """The candidate at its initial weights, seeded by :func:`init_seed`: what scratch training starts from."""
    return build(spec, seed=init_seed(spec, seed))


class ScratchTraining:
    """The accuracy of a candidate trained from its initial weights with the proxy schedule.

    ``train`` is :func:`mobilenet_search.measure.train.train_and_evaluate` unless a test or a
    benchmark passes another function of the same signature; ``build`` is
    :func:`~mobilenet_search.arch.builder.build_model` unless one passes another.
    """

    strategy = Strategy.SCRATCH
    at_initialisation = True

    def __init__(self, config: TrainConfig, train: Callable[..., Any] = train_and_evaluate,
                 build: Callable[..., torch.nn.Module] = build_model) -> None:
        self.config, self.train, self.build = config, train, build

    def model(self, spec: ArchSpec, data: ImageData, seed: int) -> torch.nn.Module:
        """The candidate at its initial weights (:func:`initial_model`)."""
        return initial_model(spec, seed, self.build)

    def __call__(self, spec: ArchSpec, model: torch.nn.Module, data: ImageData, *,
                 on_epoch: OnEpoch | None = None) -> Scored:
        result = self.train(model, data, self.config, on_epoch=on_epoch)
        if result.predictions is not None:
            check_trained(model, data, result.predictions, self.config.lr)
        return Scored(result.accuracy, result.balanced_accuracy, result.predictions, {
            "accuracy_history": list(result.history), "loss_history": list(result.loss_history),
            "train_seconds": result.train_seconds,
            "time_train": result.train_seconds, "time_eval": result.eval_seconds}, result.test_predictions)


def memory_needed(spec: ArchSpec, proxy_size: int, batch_size: int) -> MemoryEstimate:
    """What evaluating ``spec`` takes in memory at its peak, from the spec alone: training on batches of
    ``batch_size`` (or the zero-cost proxies' mini-batch, if larger) at its proxy resolution."""
    size = proxy_resolution(proxy_size, spec.resolution)
    return training_memory(spec.replace(resolution=size), max(batch_size, ZERO_COST_BATCH))


def memory_reason(needed: MemoryEstimate, available: int | None) -> str | None:
    """Why a network needing ``needed`` cannot be evaluated with ``available`` bytes, or None if it fits."""
    if available is None or needed.total <= available:
        return None
    return (f"needs about {format_bytes(needed.total)} of memory to train (activations "
            f"{format_bytes(needed.activations)}, weights and optimiser {format_bytes(needed.weights)}, layers "
            f"{format_bytes(needed.modules)}), more than the {format_bytes(available)} available")


class Pipeline:
    """cost -> budget -> latency -> zero-cost -> accuracy, for one candidate at a time.

    ``accuracy=None`` scores with the zero-cost proxy ``search_zero_cost`` instead of training
    (``--objective zero-cost:NAME``). ``latency(model, shape, device=...)`` returns a
    :class:`Latency`. ``seed`` seeds initial weights (through :func:`init_seed`) and the
    zero-cost mini-batch. ``metric`` is what a trial's quality is: ``accuracy`` or ``balanced``
    (balanced accuracy, fairer on imbalanced data). ``batch_size`` is the training batch; a candidate whose
    estimated memory (:func:`memory_needed`) exceeds what ``available_memory()`` returns (default: what
    :func:`mobilenet_search.measure.memory.available_memory` says of ``device``) is rejected before it is built.
    ``build`` builds a zero-cost study's networks (it has no accuracy source to give them).
    """

    def __init__(self, *, budget: Budget, data: DataCache, accuracy: AccuracySource | None, proxy_size: int,
                 seed: int = 0, device: str = "cpu", latency_batch: int = 1,
                 latency: Callable[..., Latency] = measure_latency, search_zero_cost: str | None = None,
                 zero_cost: Sequence[str] = PROXIES,
                 predict_latency: Callable[[ArchSpec], float] | None = None, metric: str = "accuracy",
                 batch_size: int = 64, available_memory: Callable[[], int | None] | None = None,
                 build: Callable[..., torch.nn.Module] = build_model) -> None:
        if accuracy is None and search_zero_cost is None:
            raise ValueError("a pipeline needs an accuracy source or a zero-cost proxy to search on")
        self.budget, self.data, self.accuracy = budget, data, accuracy
        self.proxy_size, self.seed, self.device, self.latency_batch = proxy_size, seed, device, latency_batch
        self.latency, self.search_zero_cost, self.predict_latency = latency, search_zero_cost, predict_latency
        self.metric, self.batch_size, self.build = metric, batch_size, build
        self.available_memory = available_memory or functools.partial(_available_memory, device)
        #: The attribute a trial's quality is: the searched zero-cost score, balanced accuracy or accuracy.
        self.quality_key = quality_attr(metric, search_zero_cost if accuracy is None else None)
        # Zero-cost mode computes only the score it searches on; otherwise every proxy is recorded.
        self.zero_cost = (search_zero_cost,) if accuracy is None else tuple(zero_cost)
        self._batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def check(self, spec: ArchSpec) -> Record:
        """Count the candidate from its spec and check the budget's limits and this machine's memory
        (microseconds, no build).

        With a latency table (``predict_latency``) a latency budget is checked here too, on the
        predicted latency; a candidate that passes is still timed for real by :meth:`measure`.
        """
        madds, params = count_madds(spec), count_params(spec)
        record = Record(attrs={"arch": spec.to_string(), "spec": spec.to_json(), "madds": madds, "params": params})
        predicted = None
        if self.predict_latency is not None:
            predicted = record.attrs["latency_predicted_ms"] = self.predict_latency(spec)
        record.excess = self.budget.excesses(madds=madds, params=params, latency_ms=predicted)
        reason = self.budget.reason(madds=madds, params=params, latency_ms=predicted)
        if reason and predicted is not None and self.budget.reason(madds=madds, params=params) is None:
            reason += " (predicted by the latency table)"
        if not reason:  # inside the budget: can this machine hold it while it trains?
            reason = memory_reason(memory_needed(spec, self.proxy_size, self.batch_size), self.available_memory())
            if reason:
                reason += ": not built"
        return record.reject(reason) if reason else record

    def measure(self, spec: ArchSpec, record: Record, *, on_epoch: OnEpoch | None = None,
                seed: int | None = None, accuracy: AccuracySource | None = None) -> Record:
        """Build, time, score and train a candidate that passed :meth:`check`; fills ``record`` as it goes.

        ``seed`` overrides the pipeline's seed for this candidate's weights (a noise repeat);
        ``accuracy`` its accuracy source (a supernet study trains its references from scratch).
        """
        accuracy = accuracy or self.accuracy
        seed = self.seed if seed is None else seed
        size = proxy_resolution(self.proxy_size, spec.resolution)
        data = self.data(size)
        started = time.perf_counter()
        # The one network of this candidate: the source's own (inherited weights are extracted once, here).
        model = initial_model(spec, seed, self.build) if accuracy is None else accuracy.model(spec, data, seed)
        record.attrs["time_build"] = time.perf_counter() - started
        if accuracy is not None or self.budget.needs_latency:
            latency_ms = self._latency(model, spec, record)
            reason = self._latency_excess(record, latency_ms)
            if reason:
                return record.reject(reason)
        record.attrs["proxy_resolution"] = size
        # Zero-cost proxies are defined at initialisation: scored before training, and not on inherited weights
        # (the scores of trained weights would mean something else under the same names, an initialised twin
        # would be a second network built for them, and with the inherited accuracy known in a second a proxy
        # for it adds nothing).
        if accuracy is None or accuracy.at_initialisation:
            self._zero_cost(model, data, size, record)
        if accuracy is None:
            record.outcome, record.quality = Outcome.SCORED, record.attrs[self.quality_key]
            return record
        scored = accuracy(spec, model, data, on_epoch=on_epoch)
        record.attrs.update(scored.attrs, accuracy=scored.accuracy, balanced_accuracy=scored.balanced_accuracy,
                            strategy=accuracy.strategy)
        record.model = model if accuracy.strategy == Strategy.SCRATCH else None
        if scored.predictions is not None:  # per-image correctness: intervals and paired tests
            correct = (scored.predictions == data.val_labels).numpy()
            record.attrs.update({CORRECT_ATTR: pack_correct(correct), VAL_SIZE_ATTR: len(correct),
                                 LEARNED_NOTHING_ATTR: learned_nothing(int(correct.sum()), len(correct),
                                                                       trivial_accuracy(data.val_labels.numpy()))},
                                **interval_attrs(correct, data.val_labels.numpy()))
        if scored.test_predictions is not None:  # scored once on the test split; the search never reads it
            correct = (scored.test_predictions == data.test_labels).numpy()
            record.attrs.update({TEST_CORRECT_ATTR: pack_correct(correct), TEST_SIZE_ATTR: len(correct),
                                 "test_accuracy": float(correct.mean()),
                                 "test_balanced_accuracy": balanced_accuracy(correct, data.test_labels.numpy())})
        record.outcome = Outcome.TRAINED
        record.quality = record.attrs[self.quality_key]
        return record

    def reuse(self, record: Record, attrs: dict[str, Any], outcome: Outcome) -> Record:
        """Fill ``record`` (of :meth:`check`) from ``attrs``, an earlier :meth:`measure` of the same candidate with the
        same seed and settings, as that measure would fill it: attributes, budget excess (on the recorded latency
        for a latency budget), quality and ``outcome``. The evaluation cache's hit (:mod:`.cache`)."""
        record.attrs.update(attrs)
        self._latency_excess(record, record.attrs.get("latency_ms"))  # the source passed: no reason to reject
        record.outcome, record.quality = outcome, record.attrs[self.quality_key]
        return record

    def _latency_excess(self, record: Record, latency_ms: float | None) -> str | None:
        """Under a latency budget, the candidate's excess per kind with its measured latency (into ``record``) and
        why it is over budget, or None; without one, nothing to do (:meth:`check` counted MAdds and params)."""
        if not self.budget.needs_latency:
            return None
        madds, params = record.attrs["madds"], record.attrs["params"]
        record.excess = self.budget.excesses(madds=madds, params=params, latency_ms=latency_ms)
        return self.budget.reason(madds=madds, params=params, latency_ms=latency_ms)

    def _latency(self, model: torch.nn.Module, spec: ArchSpec, record: Record) -> float:
        """Latency at the deployment resolution, recorded with its device and batch size."""
        t0 = time.perf_counter()
        shape = (self.latency_batch, spec.in_channels, spec.resolution, spec.resolution)
        latency = self.latency(model, shape, device=self.device)
        record.attrs.update(time_latency=time.perf_counter() - t0, latency_ms=latency.ms,
                            latency_device=latency.device, latency_batch=latency.batch_size)
        return latency.ms

    def _zero_cost(self, model: torch.nn.Module, data: ImageData, size: int, record: Record) -> dict[str, float]:
        """Zero-cost proxy scores on the fixed mini-batch of this proxy size."""
        if size not in self._batches:
            images, labels = fixed_batch(data, ZERO_COST_BATCH, seed=self.seed)
            self._batches[size] = (images.to(self.device), labels.to(self.device))
        t0 = time.perf_counter()
        values = zero_cost_scores(model, *self._batches[size], names=self.zero_cost)
        record.attrs.update({f"zc_{name}": value for name, value in values.items()})
        record.attrs["time_zero_cost"] = time.perf_counter() - t0
        return values

"""The Optuna objective: a thin adapter that samples a candidate, runs the pipeline, records the trial.

Everything measured comes from :class:`mobilenet_search.search.evaluate.Pipeline`; everything
about several processes sharing the study from :mod:`mobilenet_search.search.coordination`.
This module only maps between them and Optuna: user attributes, constraints, pruning, and how
an exception becomes an outcome.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from mobilenet_search.errors import UserError
from mobilenet_search.files import save_weights
from mobilenet_search.measure.train import TrainingDiverged
from mobilenet_search.results.records import (
    WEIGHTS_ATTR,
    Outcome,
    TrialRecord,
    is_confirmation,
    is_reference,
    set_attrs,
)
from mobilenet_search.search.cache import cacheable, cached_source, copied_attrs
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.coordination import WORKER, Slots, retry_of
from mobilenet_search.search.evaluate import AccuracySource, Pipeline, Record
from mobilenet_search.search.space import SearchSpace

#: Exceptions that fail one trial (recorded with the reason) while the study goes on.
TRIAL_ERRORS = (TrainingDiverged, torch.OutOfMemoryError, UserError)


class Objective:
    """``objective(trial)``: one candidate, sampled from ``space`` and evaluated by ``pipeline``.

    ``slots`` enforces a study-wide ``--trials`` target across workers (None: no target);
    ``on_epoch(epoch, epochs)`` reports training progress (the CLI's progress bar). ``scratch``,
    when the pipeline's own source is another (a supernet), trains the reference nets and the
    confirmations, whose trained weights are saved under ``weights_dir``.
    """

    def __init__(self, config: SearchConfig, space: SearchSpace, pipeline: Pipeline, *, slots: Slots | None = None,
                 on_epoch: Callable[[int, int], None] | None = None, scratch: AccuracySource | None = None,
                 weights_dir: Path | None = None) -> None:
        self.config, self.space, self.pipeline, self.slots, self.on_epoch = config, space, pipeline, slots, on_epoch
        self.scratch, self.weights_dir = scratch, weights_dir
        self.budget = pipeline.budget  # parsed once, by whoever made the pipeline

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        set_attrs(trial, worker=WORKER)  # at once: a resumed study recovers the trial if this process dies
        data = self.pipeline.data
        spec = self.space.sample(trial, num_classes=data.num_classes, in_channels=data.in_channels)
        record = self.pipeline.check(spec)
        record.attrs["epochs"] = self.config.epochs
        try:
            if record.outcome is None:
                frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
                retried = retry_of(frozen)
                if retried is not None:
                    record.attrs["retry_of"] = retried
                alone = is_reference(trial) or is_confirmation(trial)  # outside the --trials target
                if not alone and self.slots is not None and not self.slots.take(trial):
                    record.outcome = Outcome.SURPLUS
                    record.reason = (f"not trained: the study's target of {self.slots.target} trials was taken "
                                     "by other workers or is kept for a queued retry")
                    raise optuna.TrialPruned("surplus")
                source = self._cached(trial, record)
                if source is not None:  # evaluated before: its record, not a second training (see search.cache)
                    self.pipeline.reuse(record, copied_attrs(source), Outcome(TrialRecord.from_trial(source).outcome))
                    record.attrs["cached_from"] = source.number
                else:
                    self.pipeline.measure(spec, record, on_epoch=self._on_epoch(trial, record),
                                          seed=TrialRecord.from_trial(trial).noise_seed,
                                          accuracy=self.scratch if alone else None)
                if is_confirmation(trial) and record.model is not None and self.weights_dir is not None:
                    record.attrs[WEIGHTS_ATTR] = str(save_weights(record.model, self.weights_dir
                                                                  / f"trial-{trial.number}.safetensors"))
        except KeyboardInterrupt:
            record.outcome = Outcome.INTERRUPTED
            record.reason = "interrupted (Ctrl-C or SIGTERM); run again when the study resumes"
            raise
        except TRIAL_ERRORS as exc:
            record.outcome, record.reason = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._write(trial, record)
        return self._values(record)

    def _cached(self, trial: optuna.Trial, record: Record) -> optuna.trial.FrozenTrial | None:
        """The earlier trial whose record this one reuses (same architecture, seed and settings), or None."""
        if not cacheable(trial):
            return None
        accuracy = self.pipeline.accuracy
        return cached_source(trial.study, record.attrs, None if accuracy is None else accuracy.strategy)

    def _on_epoch(self, trial: optuna.Trial, record: Record) -> Callable[[int, float | None], None]:
        """Per-epoch progress; in single-objective mode also Optuna's pruner."""
        def report(epoch: int, accuracy: float | None) -> None:
            if self.on_epoch:
                self.on_epoch(epoch + 1, self.config.epochs)
            if self.config.objective == "accuracy" and accuracy is not None:
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    record.outcome = Outcome.PRUNED
                    raise optuna.TrialPruned(f"accuracy {accuracy:.3f} after epoch {epoch + 1}")
        return report

    def _write(self, trial: optuna.Trial, record: Record) -> None:
        """The record as the trial's user attributes and Optuna constraints (<= 0 feasible).

        Kinds not measured (the latency of a candidate rejected on MAdds) are reported as 0: the
        candidate is infeasible through the measured kind alone.
        """
        reason = None if record.reason is None else " ".join(record.reason.split())[:500]
        set_attrs(trial, **record.attrs, outcome=record.outcome, status_reason=reason)
        with warnings.catch_warnings():  # a retried trial inherits its original's constraints: Optuna warns
            warnings.filterwarnings("ignore", message=".*constraint.*", category=UserWarning)
            for kind in self.budget.kinds:
                trial.set_constraint(f"{kind}_over_budget", record.excess.get(kind, 0.0))

    def _values(self, record: Record) -> float | tuple[float, float]:
        """Accuracy (or the zero-cost score), and MAdds in multi-objective mode.

        An over-budget candidate gets the worst quality there is: accuracy 0, or -inf for a
        zero-cost score (which can be negative).
        """
        if record.outcome == Outcome.OVER_BUDGET:
            quality = 0.0 if self.config.zero_cost is None else -math.inf
        else:
            quality = record.quality
        return quality if self.config.objective == "accuracy" else (quality, float(record.attrs["madds"]))

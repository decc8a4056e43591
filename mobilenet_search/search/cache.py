"""Evaluation cache by architecture (as Archai caches by architecture id): a repeat costs no training.

A sampler may propose an architecture again (TPE does, more as it converges). With the same seed
and settings its evaluation would give the same record again: :func:`init_seed` makes its initial
weights, and the data order, those of the first time. So a searched trial whose architecture an
earlier searched trial of the study evaluated copies that trial's record instead, marked
``cached_from`` with its number (:data:`~mobilenet_search.results.records.CACHED_FROM_ATTR`).

What is never cached: the reference nets (the baseline is always measured, and is never the source
of a searched trial's record: the report compares the two groups), their noise repeats (other
seeds, measured on purpose), and a supernet study's confirmations (retrained from scratch on
purpose). A source must have been evaluated by the same accuracy source (``strategy``), with the
same epochs and seed, and finished (trained or scored; a pruned, failed or over-budget trial is
no source).

A cached trial counts towards ``--trials``, as Optuna's ``n_trials`` counts a sampler's proposals:
a search on a space smaller than its target still ends, and a study full of repeats says its sampler
has converged. It is on no front and in no count of trained nets (its source stands for it:
:func:`mobilenet_search.results.frame.trained`).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mobilenet_search.results.records import EVALUATED, Role, TrialRecord

#: What a cached trial does not copy: its own run's bookkeeping and what queued it (a successive-halving rung's
#: ``promoted_from``, a scaling plan's point), and timings (it took none; ``time_*`` too).
OWN_ATTRS = frozenset({"worker", "claimed", "retry_of", "promoted_from", "scaling_direction", "scaling_step",
                       "status_reason", "outcome", "train_seconds"})


def cacheable(trial: FrozenTrial | optuna.Trial) -> bool:
    """Whether a trial may reuse or give an earlier record: a searched trial at the study's seed (a scaling plan's
    ``--seeds`` repeats are searched trials with a ``noise_seed``: another seed, measured on purpose)."""
    record = TrialRecord.from_trial(trial)
    return record.role is Role.SEARCHED and record.noise_seed is None


def cached_source(study: optuna.Study, attrs: dict[str, Any], strategy: str | None) -> FrozenTrial | None:
    """The earliest finished searched trial of ``study`` that evaluated the architecture of ``attrs`` (a record
    after the budget check: ``arch``, ``epochs``) with the accuracy source ``strategy`` (None: zero-cost), or None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.from_trial(trial)
        if (record.arch == attrs["arch"] and record.outcome in EVALUATED and record.epochs == attrs.get("epochs")
                and record.strategy == strategy and cacheable(trial) and record.cached_from is None):
            return trial
    return None


def copied_attrs(source: FrozenTrial) -> dict[str, Any]:
    """The record a cached trial takes from ``source``: every measurement, no timing or bookkeeping of its own."""
    return {key: value for key, value in TrialRecord.from_trial(source).to_attrs().items()
            if key not in OWN_ATTRS and not key.startswith("time_")}

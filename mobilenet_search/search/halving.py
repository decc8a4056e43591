"""Multi-fidelity search: successive halving (ASHA's rule) over two multi-objective studies, by ask and tell.

Optuna prunes single-objective trials only (its issue #3450), so a multi-objective search cannot
stop a poor candidate early through a pruner. Successive halving needs no pruner: every candidate
is first trained under a short proxy (rung 0, a few epochs), and only the best of those are
promoted to the full proxy (rung 1). Each rung is its own study, so each study's sampler sees one
fidelity only; rung 0's sampler proposes, rung 1 receives the promoted candidates as queued
trials (``promoted_from`` names the rung-0 trial). Both are evaluated by the same
:class:`~mobilenet_search.search.objective.Objective` as any study, built from settings that
differ only in ``epochs``.

ASHA's promotion rule (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning"):
when a candidate can run, promote a rung-0 candidate that is among the top ``1/eta`` of the rung
and not yet promoted; otherwise sample a new one at rung 0. "Top" here is multi-objective:
candidates are ordered by Pareto layer (accuracy vs MAdds; the front is layer 0, the front of
the rest layer 1, ...), then by accuracy, as NSGA-II's non-dominated sorting orders them.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import TrialRecord
from mobilenet_search.search.objective import TRIAL_ERRORS

# On a rung-1 trial (a TrialRecord field): the number of the rung-0 trial it trains at the full proxy.
PROMOTED_ATTR = "promoted_from"

Evaluate = Callable[[optuna.Trial], float | tuple[float, float]]


def pareto_layers(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy") -> pd.Series:
    """Each row's Pareto layer (non-dominated sorting): 0 on the front, 1 on the front once layer 0 is removed, ...

    >>> frame = pd.DataFrame({"madds": [1, 2, 3, 2], "accuracy": [0.5, 0.7, 0.6, 0.4]})
    >>> pareto_layers(frame).tolist()
    [0, 0, 1, 1]
    """
    layers = pd.Series(-1, index=frame.index, dtype=int)
    rest, layer = frame, 0
    while not rest.empty:
        front = pareto_mask(rest, cost, quality)
        if not front.any():  # rows with a missing value are on no front: last
            layers.loc[rest.index] = layer
            break
        layers.loc[front[front].index] = layer
        rest, layer = rest[~front], layer + 1
    return layers


def promotion_order(frame: pd.DataFrame, quality: str = "accuracy") -> list[int]:
    """Trial numbers of ``frame``'s rows, best first: by Pareto layer, then higher ``quality``, then fewer MAdds."""
    ranked = frame.assign(_layer=pareto_layers(frame, quality=quality))
    ranked = ranked.sort_values(["_layer", quality, "madds", "number"], ascending=[True, False, True, True])
    return [int(n) for n in ranked["number"]]


def promotable(rung: pd.DataFrame, promoted: set[int], eta: int, quality: str = "accuracy") -> int | None:
    """ASHA's rule: the best trial of the rung's ``len(rung) // eta`` best not yet in ``promoted``, or None."""
    if eta < 2:
        raise ValueError(f"eta must be at least 2, not {eta}")
    top = promotion_order(rung, quality)[:len(rung) // eta]
    return next((number for number in top if number not in promoted), None)


def tell_outcome(study: optuna.Study, trial: optuna.Trial, evaluate: Evaluate) -> FrozenTrial:
    """Evaluate an asked trial and tell the study how it ended, as ``study.optimize(catch=TRIAL_ERRORS)`` would:
    its values, PRUNED when it raised ``TrialPruned``, FAIL when it raised one of ``TRIAL_ERRORS`` (the error is
    recorded by the objective; the search goes on) or anything else (then re-raised, Ctrl-C included)."""
    try:
        values = evaluate(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except TRIAL_ERRORS:
        return study.tell(trial, state=TrialState.FAIL)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    return study.tell(trial, values)


def promoted_numbers(rung1: optuna.Study) -> set[int]:
    """The rung-0 trials already promoted: queued, running or finished in rung 1 (a failed promotion counts)."""
    promoted = (TrialRecord.from_trial(t).promoted_from for t in rung1.get_trials(deepcopy=False))
    return {int(number) for number in promoted if number is not None}


def halving_step(rung0: optuna.Study, rung1: optuna.Study, short: Evaluate, full: Evaluate, eta: int,
                 quality: str = "accuracy") -> FrozenTrial:
    """One ASHA step: promote the best unpromoted rung-0 candidate of the rung's top ``1/eta`` and evaluate it with
    ``full`` in ``rung1``; else sample a new candidate in ``rung0`` and evaluate it with ``short``. Returns the trial
    evaluated. Everything it decides from is stored in the two studies: a resumed search goes on where it stopped
    (a trial queued in rung 1 but never run runs first)."""
    waiting = rung1.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not waiting:
        candidates = trained(trials_frame(rung0), quality) if rung0.trials else pd.DataFrame()
        number = None if candidates.empty else promotable(candidates, promoted_numbers(rung1), eta, quality)
        if number is not None:
            source = rung0.trials[number]
            rung1.enqueue_trial(source.params, user_attrs=TrialRecord(promoted_from=number).to_attrs())
            waiting = [True]
    if waiting:
        return tell_outcome(rung1, rung1.ask(), full)
    return tell_outcome(rung0, rung0.ask(), short)

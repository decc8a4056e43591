"""Successive halving on ask and tell (search/halving.py): Pareto layers, ASHA's promotion rule, one step at a time.

The layers are cross-checked against Optuna's own non-dominated sorting. The steps run on two
in-memory studies with a made-up evaluation (accuracy = a function of the parameters), so what is
checked is the bookkeeping: who is sampled, who is promoted, and that a resumed run goes on.
"""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.study._multi_objective import _fast_non_domination_rank  # private: the reference for the layers
from optuna.trial import TrialState

from mobilenet_search.errors import UserError
from mobilenet_search.search.halving import (
    PROMOTED_ATTR,
    halving_step,
    pareto_layers,
    promotable,
    promotion_order,
    tell_outcome,
)


def test_pareto_layers_agree_with_optunas_non_dominated_sorting():
    rng = np.random.default_rng(0)
    # Distinct values: Optuna keeps exact duplicates on one layer, pareto_mask keeps one of them.
    frame = pd.DataFrame({"madds": rng.permutation(200)[:60] * 1e6, "accuracy": rng.permutation(1000)[:60] / 1000})
    ours = pareto_layers(frame).to_numpy()
    theirs = _fast_non_domination_rank(np.column_stack([-frame["accuracy"], frame["madds"]]))
    assert ours.max() >= 3  # several layers, not a trivial case
    assert ours.tolist() == theirs.tolist()


def test_promotion_order_is_by_layer_then_accuracy():
    frame = pd.DataFrame({"number": [0, 1, 2, 3], "madds": [1, 2, 3, 2], "accuracy": [0.5, 0.7, 0.6, 0.65]})
    # Layer 0: trials 0 (0.5) and 1 (0.7); layer 1: 3 (0.65, 2 MAdds) dominates 2 (0.6, 3 MAdds).
    assert promotion_order(frame) == [1, 0, 3, 2]


def test_promotable_takes_the_best_not_yet_promoted_of_the_top_third():
    frame = pd.DataFrame({"number": range(6), "madds": [1, 2, 3, 4, 5, 6],
                          "accuracy": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})  # all on the front: by accuracy
    assert promotable(frame, set(), eta=3) == 5
    assert promotable(frame, {5}, eta=3) == 4
    assert promotable(frame, {5, 4}, eta=3) is None  # the top 6 // 3 = 2 are promoted: sample anew
    assert promotable(frame.head(2), set(), eta=3) is None  # 2 // 3 = 0: nothing is in the top third yet
    with pytest.raises(ValueError, match="eta"):
        promotable(frame, set(), eta=1)


def studies() -> tuple[optuna.Study, optuna.Study]:
    def make() -> optuna.Study:
        return optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    return make(), make()


def evaluator(fidelity: float, seen: list[tuple[str, int]], name: str):
    """A made-up candidate evaluation that records what was trained where, as the objective would."""
    def evaluate(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_int("x", 1, 100)
        seen.append((name, x))
        trial.set_user_attr("outcome", "trained")
        trial.set_user_attr("accuracy", fidelity * x / 100)
        trial.set_user_attr("madds", float(x % 7 + 1))
        return fidelity * x / 100, float(x % 7 + 1)
    return evaluate


def test_halving_samples_at_rung_0_and_promotes_the_top_third_to_rung_1():
    rung0, rung1 = studies()
    seen: list[tuple[str, int]] = []
    short, full = evaluator(0.5, seen, "short"), evaluator(1.0, seen, "full")
    for _ in range(12):
        halving_step(rung0, rung1, short, full, eta=3)
    assert [name for name, _ in seen[:3]] == ["short"] * 3  # nothing promotable before the rung holds 3
    promoted = [t for t in rung1.trials if t.state == TrialState.COMPLETE]
    assert len(rung0.trials) + len(promoted) == 12
    assert len(promoted) == len(rung0.trials) // 3  # ASHA: every candidate of the top third promoted once
    for trial in promoted:  # the same architecture, trained at the full fidelity
        source = rung0.trials[trial.user_attrs[PROMOTED_ATTR]]
        assert trial.params == source.params and trial.values[0] == pytest.approx(2 * source.values[0])
    # Asynchronous: a candidate promoted early may have left the top third since. Once the pending promotions are
    # run (the step samples at rung 0 again), every member of the top third has been promoted.
    while PROMOTED_ATTR in halving_step(rung0, rung1, short, full, eta=3).user_attrs:
        pass
    done = rung0.trials[:-1]  # the last step sampled a new candidate, not yet ranked for promotion
    frame = pd.DataFrame({"number": [t.number for t in done], "madds": [t.values[1] for t in done],
                          "accuracy": [t.values[0] for t in done]})
    top = promotion_order(frame)[:len(frame) // 3]
    assert set(top) <= {t.user_attrs[PROMOTED_ATTR] for t in rung1.trials}


def test_a_promotion_queued_but_never_run_runs_first_when_resumed():
    rung0, rung1 = studies()
    seen: list[tuple[str, int]] = []
    short, full = evaluator(0.5, seen, "short"), evaluator(1.0, seen, "full")
    for _ in range(3):
        halving_step(rung0, rung1, short, full, eta=3)
    # A process that died between enqueue and ask left the promotion queued.
    best = promotable(pd.DataFrame({"number": [0, 1, 2], "madds": [t.values[1] for t in rung0.trials],
                                    "accuracy": [t.values[0] for t in rung0.trials]}), set(), eta=3)
    rung1.enqueue_trial(rung0.trials[best].params, user_attrs={PROMOTED_ATTR: best})
    trial = halving_step(rung0, rung1, short, full, eta=3)
    assert trial.user_attrs[PROMOTED_ATTR] == best and len(rung1.trials) == 1  # not queued twice


def test_tell_outcome_records_what_optimize_would():
    study = optuna.create_study(directions=["maximize", "minimize"])

    def fails(trial: optuna.Trial) -> tuple[float, float]:
        raise UserError("a spec the builder rejects")

    def pruned(trial: optuna.Trial) -> tuple[float, float]:
        raise optuna.TrialPruned("surplus")

    def interrupted(trial: optuna.Trial) -> tuple[float, float]:
        raise KeyboardInterrupt

    assert tell_outcome(study, study.ask(), lambda trial: (0.5, 3.0)).values == [0.5, 3.0]
    assert tell_outcome(study, study.ask(), fails).state == TrialState.FAIL
    assert tell_outcome(study, study.ask(), pruned).state == TrialState.PRUNED
    with pytest.raises(KeyboardInterrupt):
        tell_outcome(study, study.ask(), interrupted)
    assert study.trials[-1].state == TrialState.FAIL  # not left RUNNING

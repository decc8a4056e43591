"""records.py: one rule per question about a trial, the same for an Optuna trial and a frame row."""

import optuna
import pytest

from mobilenet_search.results.frame import trials_frame
from mobilenet_search.results.records import (
    Outcome,
    counts_toward_target,
    frame_counts_toward_target,
    frame_is_confirmation,
    frame_is_reference,
    is_confirmation,
    is_feasible,
    is_reference,
)

STATES = optuna.trial.TrialState


def _trial(state, outcome=None, over=0.0, **attrs):
    values = [0.5, 1.0] if state == STATES.COMPLETE else None
    if outcome is not None:
        attrs["outcome"] = outcome.value
    return optuna.trial.create_trial(state=state, values=values, user_attrs=attrs,
                                     constraints={"madds_over_budget": over})


@pytest.fixture
def study():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for trial in [
        _trial(STATES.COMPLETE, Outcome.TRAINED),  # counts
        _trial(STATES.COMPLETE, Outcome.OVER_BUDGET, over=5.0),  # rejected: no
        _trial(STATES.COMPLETE, Outcome.TRAINED, reference=True, reference_name="r"),  # reference: no
        _trial(STATES.COMPLETE, Outcome.TRAINED, confirms=0),  # confirmation: no
        _trial(STATES.FAIL, Outcome.FAILED),  # a failed candidate counts
        _trial(STATES.FAIL, Outcome.INTERRUPTED),  # interrupted: run again, not counted
        _trial(STATES.PRUNED, Outcome.SURPLUS),  # never trained
        _trial(STATES.PRUNED, Outcome.PRUNED),  # counts
        _trial(STATES.FAIL),  # killed worker, failed by heartbeat: no outcome, not counted
    ]:
        study.add_trial(trial)
    return study


def test_trial_and_frame_rules_agree(study):
    trials, frame = study.trials, trials_frame(study)
    assert [counts_toward_target(t) for t in trials] == [True, False, False, False, True, False, False, True, False]
    assert frame_counts_toward_target(frame).tolist() == [counts_toward_target(t) for t in trials]
    assert frame_is_reference(frame).tolist() == [is_reference(t) for t in trials]
    assert frame_is_confirmation(frame).tolist() == [is_confirmation(t) for t in trials]
    assert frame["feasible"].tolist() == [is_feasible(t) for t in trials] and not is_feasible(trials[1])


def test_outcomes_are_stored_as_plain_strings(study):
    assert {t.user_attrs.get("outcome") for t in study.trials} >= {"trained", "over_budget", "surplus"}
    assert str(Outcome.OVER_BUDGET) == "over_budget"

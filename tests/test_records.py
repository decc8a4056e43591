"""records.py: one rule per question about a trial, the same for an Optuna trial and a frame row."""

import optuna
import pytest

from mobilenet_search.bounds import ZERO_COST_PROXIES
from mobilenet_search.errors import UserError
from mobilenet_search.results.frame import TRIAL_ATTRS, trials_frame
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    FRAME_ATTRS,
    TRIAL_FIELDS,
    Outcome,
    Role,
    Strategy,
    StudySettings,
    TrialRecord,
    counts_toward_target,
    frame_counts_toward_target,
    frame_is_confirmation,
    frame_is_reference,
    frame_role,
    is_confirmation,
    is_feasible,
    is_reference,
    quality_key,
    retry_record,
    role,
    set_attrs,
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


def test_roles_of_trials_and_frame_rows_agree(study):
    study.add_trial(_trial(STATES.COMPLETE, Outcome.TRAINED, reference=True, reference_name="r", noise_seed=1))
    study.add_trial(_trial(STATES.COMPLETE, Outcome.TRAINED, noise_seed=2))  # a scaling point's other seed
    roles = [role(t) for t in study.trials]
    assert roles == [Role.SEARCHED, Role.SEARCHED, Role.REFERENCE, Role.CONFIRMATION, Role.SEARCHED,
                     Role.SEARCHED, Role.SEARCHED, Role.SEARCHED, Role.SEARCHED, Role.NOISE_REPEAT, Role.SEARCHED]
    assert [TrialRecord.from_trial(t).role for t in study.trials] == roles
    assert frame_role(trials_frame(study)).tolist() == [r.value for r in roles]


def test_the_frame_columns_are_the_record_fields_kept_in_the_frame():
    assert TRIAL_ATTRS == FRAME_ATTRS and set(FRAME_ATTRS) < set(TRIAL_FIELDS)
    kept_out = set(TRIAL_FIELDS) - set(FRAME_ATTRS)
    assert {"val_correct", "test_correct", "weights", "claimed"} <= kept_out  # packed records, paths, marks
    assert [f"zc_{name}" for name in ZERO_COST_PROXIES] == [f for f in FRAME_ATTRS if f.startswith("zc_")]


def test_a_record_drops_what_it_lacks_ignores_what_it_does_not_know_and_refuses_to_write_it():
    record = TrialRecord.from_attrs({"arch": "a", "madds": 5, "outcome": "trained", "from_a_later_version": 1})
    assert record.to_attrs() == {"arch": "a", "madds": 5, "outcome": "trained"} and record.accuracy is None
    assert TrialRecord(outcome=Outcome.PRUNED, strategy=Strategy.SUPERNET).to_attrs() == {
        "outcome": "pruned", "strategy": "supernet"}  # enum members stored as their values
    trial = optuna.create_study().ask()
    set_attrs(trial, worker="h:1", status_reason=None)
    assert trial.user_attrs == {"worker": "h:1"}
    with pytest.raises(TypeError):
        set_attrs(trial, acuracy=0.5)  # a misspelt attribute is a programming error, not a silent new column


def test_a_retry_keeps_its_role(study):
    reference = study.trials[2]
    assert retry_record(reference).to_attrs() == {"retry_of": 2, "reference": True, "reference_name": "r"}
    assert retry_record(study.trials[3]).role == Role.CONFIRMATION


def test_a_retry_keeps_what_queued_it():
    # A scaling plan's point and a halving rung's source: lost, the retried net would fall out of its direction.
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs=TrialRecord(scaling_direction="width", scaling_step=2, noise_seed=1,
                                                   reference=True).to_attrs())
    study.enqueue_trial({}, user_attrs=TrialRecord(promoted_from=4).to_attrs())
    for _ in range(2):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    scaled, promoted = (retry_record(trial).to_attrs() for trial in study.trials)
    assert scaled == {"retry_of": 0, "reference": True, "noise_seed": 1, "scaling_direction": "width",
                      "scaling_step": 2}
    assert promoted == {"retry_of": 1, "promoted_from": 4}


def test_settings_read_back_with_the_legacy_rule():
    stored = StudySettings(budget="300M-madds", dataset="synthetic:64").to_dict()
    assert StudySettings.from_dict(stored).to_dict() == stored
    legacy = {k: v for k, v in stored.items() if k not in ("test_fraction", "metric")}
    settings = StudySettings.from_study({CONFIG_ATTR: {**legacy, "from_a_later_version": 1}})
    assert settings.test_fraction == 0.0 and settings.metric == "accuracy"  # made before test splits: none
    assert StudySettings.from_study(optuna.create_study()) is None and quality_key(None) == "accuracy"
    assert StudySettings(budget="1M-madds", objective="zero-cost:snip").quality == "zc_snip"
    assert StudySettings(budget="1M-madds", strategy="supernet").supernet
    with pytest.raises(UserError, match="invalid --strategy"):
        StudySettings(budget="1M-madds", strategy="scratchy")


def test_settings_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; from mobilenet_search.results.records import StudySettings; "
            "StudySettings(budget='300M-madds', dataset='synthetic:64', objective='zero-cost:synflow'); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"

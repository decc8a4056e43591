"""SearchProgress: one line per trial and an ETA that is hidden until it can be honest (ui.progress)."""

from datetime import datetime, timedelta

import optuna

from mobilenet_search.ui.progress import SearchProgress, trial_line

START = datetime(2026, 11, 25, 12, 0, 0)


def _finish(study: optuna.Study, seconds: float, *, reference: str | None = None,
            outcome: str = "trained") -> optuna.trial.FrozenTrial:
    """Record a finished trial that ran for ``seconds`` (a reference net when ``reference`` names one)."""
    attrs = {"outcome": outcome, "madds": 10e6}
    if reference:
        attrs.update(reference=True, reference_name=reference)
    trial = optuna.trial.create_trial(value=0.7, user_attrs=attrs)
    trial.datetime_start, trial.datetime_complete = START, START + timedelta(seconds=seconds)
    study.add_trial(trial)
    return study.trials[-1]


def _study_with_references(count: int) -> optuna.Study:
    """A study as a new search leaves it: ``count`` reference nets queued before any searched trial."""
    study = optuna.create_study()
    for k in range(count):
        study.enqueue_trial({}, user_attrs={"reference": True, "reference_name": f"ref{k}"})
    return study


def test_no_eta_until_a_searched_candidate_has_trained():
    """The reference nets (the budget's cheapest and dearest) say nothing of what the search samples."""
    study = _study_with_references(2)
    progress = SearchProgress(study, trials=4, enabled=False)
    assert progress.references == 2 and progress.eta() is None
    progress.after_trial(study, _finish(study, 20, reference="ref0"))
    assert progress.eta() is None
    progress.after_trial(study, _finish(study, 110, reference="ref1"))
    assert progress.eta() is None
    progress.after_trial(study, _finish(study, 50))
    assert progress.eta() == 3 * 50
    progress.after_trial(study, _finish(study, 30))
    assert progress.eta() == 2 * 40
    progress.close()


def test_references_still_to_train_count_at_their_own_mean():
    """With workers a searched trial can end before the last reference net: that one costs what references cost."""
    study = _study_with_references(2)
    progress = SearchProgress(study, trials=3, enabled=False)
    progress.after_trial(study, _finish(study, 100, reference="ref0"))
    progress.after_trial(study, _finish(study, 40))
    assert progress.eta() == 2 * 40 + 1 * 100
    progress.close()


def test_over_budget_rejections_and_failures_do_not_move_the_eta():
    study = _study_with_references(0)
    progress = SearchProgress(study, trials=3, enabled=False)
    progress.after_trial(study, _finish(study, 60))
    progress.after_trial(study, _finish(study, 0.01, outcome="over_budget"))
    assert progress.eta() == 2 * 60
    progress.after_trial(study, _finish(study, 5, outcome="failed"))  # counts toward the target, not the mean
    assert progress.eta() == 1 * 60
    progress.close()


def test_trial_line_names_the_reference_and_its_time():
    line = trial_line(_finish(_study_with_references(0), 23, reference="mobilenet_v2_0.35_96"))
    assert line.startswith("trial   0  trained") and "  23 s  " in line and line.endswith("[mobilenet_v2_0.35_96]")

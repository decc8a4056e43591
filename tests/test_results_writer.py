"""Bookkeeping proportional to what changed: ResultsWriter writes what write_results writes (results/frame.py)."""

import math
import random

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from mobilenet_search.results.frame import ResultsWriter, pareto_front, trials_frame, write_results
from mobilenet_search.results.records import CONFIG_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _add_trial(study, rng, quality):
    """One trial told in a random final state, with values drawn from small sets so ties in cost and quality occur."""
    trial = study.ask()
    madds = rng.choice([100e6, 150e6, 200e6, 200e6, 300e6, None])
    # Dearer is better on average, so the front has several members; equal scores at equal and at other costs.
    score = rng.choice([round(rng.choice([0.5, 0.6, 0.6, 0.7]) + (madds or 0) / 1e9, 3), None])
    attrs = {"arch": f"v2_w{trial.number}", "madds": None if madds is None else int(madds), "params": 3_400_000,
             "latency_ms": rng.choice([1.5, None]), quality: score, "outcome": "trained",
             "accuracy_history": rng.choice([[0.1, score], None]), "reference": rng.random() < 0.1}
    for key, value in attrs.items():
        if value is not None:
            trial.set_user_attr(key, value)
    trial.set_constraint("madds_over_budget", rng.choice([-1.0, -1.0, -1.0, 5.0]))
    state = rng.choice([TrialState.COMPLETE] * 6 + [TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING])
    if state == TrialState.COMPLETE:
        study.tell(trial, [score or 0.0, madds or 0.0])
    elif state != TrialState.RUNNING:
        study.tell(trial, state=state)
    return trial.number


def _random_study(n, seed, objective="multi"):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(CONFIG_ATTR, {"budget": "300M-madds", "objective": objective})  # as a study stores them
    quality = "zc_synflow" if objective.startswith("zero-cost") else "accuracy"
    rng = random.Random(seed)
    for _ in range(n):
        _add_trial(study, rng, quality)
    return study


def _files(folder):
    return {name: (folder / name).read_text() for name in ("trials.csv", "pareto.json")}


@pytest.mark.parametrize(("seed", "objective"), [(0, "multi"), (1, "multi"), (2, "zero-cost:synflow"), (3, "accuracy")])
def test_updates_then_flush_write_exactly_what_write_results_writes(tmp_path, seed, objective):
    study = _random_study(300, seed, objective)
    expected = write_results(study, tmp_path / "full")
    writer = ResultsWriter(tmp_path / "incremental", study.study_name,
                           "zc_synflow" if objective.startswith("zero-cost") else "accuracy",
                           every=10**9, interval=math.inf)
    trials = study.get_trials()
    random.Random(seed).shuffle(trials)  # workers finish out of order
    for trial in trials:
        writer.update(trial)
    frame = writer.flush()
    pd.testing.assert_frame_equal(frame, expected)
    assert _files(tmp_path / "incremental") == _files(tmp_path / "full")
    assert writer.front == list(pareto_front(expected, quality=writer.quality)["number"])
    assert len(writer.front) >= 2  # the comparison covered a real front


def test_the_front_is_updated_in_place_after_every_trial(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    writer = ResultsWriter(tmp_path, study.study_name, every=10**9, interval=math.inf)
    rng = random.Random(7)
    for _ in range(200):
        number = _add_trial(study, rng, "accuracy")
        writer.update(study.trials[number])
        assert writer.front == list(pareto_front(trials_frame(study))["number"])


def test_a_trial_updated_running_then_complete_appears_once(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    writer = ResultsWriter(tmp_path, study.study_name, every=10**9, interval=math.inf)
    trial = study.ask()
    trial.set_user_attr("madds", 300_000_000)
    writer.update(study.trials[trial.number])
    writer.flush()
    assert pd.read_csv(tmp_path / "trials.csv")["state"].tolist() == ["RUNNING"] and writer.front == []
    write_results(study, tmp_path / "full")
    assert _files(tmp_path) == _files(tmp_path / "full")  # an empty front too
    trial.set_user_attr("accuracy", 0.7)
    study.tell(trial, [0.7, 300e6])
    writer.update(study.trials[trial.number])
    writer.flush()
    assert pd.read_csv(tmp_path / "trials.csv")["state"].tolist() == ["COMPLETE"] and writer.front == [0]
    write_results(study, tmp_path / "full")
    assert _files(tmp_path) == _files(tmp_path / "full")


def test_flush_every_n_trials_then_every_tenth_of_the_study(tmp_path):
    study = _random_study(260, seed=4)
    writer = ResultsWriter(tmp_path, study.study_name, every=5, interval=math.inf)
    flushed = [trial.number for trial in study.trials if writer.update(trial)]
    # Every 5 trials up to 50 rows; then when the new rows reach a tenth of the study (5 at 50, 10 at 100...).
    assert flushed[:10] == [4, 9, 14, 19, 24, 29, 34, 39, 44, 49]
    gaps = [b - a for a, b in zip(flushed, flushed[1:], strict=False)]
    assert all(gap <= max(5, (b + 1) // 10) for gap, b in zip(gaps, flushed[1:], strict=True)) and gaps[-1] >= 20
    assert len(pd.read_csv(tmp_path / "trials.csv")) == flushed[-1] + 1


def test_flush_after_the_interval_whatever_the_count(tmp_path):
    study = _random_study(3, seed=5)
    writer = ResultsWriter(tmp_path, study.study_name, every=10**9, interval=0.0)
    assert all(writer.update(trial) for trial in study.trials)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 3


def test_sync_takes_in_other_workers_trials_and_running_trials_changes(tmp_path):
    study = _random_study(40, seed=6)
    writer = ResultsWriter.for_study(study, tmp_path / "incremental", every=10**9, interval=math.inf)
    rng = random.Random(8)
    for _ in range(40):  # another worker's trials: no callback here
        _add_trial(study, rng, "accuracy")
    for trial in study.get_trials(states=(TrialState.RUNNING,)):  # running trials keep recording
        study._storage.set_trial_user_attr(trial._trial_id, "latency_ms", 9.5)
    assert writer.sync(study) >= 40
    writer.flush()
    write_results(study, tmp_path / "full")
    assert _files(tmp_path / "incremental") == _files(tmp_path / "full")


def test_a_writer_for_a_study_syncs_before_flushing(tmp_path):
    study = _random_study(10, seed=9)
    writer = ResultsWriter.for_study(study, tmp_path / "incremental", every=1, interval=math.inf)
    _add_trial(study, random.Random(10), "accuracy")  # another worker's
    number = _add_trial(study, random.Random(11), "accuracy")
    writer.update(study.trials[number])
    write_results(study, tmp_path / "full")
    assert _files(tmp_path / "incremental") == _files(tmp_path / "full")

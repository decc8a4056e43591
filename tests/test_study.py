"""The search end to end: trials, budgets, failures, resume (study.py, cli.py search)."""

import json
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import torch
from conftest import interrupt_on_call

from mobilenet_search import ArchSpec, count_madds
from mobilenet_search.measure.train import TrainingDiverged, train_and_evaluate
from mobilenet_search.results.frame import TRIAL_ATTRS, pareto_front, trials_frame
from mobilenet_search.results.records import study_val_labels, trial_correct
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.study import run_search
from mobilenet_search.ui.cli import main

# 2 epochs at lr 0.01: enough that the tiny nets learn something (1 epoch often leaves a collapsed classifier).
FAST = ["--space", "tiny", "--dataset", "synthetic:96", "--epochs", "2", "--lr", "0.01", "--proxy-size", "32",
        "--batch-size", "16"]


def _config(**changes):
    settings = dict(budget="600K-madds", space="tiny", dataset="synthetic:96", epochs=2, lr=0.01, proxy_size=32,
                    batch_size=16)
    return SearchConfig(**{**settings, **changes})


def _load(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / f'{name}.db'}")


def test_cli_search_records_every_attribute_and_writes_results(tmp_path, capsys):
    code = main(["--budget", "600K-madds", *FAST, "--trials", "3", "--results-dir", str(tmp_path), "--study", "s"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Pareto-optimal candidates" in out and "results:" in out
    study = _load(tmp_path, "s")
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]
    assert len(trained) == 3
    for trial in trained:
        spec = ArchSpec.from_json(trial.user_attrs["spec"])
        assert trial.user_attrs["arch"] == spec.to_string()
        assert trial.user_attrs["madds"] == count_madds(spec) == trial.values[1]
        assert 0 <= trial.user_attrs["accuracy"] <= 1 and trial.values[0] == trial.user_attrs["accuracy"]
        assert trial.user_attrs["latency_ms"] > 0 and trial.user_attrs["latency_device"].startswith("cpu")
        assert trial.user_attrs["proxy_resolution"] in (32, 40)  # 32 scaled by resolution/224, at least 32
        for key in ("params", "epochs", "train_seconds", "time_build", "time_latency", "time_train", "time_eval"):
            assert trial.user_attrs[key] is not None, key
        assert all(v <= 0 for v in trial.constraints.values())
    frame = pd.read_csv(tmp_path / "s" / "trials.csv")
    assert set(TRIAL_ATTRS) <= set(frame.columns) and len(frame) == len(study.trials)
    pareto = json.loads((tmp_path / "s" / "pareto.json").read_text())["pareto"]
    assert [p["number"] for p in pareto] == list(pareto_front(trials_frame(study))["number"])


def test_over_budget_candidates_are_rejected_before_training(tmp_path, monkeypatch):
    trained = []
    config = _config(budget="300K-madds", sampler="random")
    spy = ScratchTraining(train_config(config, "cpu"), train=lambda model, *a, **k: trained.append(model.spec)
                          or train_and_evaluate(model, *a, **k))
    study = run_search(config, storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b", trials=3,
                       results_dir=tmp_path, accuracy=spy)
    rejected = [t for t in study.trials if t.user_attrs.get("outcome") == "over_budget"]
    assert rejected, "the random sampler should propose some of the tiny space's members over 300K"
    for trial in rejected:
        assert trial.user_attrs["madds"] >= 301_000 and trial.constraints["madds_over_budget"] > 0
        assert "over budget 300K-madds" in trial.user_attrs["status_reason"]
        assert "accuracy" not in trial.user_attrs and "latency_ms" not in trial.user_attrs
    assert all(count_madds(spec) < 301_000 for spec in trained) and len(trained) == 3
    assert all(t.values[1] < 301_000 for t in study.best_trials)  # Optuna's Pareto set excludes infeasible


def test_latency_budget_rejects_after_measuring_before_training(tmp_path, monkeypatch):
    from mobilenet_search.measure.latency import Latency

    calls = iter([9.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    study = run_search(_config(budget="2ms-latency"), storage=f"sqlite:///{tmp_path / 'l.db'}", study_name="l",
                       trials=2, results_dir=tmp_path,
                       latency=lambda *a, **k: Latency(next(calls), 0, 0, "cpu: fake", 1, 1))
    first = study.trials[0]
    assert first.user_attrs["outcome"] == "over_budget" and first.constraints["latency_over_budget"] > 0
    assert first.user_attrs["status_reason"] == "latency 9.00 ms over budget 2ms-latency (admits < 3 ms)"
    assert [t.user_attrs["outcome"] for t in study.trials[1:]] == ["trained", "trained"]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    calls = []

    def flaky(model, data, config, on_epoch=None):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingDiverged("loss became nan at step 3")
        return train_and_evaluate(model, data, config, on_epoch=on_epoch)

    config = _config()
    study = run_search(config, storage=f"sqlite:///{tmp_path / 'f.db'}", study_name="f", trials=3,
                       results_dir=tmp_path, accuracy=ScratchTraining(train_config(config, "cpu"), train=flaky))
    failed = study.trials[0]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs["status_reason"] == "TrainingDiverged: loss became nan at step 3"
    assert sum(t.user_attrs.get("outcome") == "trained" for t in study.trials) == 2


def test_interrupted_study_resumes_without_losing_trials(tmp_path, monkeypatch):
    config = _config(budget="2M-madds")  # every member fits: no rejections between the trained trials
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    interrupting = ScratchTraining(train_config(config, "cpu"), train=interrupt_on_call(train_and_evaluate, 2, []))
    with pytest.raises(KeyboardInterrupt):
        run_search(config, storage=storage, study_name="r", trials=4, results_dir=tmp_path, accuracy=interrupting)
    before = _load(tmp_path, "r").trials
    assert [t.user_attrs.get("outcome") for t in before] == ["trained", "interrupted"]
    interrupted = before[1]

    study = run_search(config, storage=storage, study_name="r", trials=4, results_dir=tmp_path)
    after = study.trials
    assert after[0].user_attrs == before[0].user_attrs  # the completed trial is kept as it was
    retry = next(t for t in after if t.user_attrs.get("retry_of") == interrupted.number)
    assert retry.params == interrupted.params and retry.user_attrs["outcome"] == "trained"
    assert sum(t.user_attrs.get("outcome") == "trained" for t in after) == 4
    # The per-image record survives the resume: every trained trial has one, over the same validation images.
    sizes = {len(trial_correct(t)) for t in after if t.user_attrs.get("outcome") == "trained"}
    assert sizes == {len(study_val_labels(study))}
    # Resuming once more neither re-runs the retried trial nor adds trials beyond the target.
    again = run_search(config, storage=storage, study_name="r", trials=4, results_dir=tmp_path)
    assert len(again.trials) == len(after)


def test_resuming_with_other_settings_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    run_search(_config(), storage=storage, study_name="o", trials=1, results_dir=tmp_path)
    with pytest.raises(Exception, match="already exists with other settings.*epochs"):
        run_search(_config(epochs=3), storage=storage, study_name="o", trials=1, results_dir=tmp_path)


def test_accuracy_objective_is_single_valued_and_reports_epochs(tmp_path):
    config = _config(objective="accuracy", epochs=2, budget="2M-madds")
    study = run_search(config, storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="a", trials=2,
                       results_dir=tmp_path)
    for trial in study.trials:
        assert len(trial.values) == 1 and sorted(trial.intermediate_values) == [0, 1]
        # The pruner reads every epoch's accuracy, so every epoch is evaluated.
        assert len(trial.user_attrs["accuracy_history"]) == 2 and len(trial.user_attrs["loss_history"]) == 2


def test_a_multi_objective_study_evaluates_after_the_last_epoch_only_and_records_the_loss_of_each(tmp_path):
    study = run_search(_config(epochs=3), storage=f"sqlite:///{tmp_path / 'm.db'}", study_name="m", trials=1,
                       results_dir=tmp_path)
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]
    assert trained
    for trial in trained:
        assert trial.user_attrs["accuracy_history"] == [trial.user_attrs["accuracy"]]
        assert len(trial.user_attrs["loss_history"]) == 3


def test_search_on_a_slice_of_the_embedded_dataset(tmp_path):
    code = main(["--budget", "1M-madds", "--space", "tiny", "--dataset-limit", "64", "--epochs", "1",
                 "--proxy-size", "32", "--trials", "1", "--results-dir", str(tmp_path), "--study", "e"])
    assert code == 0
    trial = _load(tmp_path, "e").trials[-1]
    assert trial.user_attrs["outcome"] == "trained" and ArchSpec.from_json(trial.user_attrs["spec"]).in_channels == 1


def _cli(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("budget", ["300X-madds", "-5M-madds", "madds", "", "300M-flops", "5-latency"])
def test_malformed_budgets_exit_2_with_one_line(tmp_path, budget):
    result = _cli("--budget", budget, *FAST, "--results-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "budget" in result.stderr
    assert not any(tmp_path.glob("*.db"))


def test_unreachable_budget_names_the_cheapest_member_and_writes_nothing(tmp_path):
    result = _cli("--budget", "100K-madds", *FAST, "--results-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # Refused before the data are read, by the cheapest member under any data (2 classes, 1 channel): no file at all.
    assert ("no member of space 'tiny' fits budget 100K-madds with any data (even 2 classes of 1-channel images): "
            "the cheapest by madds has 124.3K madds") in result.stderr
    assert list(tmp_path.iterdir()) == []
    # Between the bound for any data and the bound for this data (4 classes), it is refused once the data are read.
    result = _cli("--budget", "124.35K-madds", *FAST, "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2 and "fits budget 124.35K-madds: the cheapest by madds has 124.4K" in result.stderr
    assert list(tmp_path.iterdir()) == []  # the data cache it wrote and the folder it made are removed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "imagefolder:/does/not/exist"], "/does/not/exist"),
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--sampler", "grid", "--space", "mobilenetv2", "--budget", "2G-madds"], "--sampler grid needs a small space"),
        (["--device", "cuda"], "no CUDA GPU"),
        (["--trials", "-1"], "argument --trials: invalid value '-1': expected an integer in [0, 1000000]"),
    ],
)
def test_bad_search_options_exit_2(tmp_path, argv, message):
    base = ["--budget", "600K-madds", "--dataset", "synthetic:96", "--space", "tiny", "--results-dir", str(tmp_path)]
    result = _cli(*base, *argv, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_every_trained_trial_records_the_zero_cost_proxies(tmp_path):
    study = run_search(_config(budget="2M-madds"), storage=f"sqlite:///{tmp_path / 'z.db'}", study_name="z", trials=1,
                       results_dir=tmp_path)
    trial = study.trials[-1]
    for name in ("synflow", "jacob_cov", "snip", "grad_norm"):
        assert isinstance(trial.user_attrs[f"zc_{name}"], float), name
    assert trial.user_attrs["time_zero_cost"] > 0


def test_zero_cost_objective_scores_without_training(tmp_path, monkeypatch, capsys):
    code = main(["--budget", "600K-madds", *FAST, "--objective", "zero-cost:synflow", "--trials", "5",
                 "--results-dir", str(tmp_path), "--study", "zc"])
    assert code == 0
    assert "Pareto-optimal candidates (zc_synflow vs MAdds)" in capsys.readouterr().out
    study = _load(tmp_path, "zc")
    scored = [t for t in study.trials if t.user_attrs.get("outcome") == "scored"]
    assert len(scored) == 5
    for trial in scored:
        assert trial.values[0] == trial.user_attrs["zc_synflow"] > 0 and "zc_snip" not in trial.user_attrs
        assert "accuracy" not in trial.user_attrs and "latency_ms" not in trial.user_attrs
    rejected = [t for t in study.trials if t.user_attrs.get("outcome") == "over_budget"]
    assert all(t.values[0] == float("-inf") for t in rejected)


def test_unknown_zero_cost_proxy_is_a_clear_error(tmp_path):
    result = _cli("--budget", "600K-madds", *FAST, "--objective", "zero-cost:magic", "--results-dir", str(tmp_path),
                  cwd=tmp_path)
    assert result.returncode == 2 and "zero-cost:NAME with NAME one of synflow" in result.stderr


def test_same_settings_give_the_same_trials_whatever_ran_before(tmp_path):
    first = run_search(_config(budget="2M-madds"), storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="a",
                       trials=2, results_dir=tmp_path)
    torch.manual_seed(12345)  # a different global random state must not change the results
    torch.rand(100)
    second = run_search(_config(budget="2M-madds"), storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b",
                        trials=2, results_dir=tmp_path)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.user_attrs["accuracy_history"] for t in first.trials] == [
        t.user_attrs["accuracy_history"] for t in second.trials]


def test_a_resumed_study_does_not_replay_its_first_candidates(tmp_path):
    config = _config(budget="2M-madds", sampler="random")
    storage = f"sqlite:///{tmp_path / 'n.db'}"
    first = run_search(config, storage=storage, study_name="n", trials=2, results_dir=tmp_path)
    before = [t.params for t in first.trials]
    resumed = run_search(config, storage=storage, study_name="n", trials=4, results_dir=tmp_path)
    after = [t.params for t in resumed.trials[len(before):]]
    assert len(after) == 2 and after != before  # a sampler seeded as before would draw the same two again


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_or_stopped_run_resumes_its_trial_first_even_in_the_last_slot(tmp_path, sig):
    args = ["--budget", "2M-madds", "--space", "tiny", "--dataset", "synthetic:512", "--epochs", "8", "--lr", "0.01",
            "--proxy-size", "32", "--batch-size", "16", "--references", "none", "--noise-repeats", "0",
            "--trials", "1", "--results-dir", str(tmp_path), "--study", "k"]
    run = subprocess.Popen([sys.executable, "-m", "mobilenet_search.ui.cli", *args], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    deadline, victim = time.monotonic() + 120, None
    while victim is None and time.monotonic() < deadline and run.poll() is None:
        try:
            running = _load(tmp_path, "k").get_trials(states=(optuna.trial.TrialState.RUNNING,))
            victim = next((t.number for t in running if t.user_attrs.get("claimed")), None)
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.2)
    assert victim is not None, run.communicate()
    run.send_signal(sig)
    _, stderr = run.communicate(timeout=60)
    if sig == signal.SIGTERM:  # handled like Ctrl-C: one line, the trial recorded as interrupted
        assert run.returncode == 130 and "Traceback" not in stderr
    before = optuna.load_study(study_name="k", storage=storage).trials

    resumed = _cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    study = _load(tmp_path, "k")
    killed = study.trials[victim]
    assert killed.state == optuna.trial.TrialState.FAIL and killed.user_attrs["outcome"] == "interrupted"
    assert ("died" if sig == signal.SIGKILL else "SIGTERM") in killed.user_attrs["status_reason"]
    # The killed trial held the only slot: its retry runs first and takes it; no fresh sample is trained.
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]
    assert [t.user_attrs.get("retry_of") for t in trained] == [victim]
    assert trained[0].number == len(before) and trained[0].params == killed.params

"""Several workers on one study: PostgreSQL, SQLite, exact study-wide targets, killed workers (study, storage)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from mobilenet_search.results.records import study_val_labels, trial_correct
from mobilenet_search.search.storage import redact

TINY = ["--space", "tiny", "--dataset", "synthetic:96", "--epochs", "1", "--proxy-size", "32", "--batch-size", "16",
        "--references", "none"]


def _cli(*argv, cwd, check=True):
    result = subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], capture_output=True, text=True,
                            cwd=cwd, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _worker(storage, study, trials, cwd, *extra):
    return subprocess.Popen([sys.executable, "-m", "mobilenet_search.ui.cli", "worker", "--storage", storage, "--study",
                             study, "--trials", str(trials), "--device", "cpu", "--results-dir", str(cwd), "--quiet",
                             *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trained(study):
    return [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]


def test_three_workers_on_postgresql_finish_exactly_the_target(postgres_url, tmp_path):
    created = _cli("--budget", "2M-madds", *TINY, "--storage", postgres_url, "--study", "pg3", "--trials", "0",
                   "--results-dir", str(tmp_path), cwd=tmp_path)
    assert "pg-s3cret-pw" not in created.stdout + created.stderr
    workers = [_worker(postgres_url, "pg3", 6, tmp_path) for _ in range(3)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert not any("pg-s3cret-pw" in out + err for out, err in outputs)
    study = optuna.load_study(study_name="pg3", storage=postgres_url)
    trained = _trained(study)
    assert len(trained) == 6 and len({t.number for t in trained}) == 6
    assert len({t.user_attrs["worker"] for t in trained}) >= 2  # the work was shared
    assert study.user_attrs["mobilenet_search.config"]["budget"] == "2M-madds"


def test_a_killed_worker_trial_is_retried_and_the_study_completes(postgres_url, tmp_path):
    _cli("--budget", "2M-madds", "--space", "tiny", "--dataset", "synthetic:512", "--epochs", "4", "--proxy-size",
         "32", "--batch-size", "16", "--references", "none", "--storage", postgres_url, "--study", "kill",
         "--trials", "0", "--results-dir", str(tmp_path), cwd=tmp_path)
    workers = [_worker(postgres_url, "kill", 4, tmp_path, "--heartbeat", "1") for _ in range(2)]
    study = optuna.load_study(study_name="kill", storage=postgres_url)
    deadline, victim = time.monotonic() + 300, None
    while victim is None and time.monotonic() < deadline:
        running = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                   if t.user_attrs.get("claimed")]
        if running:
            victim = running[0]
        time.sleep(0.2)
    assert victim is not None, "no trial started training"
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    for worker in workers:
        worker.communicate(timeout=600)
    study = optuna.load_study(study_name="kill", storage=postgres_url)
    killed = study.trials[victim.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].user_attrs["outcome"] == "trained"
    trained = _trained(study)
    assert len(trained) == 4 and len({t.number for t in trained}) == 4


def test_two_creators_racing_both_succeed(postgres_url, tmp_path):
    argv = [sys.executable, "-m", "mobilenet_search.ui.cli", "--budget", "300M-madds", "--space",
            "mobilenetv2_ablations", "--dataset", "synthetic:96", "--storage", postgres_url, "--study", "race",
            "--trials", "0", "--results-dir", str(tmp_path)]
    creators = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [c.communicate(timeout=300) for c in creators]
    assert [c.returncode for c in creators] == [0, 0], outputs
    study = optuna.load_study(study_name="race", storage=postgres_url)
    names = [t.user_attrs["reference_name"] for t in study.trials if "noise_seed" not in t.user_attrs]
    assert names and len(names) == len(set(names))  # each reference net enqueued once
    repeats = [t for t in study.trials if "noise_seed" in t.user_attrs]
    assert len(repeats) == 1 and repeats[0].user_attrs["reference_name"] == names[0]  # the cheapest, once


def test_two_local_workers_on_sqlite(tmp_path):
    result = _cli("--budget", "2M-madds", *TINY, "--trials", "4", "--workers", "2", "--study", "two",
                  "--results-dir", str(tmp_path), cwd=tmp_path)
    assert "Pareto-optimal candidates" in result.stdout
    study = optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path / 'two.db'}")
    assert len(_trained(study)) == 4
    # The per-image record of trials run by other processes is there, paired on the same validation images.
    vectors = [trial_correct(t) for t in _trained(study)]
    labels = study_val_labels(study)
    assert labels is not None and all(v is not None and len(v) == len(labels) for v in vectors)


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("not-a-url", "invalid storage URL 'not-a-url'"),
        ("nosuchdriver://u:topsecret@127.0.0.1/db", "cannot open storage nosuchdriver://u:***@127.0.0.1/db"),
        ("postgresql://u:topsecret@127.0.0.1:1/db", "cannot open storage postgresql://u:***@127.0.0.1:1/db"),
    ],
)
def test_bad_or_unreachable_storage_is_one_line_exit_2(tmp_path, storage, message):
    result = _cli("worker", "--storage", storage, "--study", "s", cwd=tmp_path, check=False)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert "topsecret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_worker_on_a_missing_study_is_a_clear_error(postgres_url, tmp_path):
    result = _cli("worker", "--storage", postgres_url, "--study", "nope", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"study 'nope' does not exist in {redact(postgres_url)}")
    assert "pg-s3cret-pw" not in result.stderr

"""``supernet train`` (ui/cli_supernet.py) in one process: the checkpoint a search with the same flags scores with,
``--study``, and bad input (one line, exit code 2); workers scoring the study it trained. Two ranks:
test_distributed.py."""

from __future__ import annotations

import os

import optuna
import pytest
import torch
from test_strategies import (
    CONFIG,
    FLAGS,
    STUDY,
    TRIALS,
    digest,
    run_supernet_study,
    search,
    step_recorder,
    storage_of,
)

from mobilenet_search.results.records import SUPERNET_ATTR, is_confirmation, outcome
from mobilenet_search.search.study import open_study
from mobilenet_search.ui.cli import main


def test_the_checkpoint_it_trains_is_the_one_a_search_with_the_same_flags_scores_with(tmp_path, capsys):
    assert main(["supernet", "train", *FLAGS, "--results-dir", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"supernet trained: {tmp_path / 'supernets'}") and "4 epochs" in out
    calls: list = []
    study = search(tmp_path, trials=0, on_step=step_recorder(calls))
    assert calls == []  # found finished: not trained again
    assert str(tmp_path / "supernets") in study.user_attrs[SUPERNET_ATTR]["checkpoint"]


def test_with_study_it_trains_the_study_s_supernet_and_records_it(tmp_path, capsys):
    open_study(storage_of(tmp_path), "created", CONFIG)  # created with its settings, nothing trained
    assert main(["supernet", "train", "--study", "created", "--storage", storage_of(tmp_path), "--results-dir",
                 str(tmp_path), "--quiet"]) == 0
    stored = optuna.load_study(study_name="created", storage=storage_of(tmp_path)).user_attrs[SUPERNET_ATTR]
    assert torch.load(stored["checkpoint"], weights_only=True)["epoch"] == CONFIG.supernet_epochs
    assert stored["train_seconds"] > 0
    capsys.readouterr()
    # Settings flags beside --study are refused: the study's are used.
    assert main(["supernet", "train", "--study", "created", "--storage", storage_of(tmp_path), "--lr", "0.5"]) == 2
    assert capsys.readouterr().err.strip() == ("mobilenet-search: error: --study takes the settings stored in the "
                                               "study: drop --lr")


@pytest.mark.parametrize("case", ["half-set", "corrupt", "strategy", "gradients"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, case):
    args = ["supernet", "train", *FLAGS, "--results-dir", str(tmp_path), "--quiet"]
    expected = {"half-set": "torchrun's environment is half set: RANK, WORLD_SIZE set but LOCAL_RANK, MASTER_ADDR, "
                            "MASTER_PORT not",
                "corrupt": f"checkpoint {tmp_path / 'bad.pt'} cannot be read",
                "strategy": "invalid --strategy scratch",
                "gradients": "invalid gradient synchronisation 'nccl': expected one of allreduce, ddp"}[case]
    if case == "half-set":
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "2")
    elif case == "corrupt":
        (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        args += ["--supernet", str(tmp_path / "bad.pt")]
    elif case == "strategy":
        args += ["--strategy", "scratch"]
    else:
        args += ["--gradients", "nccl"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mobilenet-search: error: {expected}") and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def supernet_study(tmp_path_factory):
    """test_strategies.py's small supernet study (run once a session, whichever file asks first)."""
    return run_supernet_study(tmp_path_factory)


def test_two_workers_score_a_supernet_study_to_exactly_its_target_with_the_same_checkpoint(supernet_study, tmp_path):
    import subprocess
    import sys

    folder = supernet_study.copy(tmp_path / "results")
    before = digest(supernet_study.checkpoint)
    target = TRIALS + 4
    command = [sys.executable, "-m", "mobilenet_search", "worker", "--storage", storage_of(folder), "--study", STUDY,
               "--trials", str(target), "--device", "cpu", "--results-dir", str(folder), "--quiet"]
    workers = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
               for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0], [w.stderr.read() for w in workers]
    study = optuna.load_study(study_name=STUDY, storage=storage_of(folder))
    scored = [t for t in study.trials if not is_confirmation(t) and outcome(t) == "trained"]
    assert len(scored) == target  # counted as for scratch workers: claimed slots, none twice
    assert all(t.user_attrs["strategy"] == "supernet" for t in scored)
    assert digest(supernet_study.checkpoint) == before  # read, never written

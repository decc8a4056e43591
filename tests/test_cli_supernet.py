"""``supernet train`` (ui/cli_supernet.py) in one process: the checkpoint a search with the same flags scores with,
``--study``, and bad input (one line, exit code 2). Two ranks: test_distributed.py."""

from __future__ import annotations

import optuna
import pytest
import torch
from test_strategies import CONFIG, FLAGS, search, step_recorder, storage_of

from mobilenet_search.results.records import SUPERNET_ATTR
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


@pytest.mark.parametrize("case", ["half-set", "corrupt", "strategy"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, case):
    args = ["supernet", "train", *FLAGS, "--results-dir", str(tmp_path), "--quiet"]
    expected = {"half-set": "torchrun's environment is half set: RANK, WORLD_SIZE set but LOCAL_RANK, MASTER_ADDR, "
                            "MASTER_PORT not",
                "corrupt": f"checkpoint {tmp_path / 'bad.pt'} cannot be read",
                "strategy": "invalid --strategy scratch"}[case]
    if case == "half-set":
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "2")
    elif case == "corrupt":
        (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        args += ["--supernet", str(tmp_path / "bad.pt")]
    else:
        args += ["--strategy", "scratch"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mobilenet-search: error: {expected}") and err.count("\n") == 1, err

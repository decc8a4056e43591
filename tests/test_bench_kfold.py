"""benchmarks/bench_kfold.py: the stratified fold splitter, a fold's data, and the script end to end on a tiny
measurement that an interrupted run resumes without training again what it stored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenet_search.measure.data import load_dataset
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.records import unpack_correct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_kfold as bench  # noqa: E402 - the script, found above


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_folds_are_disjoint_cover_every_image_once_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [69, 31, 7])  # imbalanced, as the embedded data, and a rare class
    folds = bench.stratified_folds(labels, 5, seed=3)
    assert len(folds) == 5
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))  # disjoint, every image once
    for fold in folds:
        expected = np.bincount(labels) * len(fold) / len(labels)
        assert np.all(np.abs(np.bincount(labels[fold], minlength=3) - expected) <= 1)  # each class in proportion
    again = bench.stratified_folds(labels, 5, seed=3)
    other = bench.stratified_folds(labels, 5, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))


def test_a_fold_trains_on_the_other_folds_and_scores_its_own_with_no_test_split():
    data = load_dataset("synthetic:40", 16, cache_dir=None, test_fraction=0.2)
    images, labels = bench.pooled(data)
    assert len(labels) == 40 and torch.equal(labels[-len(data.test_labels):], data.test_labels)
    held_out = bench.stratified_folds(labels.numpy(), 4, seed=0)[1]
    fold = bench.fold_data(data, images, labels, held_out)
    assert torch.equal(fold.val_images, images[torch.from_numpy(np.sort(held_out))])
    assert torch.equal(fold.val_labels, labels[torch.from_numpy(np.sort(held_out))])
    rest = torch.from_numpy(np.setdiff1d(np.arange(40), held_out))
    assert torch.equal(fold.train_images, images[rest]) and torch.equal(fold.train_labels, labels[rest])
    assert len(fold.train_labels) == 30 and len(fold.test_labels) == 0


class Interrupted(Exception):
    """Stands for a run killed part way."""


def counting_trainer(calls: list, stop_after: int | None = None):
    def train(model, data, config):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted
        calls.append((len(data.train_labels), len(data.val_labels), len(data.test_labels), config.seed))
        return train_and_evaluate(model, data, config)
    return train


ARGV = ["--dataset", "synthetic:96", "--budget", "20M-madds", "--candidates", "2", "--epochs", "1", "--proxy-size",
        "32", "--folds", "3", "--holdout-seeds", "2"]


def test_the_script_reports_ratios_and_an_interrupted_run_resumes_without_training_again(tmp_path, capsys):
    argv = [*ARGV, "--results-dir", str(tmp_path / "kfold"), "--cache-dir", str(tmp_path / "cache")]
    calls: list = []
    with pytest.raises(Interrupted):
        bench.main(argv, train=counting_trainer(calls, stop_after=3))
    assert len(calls) == 3
    resumed: list = []
    assert bench.main(argv, train=counting_trainer(resumed)) == 0
    first = capsys.readouterr().out
    # 2 nets x (2 holdout seeds + 3 folds), of which the interrupted run stored 3.
    assert len(resumed) == 2 * (2 + 3) - 3
    folds = [c for c in calls + resumed if c[2] == 0]
    holdouts = [c for c in calls + resumed if c[2] > 0]
    assert len(folds) == 6 and sum(c[1] for c in folds) == 2 * 96  # each net scores all 96 images once
    assert len(holdouts) == 4 and {c[3] for c in holdouts} == {0, 1} and {c[1:3] for c in holdouts} == {(19, 19)}
    again: list = []
    assert bench.main(argv, train=counting_trainer(again)) == 0
    second = capsys.readouterr().out
    assert again == []  # a finished run only reports
    table = first.split("\n== ")[1]

    def figures(text: str) -> str:  # the report below its first line (which gives this run's own CPU s)
        return text.split("\n== ")[1].split("\n", 1)[1]

    assert figures(first) == figures(second)  # the rerun reports what the stored runs say

    for text in ("CPU ratio", "interval width ratio", "k-fold changes", "holdout seed 1", "mobilenet_v2_0.35_96 vs "
                 "mobilenet_v2_0.35_128", "scores all 96 once"):
        assert text in table
    # The row's figures are those of the stored runs.
    (stored,) = (tmp_path / "kfold").glob("kfold-*.json")
    runs = json.loads(stored.read_text())["runs"]
    name = "mobilenet_v2_0.35_96"
    correct = np.concatenate([unpack_correct(runs[f"{name} fold {k}"]["correct"], runs[f"{name} fold {k}"]["n"])
                              for k in range(3)])
    ratio = sum(runs[f"{name} fold {k}"]["cpu_s"] for k in range(3)) / runs[f"{name} holdout 0"]["cpu_s"]
    row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
    assert f"| {correct.mean():.4f} [" in row and f"| {ratio:.2f} |" in row


def test_a_malformed_budget_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys):
    argv = [*ARGV, "--budget", "lots", "--results-dir", str(tmp_path / "kfold"), "--cache-dir", str(tmp_path / "c")]
    calls: list = []
    assert bench.main(argv, train=counting_trainer(calls)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "lots" in err
    assert calls == [] and not (tmp_path / "kfold").exists() and not (tmp_path / "c").exists()

"""benchmarks/bench_metric_ranking.py: the paired tau difference, and the script end to end on a tiny study that a
rerun resumes instead of training again."""

from __future__ import annotations

import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_metric_ranking as bench  # noqa: E402 - the script, found above


def test_tau_difference_is_the_difference_of_scipys_taus_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    good, poor = truth + rng.normal(scale=0.2, size=40), truth + rng.normal(scale=2.0, size=40)
    value, low, high = bench.tau_difference(poor, good, truth, seed=0, resamples=500)
    expected = stats.kendalltau(good, truth).statistic - stats.kendalltau(poor, truth).statistic
    assert value == pytest.approx(expected) and low <= value <= high
    assert low > 0  # the less noisy metric ranks better beyond the bootstrap's noise
    same = bench.tau_difference(good, good, truth, seed=0, resamples=200)
    assert same == (0.0, 0.0, 0.0)


def test_the_script_measures_both_metrics_on_test_and_resumes(tmp_path):
    argv = ["--trials", "4", "--space", "tiny", "--dataset", "synthetic:128", "--epochs", "1", "--proxy-size", "32",
            "--results-dir", str(tmp_path)]
    threads = torch.get_num_threads()
    outputs = []
    try:
        for _ in range(2):
            buffer = StringIO()
            with redirect_stdout(buffer):
                assert bench.main(argv) == 0
            outputs.append(buffer.getvalue())
    finally:
        torch.set_num_threads(threads)
    first, again = outputs
    buffer = StringIO()
    with redirect_stdout(buffer):
        assert bench.main([*argv, "--report-only"]) == 0
    torch.set_num_threads(threads)
    assert "  trial " not in buffer.getvalue() and "4 random tiny candidates" in buffer.getvalue()
    assert first.count("  trial ") == 4 and "  trial " not in again  # the rerun trains nothing
    for text in (first, again):
        assert "4 random tiny candidates" in text
        assert "validation accuracy" in text and "validation balanced" in text
        assert "on test accuracy" in text and "on test balanced" in text
        assert "front test HV above floor (balanced)" in text
    # The figures come from the stored study, so the rerun reports exactly what the first run did.
    assert first.split("== ")[1].split("this run")[1].split("\n", 1)[1] == \
        again.split("== ")[1].split("this run")[1].split("\n", 1)[1]

"""Proxy fidelity: trial selection, rank correlations within MAdds bins, resumable retraining (fidelity.py)."""

import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_on_call

from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.fidelity import FIDELITY_ATTR, correlations, run_fidelity, select_trials, within_bins
from mobilenet_search.search.study import run_search
from mobilenet_search.ui.cli import main


def _frame(accuracy, madds):
    n = len(accuracy)
    return pd.DataFrame({"number": range(n), "state": "COMPLETE", "feasible": True, "outcome": "trained",
                         "accuracy": accuracy, "madds": madds})


def test_select_trials_takes_the_pareto_set_then_spreads_over_madds():
    frame = _frame([0.1, 0.5, 0.3, 0.6, 0.2, 0.55, 0.4, 0.7], [10, 20, 30, 40, 50, 60, 70, 80])
    front = set(frame[pareto_mask(trained(frame))]["number"])
    assert front == {0, 1, 3, 7}
    chosen = select_trials(frame, 6)
    assert len(chosen) == 6 and front <= set(chosen)
    assert select_trials(frame, 3) == [0, 3, 7]  # a front larger than K is itself spread


def test_within_bin_tau_by_hand():
    # Bin 1 (MAdds 1-3): score agrees with target (tau +1, 3 pairs); bin 2 (4-6): reversed (tau -1, 3 pairs).
    frame = pd.DataFrame({"madds": [1, 2, 3, 4, 5, 6], "score": [1, 2, 3, 3, 2, 1],
                          "long_accuracy": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    assert within_bins(frame, "score", "long_accuracy", 2) == pytest.approx(0.0)
    result = correlations(frame, ["score", "madds"], bins=2)
    assert result["madds"]["kendall_tau"] == pytest.approx(1.0)  # MAdds alone rank these perfectly
    assert result["madds"]["kendall_tau_within_bins"] == pytest.approx(1.0)
    assert result["score"]["kendall_tau_within_bins"] == pytest.approx(0.0)


def test_fidelity_retrains_stores_and_resumes(tmp_path, monkeypatch, capsys):
    config = SearchConfig(budget="2M-madds", space="tiny", dataset="synthetic:96", epochs=1, proxy_size=32,
                          batch_size=16)
    storage = f"sqlite:///{tmp_path / 'f.db'}"
    study = run_search(config, storage=storage, study_name="f", trials=4, results_dir=tmp_path)

    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_fidelity(study, top=3, epochs=2, results_dir=tmp_path,
                     train=interrupt_on_call(train_and_evaluate, 2, calls))
    assert calls == [2, 2] and len(study.user_attrs[FIDELITY_ATTR]["long_accuracy"]) == 1

    summary = run_fidelity(study, top=3, epochs=2, results_dir=tmp_path)
    assert len(summary["trials"]) == 3 and set(summary["long_accuracy"]) == {str(n) for n in summary["trials"]}
    assert set(summary["correlations"]) >= {"accuracy", "madds"}
    assert study.user_attrs[FIDELITY_ATTR]["correlations"] == summary["correlations"]

    assert main(["fidelity", "--study", "f", "--storage", storage, "--top", "3", "--epochs", "2",
                 "--results-dir", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "proxy accuracy" in out and "MAdds (baseline)" in out
    assert main(["report", "--study", "f", "--storage", storage, "--results-dir", str(tmp_path)]) == 0
    assert "proxy fidelity: 3 trials retrained for 2 epochs" in capsys.readouterr().out
    assert trials_frame(study).shape[0] >= 4


def test_fidelity_refuses_too_few_trials(tmp_path):
    config = SearchConfig(budget="2M-madds", space="tiny", dataset="synthetic:96", epochs=1, proxy_size=32)
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    run_search(config, storage=storage, study_name="g", trials=1, results_dir=tmp_path)
    assert main(["fidelity", "--study", "g", "--storage", storage, "--results-dir", str(tmp_path)]) == 2


def test_every_tau_comes_with_a_seeded_bootstrap_interval():
    rng = np.random.default_rng(0)
    madds = np.arange(12) * 1e6
    long = madds / 1e7 + rng.normal(0, 0.05, 12)
    frame = pd.DataFrame({"madds": madds, "long_accuracy": long, "score": long + rng.normal(0, 0.05, 12),
                          "noisy": long + rng.normal(0, 0.3, 12)})
    first = correlations(frame, ["score", "noisy", "madds"])
    assert first == correlations(frame, ["score", "noisy", "madds"])  # seeded: the same intervals run after run
    for row in first.values():
        low, high = row["kendall_tau_interval"]
        assert -1 <= low <= row["kendall_tau"] + 1e-9 and row["kendall_tau"] <= high + 1e-9 <= 1 + 1e-9
        low, high = row["kendall_tau_within_bins_interval"]
        assert -1 <= low <= high <= 1
    # A noisier score ranks worse and is less certain: its interval is wider.
    width = {name: row["kendall_tau_interval"][1] - row["kendall_tau_interval"][0] for name, row in first.items()}
    assert first["noisy"]["kendall_tau"] < first["score"]["kendall_tau"] and width["noisy"] > width["score"]

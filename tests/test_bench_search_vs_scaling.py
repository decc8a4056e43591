"""benchmarks/bench_search_vs_scaling.py end to end on a tiny configuration: every arm, the retraining, the report,
and a rerun that resumes instead of training again.

The benchmark runs in this process (``--jobs 1``: the arms one after the other) on the synthetic stripes and the
tiny space, with a few CPU seconds an arm; what is checked is the bookkeeping, not the figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import optuna
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_search_vs_scaling as bench  # noqa: E402 - the script, found above
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import why_search_vs_scaling as why  # noqa: E402

from mobilenet_search.results.records import CORRECT_ATTR, VAL_SIZE_ATTR, pack_correct  # noqa: E402

FLAGS = ["--dataset", "synthetic:96", "--space", "tiny", "--budget", "300M-madds", "--budget-seconds", "3",
         "--epochs", "2", "--short-epochs", "1", "--final-epochs", "1", "--proxy-size", "32", "--supernet-epochs", "1",
         "--final-top", "2", "--confirm", "2", "--jobs", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The benchmark run twice with the same options: what each printed, and the state files after each."""
    folder = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    argv = [*FLAGS, "--results-dir", str(folder)]
    outputs, states, trials = [], [], []
    try:
        for _ in range(2):
            buffer = StringIO()
            with redirect_stdout(buffer):
                bench.main(argv)
            outputs.append(buffer.getvalue())
            states.append({path.name: path.read_bytes() for path in sorted(folder.glob("*.json"))})
            trials.append({(db.name, summary.study_name): summary.n_trials for db in sorted(folder.glob("*.db"))
                           for summary in optuna.get_all_study_summaries(f"sqlite:///{db}")})
    finally:
        torch.set_num_threads(threads)
    args = bench.parse_args(argv)
    return {"folder": folder, "args": args, "outputs": outputs, "states": states, "trials": trials,
            "report": json.loads((folder / f"report-{bench.run_key(args)}.json").read_text())}


def test_every_arm_spends_its_compute_and_retrains_its_front(runs):
    arms = runs["report"]["arms"]
    assert list(arms) == list(bench.ARMS)
    for arm, result in arms.items():
        assert result["done"], arm
        assert result["spent"] >= 3.0, arm  # the budget is spent before an arm stops (overshoot: one trial)
        assert result["front"] and result["complete"], arm  # a front, every member retrained
        for net in result["front"]:
            assert 0 <= net["test_accuracy"] <= 1 and net["madds"] < 300e6
        assert result["hypervolume"] >= 0
    assert all(net["name"].startswith("mobilenet_v2_") for net in arms["scaling"]["front"])
    assert arms["halving"]["rung0_trained"] > arms["halving"]["trained"] >= 1  # candidates, fewer promoted


def test_the_report_compares_every_arm_with_hand_scaling(runs):
    report = runs["report"]
    assert 0 < report["trivial_accuracy"] < 1 and report["reference_madds"] == pytest.approx(301e6)
    scaling_nets = {net["name"] for net in report["arms"]["scaling"]["front"]}
    for arm in bench.ARMS[1:]:
        result = report["arms"][arm]
        low, high = result["difference_interval"]
        assert low <= high
        assert result["difference"] == pytest.approx(result["hypervolume"] - report["arms"]["scaling"]["hypervolume"])
        assert {row["reference_name"] for row in result["references"]} == scaling_nets
        for row in result["references"]:  # every searched net of the tiny space is cheaper than any paper net
            assert row["verdict"] in ("better", "worse", "indistinguishable") and 0 <= row["p_value"] <= 1
            assert "cheapest_no_worse_madds" in row and "madds_ratio" in row
    assert set(report["targets"]) == {"best_arm", "front_beats_scaling", "beats_target_net", "target_net_wins"}
    printed = runs["outputs"][0]
    assert "minus hand scaling" in printed and "95% paired bootstrap interval" in printed
    assert "the best arm's front beats hand scaling beyond noise" in printed
    assert ("MET: a searched net" in printed) or ("MISSED: a searched net" in printed) or ("n/a: a searched" in printed)


def test_a_rerun_resumes_without_training_again(runs):
    first, second = runs["states"]
    assert first == second  # every arm's state, every retraining, the report: unchanged
    assert "all phases done" in runs["outputs"][1] and runs["outputs"][0].split("\n== ")[1:] == \
        runs["outputs"][1].split("\n== ")[1:]
    assert len(runs["trials"][0]) == 5  # random, TPE, supernet, and the two rungs of multi-fidelity
    assert runs["trials"][0] == runs["trials"][1]  # no study holds a new trial
    args = runs["args"]
    assert bench.finals(args).keys() == set(bench.wanted_fronts(args)["arch"])


def test_hand_scaling_spans_the_range_first():
    config = bench.search_config(bench.parse_args(FLAGS))
    order = [name for name, _ in bench.scaling_order(config, num_classes=10, in_channels=1)]
    assert order[:2] == ["mobilenet_v2_0.35_96", "mobilenet_v2_1.0_224"]  # the ends under 300M MAdds
    assert len(order) == len(set(order)) == 26  # every MobileNetV2 width x resolution under the budget, once


def test_an_interrupted_arm_goes_on_where_it_stopped(tmp_path):
    """run_budgeted saves after every step: a rerun keeps what was done and the seconds spent, then goes on."""
    args = bench.parse_args([*FLAGS, "--budget-seconds", "1e6", "--results-dir", str(tmp_path)])
    calls = []

    def prepare(state: dict, stop_at: int | None) -> Callable[[], bool]:
        done = state.setdefault("steps", [])

        def step() -> bool:
            if len(done) == stop_at:
                raise KeyboardInterrupt
            if len(done) == 5:
                return False  # nothing left to train
            sum(i * i for i in range(20_000))  # some CPU seconds to count
            done.append(len(done))
            calls.append(len(done))
            return True
        return step

    with pytest.raises(KeyboardInterrupt):
        bench.run_budgeted(args, "scaling", lambda state: prepare(state, stop_at=2))
    state = bench.strategies.load_state(bench.arm_state_path(args, "scaling"))
    assert state["steps"] == [0, 1] and not state.get("done") and state["spent"] > 0
    bench.run_budgeted(args, "scaling", lambda state: prepare(state, stop_at=None))
    resumed = bench.strategies.load_state(bench.arm_state_path(args, "scaling"))
    assert resumed["steps"] == [0, 1, 2, 3, 4] and resumed["done"] and calls == [1, 2, 3, 4, 5]
    assert resumed["spent"] > state["spent"]  # the first run's seconds are carried over
    bench.run_budgeted(args, "scaling", lambda state: prepare(state, stop_at=0))  # done: no step runs at all


def test_an_arm_stops_once_its_compute_is_spent(tmp_path):
    args = bench.parse_args([*FLAGS, "--budget-seconds", "0.05", "--results-dir", str(tmp_path)])
    steps = []

    def step() -> bool:
        sum(i * i for i in range(200_000))
        steps.append(1)
        return True

    bench.run_budgeted(args, "halving", lambda state: step)
    state = bench.strategies.load_state(bench.arm_state_path(args, "halving"))
    assert state["done"] and state["spent"] >= 0.05 and 1 <= len(steps) < 1000


def test_the_diagnosis_reads_the_finished_run(runs):
    """why_search_vs_scaling.py on the run's own options: its tables from the stored states, nothing trained."""
    argv = [*FLAGS, "--results-dir", str(runs["folder"])]
    buffer = StringIO()
    with redirect_stdout(buffer):
        result = why.main(argv)
    assert set(runs["states"][0]) == {path.name for path in sorted(runs["folder"].glob("*.json"))}  # nothing new
    value, low, high = result["proxy"]["tau"]
    assert result["proxy"]["nets"] == len(bench.finals(runs["args"]))  # every retrained net was on a front
    assert set(result["proxy"]["gain"]) == set(bench.ARMS)
    assert -1 <= value <= 1 and (np.isnan(low) or low <= value <= high)
    for arm, row in result["space"].items():
        assert row["better"] + row["worse"] <= row["in_range"] <= row["trained"] == result["compute"][arm]["trained"]
        assert row["area_added"] >= max(row["area_alone"], 0.0) - 1e-12  # the family and more covers both
        if row["first_nets"] is not None:
            assert 0 <= row["area_added_first"] <= row["area_added"] + 1e-12
    assert {arm: c["trained"] for arm, c in result["compute"].items()} == \
        {arm: r["trained"] for arm, r in runs["report"]["arms"].items()}
    printed = buffer.getvalue()
    assert "Kendall's tau" in printed and "better (McNemar 5%)" in printed and "CPU s a net" in printed


def _nets(rows: list[tuple[str, float, float]], size: int = 400) -> pd.DataFrame:
    """Nets with the given validation accuracy: the first ``accuracy x size`` images right, the rest wrong."""
    return pd.DataFrame([{"arch": name, "name": name, "madds": madds, "accuracy": accuracy,
                          CORRECT_ATTR: pack_correct(np.arange(size) < round(accuracy * size)), VAL_SIZE_ATTR: size}
                         for name, madds, accuracy in rows])


def test_a_net_is_held_against_the_best_family_net_at_no_more_madds_and_the_front_at_its_madds():
    family = _nets([("small", 10e6, 0.50), ("weak", 50e6, 0.45), ("large", 100e6, 0.70)])
    searched = _nets([("cheaper", 5e6, 0.9), ("between", 10 ** 7.5, 0.65), ("level", 100e6, 0.70)])
    margins = why.staircase_margins(searched, family).set_index("arch")
    assert "cheaper" not in margins.index  # below the whole family: nothing to beat
    assert margins.loc["between", "reference"] == "small"  # not the weaker but costlier net
    assert margins.loc["between", "margin"] == pytest.approx(0.15) and margins.loc["between", "verdict"] == "better"
    assert margins.loc["level", "verdict"] == "indistinguishable" and margins.loc["level", "p_value"] == 1.0
    # On the front joined in log MAdds, 10^7.5 lies half way from 0.50 to 0.70: 0.65 is 0.05 above it.
    assert why.curve_margins(searched, family) == pytest.approx([0.05, 0.0])

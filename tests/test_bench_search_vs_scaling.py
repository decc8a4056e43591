"""benchmarks/bench_search_vs_scaling.py end to end on a tiny configuration: every arm, the retraining, the report,
and a rerun that resumes instead of training again.

The benchmark runs in this process (``--jobs 1``: the arms one after the other) on the synthetic stripes and the
tiny space, with a few CPU seconds an arm; what is checked is the bookkeeping, not the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_search_vs_scaling as bench  # noqa: E402 - the script, found above

FLAGS = ["--dataset", "synthetic:96", "--space", "tiny", "--budget", "300M-madds", "--budget-seconds", "3",
         "--epochs", "2", "--short-epochs", "1", "--final-epochs", "1", "--proxy-size", "32", "--supernet-epochs", "1",
         "--final-top", "2", "--confirm", "2", "--jobs", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The benchmark run twice with the same options: what each printed, and the state files after each."""
    folder = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    argv = [*FLAGS, "--results-dir", str(folder)]
    outputs, states = [], []
    try:
        for _ in range(2):
            from contextlib import redirect_stdout
            from io import StringIO

            buffer = StringIO()
            with redirect_stdout(buffer):
                bench.main(argv)
            outputs.append(buffer.getvalue())
            states.append({path.name: path.read_bytes() for path in sorted(folder.glob("*.json"))})
    finally:
        torch.set_num_threads(threads)
    args = bench.parse_args(argv)
    return {"folder": folder, "args": args, "outputs": outputs, "states": states,
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
    args = runs["args"]
    for arm in ("random", "tpe"):  # the studies hold no new trial
        inner = bench.arm_args(args, arm)
        study = optuna.load_study(study_name=bench.strategies.study_name(inner, "scratch"),
                                  storage=bench.strategies.storage(inner, "scratch"))
        assert study.user_attrs  # the study the arm ran, not a new one
    assert bench.finals(args).keys() == set(bench.wanted_fronts(args)["arch"])


def test_hand_scaling_spans_the_range_first():
    config = bench.search_config(bench.parse_args(FLAGS))
    order = [name for name, _ in bench.scaling_order(config, num_classes=10, in_channels=1)]
    assert order[:2] == ["mobilenet_v2_0.35_96", "mobilenet_v2_1.0_224"]  # the ends under 300M MAdds
    assert len(order) == len(set(order)) == 26  # every MobileNetV2 width x resolution under the budget, once

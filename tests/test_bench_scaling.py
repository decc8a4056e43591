"""benchmarks/bench_scaling.py end to end on a tiny configuration: the scaling study, the predictive check, the head to
head and the report, and runs interrupted in the study and in the head to head that resume without training again;
the same with ``--strategy supernet`` (its compute split into the supernet, the scoring and the confirmations), and
the run keys of scratch studies kept as they were.

The benchmark runs in this process on the synthetic stripes and a tiny space with more resolutions than ``tiny``
(so that one direction has three nets below the fit's cap and one above it), with the paper's nets replaced by two
members of that space; what is checked is the bookkeeping, not the figures.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
from conftest import interrupt_on_call

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.search.config import train_config
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.scaling import SCALING_ATTR, planned_trials
from mobilenet_search.search.space import load_space

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_scaling as bench  # noqa: E402 - the script, found above

SPACE_YAML = """\
name: tiny_scaling
description: tiny, with more resolutions (a scaling grid that reaches past the fit's cap)
family: mobilenet_v2
width_mult: [0.25, 0.5]
resolution: [32, 40, 48, 56, 64, 80, 96]
stem_channels: 8
head_channels: 64
activation: relu6
linear_bottleneck: true
head: fc
dropout: 0.0
stages:
  - {expansion: 1, channels: 8, repeats: 1, stride: 1}
  - {expansion: [2, 4], channels: [8, 16], repeats: [1, 2], stride: 2}
  - {expansion: [2, 4], channels: [16, 24], repeats: 1, stride: 2}
"""


def flags(space: Path, folder: Path) -> list[str]:
    return ["--dataset", "synthetic:96", "--space", str(space), "--budget", "1.2M-madds", "--fit-up-to", "600K-madds",
            "--at", "500K-madds", "1000K-madds", "--seeds", "2", "--final-seeds", "3", "--epochs", "1", "--lr", "0.01",
            "--proxy-size", "32", "--batch-size", "16", "--resamples", "20", "--results-dir", str(folder)]


def tiny_family(num_classes: int, in_channels: int) -> dict[str, ArchSpec]:
    """Two members of the tiny space stand in for the paper's width x resolution nets."""
    base = load_space("tiny").extreme(num_classes=num_classes, in_channels=in_channels)
    return {"tiny_0.5_48": base.replace(width_mult=0.5, resolution=48),
            "tiny_0.25_80": base.replace(resolution=80)}


def counting(calls: list) -> ScratchTraining:
    """Scratch training as the study's, recording each call."""
    def train(model, data, config, on_epoch=None):
        calls.append(model.spec.to_string())
        return train_and_evaluate(model, data, config, on_epoch=on_epoch)

    return ScratchTraining(config(), train=train)


def config():
    """The study's proxy training (what the benchmark trains with by default)."""
    return train_config(bench.study_config(bench.parse_args(flags(Path("space.yaml"), Path("unused")))), "cpu")


def run(argv: list[str], accuracy: ScratchTraining) -> str:
    buffer = StringIO()
    with redirect_stdout(buffer):
        bench.main(argv, accuracy=accuracy, family=tiny_family)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny_scaling.yaml"
    path.write_text(SPACE_YAML)
    return path


@pytest.fixture(scope="module")
def whole(space: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The benchmark run through once: its printout, report, trainings and options."""
    folder = tmp_path_factory.mktemp("whole")
    return run_through(flags(space, folder), folder)


def run_through(argv: list[str], folder: Path) -> dict:
    """The benchmark run once with ``argv`` (results under ``folder``): its options, printout, trainings and
    report."""
    calls: list = []
    printed = run(argv, counting(calls))
    args = bench.parse_args(argv)
    return {"argv": argv, "args": args, "printed": printed, "calls": calls, "folder": folder,
            "report": json.loads((folder / f"report-{bench.report_key(args)}.json").read_text())}


def test_the_study_trains_its_plan_and_the_head_to_head_the_rest(whole):
    report, args = whole["report"], whole["args"]
    bench_ = bench.Bench(args)
    plan = bench_.study().user_attrs[SCALING_ATTR]
    compute = report["compute"]
    assert compute["study_trainings"] == planned_trials(plan)  # every grid net, two seeds
    runs = bench.load_state(bench_.paths["nets"])
    trained_here = [key for key, run_ in runs.items() if not run_["from_study"]]
    assert compute["head_to_head_trainings"] == len(trained_here) >= 1
    assert len(whole["calls"]) == compute["study_trainings"] + len(trained_here)  # nothing trained twice
    assert compute["head_to_head_reused"] >= 1  # a study net at a head-to-head budget is not trained again
    assert report["complete"] and compute["study_cpu_s"] > 0 and compute["head_to_head_cpu_s"] > 0
    assert report["strategy"] == compute["strategy"] == "scratch" and not set(bench.SUPERNET_PARTS) & set(compute)


def test_the_predictive_check_fits_below_the_cap_and_judges_the_nets_above(whole):
    check = whole["report"]["predictive"]
    assert check["fit_up_to"] == 600_000
    fitted = check["analysis"]
    for entry in fitted["directions"].values():
        if entry["fit"] is not None:
            assert all(p["madds"] <= 600_000 for p in entry["fit"]["points"])
    resolution = fitted["directions"]["resolution"]["fit"]
    assert [p["madds"] for p in resolution["points"]] == [124416, 279616, 496896]  # r32, r48, r64: r96 held out
    held = [p for p in check["points"] if p["direction"] == "resolution"]
    assert [ArchSpec.from_string(p["arch"]).resolution for p in held] == [96] and held[0]["seeds"] == 2
    assert all(p["madds"] > 600_000 for p in check["points"])
    for p in check["points"]:
        if p["within_floor"] is not None:
            assert p["within_floor"] == (abs(p["measured"] - p["predicted"]) <= check["noise_floor"])
            assert p["error"] == pytest.approx(p["measured"] - p["predicted"])
    judged = [p for p in check["points"] if p["within_floor"] is not None]
    assert check["judged"] == len(judged) >= 1
    assert check["share_within_floor"] == pytest.approx(sum(p["within_floor"] for p in judged) / len(judged))
    assert check["met"] == (check["share_within_floor"] >= 0.8)


def test_the_head_to_head_compares_the_recommendation_with_each_contender_within_the_budget(whole):
    result = whole["report"]["head_to_head"]
    assert list(result["budgets"]) == ["500K-madds", "1000K-madds"]
    for at, rows in result["budgets"].items():
        limit = 501_000 if at == "500K-madds" else 1_001_000
        assert list(rows) == list(bench.CONTENDERS)
        for name, row in rows.items():
            assert row["madds"] <= limit and row["seeds"] == 3 and 0 <= row["test_accuracy"] <= 1
            assert row["madds"] == count_madds(ArchSpec.from_string(row["arch"]))
            if name == "recommended" or row["same_as_recommended"]:
                assert row["verdict"] is None
            else:
                verdict = row["verdict"]
                assert verdict["verdict"] in ("better", "worse", "indistinguishable") and 0 <= verdict["p_value"] <= 1
                assert verdict["seeds"] == 3
        widths = ArchSpec.from_string(rows["width"]["arch"]), ArchSpec.from_string(rows["resolution"]["arch"])
        assert widths[0].resolution == 32 and widths[1].width_mult == 0.25  # one dimension each, from the base
    # The paper's net: the stand-in family's member with the most MAdds within each budget.
    assert result["budgets"]["500K-madds"]["paper"]["how"] == "tiny_0.5_48"
    assert result["budgets"]["1000K-madds"]["paper"]["how"] == "tiny_0.25_80"
    targets = whole["report"]["targets"]
    assert set(targets) == {"predictive", "never_worse", "worse", "better_than_paper", "better_at", "why_not"}
    printed = whole["printed"]
    assert printed.startswith("$ python benchmarks/bench_scaling.py ")
    for line in ("== predictive check", "== head to head", "== targets", "== compute", "estimate:"):
        assert line in printed


def test_interrupted_runs_resume_without_training_a_finished_net_again(whole, space, tmp_path):
    argv = flags(space, tmp_path)
    total = len(whole["calls"])
    study = whole["report"]["compute"]["study_trainings"]
    first: list = []
    with pytest.raises(KeyboardInterrupt):  # in the study's first phase: two nets trained
        run(argv, ScratchTraining(config(), train=interrupt_on_call(train_and_evaluate, 3, first)))
    second: list = []
    with pytest.raises(KeyboardInterrupt):  # the rest of the study, one head-to-head net, then a Ctrl-C
        run(argv, ScratchTraining(config(), train=interrupt_on_call(train_and_evaluate, study - 2 + 2, second)))
    third: list = []
    printed = run(argv, counting(third))
    assert len(third) == total - 2 - (study - 2) - 1  # only what was not finished
    again: list = []
    assert run(argv, counting(again)).split("\n== ")[1:] == printed.split("\n== ")[1:] and again == []
    report = json.loads((tmp_path / f"report-{bench.report_key(bench.parse_args(argv))}.json").read_text())
    for part in ("predictive", "head_to_head", "targets"):  # the same trainings as the uninterrupted run
        assert report[part] == whole["report"][part], part


def test_the_plan_trains_nothing(space, tmp_path):
    calls: list = []
    printed = run([*flags(space, tmp_path), "--plan"], counting(calls))
    assert calls == [] and "estimate:" in printed and not list(tmp_path.glob("*.db"))


def test_the_plan_lists_every_net_the_run_trains_but_the_recommendations(whole):
    plan = {arch for _, arch, _, _ in bench.planned_trainings(bench.Bench(whole["args"], family=tiny_family))}
    budgets = whole["report"]["head_to_head"]["budgets"].values()
    recommended = {rows["recommended"]["arch"] for rows in budgets if rows["recommended"]}
    papers = {rows["paper"]["arch"] for rows in budgets if rows["paper"]}
    assert papers and papers <= plan  # the paper's nearest nets are trained, so they are estimated
    assert set(whole["calls"]) - recommended <= plan
    heads = [arch for phase, arch, _, _ in bench.planned_trainings(bench.Bench(whole["args"], family=tiny_family))
             if phase.startswith("head to head")]
    assert len(heads) == len(set(heads))  # a net two contenders share is planned once


def test_the_targets_say_where_the_recommendation_falls_short():
    def row(verdict, how="paper net", same=False):
        return {"how": how, "same_as_recommended": same,
                "verdict": None if verdict is None else {"verdict": verdict, "margin": 0.01, "p_value": 0.2,
                                                         "noise_margin": 0.005}}

    result = {"no_recommendation": {},
              "budgets": {"40M": {"recommended": row(None), "width": row("better"), "paper": row("indistinguishable")},
                          "150M": {"recommended": row(None), "width": row("worse"), "paper": row("better")}}}
    goal = bench.head_to_head_targets(result)
    assert goal["never_worse"] is False and goal["worse"] == ["150M: worse than width only"]
    assert goal["better_than_paper"] is True and goal["better_at"] == ["150M"]
    assert len(goal["why_not"]) == 1 and goal["why_not"][0].startswith("40M: indistinguishable")
    result["budgets"]["150M"]["paper"] = row(None, how="mobilenet_v2_0.35_192", same=True)
    result["budgets"]["150M"]["width"] = row("indistinguishable")
    goal = bench.head_to_head_targets(result)
    assert goal["never_worse"] is True and goal["better_than_paper"] is False
    assert "the recommendation is the paper's mobilenet_v2_0.35_192 itself" in goal["why_not"][1]


# -- --strategy supernet ------------------------------------------------------------------------------------------

def supernet_flags(space: Path, folder: Path) -> list[str]:
    """The tiny run scored by a supernet of one epoch, one point of each phase confirmed, one seed a head-to-head
    net: the smallest run that exercises every part."""
    argv = flags(space, folder)
    argv[argv.index("--seeds") + 1] = "1"
    argv[argv.index("--final-seeds") + 1] = "1"
    return [*argv, "--strategy", "supernet", "--supernet-epochs", "1", "--confirm", "1"]


@pytest.fixture(scope="module")
def supernet_run(space: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("supernet")
    return run_through(supernet_flags(space, folder), folder)


def test_a_supernet_study_reports_its_compute_by_part(supernet_run):
    report, args = supernet_run["report"], supernet_run["args"]
    assert report["strategy"] == "supernet" and report["analysis"]["strategy"] == "supernet"
    compute = report["compute"]
    assert compute["strategy"] == "supernet" and compute["supernet_epochs"] == 1
    parts = [compute[part] for part in bench.SUPERNET_PARTS]
    assert all(seconds > 0 for seconds in parts)
    assert compute["study_cpu_s"] == pytest.approx(sum(parts))  # every second of the study in one of the parts
    assert compute["supernet_wall_s"] > 0  # as the study records it
    study = bench.Bench(args).study()
    assert compute["points_scored"] == planned_trials(study.user_attrs[SCALING_ATTR])  # every grid net, once
    assert 1 <= compute["confirmations"] == compute["study_trainings"] <= 2  # one a phase, unless already confirmed
    # The source passed in trains the head-to-head nets only: the study scores with its supernet.
    assert len(supernet_run["calls"]) == compute["head_to_head_trainings"] >= 1
    assert report["complete"] and compute["head_to_head_cpu_s"] > 0
    printed = supernet_run["printed"]
    assert "== the scaling study (supernet)" in printed and "== compute" in printed and "not built" not in printed
    assert "supernet training" in printed and "confirmations" in printed and "supernet epoch 1 of 1" in printed


def test_a_supernet_study_is_fitted_checked_and_compared_as_a_scratch_one(supernet_run):
    report = supernet_run["report"]
    check = report["predictive"]
    held = [p for p in check["points"] if p["direction"] == "resolution"]
    assert [ArchSpec.from_string(p["arch"]).resolution for p in held] == [96] and held[0]["seeds"] == 1
    assert check["judged"] >= 1 and check["met"] == (check["share_within_floor"] >= 0.8)
    # The fit reads the inherited scores; confirmations are listed beside them, not fitted as another seed.
    study = bench.Bench(supernet_run["args"]).study()
    inherited = {t.user_attrs["arch"]: t.user_attrs["accuracy"] for t in study.trials
                 if t.user_attrs.get("strategy") == "supernet"}
    for p in check["points"]:
        if p["measured"] is not None:
            assert p["measured"] == inherited[p["arch"]]
    # The fit below the cap keeps the confirmations of its nets, each naming its point by the view's trial numbers.
    below = [(c["arch"], c["scratch"]) for c in report["analysis"]["confirmations"] if c["madds"] <= 600_000]
    assert below and [(c["arch"], c["scratch"]) for c in check["analysis"]["confirmations"]] == below
    assert len(report["analysis"]["confirmations"]) == report["compute"]["confirmations"]
    result = report["head_to_head"]
    for rows in result["budgets"].values():
        for row in rows.values():
            assert row["seeds"] == 1 and 0 <= row["test_accuracy"] <= 1


@pytest.mark.parametrize("kept", ["bench_scaling_fashion_mnist.txt", "bench_scaling_embedded.txt"])
def test_scratch_keys_are_those_of_the_runs_kept_before_the_strategy_options(kept):
    # A kept run's output: its command line, then its run key (the key its results dir resumes by).
    lines = (Path(__file__).resolve().parent.parent / "benchmarks" / "results" / kept).read_text().splitlines()
    argv = shlex.split(lines[0].removeprefix("$ python benchmarks/bench_scaling.py "))
    key = re.search(r"\(run key (\w+)\)", lines[1]).group(1)
    assert bench.run_key(bench.parse_args(argv)) == key
    assert bench.run_key(bench.parse_args([*argv, "--strategy", "scratch", "--confirm", "3"])) == key  # defaults
    supernet = [*argv[:argv.index("--seeds")], *argv[argv.index("--seeds") + 2:], "--strategy", "supernet"]
    keys = {bench.run_key(bench.parse_args(a)) for a in (supernet, [*supernet, "--supernet-epochs", "2"],
                                                          [*supernet, "--confirm", "1"])}
    assert len(keys) == 3 and key not in keys
    with pytest.raises(SystemExit):  # the benchmark's strategy is explicit: `scaling`'s auto is not one of its choices
        bench.parse_args([*argv, "--strategy", "auto"])


def test_seeds_with_a_supernet_are_refused_in_one_line_with_nothing_written(space, tmp_path, capsys):
    folder = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        bench.main([*supernet_flags(space, folder), "--seeds", "2"], family=tiny_family)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid --seeds 2 with --strategy supernet" in err
    assert not folder.exists()

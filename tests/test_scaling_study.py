"""The scaling experiment as an ordinary study, its analysis and the CLI (search/scaling.py, ui/cli_scaling.py)."""

import json

import optuna
import pytest
from conftest import interrupt_on_call

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.records import NOISE_SEED_ATTR
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.scaling import (
    DIRECTION_ATTR,
    SCALING_ATTR,
    STEP_ATTR,
    Grid,
    analyse,
    madds_limit,
    planned_trials,
    resolve_base,
    run_scaling,
)
from mobilenet_search.search.space import load_space
from mobilenet_search.ui.cli import main

SPACE = load_space("tiny")
BASE = SPACE.extreme(num_classes=4, in_channels=1)  # w0.25, r32: 124.4K MAdds on synthetic data's 4 classes
SETTINGS = dict(space="tiny", dataset="synthetic:96", epochs=1, lr=0.01, proxy_size=32, batch_size=16,
                references="none", noise_repeats=0)


def _config(budget="600K-madds"):
    return SearchConfig(budget=budget, **SETTINGS)


def _run(tmp, name, budget="600K-madds", seeds=1, **options):
    config = _config(budget)
    grid = Grid(BASE, SPACE, madds_limit(budget, "--budget"), seeds)
    return run_scaling(config, grid, storage=f"sqlite:///{tmp / f'{name}.db'}", study_name=name, results_dir=tmp,
                       **options)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaling")
    _run(tmp, "s", seeds=2)
    return tmp


def _load(tmp, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / f'{name}.db'}")


def test_every_grid_network_is_a_fixed_trial_once_per_seed_recording_its_direction(study_dir):
    study = _load(study_dir, "s")
    plan = study.user_attrs[SCALING_ATTR]
    trials = study.trials
    assert len(trials) == planned_trials(plan) and all(t.user_attrs["outcome"] == "trained" for t in trials)
    archs = {p["arch"] for p in plan["points"]}
    by_arch = {}
    for trial in trials:
        by_arch.setdefault(trial.user_attrs["arch"], []).append(trial.user_attrs.get(NOISE_SEED_ATTR))
        assert trial.user_attrs[DIRECTION_ATTR] in ("base", "width", "resolution", "depth", "coefficients",
                                                    "compound")
        assert isinstance(trial.user_attrs[STEP_ATTR], int)
    assert set(by_arch) == archs and all(sorted(s, key=str) == [1, None] for s in by_arch.values())
    for point in plan["points"]:  # the achieved MAdds recorded with the point are the trained network's
        assert point["madds"] == count_madds(ArchSpec.from_string(point["arch"]))
        assert point["madds"] < 601_000
    # Phase 2 ran: the compound coefficients were picked from the measured grid and recorded.
    assert plan["compound"]["coefficients"] is not None and plan["compound"]["fit"]["tried"] >= 1


def test_the_analysis_fits_the_directions_with_enough_networks_and_says_why_not_the_others(study_dir):
    analysis = analyse(_load(study_dir, "s"), resamples=20)
    resolution = analysis["directions"]["resolution"]["fit"]
    assert [p["madds"] for p in resolution["points"]] == [124416, 279616, 496896]  # r32, r48, r64
    assert all(p["seeds"] == 2 for p in resolution["points"])
    assert analysis["noise"]["seed_sd"] is not None  # two seeds per network: the seed noise is measured
    # The tiny space's widths 0.25 and 0.5 round to the same channels: width cannot scale its base at all.
    assert analysis["directions"]["width"]["fit"] is None
    assert "too few points to fit" in analysis["directions"]["width"]["reason"]


def test_resume_after_an_interruption_does_not_retrain_finished_points(tmp_path):
    config = _config()
    calls = []
    interrupting = ScratchTraining(train_config(config, "cpu"), train=interrupt_on_call(train_and_evaluate, 3, calls))
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "r", accuracy=interrupting)
    finished = {t.number: t.user_attrs for t in _load(tmp_path, "r").trials if t.user_attrs.get("outcome") == "trained"}
    assert len(finished) == 2

    retrained = []
    counting = ScratchTraining(train_config(config, "cpu"),
                               train=lambda model, *a, **k: retrained.append(model.spec.to_string())
                               or train_and_evaluate(model, *a, **k))
    study = _run(tmp_path, "r", accuracy=counting)
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]
    assert all(study.trials[n].user_attrs == attrs for n, attrs in finished.items())  # kept as they were
    assert len(trained) == planned_trials(study.user_attrs[SCALING_ATTR])
    assert len(retrained) == len(trained) - 2
    assert not {finished[n]["arch"] for n in finished} & set(retrained)
    again = _run(tmp_path, "r", accuracy=counting)  # finished: nothing more is trained
    assert len(again.trials) == len(study.trials) and len(retrained) == len(trained) - 2


def _cli(capsys, *argv):
    code = main(["scaling", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ["--space", "tiny", "--dataset", "synthetic:96", "--epochs", "1", "--lr", "0.01", "--proxy-size", "32",
        "--batch-size", "16", "--quiet", "--resamples", "20"]


def test_cli_analyses_a_study_and_recommends_a_net_for_a_budget(study_dir, capsys):
    code, out, _ = _cli(capsys, "--study", "s", "--results-dir", str(study_dir), "--at", "400K-madds")
    assert code == 0
    assert "resolution plateau" in out and "EfficientNet on ImageNet: 1.20 / 1.10 / 1.15" in out
    assert "recommended for 400.0K MAdds" in out and "multipliers: width x" in out
    saved = json.loads((study_dir / "s" / "scaling.json").read_text())
    answer = saved["recommendation"]
    assert answer["madds"] < 401_000 and answer["interval"][0] <= answer["accuracy"] <= answer["interval"][1]
    assert answer["arch"] in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "600K-madds", "--base", "mobilenet_v2_0.35_96"], "invalid --base 'mobilenet_v2_0.35_96': not a "
                                                                    "member of space 'tiny'"),
    (["--budget", "100K-madds", "--base", BASE.to_string()], "invalid --budget 100K-madds: below the base"),
    (["--budget", "5ms-latency"], "scaling needs a MAdds limit"),
    (["--budget", "600K-madds", "--at", "700K-madds"], "invalid --at 700K-madds: above --budget"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, argv, message):
    code, _, err = _cli(capsys, *argv, *FAST, "--results-dir", str(tmp_path), "--study", "bad")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.glob("*.db")) and not (tmp_path / "bad").exists()


def test_at_above_the_fitted_range_is_refused_with_nothing_written(study_dir, capsys):
    written = study_dir / "s" / "scaling.json"
    before = written.read_text() if written.exists() else None
    code, _, err = _cli(capsys, "--study", "s", "--results-dir", str(study_dir), "--at", "580K-madds")
    assert code == 2 and err.count("\n") == 1 and "above the fitted range (up to 496.9K MAdds)" in err, err
    assert (written.read_text() if written.exists() else None) == before


def test_a_study_with_too_few_points_to_fit_is_refused(tmp_path, capsys):
    _run(tmp_path, "few", budget="300K-madds")  # one doubling: at most two networks per direction
    code, _, err = _cli(capsys, "--study", "few", "--results-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "has too few points to fit" in err, err
    assert not (tmp_path / "few" / "scaling.json").exists()
    code, _, err = _cli(capsys, "--study", "nope", "--results-dir", str(tmp_path))
    assert code == 2 and "does not exist" in err


def test_the_default_base_is_the_cheapest_paper_network_the_space_holds():
    space = load_space("mobilenetv2")
    assert resolve_base(None, space, num_classes=10, in_channels=3).to_string().startswith("mnv2_w0.35_r96_")
    assert resolve_base(None, SPACE, num_classes=4, in_channels=1) == BASE  # no paper net in tiny: its cheapest


def test_past_the_knee_the_recommendation_names_the_cheapest_net_on_the_plateau():
    import numpy as np

    from mobilenet_search.results.scaling_fit import Curve, Point, fit_direction, plateau_summary
    from mobilenet_search.search.scaling import recommend

    truth = Curve(0.9, 0.1, 3.0, 124416)  # within 0.02 of its plateau from 5^(1/3) = 1.7x the base: 213K MAdds
    rng = np.random.default_rng(0)
    points = [Point(m, rng.random((2, 3000)) < truth.predict(m)) for m in (124416, 279616, 496896)]
    fit = fit_direction(points, 124416, floor=0.25, noise=0.02, resamples=30)
    analysis = {"base": {"arch": BASE.to_string(), "madds": 124416}, "coefficients": {"fitted": None},
                "directions": {"resolution": {"fit": fit}}, "plateau": plateau_summary({"resolution": fit}, 0.02)}
    knee = analysis["plateau"]["knee"]
    assert 124416 < knee < 279616
    answer = recommend(analysis, 490e3, SPACE, admits=lambda spec: count_madds(spec) < 491e3)
    assert answer["madds"] == 279616 and answer["direction"] == "resolution"  # r64 (496.9K) is over 490K
    cheapest = answer["plateau"]["cheapest"]
    assert cheapest["past_knee"] and cheapest["madds"] == 279616  # r48: the first member at or past the knee
    assert recommend(analysis, 0.9 * knee, SPACE, admits=lambda spec: count_madds(spec) < knee)["plateau"] is None


def test_resuming_with_another_base_is_refused(study_dir):
    from mobilenet_search.errors import UserError

    other = SPACE.nearest(BASE.replace(resolution=48))
    grid = Grid(other, SPACE, madds_limit("600K-madds", "--budget"), 2)
    with pytest.raises(UserError, match="was made with other scaling settings \\(base="):
        run_scaling(_config(), grid, storage=f"sqlite:///{study_dir / 's.db'}", study_name="s", results_dir=study_dir)
    assert len(_load(study_dir, "s").trials) == planned_trials(_load(study_dir, "s").user_attrs[SCALING_ATTR])

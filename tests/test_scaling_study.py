"""The scaling experiment as an ordinary study, its analysis and the CLI (search/scaling.py, ui/cli_scaling.py)."""

import json

import optuna
import pytest
from conftest import interrupt_on_call

from mobilenet_search.arch.cost import count_madds, count_params
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
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
    assert answer["arch"] in out and answer["reach"] is None and "reaches no further" not in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "600K-madds", "--base", "mobilenet_v2_0.35_96"], "invalid --base 'mobilenet_v2_0.35_96': not a "
                                                                    "member of space 'tiny'"),
    (["--budget", "100K-madds", "--base", BASE.to_string()], "invalid --budget 100K-madds: below the base"),
    (["--budget", "5ms-latency"], "scaling needs a MAdds limit"),
    (["--budget", "600K-madds", "--at", "700K-madds"], "invalid --at 700K-madds: above --budget"),
    (["--budget", "600K-madds", "--strategy", "supernet", "--seeds", "2"], "invalid --seeds 2 with --strategy "
                                                                            "supernet"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, argv, message):
    code, _, err = _cli(capsys, *argv, *FAST, "--results-dir", str(tmp_path), "--study", "bad")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.glob("*.db")) and not (tmp_path / "bad").exists()


def test_at_above_the_studys_budget_is_refused_with_nothing_written(study_dir, capsys):
    written = study_dir / "s" / "scaling.json"
    before = written.read_text() if written.exists() else None
    code, _, err = _cli(capsys, "--study", "s", "--results-dir", str(study_dir), "--at", "610K-madds")
    assert code == 2 and err.count("\n") == 1, err
    assert "above the study's --budget 600K-madds (its nets reach 496.9K MAdds)" in err, err
    assert (written.read_text() if written.exists() else None) == before


def test_at_past_the_largest_net_the_space_reaches_gets_the_best_measured_net(study_dir, capsys):
    # the study's budget is 600K, but no direction of the space reaches past 496.9K MAdds
    code, out, _ = _cli(capsys, "--study", "s", "--results-dir", str(study_dir), "--at", "580K-madds")
    assert code == 0 and "the space reaches no further than 496.9K MAdds along the fitted directions" in out, out
    answer = json.loads((study_dir / "s" / "scaling.json").read_text())["recommendation"]
    assert answer["reach"] == answer["madds"] == 496_896 and answer["at_madds"] == 580_000
    assert answer["interval"][0] <= answer["accuracy"] <= answer["interval"][1]


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
    analysis = {"base": {"arch": BASE.to_string(), "madds": 124416}, "budget": "600K-madds",
                "coefficients": {"fitted": None}, "directions": {"resolution": {"fit": fit}},
                "plateau": plateau_summary({"resolution": fit}, 0.02)}
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


# -- export --scaled: the recommended net into the model library ---------------------------------------------


def _export(capsys, *argv):
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_scaled_puts_the_recommended_net_and_what_measured_it_in_the_library(study_dir, tmp_path, capsys):
    from mobilenet_search.results import library
    from mobilenet_search.search.scaling import recommend_at

    expected = recommend_at(analyse(_load(study_dir, "s"), resamples=20), "400K-madds", SPACE)
    code, out, err = _export(capsys, "--study", "s", "--results-dir", str(study_dir), "--scaled", "400K-madds",
                             "--name", "scaled", "--library", str(tmp_path))
    assert code == 0, err
    entry = library.get("scaled", library=tmp_path)
    assert entry.spec.to_string() == expected["arch"] and "recommended for 400.0K MAdds" in out
    scaled = entry.metadata["scaled"]
    # The point fit does not depend on the bootstrap: the same prediction as `scaling --study s --at 400K-madds`.
    assert scaled["predicted_accuracy"] == pytest.approx(expected["accuracy"])
    assert scaled["interval"][0] <= scaled["predicted_accuracy"] <= scaled["interval"][1]
    assert scaled["direction"] == expected["direction"] and scaled["multipliers"] == expected["multipliers"]
    # The study trained exactly this network (two seeds) without keeping weights: their trial, no weights file.
    trials = [t for t in _load(study_dir, "s").trials if t.user_attrs["arch"] == expected["arch"]]
    assert scaled["measured"]["trials"] == [t.number for t in trials] and len(trials) == 2
    assert entry.metadata["source"]["trial"] == trials[0].number and not entry.has_weights
    assert entry.metadata["metrics"]["accuracy"] == trials[0].user_attrs["accuracy"]
    assert scaled["weights"].startswith("not included: the study trained this network without keeping its weights")
    assert main(["library", "show", "scaled", "--library", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "scaled for 400K-madds: " + expected["direction"] in shown and "weights not included" in shown
    assert f"predicted accuracy {scaled['predicted_accuracy']:.4f} [" in shown


def test_export_scaled_of_a_net_the_study_did_not_train_says_its_accuracy_is_predicted(tmp_path):
    from synthetic import create_synthetic_scaling_study

    from mobilenet_search.results import library
    from mobilenet_search.search.export import export_scaled

    storage = f"sqlite:///{tmp_path / 'synthetic.db'}"
    study = create_synthetic_scaling_study(storage, "syn")
    done = export_scaled("syn", storage=storage, name="syn30", at="30M-madds", library=tmp_path / "lib",
                         results_dir=tmp_path, resamples=20)
    trained = {t.user_attrs["arch"] for t in study.trials}
    assert done.recommendation["arch"] not in trained and done.trial is None and done.weights is None
    entry = library.get("syn30", library=tmp_path / "lib")
    assert entry.metadata["source"]["trial"] is None and entry.metadata["scaled"]["measured"] is None
    assert "not trained in the study: the accuracy is the fit's prediction" in entry.metadata["source"]["picked"]
    assert entry.metadata["scaled"]["weights"].startswith("not included: the study did not train this network")
    assert entry.metadata["metrics"] == {"madds": count_madds(entry.spec), "params": count_params(entry.spec)}
    assert count_madds(entry.spec) == done.recommendation["madds"] < 30e6
    with pytest.raises(UserError, match="invalid --scaled 500.0M MAdds: above the study's --budget"):
        export_scaled("syn", storage=storage, name="above", at="500M-madds", library=tmp_path / "lib",
                      results_dir=tmp_path, resamples=20)
    assert not (tmp_path / "lib" / "above.json").exists()


@pytest.fixture(scope="module")
def plain_study(study_dir):
    """A search study (not a scaling study) beside the scaling study: study_dir/plain.db."""
    from synthetic import create_synthetic_study

    create_synthetic_study(f"sqlite:///{study_dir / 'plain.db'}", "plain", 3, references=False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--study", "plain", "--scaled", "400K-madds"], "study 'plain' is not a scaling study"),
    (["--study", "s", "--scaled", "400K"], "budget item '400K' is malformed"),
    (["--study", "s", "--scaled", "5ms-latency"], "invalid --scaled '5ms-latency': scaling needs a MAdds limit"),
    (["--study", "s", "--scaled", "400K-madds", "--under", "300K-madds"], "--under applies to --best only"),
])
def test_bad_export_scaled_input_is_one_line_and_exit_2_with_nothing_written(study_dir, plain_study, tmp_path,
                                                                              capsys, argv, message):
    code, _, err = _export(capsys, *argv, "--results-dir", str(study_dir), "--name", "bad", "--library",
                           str(tmp_path / "lib"))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "lib").exists()


# -- --strategy supernet: the points scored with inherited weights, a few confirmed from scratch ---------------


def test_supernet_strategy_scores_the_points_with_inherited_weights_and_confirms_a_few(tmp_path, capsys):
    from mobilenet_search.results import library
    from mobilenet_search.results.records import is_confirmation
    from mobilenet_search.search.export import export_scaled

    code, out, err = _cli(capsys, "--budget", "600K-madds", *FAST, "--strategy", "supernet", "--supernet-epochs", "1",
                          "--confirm", "1", "--results-dir", str(tmp_path), "--study", "sup", "--at", "400K-madds")
    assert code == 0, err
    study = _load(tmp_path, "sup")
    confirmations = [t for t in study.trials if is_confirmation(t)]
    points = [t for t in study.trials if not is_confirmation(t)]
    assert points and all(t.user_attrs["strategy"] == "supernet" for t in points)
    assert len(points) == planned_trials(study.user_attrs[SCALING_ATTR])
    assert 1 <= len(confirmations) <= 2 and all(t.user_attrs["strategy"] == "scratch" for t in confirmations)
    saved = json.loads((tmp_path / "sup" / "scaling.json").read_text())
    assert saved["strategy"] == "supernet"
    confirmed = {c["confirmation"]: c for c in saved["confirmations"]}
    assert sorted(confirmed) == sorted(t.number for t in confirmations)
    for trial in confirmations:  # each confirmation beside the inherited score of the point it retrains
        point = study.trials[trial.user_attrs["confirms"]]
        assert confirmed[trial.number]["scratch"] == trial.user_attrs["accuracy"]
        assert confirmed[trial.number]["inherited"] == point.user_attrs["accuracy"]
    # The fit uses the inherited scores only: a confirmation is not another seed of its point.
    fits = [d["fit"] for d in saved["directions"].values() if d["fit"] is not None]
    assert fits and all(p["seeds"] == 1 for fit in fits for p in fit["points"])
    assert "confirmed from scratch (inherited -> scratch)" in out

    # The recommended net was scored with inherited weights: they go into the library with it.
    done = export_scaled("sup", storage=f"sqlite:///{tmp_path / 'sup.db'}", name="sup400", at="400K-madds",
                         library=tmp_path / "lib", results_dir=tmp_path, resamples=20)
    entry = library.get("sup400", library=tmp_path / "lib")
    assert entry.has_weights and entry.metadata["weights_source"] in ("inherited", "confirmed")
    assert entry.metadata["scaled"]["weights"].startswith("included: ")
    assert done.trial.user_attrs["arch"] == done.recommendation["arch"]

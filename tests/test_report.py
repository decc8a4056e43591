"""Reference networks in every study, search gain, hypervolume and their uncertainty (references.py, report.py,
study.py; the per-image records of records.py and the interval columns of frame.py)."""

import base64
import json

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats
import yaml

from mobilenet_search.measure.train import TrainConfig, TrainResult
from mobilenet_search.results.frame import (
    FRAME_COLUMNS,
    INTERVAL_COLUMNS,
    INTERVAL_SEED,
    interval_attrs,
    trials_frame,
    write_results,
)
from mobilenet_search.results.records import VAL_LABELS_ATTR, pack_correct, pack_labels, unpack_correct, unpack_labels
from mobilenet_search.results.report import format_gain, hypervolume, search_gain, write_report
from mobilenet_search.results.stats import bootstrap_balanced_accuracy_interval, compare
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.study import run_search
from mobilenet_search.ui.cli import main

# A slice of MobileNetV2's space that holds the paper's 0.35 and 0.5 nets at 96 and 128 px.
SPACE = {
    "family": "mobilenet_v2", "width_mult": [0.35, 0.5], "resolution": [96, 128],
    "stages": [{"expansion": 1, "channels": 16, "repeats": 1, "stride": 1},
               {"expansion": [4, 6], "channels": 24, "repeats": 2, "stride": 2},
               {"expansion": 6, "channels": 32, "repeats": 3, "stride": 2},
               {"expansion": 6, "channels": 64, "repeats": 4, "stride": 2},
               {"expansion": 6, "channels": 96, "repeats": 3, "stride": 1},
               {"expansion": 6, "channels": 160, "repeats": 3, "stride": 2},
               {"expansion": 6, "channels": 320, "repeats": 1, "stride": 1}],
}


def _known_accuracy(model, data, config, on_epoch=None):
    """Training replaced by a known accuracy (more MAdds, more accuracy): the logic under test is the study's."""
    from mobilenet_search import count_madds

    accuracy = min(0.99, count_madds(model.spec) / 1e8)
    return TrainResult(accuracy, accuracy, (accuracy,), 0.01, 0.01, 1000.0)


def _run(tmp_path, references="default", trials=2, budget="60M-madds"):
    space = tmp_path / "slice.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    config = SearchConfig(budget=budget, space=str(space), dataset="synthetic:64", epochs=1, proxy_size=32,
                          references=references, sampler="random", noise_repeats=0)
    return run_search(config, storage=f"sqlite:///{tmp_path / 'r.db'}", study_name="r", trials=trials,
                      results_dir=tmp_path, accuracy=ScratchTraining(TrainConfig(epochs=1), train=_known_accuracy))


def test_reference_nets_are_enqueued_once_marked_and_extra_to_trials(tmp_path):
    study = _run(tmp_path, references="all")
    refs = [t for t in study.trials if t.user_attrs.get("reference")]
    # 0.35/96, 0.35/128, 0.5/96, 0.5/128 all fit 60M MAdds (the largest is 0.5/128 at ~33M).
    assert sorted(t.user_attrs["reference_name"] for t in refs) == [
        "mobilenet_v2_0.35_128", "mobilenet_v2_0.35_96", "mobilenet_v2_0.5_128", "mobilenet_v2_0.5_96"]
    assert [t.number for t in refs] == [0, 1, 2, 3]  # enqueued first, trained first
    assert all(t.params["stage2.expansion"] == 6 for t in refs)
    searched = [t for t in study.trials if not t.user_attrs.get("reference") and t.user_attrs["outcome"] == "trained"]
    assert len(searched) == 2
    resumed = _run(tmp_path, references="all", trials=3)
    assert sum(bool(t.user_attrs.get("reference")) for t in resumed.trials) == 4  # not enqueued again
    assert sum(not t.user_attrs.get("reference") for t in resumed.trials if t.user_attrs["outcome"] == "trained") == 3


def test_references_respect_the_budget_and_the_option(tmp_path):
    study = _run(tmp_path, references="all", budget="25M-madds")  # 0.5/128 (~33M) does not fit; the others do
    names = {t.user_attrs.get("reference_name") for t in study.trials} - {None}
    assert names == {"mobilenet_v2_0.35_96", "mobilenet_v2_0.35_128", "mobilenet_v2_0.5_96"}
    (tmp_path / "default").mkdir()
    default = _run(tmp_path / "default")  # four fit 60M: the default takes two, the cheapest and the dearest
    names = [t.user_attrs["reference_name"] for t in default.trials if t.user_attrs.get("reference")]
    assert sorted(names) == ["mobilenet_v2_0.35_96", "mobilenet_v2_0.5_128"]
    (tmp_path / "none").mkdir()
    none = _run(tmp_path / "none", references="none")
    assert not any(t.user_attrs.get("reference") for t in none.trials)


def test_report_json_and_command(tmp_path, capsys):
    _run(tmp_path)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {row["reference_name"] for row in report["references"]} >= {"mobilenet_v2_0.35_96"}
    assert main(["report", "--study", "r", "--results-dir", str(tmp_path)]) == 0
    assert "search gain" in capsys.readouterr().out
    assert main(["report", "--study", "missing", "--results-dir", str(tmp_path),
                 "--storage", f"sqlite:///{tmp_path / 'r.db'}"]) == 2


def test_hypervolume_of_a_hand_made_front():
    import pandas as pd

    # Losses (-accuracy, madds/100): (-0.5, 0.2) and (-0.8, 0.6) against (0, 1):
    # 0.5 * (1 - 0.2) + (0.8 - 0.5) * (1 - 0.6) = 0.4 + 0.12 = 0.52
    frame = pd.DataFrame({"accuracy": [0.5, 0.8, 0.4, 0.9], "madds": [20, 60, 50, 100]})
    assert hypervolume(frame, 100) == pytest.approx(0.52)  # (0.4, 50) is dominated; (0.9, 100) is at the bound
    assert hypervolume(frame.iloc[:0], 100) == 0


def _trial(number_accuracy_madds, reference=None):
    accuracy, madds = number_accuracy_madds
    attrs = {"accuracy": accuracy, "madds": madds, "outcome": "trained", "arch": "x", "params": 1}
    if reference:
        attrs.update(reference=True, reference_name=reference)
    return optuna.trial.create_trial(values=[accuracy, madds], user_attrs=attrs)


def test_search_gain_on_a_hand_made_study():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("mobilenet_search.config", {"budget": "99-madds"})  # bound: below 100
    for trial in [_trial((0.5, 30), "ref_a"), _trial((0.7, 60), "ref_b"), _trial((0.6, 25)), _trial((0.65, 55)),
                  _trial((0.9, 120))]:
        study.add_trial(trial)
    gain = search_gain(study)
    rows = {row["reference_name"]: row for row in gain["references"]}
    assert rows["ref_a"]["best_searched_trial"] == 2 and rows["ref_a"]["accuracy_gain"] == pytest.approx(0.1)
    assert rows["ref_b"]["best_searched_trial"] == 3 and rows["ref_b"]["accuracy_gain"] == pytest.approx(-0.05)
    assert gain["hypervolume"]["reference_point"]["madds"] == 100
    # searched front: (0.6, 25), (0.65, 55) -> 0.6*0.75 + 0.05*0.45; reference front: 0.5*0.7 + 0.2*0.4
    assert gain["hypervolume"]["searched"] == pytest.approx(0.6 * 0.75 + 0.05 * 0.45)
    assert gain["hypervolume"]["reference"] == pytest.approx(0.5 * 0.7 + 0.2 * 0.4)
    assert trials_frame(study)["reference"].fillna(False).sum() == 2


# -- uncertainty: per-image correctness, paired verdicts, intervals (stats.py, report.py, frame.py) ----------------

VAL_SIZE = 525  # the embedded data's validation split


def test_val_correct_of_525_images_is_66_bytes_and_88_characters():
    rng = np.random.default_rng(0)
    correct = rng.random(VAL_SIZE) < 0.75
    text = pack_correct(correct)
    assert len(base64.b64decode(text)) == 66 and len(text) == 88 and text.isascii()
    assert np.array_equal(unpack_correct(text, VAL_SIZE), correct)
    assert unpack_correct(pack_correct([True] + [False] * 7 + [True]), 9).tolist() == [True] + [False] * 7 + [True]
    with pytest.raises(ValueError):
        unpack_correct(text, 600)  # 75 bytes needed
    labels = rng.integers(0, 10, VAL_SIZE)
    assert np.array_equal(unpack_labels(pack_labels(labels)), labels)
    with pytest.raises(ValueError):
        pack_labels([0, 300])


def _rerun(correct, lost, gained, rng):
    """Another run of the same network: ``lost`` right images now wrong, ``gained`` wrong ones now right."""
    out = correct.copy()
    out[rng.choice(np.flatnonzero(correct), lost, replace=False)] = False
    out[rng.choice(np.flatnonzero(~correct), gained, replace=False)] = True
    return out


def _correct(study, number):
    return unpack_correct(study.trials[number].user_attrs["val_correct"], VAL_SIZE)


def _scored(correct, madds, reference=None, noise_seed=None, labels=None):
    """A trained trial as the search records it: accuracy, the packed per-image record and its intervals."""
    attrs = {"accuracy": float(correct.mean()), "madds": madds, "outcome": "trained", "arch": "x", "params": 1,
             "val_correct": pack_correct(correct), "val_size": len(correct), **interval_attrs(correct, labels)}
    if reference:
        attrs.update(reference=True, reference_name=reference)
    if noise_seed is not None:
        attrs["noise_seed"] = noise_seed
    return optuna.trial.create_trial(values=[attrs["accuracy"], madds], user_attrs=attrs)


@pytest.fixture
def paired_study():
    """Two reference nets (one retrained with two more seeds) and three searched candidates, on 525 images.

    ref_small (30 MAdds, ~0.70); a searched net at 12 MAdds that is ref_small rerun (no worse, 2.5x cheaper);
    ref_big (60 MAdds, ~0.75) and its noise repeats; a searched net at 50 MAdds right on ~90 % (better);
    a searched net at 5 MAdds at chance (worse than both).
    """
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, VAL_SIZE)
    small = rng.random(VAL_SIZE) < 0.70
    big = rng.random(VAL_SIZE) < 0.75
    good = rng.random(VAL_SIZE) < 0.90
    chance = rng.random(VAL_SIZE) < 0.5
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("mobilenet_search.config", {"budget": "99-madds"})
    study.set_user_attr(VAL_LABELS_ATTR, pack_labels(labels))
    for trial in [_scored(small, 30, "ref_small", labels=labels), _scored(big, 60, "ref_big", labels=labels),
                  _scored(_rerun(big, 10, 5, rng), 60, "ref_big", noise_seed=1, labels=labels),
                  _scored(_rerun(big, 3, 9, rng), 60, "ref_big", noise_seed=2, labels=labels),
                  _scored(_rerun(small, 5, 5, rng), 12, labels=labels), _scored(good, 50, labels=labels),
                  _scored(chance, 5, labels=labels)]:
        study.add_trial(trial)
    return study, labels


def test_report_verdicts_intervals_and_noise_floor_of_a_paired_study(paired_study, tmp_path):
    study, _ = paired_study
    gain = search_gain(study)
    assert gain["trained"] == {"searched": 3, "reference": 2, "noise_repeats": 2, "inherited": 0}
    rows = {row["reference_name"]: row for row in gain["references"]}
    assert set(rows) == {"ref_small", "ref_big"}  # the noise repeats are no reference of their own

    big = rows["ref_big"]
    assert big["best_searched_trial"] == 5 and big["verdict"] == "better" and big["p_value"] < 1e-6
    assert big["margin"] == pytest.approx(big["accuracy_gain"])
    assert big["searched_only_correct"] - big["reference_only_correct"] == round(big["margin"] * VAL_SIZE)
    # Trial 6 (5 MAdds, at chance) is worse. Trial 4 (12 MAdds, ~0.72 vs ~0.77) escapes a "worse" verdict
    # (p ~ 0.07) but is more than a noise floor less accurate: not "the same accuracy". Trial 5 is the cheapest.
    assert compare(_correct(study, 4), _correct(study, 1), seed_sd=gain["noise"]["seed_sd"]).verdict != "worse"
    assert big["cheapest_no_worse_trial"] == 5 and big["madds_ratio"] == pytest.approx(60 / 50)
    small = rows["ref_small"]
    assert small["best_searched_trial"] == 4 and small["verdict"] == "indistinguishable" and small["p_value"] > 0.5
    assert small["cheapest_no_worse_trial"] == 4 and small["cheapest_no_worse_verdict"] == "indistinguishable"
    assert small["madds_ratio"] == pytest.approx(2.5)
    low, high = small["accuracy_interval"]
    assert low < small["accuracy"] < high and (low, high) == pytest.approx(
        scipy.stats.binomtest(round(small["accuracy"] * VAL_SIZE), VAL_SIZE).proportion_ci(method="wilson"))

    noise = gain["noise"]
    repeats = noise["seed_runs"]["ref_big"]
    assert len(repeats) == 3 and noise["seed_sd"] == pytest.approx(np.std(repeats, ddof=1))
    assert noise["val_size"] == VAL_SIZE and noise["validation_se"] == pytest.approx(
        np.sqrt(noise["at_accuracy"] * (1 - noise["at_accuracy"]) / VAL_SIZE))
    assert noise["floor"] == max(noise["seed_sd"], noise["validation_se"])
    assert noise["validation_half_width"] == pytest.approx(1.96 * noise["validation_se"], rel=0.02)

    hv = gain["hypervolume"]
    assert hv["difference"] == pytest.approx(hv["searched"] - hv["reference"]) and hv["difference"] > 0
    for key in ("searched", "reference", "difference"):
        low, high = hv[f"{key}_interval"]
        assert low < hv[key] < high
    assert hv["difference_interval"][0] > 0
    assert gain["gain"] == "more_accurate" and "trial 5" in gain["verdict"] and "ref_big" in gain["verdict"]
    assert search_gain(study) == gain  # seeded: the same report run after run

    text = format_gain(gain)
    assert "paired test: better" in text and "2.5x fewer MAdds" in text and "noise floor" in text
    assert "verdict: The search beat hand scaling" in text
    report = write_report(study, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == report["verdict"] == gain["verdict"]


def test_same_accuracy_at_fewer_madds_without_noise_repeats(paired_study):
    study, _ = paired_study
    big = _correct(study, 1)
    smaller = optuna.create_study(directions=["maximize", "minimize"])
    smaller.set_user_attr("mobilenet_search.config", {"budget": "99-madds"})
    for trial in [t for t in study.trials if t.number not in (2, 3, 5)]:  # no noise repeats, no better net
        smaller.add_trial(trial)
    smaller.add_trial(_scored(_rerun(big, 4, 4, np.random.default_rng(3)), 24))  # ref_big rerun, 2.5x cheaper
    gain = search_gain(smaller)
    rows = {row["reference_name"]: row for row in gain["references"]}
    assert rows["ref_big"]["best_searched_madds"] == 24 and rows["ref_big"]["verdict"] == "indistinguishable"
    assert gain["noise"]["seed_sd"] is None and gain["noise"]["floor"] == gain["noise"]["validation_se"]
    assert gain["gain"] == "fewer_madds" and "seed noise not measured" in gain["verdict"]
    best = max(gain["references"], key=lambda row: row["madds_ratio"])
    assert f"{best['madds_ratio']:.1f}x fewer MAdds" in gain["verdict"]
    # A trial recorded without the validation labels has an accuracy interval but no balanced-accuracy one.
    last = trials_frame(smaller).iloc[-1]
    assert pd.notna(last["accuracy_low"]) and pd.isna(last["balanced_accuracy_low"])


def test_recorded_intervals_match_scipy_and_no_packed_bits_in_the_csv(paired_study, tmp_path):
    study, labels = paired_study
    frame = trials_frame(study)
    assert list(frame.columns) == list(FRAME_COLUMNS) and "val_correct" not in frame
    assert frame["val_size"].eq(VAL_SIZE).all() and frame["noise_seed"].notna().sum() == 2
    for trial, row in zip(study.trials, frame.itertuples(), strict=True):
        correct = unpack_correct(trial.user_attrs["val_correct"], VAL_SIZE)
        ci = scipy.stats.binomtest(int(correct.sum()), VAL_SIZE).proportion_ci(method="wilson")
        assert (row.accuracy_low, row.accuracy_high) == pytest.approx((ci.low, ci.high))
        balanced = np.mean([correct[labels == k].mean() for k in (0, 1)])
        assert row.balanced_accuracy_low < balanced < row.balanced_accuracy_high
        assert (row.balanced_accuracy_low, row.balanced_accuracy_high) == pytest.approx(
            bootstrap_balanced_accuracy_interval(correct, labels, seed=INTERVAL_SEED))
    write_results(study, tmp_path)
    csv = (tmp_path / "trials.csv").read_text()
    assert "val_correct" not in csv and study.trials[0].user_attrs["val_correct"] not in csv
    assert "accuracy_low" in csv.splitlines()[0]


def test_old_studies_without_val_correct_report_as_before_with_the_new_fields_none():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("mobilenet_search.config", {"budget": "99-madds"})
    for trial in [_trial((0.5, 30), "ref_a"), _trial((0.6, 25)), _trial((0.65, 55))]:
        study.add_trial(trial)
    gain = search_gain(study)
    row = gain["references"][0]
    assert row["best_searched_trial"] == 1 and row["accuracy_gain"] == pytest.approx(0.1)
    for key in ("accuracy_interval", "best_searched_accuracy_interval", "verdict", "p_value", "margin",
                "cheapest_no_worse_trial", "madds_ratio"):
        assert row[key] is None, key
    assert gain["hypervolume"]["searched_interval"] is None and gain["hypervolume"]["difference_interval"] is None
    assert gain["noise"]["floor"] is None and gain["noise"]["seed_sd"] is None
    assert gain["gain"] is None and gain["verdict"] is None
    frame = trials_frame(study)
    assert frame[list(INTERVAL_COLUMNS)].isna().all().all()
    assert "verdict" not in format_gain(gain) and "paired test" not in format_gain(gain)


def test_a_search_with_nothing_as_cheap_as_the_references_says_so():
    rng = np.random.default_rng(5)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for trial in [_scored(rng.random(VAL_SIZE) < 0.7, 30, "ref"), _scored(rng.random(VAL_SIZE) < 0.9, 40)]:
        study.add_trial(trial)
    gain = search_gain(study)
    assert gain["references"][0]["verdict"] is None and gain["references"][0]["cheapest_no_worse_trial"] is None
    assert gain["gain"] == "none" and "nothing to compare" in gain["verdict"]
    assert gain["hypervolume"]["reference_point"]["madds"] == pytest.approx(44)
    empty = search_gain(optuna.create_study(directions=["maximize", "minimize"]))
    assert empty["hypervolume"]["reference_point"]["madds"] == 1 and empty["verdict"] is None

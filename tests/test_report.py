"""Reference networks in every study, search gain and hypervolume (references.py, report.py, study.py)."""

import json

import optuna
import pytest
import yaml

from mobilenet_search.measure.train import TrainConfig, TrainResult
from mobilenet_search.results.frame import trials_frame
from mobilenet_search.results.report import hypervolume, search_gain
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
                          references=references, sampler="random")
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
    study = _run(tmp_path, budget="25M-madds")  # 0.5/128 (~33M) does not fit; the other three do
    names = {t.user_attrs.get("reference_name") for t in study.trials} - {None}
    assert names == {"mobilenet_v2_0.35_96", "mobilenet_v2_0.35_128", "mobilenet_v2_0.5_96"}
    (tmp_path / "default").mkdir()
    default = _run(tmp_path / "default")  # four fit 60M: the default takes three, cheapest and dearest included
    names = [t.user_attrs["reference_name"] for t in default.trials if t.user_attrs.get("reference")]
    assert len(names) == 3 and {"mobilenet_v2_0.35_96", "mobilenet_v2_0.5_128"} <= set(names)
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

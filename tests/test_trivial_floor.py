"""Every gain starts at the trivial classifier, and is reported on a split that played no part in picking it
(records.trivial_accuracy / learned_nothing, report.search_gain with a test split, stats' balanced bootstrap)."""

import math

import numpy as np
import optuna
import pytest

from mobilenet_search.results.frame import interval_attrs, trials_frame
from mobilenet_search.results.records import (
    TEST_LABELS_ATTR,
    VAL_LABELS_ATTR,
    learned_nothing,
    pack_correct,
    pack_labels,
    trivial_accuracy,
    trivial_quality,
)
from mobilenet_search.results.report import format_gain, hypervolume, search_gain
from mobilenet_search.results.stats import balanced_accuracy, bootstrap_hypervolume_interval

SIZE = 600  # validation and test images each
MAJORITY = 0.7  # share of class 0, as the embedded data's "functional" (0.688)


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed term by term: an independent check of scipy's binomtest."""
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_learned_nothing_is_a_one_sided_binomial_test_at_5_percent():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(20, 400))
        trivial = float(rng.uniform(0.1, 0.95))
        k = int(rng.integers(0, n + 1))
        assert learned_nothing(k, n, trivial) == (_binomial_tail(k, n, trivial) >= 0.05), (k, n, trivial)
    # The embedded data's figures: 0.703 on 525 images is not beyond 0.688; 0.754 is.
    assert learned_nothing(round(0.703 * 525), 525, 0.688) and not learned_nothing(round(0.754 * 525), 525, 0.688)
    assert learned_nothing(10, 10, 1.0)  # nothing beats a trivial classifier that is always right


def test_trivial_scores():
    labels = np.array([0] * 7 + [1] * 2 + [2])
    assert trivial_accuracy(labels) == pytest.approx(0.7)
    assert trivial_quality("accuracy", labels) == pytest.approx(0.7)
    assert trivial_quality("test_accuracy", labels) == pytest.approx(0.7)
    assert trivial_quality("balanced_accuracy", labels) == pytest.approx(1 / 3)
    # Whatever class a constant classifier answers, its balanced accuracy is exactly 1 / classes.
    for answer in range(3):
        assert balanced_accuracy(labels == answer, labels) == pytest.approx(1 / 3)
    assert trivial_accuracy([]) is None


def test_hypervolume_starts_at_the_floor():
    import pandas as pd

    frame = pd.DataFrame({"accuracy": [0.6, 0.8], "madds": [20, 60]})
    # Above 0.7 only the 0.8 net counts: 0.1 x (1 - 0.6).
    assert hypervolume(frame, 100, floor=0.7) == pytest.approx(0.04)
    assert hypervolume(frame, 100) == pytest.approx(0.6 * 0.8 + 0.2 * 0.4)  # the old reference point, accuracy 0
    assert hypervolume(frame.iloc[:1], 100, floor=0.7) == 0  # below the floor: no area at all


def _labels(rng):
    labels = (rng.random(SIZE) >= MAJORITY).astype(int)  # class 0 ~70 %
    return labels


def _net(labels, rng, skill):
    """A net's per-image correctness: right on each image with probability ``skill`` (and always right on the
    majority class when ``skill`` is None: the constant classifier)."""
    if skill is None:
        return labels == 0
    return rng.random(len(labels)) < skill


def _trial(val, test, madds, *, reference=None, val_labels=None):
    attrs = {"accuracy": float(val.mean()), "madds": madds, "outcome": "trained", "arch": "x", "params": 1,
             "val_correct": pack_correct(val), "val_size": len(val), "test_correct": pack_correct(test),
             "test_size": len(test), "test_accuracy": float(test.mean()), **interval_attrs(val, val_labels)}
    if reference:
        attrs.update(reference=True, reference_name=reference)
    return optuna.trial.create_trial(values=[attrs["accuracy"], madds], user_attrs=attrs)


def _study(val_labels, test_labels, trials, metric="accuracy"):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("mobilenet_search.config", {"budget": "99-madds", "metric": metric})
    study.set_user_attr(VAL_LABELS_ATTR, pack_labels(val_labels))
    study.set_user_attr(TEST_LABELS_ATTR, pack_labels(test_labels))
    for trial in trials:
        study.add_trial(trial)
    return study


def test_majority_class_searched_nets_cannot_beat_references_that_learned():
    rng = np.random.default_rng(1)
    val_labels, test_labels = _labels(rng), _labels(rng)
    trials = [_trial(_net(val_labels, rng, 0.80), _net(test_labels, rng, 0.80), 30, reference="ref_small"),
              _trial(_net(val_labels, rng, 0.84), _net(test_labels, rng, 0.84), 90, reference="ref_big")]
    trials += [_trial(_net(val_labels, rng, None), _net(test_labels, rng, None), madds) for madds in (3, 5, 8)]
    gain = search_gain(_study(val_labels, test_labels, trials))
    assert gain["hypervolume"]["searched"] == 0  # majority-class nets fill no area above the floor
    assert gain["hypervolume"]["reference"] > 0.05
    assert gain["hypervolume"]["difference_interval"][1] < 0
    assert gain["trivial"]["learned_nothing"] == {"searched": 3, "reference": 0}
    assert gain["gain"] == "none" and "did not beat hand scaling" in gain["verdict"]
    assert gain["next"].startswith("Every searched net learned nothing") and "next: Every" in format_gain(gain)


def test_the_next_step_names_a_plateau_and_too_few_candidates():
    rng = np.random.default_rng(6)
    val_labels, test_labels = _labels(rng), _labels(rng)
    refs = [_trial(_net(val_labels, rng, 0.80), _net(test_labels, rng, 0.80), madds, reference=name)
            for madds, name in ((20, "ref_small"), (90, "ref_big"))]
    searched = [_trial(_net(val_labels, rng, 0.78), _net(test_labels, rng, 0.78), 60)]
    gain = search_gain(_study(val_labels, test_labels, refs + searched))
    assert gain["gain"] == "none" and "stopped rising with size" in gain["next"]  # 20M and 90M within noise
    refs[1] = _trial(_net(val_labels, rng, 0.92), _net(test_labels, rng, 0.92), 90, reference="ref_big")
    gain = search_gain(_study(val_labels, test_labels, refs + searched))
    assert gain["gain"] == "none" and "1 searched candidates are too few" in gain["next"]
    assert "--trials 50" in gain["next"]


def test_the_old_artefact_cheap_majority_nets_against_references_below_the_floor_is_no_gain():
    """bench_strategies' former "HIT": confirmed nets at the majority class, references after 2 epochs below it."""
    rng = np.random.default_rng(2)
    val_labels, test_labels = _labels(rng), _labels(rng)
    below = [_trial(_net(val_labels, rng, 0.62), _net(test_labels, rng, 0.62), madds, reference=name)
             for madds, name in ((10, "ref_small"), (90, "ref_big"))]
    majority = [_trial(_net(val_labels, rng, None), _net(test_labels, rng, None), madds) for madds in (4, 6)]
    study = _study(val_labels, test_labels, below + majority)
    gain = search_gain(study)
    rows = {row["reference_name"]: row for row in gain["references"]}
    # The paired test alone calls the majority-class net better (0.70 vs 0.62); it learned nothing, so it is no gain.
    assert rows["ref_small"]["verdict"] == "better" and rows["ref_small"]["best_searched_learned"] is False
    assert gain["gain"] == "none"
    # From accuracy 0 the searched front looked better: 0.70 over the whole budget against 0.62.
    assert gain["hypervolume"]["searched"] == gain["hypervolume"]["reference"] == 0
    assert "learned nothing" in format_gain(gain)
    frame = trials_frame(study)  # learned_nothing filled in from the stored labels for trials recorded without it
    assert frame["learned_nothing"].tolist() == [True, True, True, True]


def test_figures_are_picked_on_validation_and_reported_on_test():
    """A net lucky on validation (picked there) is reported with its test accuracy, and the verdict follows test."""
    rng = np.random.default_rng(3)
    val_labels, test_labels = _labels(rng), _labels(rng)
    ref = _trial(_net(val_labels, rng, 0.80), _net(test_labels, rng, 0.80), 60, reference="ref")
    lucky = _trial(_net(val_labels, rng, 0.90), _net(test_labels, rng, 0.79), 50)  # best on validation only
    steady = _trial(_net(val_labels, rng, 0.85), _net(test_labels, rng, 0.88), 55)
    study = _study(val_labels, test_labels, [ref, lucky, steady])
    gain = search_gain(study)
    row = gain["references"][0]
    assert gain["split"] == {"picked_on": "validation", "reported_on": "test", "images": SIZE}
    assert row["best_searched_trial"] == 1  # picked on validation
    assert row["best_searched_accuracy"] == pytest.approx(study.trials[1].user_attrs["test_accuracy"])
    assert row["accuracy"] == pytest.approx(study.trials[0].user_attrs["test_accuracy"])
    assert row["verdict"] != "better"  # on the test split it is no better than the reference
    # On validation trial 2 is dominated by trial 1 (dearer, less accurate), so the front is trial 1 alone, scored
    # with its test accuracy: trial 2's better test accuracy must not enter (that would pick on the test split).
    floor = trivial_accuracy(test_labels)
    assert study.trials[2].user_attrs["test_accuracy"] > study.trials[1].user_attrs["test_accuracy"]
    expected = (study.trials[1].user_attrs["test_accuracy"] - floor) * (1 - 50 / 100)
    assert gain["hypervolume"]["searched"] == pytest.approx(expected)
    assert "reported on the test split" in format_gain(gain)


def test_a_study_without_a_test_split_reports_on_validation_and_says_so():
    rng = np.random.default_rng(4)
    val_labels = _labels(rng)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("mobilenet_search.config", {"budget": "99-madds"})
    study.set_user_attr(VAL_LABELS_ATTR, pack_labels(val_labels))
    for trial in [_trial(_net(val_labels, rng, 0.8), _net(val_labels, rng, 0.8), 60, reference="ref"),
                  _trial(_net(val_labels, rng, 0.85), _net(val_labels, rng, 0.85), 50)]:
        study.add_trial(trial)
    gain = search_gain(study)
    assert gain["split"]["reported_on"] == "validation"
    assert gain["references"][0]["best_searched_accuracy"] == pytest.approx(study.trials[1].user_attrs["accuracy"])
    assert "the study has no test split" in format_gain(gain)


def test_balanced_metric_hypervolume_starts_at_one_over_classes_and_its_bootstrap_is_stratified():
    rng = np.random.default_rng(5)
    labels = _labels(rng)
    majority = labels == 0  # balanced accuracy exactly 0.5
    learned = rng.random(SIZE) < 0.8
    intervals = bootstrap_hypervolume_interval(majority[None], [0.1], learned[None], [0.5], seed=0,
                                               reference_point=(0.5, 1.0), labels=labels, resamples=300)
    assert intervals.searched == (0.0, 0.0)  # a constant classifier is at 1/classes in every stratified replicate
    observed = (balanced_accuracy(learned, labels) - 0.5) * 0.5
    assert intervals.reference.low < observed < intervals.reference.high
    trials = []
    for correct, madds, reference in ((learned, 50, "ref"), (majority, 10, None)):
        trial = _trial(correct, correct, madds, reference=reference, val_labels=labels)
        balanced = balanced_accuracy(correct, labels)
        trial.user_attrs.update(balanced_accuracy=balanced, test_balanced_accuracy=balanced)
        trials.append(trial)
    gain = search_gain(_study(labels, labels, trials, metric="balanced"))
    assert gain["hypervolume"]["quality"] == "balanced_accuracy"
    assert gain["hypervolume"]["reference_point"]["balanced_accuracy"] == pytest.approx(0.5)
    assert gain["hypervolume"]["searched"] == 0
    assert gain["hypervolume"]["reference"] == pytest.approx(observed)


def test_a_search_records_test_figures_the_floor_and_ranks_by_the_chosen_metric(tmp_path):
    from mobilenet_search.results.records import study_test_labels, trial_correct
    from mobilenet_search.search.config import SearchConfig
    from mobilenet_search.search.study import run_search

    config = SearchConfig(budget="300M-madds", space="tiny", dataset="synthetic:120", epochs=1, proxy_size=32,
                          references="none", noise_repeats=0, metric="balanced", test_fraction=0.25)
    study = run_search(config, storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s", trials=2,
                       results_dir=tmp_path)
    test_labels = study_test_labels(study)
    assert len(test_labels) == 30 and np.bincount(test_labels).tolist() == [8, 8, 7, 7]
    for trial in study.trials:
        attrs = trial.user_attrs
        test = trial_correct(trial, "test")
        assert len(test) == attrs["test_size"] == 30 and attrs["test_accuracy"] == pytest.approx(test.mean())
        assert attrs["test_balanced_accuracy"] == pytest.approx(balanced_accuracy(test, test_labels))
        assert trial.values[0] == attrs["balanced_accuracy"]  # --metric balanced: what Optuna maximises
        val = trial_correct(trial)
        assert attrs["learned_nothing"] == learned_nothing(int(val.sum()), len(val), 0.25)
    frame = trials_frame(study)
    assert frame["learned_nothing"].notna().all()
    csv = (tmp_path / "s" / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"learned_nothing", "test_accuracy", "test_balanced_accuracy"} <= set(csv) and "test_correct" not in csv
    from mobilenet_search.ui import dashboard as board

    url = f"sqlite:///{tmp_path / 's.db'}"
    fast, slow = board.load_study_data(url, "s"), board.load_study_data(url, "s", fast=False)
    assert fast.source == "sql" and slow.source == "optuna"
    assert fast.trivial == slow.trivial == pytest.approx({"accuracy": 6 / 24, "balanced_accuracy": 0.25})
    gain = search_gain(study)
    assert gain["split"]["reported_on"] == "test" and gain["hypervolume"]["quality"] == "balanced_accuracy"
    assert gain["hypervolume"]["reference_point"]["balanced_accuracy"] == pytest.approx(0.25)


def test_the_frontier_draws_the_trivial_classifier_and_crosses_out_nets_that_learned_nothing():
    import pandas as pd

    from mobilenet_search.ui.figures import LEARNED_NOTHING, frontier_figure

    frame = pd.DataFrame({"number": [0, 1, 2], "state": "COMPLETE", "feasible": True, "arch": "x",
                          "accuracy": [0.69, 0.72, 0.80], "madds": [5e6, 2e7, 9e7], "latency_ms": 1.0,
                          "learned_nothing": [True, True, False], "reference": False})
    figure = frontier_figure(frame, trivial=0.688)
    crossed = next(trace for trace in figure.data if trace.name == LEARNED_NOTHING)
    assert list(crossed.x) == [5e6, 2e7]
    assert [shape.y0 for shape in figure.layout.shapes] == [0.688]
    assert any("trivial classifier 0.688" in note.text for note in figure.layout.annotations)
    plain = frontier_figure(frame.assign(learned_nothing=False))
    assert LEARNED_NOTHING not in {trace.name for trace in plain.data} and not plain.layout.shapes

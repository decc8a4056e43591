"""The evaluation cache by architecture (search/cache.py): a repeat reuses its source's record, is marked, is not
trained, counts towards --trials and is on no front."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState, create_trial

from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.frame import pareto_front, trained, trials_frame
from mobilenet_search.results.records import CACHED_FROM_ATTR, TrialRecord
from mobilenet_search.search.cache import OWN_ATTRS, cached_source, copied_attrs
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.coordination import evaluated_count
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.study import run_search
from mobilenet_search.ui.progress import trial_line

CONFIG = SearchConfig(budget="600K-madds", space="tiny", dataset="synthetic:96", epochs=2, lr=0.01, proxy_size=32,
                      batch_size=16, references="none", noise_repeats=0, sampler="random")
# A member of the tiny space well inside the budget.
PARAMS = {"width_mult": 0.25, "resolution": 32, "stage2.expansion": 2, "stage2.channels": 8, "stage2.repeats": 1,
          "stage3.expansion": 2, "stage3.channels": 16}


def _measured(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's record without its own bookkeeping and timings: what a cached trial copies."""
    return {k: v for k, v in trial.user_attrs.items()
            if k not in OWN_ATTRS and k != CACHED_FROM_ATTR and not k.startswith("time_")}


def test_an_architecture_proposed_again_reuses_the_first_record_without_training(tmp_path):
    trainings = []

    def counting(model, *args, **kwargs):
        trainings.append(model.spec.to_string())
        return train_and_evaluate(model, *args, **kwargs)

    def enqueue_twice(study: optuna.Study) -> None:
        study.enqueue_trial(PARAMS)
        study.enqueue_trial(PARAMS)

    study = run_search(CONFIG, storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="c", trials=3,
                       results_dir=tmp_path, accuracy=ScratchTraining(train_config(CONFIG, "cpu"), train=counting),
                       on_create=enqueue_twice)
    first, second = study.trials[:2]
    assert first.params == second.params and first.user_attrs["outcome"] == "trained"

    # The repeat is not trained: every architecture was trained once, the first time it came.
    assert sorted(trainings) == sorted({t.user_attrs["arch"] for t in study.trials})
    assert second.user_attrs[CACHED_FROM_ATTR] == first.number and CACHED_FROM_ATTR not in first.user_attrs
    assert "time_train" not in second.user_attrs and "train_seconds" not in second.user_attrs
    # Its record, values and constraints are the first's.
    assert _measured(second) == _measured(first) and second.user_attrs["outcome"] == "trained"
    assert second.values == first.values and second.constraints == first.constraints
    assert "[cached from trial 0]" in trial_line(second)

    # It counts towards --trials (3 trials for a target of 3), but no front, table or count of trained nets holds the
    # architecture twice: its source stands for it.
    assert len(study.trials) == 3 and evaluated_count(study) == 3
    frame = trials_frame(study)
    assert frame.loc[second.number, CACHED_FROM_ATTR] == first.number
    assert second.number not in set(trained(frame)["number"]) and first.number in set(trained(frame)["number"])
    front = list(pareto_front(frame)["number"])
    assert [p["number"] for p in json.loads((tmp_path / "c" / "pareto.json").read_text())["pareto"]] == front
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["trained"]["searched"] == len(trainings)


def _trial(arch: str = "A", *, outcome: str = "trained", epochs: int = 2, strategy: str | None = "scratch",
           state: TrialState = TrialState.COMPLETE, **attrs) -> optuna.trial.FrozenTrial:
    user_attrs = {"arch": arch, "outcome": outcome, "epochs": epochs, **attrs}
    if strategy is not None:
        user_attrs["strategy"] = strategy
    return create_trial(state=state, values=[0.5, 1000.0] if state == TrialState.COMPLETE else None,
                        user_attrs=user_attrs)


def test_only_a_finished_searched_trial_of_the_same_settings_is_a_source():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for trial in [
        _trial(reference=True, reference_name="mobilenet_v2_0.35"),  # the baseline: always measured, never a source
        _trial(reference=True, reference_name="mobilenet_v2_0.35", noise_seed=1),  # another seed
        _trial(noise_seed=1),  # a scaling plan's second seed: a searched trial at another seed, measured on purpose
        _trial(confirms=0),  # a confirmation, retrained on purpose
        _trial(outcome="pruned", state=TrialState.PRUNED),
        _trial(outcome="over_budget"),
        _trial(epochs=4),  # other settings
        _trial(strategy="supernet"),  # another accuracy source
        _trial(arch="B"),  # another architecture
    ]:
        study.add_trial(trial)
    query = {"arch": "A", "epochs": 2}
    assert cached_source(study, query, "scratch") is None

    study.add_trial(_trial(cached_from=7))  # a copy is never the source: its original is
    study.add_trial(_trial())
    study.add_trial(_trial())
    source = cached_source(study, query, "scratch")
    assert source is not None and source.number == len(study.trials) - 2  # the earliest original
    supernet = cached_source(study, query, "supernet")
    assert supernet is not None and TrialRecord.from_trial(supernet).strategy == "supernet"
    assert cached_source(study, {"arch": "A", "epochs": 2}, None) is None  # a zero-cost study's records are its own


def test_a_copy_keeps_what_queued_it_and_takes_the_measurements():
    source = _trial(accuracy=0.7, time_train=3.0, scaling_direction="width", scaling_step=1, worker="h:1")
    copied = copied_attrs(source)
    assert copied["accuracy"] == 0.7 and copied["arch"] == "A"  # the measurements
    assert not {"time_train", "scaling_direction", "scaling_step", "worker", "outcome"} & copied.keys()


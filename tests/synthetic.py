"""Hand-made studies for tests, benchmarks and screenshots: trials carry what a search records, nothing is trained.

The tests import this module as ``from synthetic import ...`` (pytest puts ``tests/`` on ``sys.path``
for them, as it does for ``conftest``); ``benchmarks/bench_dashboard.py`` puts ``tests/`` on
``sys.path`` itself. It is not part of the package: nothing under ``mobilenet_search/`` imports it.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from mobilenet_search.arch.cost import count_madds, count_params
from mobilenet_search.arch.references import paper_family
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.results.frame import FRAME_COLUMNS, pareto_mask
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    CONFIRMS_ATTR,
    CORRECT_ATTR,
    NOISE_SEED_ATTR,
    VAL_LABELS_ATTR,
    VAL_SIZE_ATTR,
    pack_correct,
    pack_labels,
)
from mobilenet_search.results.stats import balanced_accuracy, bootstrap_balanced_accuracy_interval, wilson_interval
from mobilenet_search.search.space import load_space

VAL_SIZE = 525  # images in the embedded data's validation split
IMAGE_NOISE = 0.08  # how far one network's per-image luck strays from the shared difficulty of the images
INHERITED_PENALTY = 0.03  # inherited supernet weights score this much below training from scratch, on average


def synthetic_labels(seed: int = 0, num_classes: int = 2) -> np.ndarray:
    """The validation labels of a synthetic study (what the search stores once per study)."""
    return np.random.default_rng([seed, 1]).integers(0, num_classes, VAL_SIZE).astype(np.uint8)


def _difficulty(seed: int) -> np.ndarray:
    """Each validation image's difficulty, shared by every trial of a study: trials agree on the easy images,
    as real networks do, so paired tests between them have something to work with."""
    return np.random.default_rng([seed, 2]).random(VAL_SIZE)


def synthetic_trials(n: int, *, seed: int = 0, budget_madds: float = 300e6, space: str = "mobilenetv2",
                     references: bool = True, num_classes: int = 2, records: float = 0.9, noise_repeats: int = 0,
                     supernet: bool = False, confirm: int = 2) -> list[optuna.trial.FrozenTrial]:
    """``n`` made-up but realistic trials of the ``space`` under a MAdds budget, nothing trained.

    Each samples a real member of the space and records its exact MAdds and parameters;
    accuracy rises with log MAdds plus noise, latency with MAdds. Members over the budget are
    complete but infeasible (never trained), about 3 % fail and 2 % are pruned. With
    ``references``, the paper's MobileNetV2 width x resolution networks inside the budget are
    added, marked ``reference=True``, slightly below the searched trend.

    A fraction ``records`` of the trained trials (and every reference net, when ``records`` > 0)
    records what a search records since intervals exist: which of :data:`VAL_SIZE` validation
    images it got right (``val_correct``, ``val_size``; its accuracy and balanced accuracy are those
    of that vector), the 95 % intervals and ``strategy``; the others look like trials of an older study.
    ``noise_repeats`` retrains the cheapest reference net that many times with other seeds
    (``noise_seed``). ``supernet`` makes a ``--strategy supernet`` study: searched accuracies are
    inherited (``strategy="supernet"``), references are trained from scratch, and up to ``confirm``
    of the inherited Pareto-optimal trials are retrained from scratch (``confirms`` their number).
    """
    rng = random.Random(seed)
    space_ = load_space(space)
    distributions = {name: optuna.distributions.CategoricalDistribution(list(values))
                     for name, values in space_.searched.items()}
    labels, difficulty = synthetic_labels(seed, num_classes), _difficulty(seed)
    start = datetime(2026, 11, 1, 12, 0, 0)
    made: list[dict[str, Any]] = []  # create_trial's arguments, turned into trials at the end
    correct_of: dict[int, np.ndarray] = {}  # index in ``made`` -> per-image correctness

    def measure(index: int, accuracy: float, attrs: dict[str, Any]) -> float:
        """Record a per-image correctness vector around ``accuracy``; the accuracy it gives."""
        luck = np.random.default_rng(rng.getrandbits(32)).normal(0.0, IMAGE_NOISE, VAL_SIZE)
        correct = np.clip(difficulty + luck, 0.0, 1.0) < accuracy
        correct_of[index] = correct
        low, high = wilson_interval(int(correct.sum()), VAL_SIZE)
        attrs.update({CORRECT_ATTR: pack_correct(correct), VAL_SIZE_ATTR: VAL_SIZE, "accuracy_low": low,
                      "accuracy_high": high, "balanced_accuracy": round(balanced_accuracy(correct, labels), 4)})
        return round(float(correct.mean()), 4)

    def make(params: dict[str, Any], spec: ArchSpec, extra: dict[str, Any], offset: float) -> None:
        madds, params_count = count_madds(spec), count_params(spec)
        attrs = {"arch": spec.to_string(), "spec": spec.to_json(), "madds": madds, "params": params_count, "epochs": 4,
                 **extra}
        excess = madds - budget_madds
        state, values = TrialState.COMPLETE, None
        draw = rng.random()
        searched = "reference" not in extra and CONFIRMS_ATTR not in extra
        if excess > 0:
            attrs.update(outcome="over_budget", status_reason=f"over budget {budget_madds / 1e6:g}M-madds: "
                                                              f"{madds / 1e6:.1f}M madds")
            values = [0.0, float(madds)]
        else:
            latency = madds / 1e6 * 0.042 + 1.5 + rng.gauss(0, 0.3)
            attrs.update(latency_ms=round(max(latency, 0.5), 3), latency_device="cpu: synthetic", latency_batch=1,
                         proxy_resolution=max(32, round(64 * spec.resolution / 224 / 8) * 8))
            inherited = supernet and searched
            trend = 0.62 + 0.075 * math.log10(madds / 1e6) + offset - (INHERITED_PENALTY if inherited else 0.0)
            accuracy = min(0.99, trend + rng.gauss(0, 0.02))
            history = [round(accuracy * (1 - 0.35 * 0.5 ** e) + rng.gauss(0, 0.01), 4) for e in range(4)]
            if searched and draw < 0.03:
                state = TrialState.FAIL
                attrs.update(outcome="failed", status_reason="TrainingDiverged: the loss became nan in epoch 2")
            elif searched and draw < 0.05:
                state = TrialState.PRUNED
                attrs.update(outcome="pruned", accuracy_history=history[:2])
            else:
                if records > 0 and (not searched or rng.random() < records):
                    accuracy = measure(len(made), accuracy, attrs)
                else:
                    attrs["balanced_accuracy"] = round(accuracy - 0.02, 4)
                if supernet or CORRECT_ATTR in attrs:  # older studies recorded no strategy
                    attrs["strategy"] = "supernet" if inherited else "scratch"
                accuracy = round(accuracy, 4)
                history[-1] = accuracy
                attrs.update(accuracy=accuracy, train_seconds=round(madds / 1e6 * 0.4, 2),
                             time_train=round(madds / 1e6 * 0.4, 2), time_eval=0.5, outcome="trained")
                if not inherited:  # scored with inherited weights: no training curve
                    attrs["accuracy_history"] = history
                values = [accuracy, float(madds)]
        began = start + timedelta(seconds=len(made) * 60)
        made.append(dict(state=state, values=values, params=params, distributions=distributions if params else {},
                         user_attrs=attrs, constraints={"madds_over_budget": float(excess)},
                         times=(began, began + timedelta(seconds=30 + madds / 1e7))))

    for _ in range(n):
        params = {name: rng.choice(values) for name, values in space_.searched.items()}
        make(params, space_.spec(params, num_classes=num_classes), {}, 0.0)
    if references:
        family = {name: spec for name, spec in paper_family("mobilenet_v2", num_classes=num_classes).items()
                  if count_madds(spec) <= budget_madds}
        for name, spec in family.items():
            make({}, spec, {"reference": True, "reference_name": name}, -0.015)
        if family:
            cheapest = min(family, key=lambda name: count_madds(family[name]))
            for k in range(1, noise_repeats + 1):
                make({}, family[cheapest], {"reference": True, "reference_name": cheapest, NOISE_SEED_ATTR: k},
                     -0.015)
    if supernet and confirm:
        for index in _confirm(made, confirm):
            params = made[index]["params"]
            make(params, space_.spec(params, num_classes=num_classes), {CONFIRMS_ATTR: index}, 0.0)

    _balanced_intervals(made, correct_of, labels, seed)
    trials = []
    for arguments in made:
        began, ended = arguments.pop("times")
        trials.append(optuna.trial.create_trial(**arguments))
        trials[-1].datetime_start, trials[-1].datetime_complete = began, ended
    return trials


def _confirm(made: list[dict[str, Any]], k: int) -> list[int]:
    """The numbers of up to ``k`` Pareto-optimal inherited trials, cheapest first: what a supernet study confirms.

    Trial numbers are positions in ``made`` (a study's numbers, when the trials are added to an empty one).
    """
    rows = [(index, a["user_attrs"]["madds"], a["user_attrs"]["accuracy"]) for index, a in enumerate(made)
            if a["user_attrs"].get("strategy") == "supernet" and a["state"] == TrialState.COMPLETE]
    if not rows:
        return []
    frame = pd.DataFrame(rows, columns=["number", "madds", "accuracy"])
    front = frame[pareto_mask(frame)].sort_values("madds")["number"].tolist()
    return [front[round(i * (len(front) - 1) / max(1, k - 1))] for i in range(k)] if k < len(front) else front


def _balanced_intervals(made: list[dict[str, Any]], correct_of: dict[int, np.ndarray], labels: np.ndarray,
                        seed: int) -> None:
    """Balanced-accuracy bootstrap intervals for every recorded trial at once (one matrix product, as
    :func:`mobilenet_search.results.stats.bootstrap_balanced_accuracy_interval` allows), not one bootstrap each."""
    if not correct_of:
        return
    indices = sorted(correct_of)
    lows, highs = bootstrap_balanced_accuracy_interval(np.stack([correct_of[i] for i in indices]), labels, seed=seed)
    for index, low, high in zip(indices, lows, highs, strict=True):
        made[index]["user_attrs"].update(balanced_accuracy_low=float(low), balanced_accuracy_high=float(high))


def create_synthetic_study(storage: str, study_name: str, n: int, *, seed: int = 0, budget_madds: float = 300e6,
                           references: bool = True, **options: Any) -> optuna.Study:
    """A two-objective study filled with :func:`synthetic_trials` (``options`` go to it) and the settings and
    validation labels a search would store."""
    study = optuna.create_study(storage=storage, study_name=study_name, directions=["maximize", "minimize"])
    supernet = bool(options.get("supernet"))
    study.set_user_attr(CONFIG_ATTR, {"budget": f"{budget_madds / 1e6:g}M-madds", "space": "mobilenetv2",
                                      "dataset": "synthetic", "epochs": 4, "objective": "multi", "sampler": "tpe",
                                      "strategy": "supernet" if supernet else "scratch"})
    if options.get("records", 0.9) > 0:
        study.set_user_attr(VAL_LABELS_ATTR, pack_labels(synthetic_labels(seed, options.get("num_classes", 2))))
    trials = synthetic_trials(n, seed=seed, budget_madds=budget_madds, references=references, **options)
    for begin in range(0, len(trials), 1000):
        study.add_trials(trials[begin:begin + 1000])
    return study



def frame_of(*rows: dict[str, Any]) -> pd.DataFrame:
    """A trials_frame-shaped frame, trial ``i`` from ``rows[i]``: what differs from a trained, feasible trial."""
    records = []
    for number, row in enumerate(rows):
        record = {column: None for column in FRAME_COLUMNS}
        record.update(number=number, state="COMPLETE", feasible=True, arch=f"arch{number}", outcome="trained",
                      reference=False, accuracy_history=json.dumps([0.5, row.get("accuracy", 0.5)]))
        record.update(row)
        records.append(record)
    frame = pd.DataFrame(records)
    numeric = ("madds", "params", "latency_ms", "accuracy", "balanced_accuracy", "accuracy_low", "accuracy_high",
               "balanced_accuracy_low", "balanced_accuracy_high", "noise_seed", "confirms", "val_size")
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


# The scaling directions' true curves of a synthetic scaling study: acc = plateau - b (MAdds / base)^-c.
SCALING_CURVES = {"width": (0.86, 0.20, 1.0), "resolution": (0.80, 0.14, 1.2), "depth": (0.78, 0.12, 0.9),
                  "compound": (0.90, 0.24, 0.8)}
# The networks of each direction as multipliers of MobileNetV2 0.35/96 (depth: of every stage's n, rounded up).
SCALING_POINTS = {"width": [(1, 0.5 / 0.35, 1), (1, 0.75 / 0.35, 1), (1, 1.0 / 0.35, 1)],
                  "resolution": [(1, 1, 128 / 96), (1, 1, 160 / 96), (1, 1, 224 / 96)],
                  "depth": [(2, 1, 1), (3, 1, 1), (4, 1, 1)],
                  "compound": [(1.2, 0.4 / 0.35, 112 / 96), (1.5, 0.5 / 0.35, 128 / 96), (2, 0.6 / 0.35, 128 / 96)]}


def create_synthetic_scaling_study(storage: str, study_name: str, *, seed: int = 0, seeds: int = 2) -> optuna.Study:
    """A scaling study of MobileNetV2 0.35/96 in ``mobilenetv2_scaling`` as ``mobilenet-search scaling`` records
    it (the plan, the settings, the validation labels; every network ``seeds`` times with per-image records),
    its accuracies drawn around :data:`SCALING_CURVES`; nothing is trained. The width and resolution directions
    pass through the paper's family (0.5/96, 0.75/96, 1.0/96, 0.35/128, 0.35/160, 0.35/224)."""
    from mobilenet_search.arch.scaling import Multipliers, scale
    from mobilenet_search.search.scaling import DIRECTION_ATTR, SCALING_ATTR, STEP_ATTR

    labels, difficulty = synthetic_labels(seed), _difficulty(seed)
    rng = np.random.default_rng([seed, 3])
    base = ArchSpec.mobilenet_v2(0.35, 96, num_classes=2)
    base_madds = count_madds(base)

    def point(direction: str, step: int, spec: ArchSpec) -> dict[str, Any]:
        return {"direction": direction, "step": step, "target_madds": count_madds(spec), "madds": count_madds(spec),
                "arch": spec.to_string(), "coefficients": None}

    points = [point("base", 0, base)]
    for direction, multipliers in SCALING_POINTS.items():
        points += [point(direction, step, scale(base, Multipliers(*m))) for step, m in enumerate(multipliers, 1)]
    study = optuna.create_study(storage=storage, study_name=study_name, directions=["maximize", "minimize"])
    study.set_user_attr(CONFIG_ATTR, {"budget": "100M-madds", "space": "mobilenetv2_scaling", "dataset": "synthetic",
                                      "epochs": 4, "objective": "multi", "sampler": "tpe", "strategy": "scratch"})
    study.set_user_attr(VAL_LABELS_ATTR, pack_labels(labels))
    study.set_user_attr(SCALING_ATTR, {"base": base.to_string(), "budget": "100M-madds", "seeds": seeds,
                                       "points": points, "compound": {"coefficients": [1.2, 1.1, 1.15], "fit": None}})
    done = set()
    for p in points:
        if p["arch"] in done:
            continue
        done.add(p["arch"])
        plateau, b, c = SCALING_CURVES["width" if p["direction"] == "base" else p["direction"]]
        truth = plateau - b * (p["madds"] / base_madds) ** -c
        spec = ArchSpec.from_string(p["arch"])
        for k in range(seeds):
            correct = np.clip(difficulty + rng.normal(0.0, IMAGE_NOISE, VAL_SIZE), 0.0, 1.0) < truth
            attrs = {"arch": p["arch"], "spec": spec.to_json(), "madds": p["madds"], "params": count_params(spec),
                     "outcome": "trained", "accuracy": round(float(correct.mean()), 4), "epochs": 4,
                     "strategy": "scratch", CORRECT_ATTR: pack_correct(correct), VAL_SIZE_ATTR: VAL_SIZE,
                     DIRECTION_ATTR: p["direction"], STEP_ATTR: p["step"], **({NOISE_SEED_ATTR: k} if k else {})}
            study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE,
                                                      values=[attrs["accuracy"], float(p["madds"])], user_attrs=attrs))
    return study

"""Storage to frontier figure on a 10,000-trial study: the dashboard's path vs Optuna's ``plot_pareto_front``.

Run from the repository root::

    python benchmarks/bench_dashboard.py    # builds results/bench/dashboard-10k-records.db once, then reuses it
    python benchmarks/bench_dashboard.py --repeat 5

Both sides start from the storage URL and end with a plotly figure serialised to JSON (what
Streamlit sends to the browser), in this one process, alternating, median of ``--repeat``:

- ours: :func:`mobilenet_search.ui.dashboard.load_study_data` (Optuna's SQL tables read directly),
  then :func:`mobilenet_search.ui.figures.frontier_figure` (Pareto set, step line, hovers, colours);
- Optuna's: ``optuna.load_study`` then ``optuna.visualization.plot_pareto_front``.

Then, once, what the dashboard's opt-in "indistinguishable from the front" shading adds:
:func:`mobilenet_search.ui.dashboard.load_correct` and ``indistinguishable_from_front``.

The study holds 10,000 hand-made trials of the mobilenetv2 space (``synthetic_trials`` of
``tests/synthetic.py``, the tests' own fixtures: this script puts ``tests/`` on ``sys.path``),
most of them with the per-image validation records and 95 % intervals a search stores:
``study.add_trials`` needs minutes for that many, so the benchmark writes them into Optuna's
tables in bulk through Optuna's own table definitions, then checks the result through the
Optuna API (trial count, and one trial's values and attributes) before timing anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import optuna
import sqlalchemy
from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models  # private: used only to write the benchmark study in bulk

from mobilenet_search.results.frame import pareto_front
from mobilenet_search.ui.dashboard import indistinguishable_from_front, load_correct, load_study_data, seed_sd
from mobilenet_search.ui.figures import frontier_figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import create_synthetic_study, synthetic_trials  # noqa: E402 - the tests' fixtures, found above

STUDY = "dashboard-10k"


def build_study(path: Path, n: int, seed: int = 0) -> str:
    """Create the study file with ``n`` synthetic trials (bulk SQL inserts) unless it exists; its URL."""
    url = f"sqlite:///{path}"
    if path.exists():
        return url
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    partial_url = f"sqlite:///{partial}"
    study = create_synthetic_study(partial_url, STUDY, 0, references=False)  # schema, directions, settings, labels
    trials = synthetic_trials(n, seed=seed)
    study_id = study._study_id
    rows = {name: [] for name in ("trials", "values", "user", "system", "params")}
    for number, trial in enumerate(trials):
        trial_id = number + 1
        rows["trials"].append(dict(trial_id=trial_id, number=number, study_id=study_id, state=trial.state,
                                   datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete))
        for objective, value in enumerate(trial.values or []):
            rows["values"].append(dict(trial_id=trial_id, objective=objective, value=value,
                                       value_type=models.TrialValueModel.TrialValueType.FINITE))
        rows["user"] += [dict(trial_id=trial_id, key=k, value_json=json.dumps(v)) for k, v in trial.user_attrs.items()]
        rows["system"] += [dict(trial_id=trial_id, key=k, value_json=json.dumps(v))
                           for k, v in trial.system_attrs.items()]
        rows["params"] += [dict(trial_id=trial_id, param_name=k, param_value=trial.distributions[k].to_internal_repr(v),
                                distribution_json=distribution_to_json(trial.distributions[k]))
                           for k, v in trial.params.items()]
    tables = {"trials": models.TrialModel, "values": models.TrialValueModel, "user": models.TrialUserAttributeModel,
              "system": models.TrialSystemAttributeModel, "params": models.TrialParamModel}
    engine = sqlalchemy.create_engine(partial_url)
    with engine.begin() as conn:
        for name, model in tables.items():
            conn.execute(model.__table__.insert(), rows[name])
    engine.dispose()

    # Check the bulk-written study through Optuna's API before using it.
    check = optuna.load_study(study_name=STUDY, storage=partial_url).get_trials(deepcopy=False)
    assert len(check) == len(trials), (len(check), len(trials))
    for index in (0, len(trials) // 2, len(trials) - 1):
        assert check[index].state == trials[index].state and check[index].values == trials[index].values
        assert check[index].user_attrs == trials[index].user_attrs and check[index].params == trials[index].params
        assert check[index].constraints == trials[index].constraints
    partial.rename(path)
    return url


def ours(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    data = load_study_data(url, STUDY)
    figure = frontier_figure(data.frame)
    figure.to_json()
    return time.perf_counter() - start, len(pareto_front(data.frame))


def shading(url: str) -> tuple[float, float, int]:
    """Seconds to load the per-image records and to test every dominated trial; how many are shaded."""
    frame = load_study_data(url, STUDY).frame
    start = time.perf_counter()
    correct = load_correct(url, STUDY)
    loaded = time.perf_counter()
    shaded = indistinguishable_from_front(frame, correct, seed_sd=seed_sd(frame))
    return loaded - start, time.perf_counter() - loaded, len(shaded)


def optunas(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    study = optuna.load_study(study_name=STUDY, storage=url)
    figure = optuna.visualization.plot_pareto_front(study, target_names=["accuracy", "MAdds"])
    figure.to_json()
    return time.perf_counter() - start, len(study.best_trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    # A new name since the trials record per-image results and intervals: an older file would be reused as it is.
    parser.add_argument("--path", type=Path, default=Path("results/bench/dashboard-10k-records.db"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    start = time.perf_counter()
    existed = args.path.exists()
    url = build_study(args.path, args.trials)
    print(f"study: {args.path} ({'reused' if existed else f'built in {time.perf_counter() - start:.1f} s'})")
    frontier_figure(load_study_data(url, STUDY).frame.head(50))  # warm imports and plotly's validators

    our_times, optuna_times = [], []
    for _ in range(args.repeat):
        seconds, our_front = ours(url)
        our_times.append(seconds)
        seconds, optuna_front = optunas(url)
        optuna_times.append(seconds)
    assert our_front == optuna_front, (our_front, optuna_front)  # the same Pareto set size, two ways
    ours_s, optuna_s = statistics.median(our_times), statistics.median(optuna_times)
    print(f"{args.trials:,} trials, {our_front} on the Pareto front, median of {args.repeat}")
    print(f"  dashboard (SQL read, Pareto set, frontier figure): {ours_s:6.3f} s")
    print(f"  optuna.load_study + plot_pareto_front:             {optuna_s:6.3f} s")
    print(f"  ratio: ours is {optuna_s / ours_s:.1f}x faster")
    load_s, test_s, shaded = shading(url)
    print(f"  opt-in shading: per-image records {load_s:.3f} s, paired tests {test_s:.3f} s "
          f"({shaded} trials indistinguishable from the front)")


if __name__ == "__main__":
    main()

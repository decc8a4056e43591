"""Does ``--metric balanced`` rank candidates better on imbalanced data? Measured on held-out test images.

A study with Optuna's ``RandomSampler`` (so neither metric steers which candidates exist) trains ``--trials``
candidates of ``--space`` under ``--budget`` on ``--dataset`` (default: the embedded solar-cell data, 69 % of one
class), each scored on the validation split (what the search ranks by) and once on the test split (never read by
the search). Both metrics are recorded for every candidate, so one study answers the question for both:

- **ranking**: Kendall's tau of each validation metric against each test metric, and the paired bootstrap
  interval (over candidates) of the difference "balanced minus accuracy";
- **the pick**: the candidate each metric ranks first on validation, and each metric's validation Pareto front
  (MAdds vs the metric), scored on test: the best test balanced accuracy and test accuracy on it, and its
  hypervolume above the trivial classifier (1/classes for balanced accuracy, the majority share for accuracy).

Resumable: the study lives in ``--results-dir``; rerunning the same command trains only what is missing, and
``--report-only`` reports what the stored study holds without training.

Run (about 40 CPU minutes at the default proxy on 2 cores)::

    python benchmarks/bench_metric_ranking.py --trials 40 --results-dir results/bench/metric_ranking
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from scipy import stats

from mobilenet_search.arch.budget import Budget
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import study_test_labels, trivial_quality
from mobilenet_search.results.report import hypervolume
from mobilenet_search.results.stats import kendall_tau_interval
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.study import run_search

VALIDATION = {"accuracy": "accuracy", "balanced": "balanced_accuracy"}
TEST = {"accuracy": "test_accuracy", "balanced": "test_balanced_accuracy"}


def tau_difference(x_a: np.ndarray, x_b: np.ndarray, y: np.ndarray, *, seed: int, resamples: int = 2000):
    """tau(x_b, y) - tau(x_a, y) with a paired percentile-bootstrap interval over candidates (NaN replicates out)."""
    def statistic(a, b, c):
        return stats.kendalltau(b, c).statistic - stats.kendalltau(a, c).statistic

    value = float(statistic(x_a, x_b, y))
    with warnings.catch_warnings():  # a replicate with one variable all tied has no tau: left out below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap((x_a, x_b, y), statistic, paired=True, vectorized=False,
                                 n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    replicates = result.bootstrap_distribution[~np.isnan(result.bootstrap_distribution)]
    return value, float(np.percentile(replicates, 2.5)), float(np.percentile(replicates, 97.5))


def picked(frame: pd.DataFrame, metric: str, floors: dict[str, float], budget_madds: float) -> dict[str, float]:
    """What ranking by ``metric`` on validation picks, scored on test."""
    column = VALIDATION[metric]
    top = frame.loc[frame[column].idxmax()]
    front = frame[pareto_mask(frame, quality=column).to_numpy()]
    out = {"top1 test accuracy": float(top["test_accuracy"]),
           "top1 test balanced": float(top["test_balanced_accuracy"]),
           "top1 MAdds (M)": float(top["madds"]) / 1e6, "front size": float(len(front))}
    for name, test_column in TEST.items():
        out[f"front test HV above floor ({name})"] = hypervolume(front, budget_madds, floors[name], test_column)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--budget", default="300M-madds")
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--dataset-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--proxy-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=Path("results/bench/metric_ranking"))
    parser.add_argument("--report-only", action="store_true", help="report what the stored study holds; train nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("$ python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]), flush=True)

    config = SearchConfig(budget=args.budget, space=args.space, dataset=args.dataset,
                          dataset_limit=args.dataset_limit, epochs=args.epochs, proxy_size=args.proxy_size,
                          sampler="random", seed=args.seed, references="none", noise_repeats=0)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    name = f"metric-ranking-{args.dataset.replace(':', '-').replace('/', '-')}-{args.seed}"
    storage = f"sqlite:///{args.results_dir / f'{name}.db'}"
    started = time.process_time()

    def progress(study, trial) -> None:
        print(f"  trial {trial.number}: {trial.user_attrs.get('outcome')} "
              f"{trial.user_attrs.get('accuracy')}", flush=True)

    if args.report_only:
        study = optuna.load_study(study_name=name, storage=storage)
    else:
        study = run_search(config, storage=storage, study_name=name, trials=args.trials,
                           results_dir=args.results_dir, callbacks=[progress])
    frame = trained(trials_frame(study))
    frame = frame[frame["test_accuracy"].notna()].copy()
    labels = study_test_labels(study)
    floors = {"accuracy": trivial_quality("accuracy", labels), "balanced": trivial_quality("balanced_accuracy", labels)}
    budget_madds = float(Budget.parse(config.budget).get("madds").bound)
    shares = np.bincount(labels) / len(labels)

    print(f"\n== --metric accuracy vs --metric balanced: {len(frame)} random {args.space} candidates under "
          f"{args.budget} on {args.dataset} ({args.epochs} epochs, proxy {args.proxy_size} px, seed {args.seed}); "
          f"test split {len(labels)} images, class shares {', '.join(f'{s:.3f}' for s in shares)}; "
          f"this run {time.process_time() - started:.0f} CPU s")
    print("\nKendall tau of the validation metric (rows) against the test metric (columns), 95 % bootstrap "
          "interval over candidates:")
    print(f"  {'':24s}{'test accuracy':>28s}{'test balanced accuracy':>28s}")
    for metric, column in VALIDATION.items():
        cells = []
        for test_column in TEST.values():
            estimate = kendall_tau_interval(frame[column], frame[test_column], seed=args.seed)
            cells.append(f"{estimate.value:+.3f} [{estimate.low:+.3f}, {estimate.high:+.3f}]")
        print(f"  {'validation ' + metric:24s}{cells[0]:>28s}{cells[1]:>28s}")
    print("\nbalanced minus accuracy (paired bootstrap over candidates, 95 %):")
    for name, test_column in TEST.items():
        value, low, high = tau_difference(frame["accuracy"].to_numpy(float), frame["balanced_accuracy"].to_numpy(float),
                                          frame[test_column].to_numpy(float), seed=args.seed)
        verdict = "balanced ranks better" if low > 0 else "accuracy ranks better" if high < 0 else "no difference"
        print(f"  on test {name:9s}: {value:+.3f} [{low:+.3f}, {high:+.3f}]  {verdict} beyond noise"
              if verdict != "no difference" else f"  on test {name:9s}: {value:+.3f} [{low:+.3f}, {high:+.3f}]  "
              "no difference beyond noise")
    print(f"\nwhat each ranking picks on validation, scored on test (floors: accuracy {floors['accuracy']:.3f}, "
          f"balanced {floors['balanced']:.3f}):")
    rows = {metric: picked(frame, metric, floors, budget_madds) for metric in VALIDATION}
    for key in rows["accuracy"]:
        print(f"  {key:40s}" + "".join(f"{rows[m][key]:>14.4f}" for m in VALIDATION) + "   (accuracy, balanced)")
    learned = frame["learned_nothing"].fillna(False).astype(bool)
    below = (frame["test_balanced_accuracy"] <= floors["balanced"] + 1e-9)
    print(f"\n  {int(learned.sum())} of {len(frame)} candidates learned nothing (validation accuracy not above the "
          f"majority share); {int(below.sum())} sit at or below 1/classes in test balanced accuracy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

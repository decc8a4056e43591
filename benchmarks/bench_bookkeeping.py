"""Bookkeeping after every trial of a 5,000-trial study: ``write_results`` (old) vs ``ResultsWriter.update`` (new).

Run from the repository root::

    python benchmarks/bench_bookkeeping.py                 # 5,000 trials per variant, about 4 minutes on 2 busy cores
    python benchmarks/bench_bookkeeping.py --trials 10000
    python benchmarks/bench_bookkeeping.py --old-step 1    # the old bookkeeping after every trial of the windows

Each variant runs its own study: ``optuna.create_study`` (two objectives, zero-cost score and MAdds,
random sampler) and ``study.optimize`` with a trivial objective that records what a
``--objective zero-cost:synflow`` trial records (a real mobilenetv2-space spec drawn by the
search space, its string, JSON, MAdds, parameters, a made-up synflow score and timings, the
MAdds constraint; about 1 in 10 over a 300M budget and rejected). An after-trial callback does
the bookkeeping; the table gives, per trial, the time of the callback alone and the wall time
from one trial's end to the next (Optuna, objective and callback), over trials 100-599 and over
the last 500.

The storage is in memory: what is measured is the bookkeeping, whose cost grows with the
study, not the storage, whose own growth (SQLite builds 1,000 trials in about 10 s) is the same
for both variants and would only blur the comparison; in-memory also makes the script cheap,
so there is nothing to resume.

The old bookkeeping reads the whole study every time, whatever came before, so its cost after
a trial depends only on the study's size then: it runs only inside the two measured windows, on
every ``--old-step``-th trial (10 by default: after every trial of a 5,000-trial study it would take
20 minutes here), and its figures are means over the trials it ran on. The new bookkeeping keeps
state, so it runs after every trial and is measured on every trial of the windows. At the end,
the new variant's files are checked against ``write_results`` on the same study. Files go to
``results/bench/bookkeeping-{old,new}/``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import optuna

from mobilenet_search.arch.cost import count_madds, count_params
from mobilenet_search.results.frame import ResultsWriter, write_results
from mobilenet_search.results.records import CONFIG_ATTR, Outcome
from mobilenet_search.search.space import load_space

BUDGET = 300_000_000
QUALITY = "zc_synflow"


def make_objective(seed: int):
    """A trial as cheap as possible that records what a zero-cost trial of the mobilenetv2 space records."""
    space = load_space("mobilenetv2")
    rng = random.Random(seed)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        spec = space.sample(trial, num_classes=2, in_channels=1)
        madds, params = count_madds(spec), count_params(spec)
        for key, value in {"arch": spec.to_string(), "spec": spec.to_json(), "madds": madds, "params": params,
                           "epochs": 8, "worker": "bench"}.items():
            trial.set_user_attr(key, value)
        trial.set_constraint("madds_over_budget", float(madds - BUDGET))
        if madds > BUDGET and rng.random() < 0.5:
            trial.set_user_attr("outcome", Outcome.OVER_BUDGET.value)
            trial.set_user_attr("status_reason", f"{madds:,} MAdds over budget 300M-madds")
            return -math.inf, float(madds)
        score = math.log(madds) + rng.gauss(0, 0.5)
        for key, value in {"time_build": rng.uniform(0.01, 0.05), "proxy_resolution": 64, QUALITY: score,
                           "time_zero_cost": rng.uniform(0.1, 0.5), "outcome": Outcome.SCORED.value}.items():
            trial.set_user_attr(key, value)
        return score, float(madds)

    return objective


def run_variant(name: str, trials: int, measured: set[int], folder: Path,
                seed: int) -> tuple[dict[int, float], dict[int, float], optuna.Study, float]:
    """One study with one kind of bookkeeping; the callback's seconds and the wall seconds of the measured trials.

    The old bookkeeping runs only after the measured trials; the new one after every trial.
    """
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed),
                                study_name=f"bookkeeping-{name}")
    study.set_user_attr(CONFIG_ATTR, {"objective": f"zero-cost:{QUALITY.removeprefix('zc_')}"})
    callback_s: dict[int, float] = {}
    wall_s: dict[int, float] = {}
    writer = ResultsWriter.for_study(study, folder) if name == "new" else None
    bookkeeping = name == "old"
    last = [time.perf_counter()]

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        start = time.perf_counter()
        if writer is not None:
            writer.update(trial)
        elif bookkeeping and trial.number in measured:
            write_results(study, folder)
        end = time.perf_counter()
        if trial.number in measured:
            callback_s[trial.number], wall_s[trial.number] = end - start, end - last[0]
        last[0] = end

    study.optimize(make_objective(seed), n_trials=trials, callbacks=[after_trial])
    start = time.perf_counter()
    if writer is not None:
        writer.flush()  # what _optimize's `finally` does
    final_s = time.perf_counter() - start
    return callback_s, wall_s, study, final_s


def mean_ms(values: dict[int, float], window: range) -> float:
    """The mean over the trials of ``window`` that were measured, in milliseconds."""
    inside = [values[i] for i in window if i in values]
    return 1000 * sum(inside) / len(inside)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-step", type=int, default=10,
                        help="the old bookkeeping runs after every N-th trial of the windows (default 10)")
    parser.add_argument("--variants", nargs="+", choices=["old", "new", "none"], default=["old", "new", "none"],
                        help="none: no bookkeeping, to see how the rest of a trial grows with the study")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.trials < 1100:
        parser.error("--trials must be at least 1100 (two windows of 500 trials, the first from trial 100)")
    windows = [range(100, 600), range(args.trials - 500, args.trials)]
    every = set().union(*windows)
    sampled = {i for window in windows for i in window[args.old_step - 1::args.old_step]}
    results = {}
    for name in args.variants:
        start = time.perf_counter()
        callback_s, wall_s, study, final_s = run_variant(name, args.trials, sampled if name == "old" else every,
                                                         args.out / f"bookkeeping-{name}", args.seed)
        results[name] = (callback_s, wall_s)
        print(f"{name}: {args.trials} trials in {time.perf_counter() - start:.1f} s"
              + (f" (final flush {1000 * final_s:.0f} ms)" if name == "new" else ""), flush=True)
        if name == "new":  # its files are what the old bookkeeping writes for the same study
            check = args.out / "bookkeeping-check"
            write_results(study, check)
            for file in ("trials.csv", "pareto.json"):
                if (check / file).read_text() != (args.out / "bookkeeping-new" / file).read_text():
                    raise SystemExit(f"ResultsWriter's {file} differs from write_results'")
            print("new files == write_results files for the same study")

    first, last = windows
    print(f"\nold: measured on every {args.old_step}th trial of each window; new: on every trial")
    print(f"per trial, ms        {'trials 100-599':>16} {f'trials {last.start}-{last.stop - 1}':>16} {'ratio':>7}")
    for name in args.variants:
        callback_s, wall_s = results[name]
        rest_s = {i: wall_s[i] - callback_s[i] for i in wall_s}
        rows = (("bookkeeping", callback_s), ("rest of trial", rest_s), ("wall", wall_s))
        for label, values in rows if name != "none" else rows[2:]:
            a, b = mean_ms(values, first), mean_ms(values, last)
            print(f"{name} {label:<15} {a:16.3f} {b:16.3f} {b / a:7.2f}")


if __name__ == "__main__":
    main()

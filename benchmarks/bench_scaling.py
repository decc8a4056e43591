"""Scaling on the user's data, checked: does the fit predict the nets it did not see, and does its recommendation
hold its own against the simple scalings and the paper's nets? (the benchmark of ``mobilenet-search scaling``)

One scaling study (:func:`mobilenet_search.search.scaling.run_scaling`, exactly what ``mobilenet-search scaling
--budget B --seeds S --strategy X`` runs) from ``--base`` up to ``--budget``: with ``--strategy scratch`` (the
default) every grid net trained under the proxy with ``--seeds`` seeds; with ``--strategy supernet`` one supernet over
the space trained for ``--supernet-epochs``, every grid net scored once with the weights it inherits, and up to
``--confirm`` points of each phase's front retrained from scratch. Then:

1. **Predictive check.** The study is fitted (:func:`analyse`) as it stood with only its nets up to ``--fit-up-to``
   MAdds (default a third of the budget): an in-memory copy holding those trials and plan points, so the noise floor
   too is what was known then. Each direction's fit predicts the validation accuracy of its grid nets above that
   (the held-out points, trained or scored by the same study); a point is predicted when its measured
   mean is within the noise floor of the prediction (the issue's target: at least 80 % of them).
2. **Head to head at each ``--at`` budget**, each net trained from scratch with ``--final-seeds`` seeds (those the
   study already trained from scratch, a supernet study's confirmations included, are reused, being the same
   training) and scored on the test split, which nothing else reads:
   the net :func:`recommend` picks from the fit of the whole study; width only; resolution only (the paper's two
   single-dimension scalings, solved on the same base as the grid is); EfficientNet's fixed coefficients
   (1.2 / 1.1 / 1.15) on the same base; and the paper's MobileNetV2 width x resolution net with the most MAdds within
   the budget. The recommendation is compared with each by the tool's own rule
   (:func:`mobilenet_search.results.stats.compare`): an exact McNemar test on the seeds' test predictions paired
   seed by seed, and a margin beyond the seed noise of a mean of that many seeds (the pooled seed sd of the
   head-to-head nets over sqrt(seeds)). The issue's target: never worse than any beyond noise, and better than the
   paper's net on at least one budget, or it says why not.
3. The compute: CPU seconds of this process (``time.process_time``) for the study and for the head-to-head nets;
   a supernet study's split into the supernet's training, scoring the points and the confirmations.

Run (Fashion-MNIST, the cheap proxy of ``bench_search_vs_scaling.py``; ``--plan`` prints what it would train and an
estimate of the CPU seconds, and trains nothing)::

    python benchmarks/bench_scaling.py --dataset fashion-mnist --dataset-limit 6000 --epochs 2 --proxy-size 48 \\
        --budget 300M-madds --seeds 2 --at 40M-madds 150M-madds --final-seeds 3
    python benchmarks/bench_scaling.py --dataset fashion-mnist --dataset-limit 3000 --epochs 2 --proxy-size 48 \\
        --budget 300M-madds --seeds 1 --strategy supernet --supernet-epochs 2 --confirm 2 \\
        --at 20M-madds 80M-madds 300M-madds --final-seeds 1

Resume: everything is kept under ``--results-dir`` (default ``results/bench/scaling``), keyed by a hash of the
options the trainings depend on (``--strategy``, ``--supernet-epochs`` and ``--confirm`` only away from their
defaults, so keys made before they existed stay the same): the study in ``scaling-<key>.db`` (a rerun trains only
its unfinished trials; a supernet study's checkpoint, in ``supernets/``, resumes from its last epoch), each
head-to-head training in ``nets-<key>.json`` (saved after each), the compute in ``compute-<key>.json``. A rerun of
the same command after an interruption trains nothing that finished. The report is also written as
``report-<key>.json`` there (its key adds the report's own options).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.cost import count_madds, format_count
from mobilenet_search.arch.references import paper_family
from mobilenet_search.arch.scaling import DIRECTIONS, EFFICIENTNET, madds_targets, solve
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_write_text
from mobilenet_search.measure.data import proxy_resolution
from mobilenet_search.results.records import (
    CONFIRMS_ATTR,
    CORRECT_ATTR,
    NOISE_SEED_ATTR,
    SUPERNET_ATTR,
    TEST_CORRECT_ATTR,
    TEST_SIZE_ATTR,
    VAL_SIZE_ATTR,
    Outcome,
    Strategy,
    TrialRecord,
    is_confirmation,
    outcome,
    trivial_accuracy,
    unpack_correct,
)
from mobilenet_search.results.scaling_fit import predict
from mobilenet_search.results.stats import compare, seed_noise
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import AccuracySource, ScratchTraining
from mobilenet_search.search.scaling import (
    SCALING_ATTR,
    Grid,
    admitted,
    analyse,
    distinct,
    madds_limit,
    nominal_madds,
    point_runs,
    recommend,
    resolve_base,
    run_scaling,
    scaling_config,
)
from mobilenet_search.search.space import SearchSpace, load_space, supernet_envelope
from mobilenet_search.search.strategies import random_member
from mobilenet_search.search.study import RunContext, make_data, make_pipeline
from mobilenet_search.ui.cli_scaling import (  # the command's own printout of a fit and strategy options
    add_strategy_arguments,
    format_analysis,
    strategy_settings,
)

ALPHA = 0.05
PREDICTED_SHARE = 0.8  # the target: at least 80 % of the held-out points within the noise floor
CONTENDERS = ("recommended", "width", "resolution", "efficientnet", "paper")
LABELS = {"recommended": "recommended", "width": "width only", "resolution": "resolution only",
          "efficientnet": "EfficientNet 1.2/1.1/1.15", "paper": "paper's nearest"}
# A training's CPU seconds on the 2-core development machine at one torch thread, for --plan's estimate:
# about SECONDS_BASE plus SECONDS_PER_PROXY_GMADDS per giga multiply-add of the net at its proxy resolution per
# 1,000 training images and epoch (from MobileNetV2 0.35/96 and 1.0/224 at 48 px, 2 epochs, 6,000 images).
SECONDS_BASE, SECONDS_PER_PROXY_GMADDS = 12.0, 237.0
# A supernet epoch: SUPERNET_FACTOR times that rate over the multiply-adds of its sandwich step's members (the
# largest, the smallest and two random ones, each at its proxy resolution) per 1,000 training images. Scoring a
# point: forward passes only over the BatchNorm calibration and validation images, SCORING_FACTOR times the rate.
# (From one epoch of the mobilenetv2_scaling supernet on 1,000 images at 48 px, and MobileNetV2 0.35/96, 1.0/224 and
# 1.4/224 scored on 5,000 validation images.)
SUPERNET_FACTOR, SCORING_BASE, SCORING_FACTOR = 0.58, 0.7, 0.22

Family = Callable[[int, int], dict[str, ArchSpec]]  # (num_classes, in_channels) -> the paper's nets by name


def paper_nets(num_classes: int, in_channels: int) -> dict[str, ArchSpec]:
    """The paper's MobileNetV2 width x resolution family for this data."""
    return paper_family("mobilenet_v2", num_classes=num_classes, in_channels=in_channels)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="300M-madds", help="the scaling study's budget (its largest nets)")
    parser.add_argument("--fit-up-to", default=None, metavar="MADDS",
                        help="predictive check: fit on the nets up to this many MAdds (default: a third of --budget)")
    parser.add_argument("--at", nargs="+", default=["40M-madds", "150M-madds"], metavar="MADDS",
                        help="the head-to-head budgets")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds of every net of the scaling study (default 2; 1, the only one, with --strategy "
                             "supernet)")
    parser.add_argument("--final-seeds", type=int, default=3, help="seeds of every head-to-head net")
    parser.add_argument("--base", default=None, help="as for `mobilenet-search scaling` (default: its default)")
    add_strategy_arguments(parser)  # --strategy, --supernet-epochs, --confirm: as `mobilenet-search scaling`
    parser.add_argument("--space", default="mobilenetv2_scaling")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--dataset-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--proxy-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="the data split's and the first training's seed")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap replicates of each fit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--results-dir", type=Path, default=Path("results/bench/scaling"))
    parser.add_argument("--plan", action="store_true", help="print the plan and its estimated compute; train nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="report what the results dir holds (of a run still going, or cut short); train nothing")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.strategy == Strategy.SUPERNET.value else 2)
    args.fit_up_to = args.fit_up_to or f"{nominal_madds(madds_limit(args.budget, '--budget')) / 3e6:g}M-madds"
    return args


# -- keys and state ------------------------------------------------------------------------------------------------

def _hash(args: argparse.Namespace, keys: tuple[str, ...]) -> str:
    options = {k: getattr(args, k) for k in keys}
    # Options added after results were kept under keys without them enter a key only away from their default: a
    # scratch study keeps its key, and a supernet study (--strategy away from scratch) never shares one with it.
    options.update({k: v for k, v in vars(args).items() if k in LATER_KEYS and v != LATER_KEYS[k]})
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


TRAINING_KEYS = ("budget", "seeds", "base", "space", "dataset", "dataset_limit", "epochs", "batch_size", "proxy_size",
                 "lr", "seed")


def _strategy_defaults() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_strategy_arguments(parser)
    return vars(parser.parse_args([]))


LATER_KEYS = _strategy_defaults()  # the training options added since: strategy, supernet_epochs, confirm; defaults


def run_key(args: argparse.Namespace) -> str:
    """The options the trainings depend on, hashed: the study and the head-to-head nets."""
    return _hash(args, TRAINING_KEYS)


def report_key(args: argparse.Namespace) -> str:
    """The options the report depends on as well."""
    return _hash(args, (*TRAINING_KEYS, "fit_up_to", "at", "final_seeds", "resamples"))


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=1, default=str))


def study_config(args: argparse.Namespace) -> SearchConfig:
    """The scaling study's settings, as ``mobilenet-search scaling`` makes them from the same options (its own
    :func:`scaling_config`; the split fractions are its defaults)."""
    return scaling_config(args.seeds, budget=args.budget, space=args.space, dataset=args.dataset,
                          dataset_limit=args.dataset_limit, epochs=args.epochs, batch_size=args.batch_size,
                          proxy_size=args.proxy_size, lr=args.lr, seed=args.seed, **strategy_settings(args))


def storage_of(args: argparse.Namespace) -> tuple[str, str]:
    """The study's storage URL and name."""
    key = run_key(args)
    return f"sqlite:///{args.results_dir / f'scaling-{key}.db'}", f"scaling-{key}"


def paths(args: argparse.Namespace) -> dict[str, Path]:
    key = run_key(args)
    return {"nets": args.results_dir / f"nets-{key}.json", "compute": args.results_dir / f"compute-{key}.json"}


class Bench:
    """The benchmark's settings and what it reads: the data, the space, the base, the paper's nets.

    ``accuracy``: how a net is trained from scratch (default: scratch training under the study's proxy): the
    head-to-head nets, and a scratch study's nets; a supernet study scores with its own supernet and confirms with
    the study's scratch training. ``family``: the paper's nets for this data (default: MobileNetV2's). Tests pass
    their own of both.
    """

    def __init__(self, args: argparse.Namespace, *, accuracy: AccuracySource | None = None,
                 family: Family = paper_nets) -> None:
        self.args, self.config = args, study_config(args)
        self.data = make_data(self.config, args.results_dir)
        self.space: SearchSpace = load_space(args.space)
        self.base = resolve_base(args.base, self.space, num_classes=self.data.num_classes,
                                 in_channels=self.data.in_channels)
        self.grid = Grid(self.base, self.space, madds_limit(args.budget, "--budget"), args.seeds)
        self.accuracy = accuracy or ScratchTraining(train_config(self.config, args.device))
        self.family = family(self.data.num_classes, self.data.in_channels)
        self.storage, self.study_name = storage_of(args)
        self.paths = paths(args)

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage)


# -- the scaling study ---------------------------------------------------------------------------------------------

#: A supernet study's CPU seconds by part (their sum is ``study_cpu_s``, a scratch study's only figure).
SUPERNET_PARTS = {"supernet_cpu_s": "supernet training", "scoring_cpu_s": "scoring the points",
                  "confirm_cpu_s": "confirmations"}


def run_study(bench: Bench) -> optuna.Study:
    """The scaling study, created or resumed; its CPU seconds are added up in the compute state after each trial
    (a trial cut off mid-way loses its seconds). A supernet study's are split as well (:data:`SUPERNET_PARTS`):
    up to the supernet's last step (the data's decoding included) its training, saved after each epoch; then each
    trial's seconds to scoring, or to confirmations for a point retrained from scratch."""
    compute = load_state(bench.paths["compute"])
    supernet, mark = bench.config.supernet, [time.process_time()]

    def spend(part: str | None) -> None:
        now = time.process_time()
        compute["study_cpu_s"] = compute.get("study_cpu_s", 0.0) + now - mark[0]
        if part is not None:
            compute[part] = compute.get(part, 0.0) + now - mark[0]
        mark[0] = now

    def after_step(epoch: int, step: int, steps: int, loss: float) -> None:
        spend("supernet_cpu_s")
        if step == steps - 1:  # the epoch is checkpointed: a rerun does not train it again
            save_state(bench.paths["compute"], compute)
            print(f"  [{time.strftime('%H:%M:%S')}] supernet epoch {epoch + 1} of {bench.config.supernet_epochs}: "
                  f"loss {loss:.3f} ({compute['supernet_cpu_s']:.0f} CPU s so far)", flush=True)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        confirmation = is_confirmation(trial)
        spend(("confirm_cpu_s" if confirmation else "scoring_cpu_s") if supernet else None)
        save_state(bench.paths["compute"], compute)
        attrs = trial.user_attrs
        accuracy = attrs.get("accuracy")
        what = (f"confirms trial {attrs[CONFIRMS_ATTR]} from scratch" if confirmation else
                f"{attrs.get('scaling_direction')}" + ("" if supernet else
                                                       f" seed {attrs.get(NOISE_SEED_ATTR, bench.config.seed)}"))
        print(f"  [{time.strftime('%H:%M:%S')}] study trial {trial.number}: {what} {_m(attrs.get('madds') or 0)} "
              f"{attrs.get('outcome')}" + ("" if accuracy is None else f" val {accuracy:.4f}")
              + f" ({compute['study_cpu_s']:.0f} CPU s so far)", flush=True)

    # Counted up to each trial's end only: a rerun that finds the study finished adds nothing. A supernet study
    # takes no accuracy source: run_search trains (or loads) its supernet and confirms with its scratch training.
    return run_scaling(bench.config, bench.grid, storage=bench.storage, study_name=bench.study_name,
                       device=bench.args.device, results_dir=bench.args.results_dir,
                       accuracy=None if supernet else bench.accuracy, callbacks=[after_trial],
                       on_supernet_step=after_step)


def is_scratch_run(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial of the study trained its net from scratch under the proxy, as a head-to-head net is: every
    trained net of a scratch study; of a supernet study its confirmations, not its inherited scores."""
    record = TrialRecord.from_trial(trial)
    return (record.outcome == Outcome.TRAINED.value and record.strategy in (None, Strategy.SCRATCH.value)
            and record.test_correct is not None)


def trained_runs(study: optuna.Study, seed: int) -> dict[tuple[str, int], dict[str, Any]]:
    """The study's nets trained from scratch (:func:`is_scratch_run`) by (arch, seed): what a head-to-head net of the
    same training reuses."""
    runs = {}
    for trial in study.get_trials(deepcopy=False):
        if is_scratch_run(trial):
            repeat = trial.user_attrs.get(NOISE_SEED_ATTR)  # another seed; the first run trains with the study's
            runs[(trial.user_attrs["arch"], seed if repeat is None else repeat)] = entry_of(trial.user_attrs)
    return runs


def entry_of(attrs: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of one trained net."""
    keys = ("arch", "madds", "accuracy", "test_accuracy", CORRECT_ATTR, VAL_SIZE_ATTR, TEST_CORRECT_ATTR,
            TEST_SIZE_ATTR)
    return {k: attrs.get(k) for k in keys}


# -- 1. the predictive check ---------------------------------------------------------------------------------------

def fit_view(study: optuna.Study, cap: float) -> optuna.Study:
    """The study as if it held only its nets up to ``cap`` MAdds: an in-memory copy with those finished trials and
    plan points, which :func:`analyse` fits as it fits any scaling study (noise floor included). A supernet study's
    confirmations of those nets come along, naming their points by the view's own trial numbers."""
    view = optuna.create_study(directions=study.directions, study_name=study.study_name)
    for key, value in study.user_attrs.items():
        view.set_user_attr(key, value)
    plan = study.user_attrs[SCALING_ATTR]
    view.set_user_attr(SCALING_ATTR, {**plan, "points": [p for p in plan["points"] if p["madds"] <= cap]})
    kept = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                                 optuna.trial.TrialState.FAIL))
            if t.user_attrs.get("madds", math.inf) <= cap]
    points = {t.number for t in kept if not is_confirmation(t)}
    kept = [t for t in kept if not is_confirmation(t) or t.user_attrs[CONFIRMS_ATTR] in points]
    numbers = {t.number: number for number, t in enumerate(kept)}  # add_trials numbers them afresh, in this order
    for trial in kept:
        if is_confirmation(trial):
            trial.user_attrs = {**trial.user_attrs, CONFIRMS_ATTR: numbers[trial.user_attrs[CONFIRMS_ATTR]]}
    view.add_trials(kept)
    return view


def validation_means(study: optuna.Study) -> dict[str, list[float]]:
    """Per trained net (arch string), its validation accuracy of each seed: what the fit reads (:func:`point_runs`:
    a supernet study's inherited scores, its confirmations aside)."""
    means: dict[str, list[float]] = {}
    for _, record in point_runs(study):
        means.setdefault(record.arch, []).append(float(record.accuracy))
    return means


def predictive_check(study: optuna.Study, cap: float, resamples: int) -> dict[str, Any]:
    """Fit on the nets up to ``cap`` MAdds, predict each direction's grid nets above it, compare with the measured."""
    fitted = analyse(fit_view(study, cap), resamples=resamples)
    floor = fitted["noise"]["floor"]
    measured = validation_means(study)
    points = []
    for direction in DIRECTIONS:
        fit = fitted["directions"][direction]["fit"]
        held = {p["arch"]: p for p in study.user_attrs[SCALING_ATTR]["points"]
                if p["direction"] == direction and p["madds"] > cap}
        for arch, point in sorted(held.items(), key=lambda item: item[1]["madds"]):
            row = {"direction": direction, "arch": arch, "madds": point["madds"], "step": point["step"],
                   "measured": None, "seeds": 0, "predicted": None, "interval": None, "error": None,
                   "within_floor": None, "within_interval": None,
                   "reason": None if fit else fitted["directions"][direction]["reason"]}
            if arch in measured:
                row.update(measured=float(np.mean(measured[arch])), seeds=len(measured[arch]))
            if fit is not None:
                row["predicted"], row["interval"] = predict(fit, point["madds"])
            if row["measured"] is not None and row["predicted"] is not None:
                row["error"] = row["measured"] - row["predicted"]
                row["within_floor"] = bool(abs(row["error"]) <= floor)
                low, high = row["interval"] or (row["predicted"], row["predicted"])
                row["within_interval"] = bool(low <= row["measured"] <= high)
            points.append(row)
    judged = [p for p in points if p["within_floor"] is not None]
    share = sum(p["within_floor"] for p in judged) / len(judged) if judged else None
    return {"fit_up_to": cap, "analysis": fitted, "noise_floor": floor, "points": points, "judged": len(judged),
            "held_out": len(points), "share_within_floor": share,
            "met": None if share is None else share >= PREDICTED_SHARE}


# -- 2. head to head -----------------------------------------------------------------------------------------------

def contenders(bench: Bench, analysis: dict[str, Any], at: str) -> dict[str, dict[str, Any]]:
    """The nets compared at budget ``at``: name -> arch, MAdds and how it was picked (None where there is none)."""
    budget = madds_limit(at, "--at")
    try:
        answer = recommend(analysis, nominal_madds(budget), bench.space, lambda spec: admitted(budget, spec))
        nets: dict[str, Any] = {"recommended": {"arch": answer["arch"], "madds": answer["madds"],
                                                "how": f"{answer['direction']}, predicted val {answer['accuracy']:.3f}",
                                                "plateau": answer["plateau"]}}
    except UserError as exc:  # a study not yet trained that far (a report of a partial run)
        nets = {"recommended": None, "why_none": str(exc)}
    return {**nets, **fixed_contenders(bench, budget)}


def fixed_contenders(bench: Bench, budget: Budget) -> dict[str, dict[str, Any] | None]:
    """The contenders at ``budget`` that do not depend on the fit: width only, resolution only, EfficientNet's
    coefficients, and the paper's net with the most MAdds the budget admits (None where none is); each its arch,
    MAdds and how it was picked."""
    madds = nominal_madds(budget)
    nets: dict[str, dict[str, Any] | None] = {}
    for name, direction in (("width", "width"), ("resolution", "resolution"), ("efficientnet", "compound")):
        point = solve(bench.base, direction, madds, coefficients=EFFICIENTNET, snap=bench.space.nearest,
                      admits=lambda spec: admitted(budget, spec))
        nets[name] = {"arch": point.spec.to_string(), "madds": point.madds, "how": f"{direction} to {_m(madds)}"}
    family = {name: spec for name, spec in bench.family.items() if admitted(budget, spec)}
    name = max(family, key=lambda n: count_madds(family[n]), default=None)
    nets["paper"] = None if name is None else {"arch": family[name].to_string(), "madds": count_madds(family[name]),
                                               "how": name}
    return nets


def train_nets(bench: Bench, wanted: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    """Train every (arch, seed) of ``wanted`` that neither the study nor an earlier run trained; saved after each.
    Returns every run by ``arch@seed``."""
    path = bench.paths["nets"]
    done = load_state(path)
    reused = trained_runs(bench.study(), bench.config.seed)
    pipeline = make_pipeline(RunContext.of(bench.config, bench.data), device=bench.args.device,
                             accuracy=bench.accuracy, results_dir=bench.args.results_dir)
    for arch, seed in wanted:
        key = f"{arch}@{seed}"
        if key in done:
            continue
        if (arch, seed) in reused:
            done[key] = {**reused[(arch, seed)], "from_study": True, "cpu_seconds": 0.0}
        else:
            spec = ArchSpec.from_string(arch)
            started = time.process_time()
            record = pipeline.measure(spec, pipeline.check(spec), seed=seed)
            done[key] = {**entry_of(record.attrs), "from_study": False, "cpu_seconds": time.process_time() - started}
            print(f"  [{time.strftime('%H:%M:%S')}] head to head: {_m(done[key]['madds'])} seed {seed} "
                  f"val {done[key]['accuracy']:.4f} test {done[key]['test_accuracy']:.4f} "
                  f"({done[key]['cpu_seconds']:.0f} CPU s)", flush=True)
        save_state(path, done)
    return done


def head_to_head_runs(bench: Bench, analysis: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """Every budget's contenders, and the (arch, seed) runs they need: seed by seed, so that a partial run covers
    every net."""
    picked = {at: contenders(bench, analysis, at) for at in bench.args.at}
    wanted: list[tuple[str, int]] = []
    for k in range(bench.args.final_seeds):
        for nets in picked.values():
            for net in (nets[name] for name in CONTENDERS):
                if net is not None and (net["arch"], bench.config.seed + k) not in wanted:
                    wanted.append((net["arch"], bench.config.seed + k))
    return picked, wanted


def test_correct(run: dict[str, Any]) -> np.ndarray:
    return unpack_correct(run[TEST_CORRECT_ATTR], int(run[TEST_SIZE_ATTR]))


def head_to_head(bench: Bench, picked: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per budget, each contender's MAdds and test accuracy over its seeds, and the recommendation's verdict against
    it (:func:`compare` on the seeds' predictions paired seed by seed, beyond the seed noise of a mean)."""
    seeds = [bench.config.seed + k for k in range(bench.args.final_seeds)]

    def seed_runs(arch: str) -> list[dict[str, Any]]:
        return [runs[f"{arch}@{s}"] for s in seeds if f"{arch}@{s}" in runs]

    archs = {nets[name]["arch"] for nets in picked.values() for name in CONTENDERS if nets[name] is not None}
    seed_sd = seed_noise({arch: [r["test_accuracy"] for r in seed_runs(arch)] for arch in archs})
    budgets = {}
    for at, nets in picked.items():
        rows: dict[str, Any] = {}
        mine = seed_runs(nets["recommended"]["arch"]) if nets["recommended"] else []
        for name in CONTENDERS:
            net = nets[name]
            if net is None:
                rows[name] = None
                continue
            theirs = seed_runs(net["arch"])
            accuracies = [r["test_accuracy"] for r in theirs]
            row = {**net, "seeds": len(theirs), "test_accuracy": float(np.mean(accuracies)) if theirs else None,
                   "test_sd": float(np.std(accuracies, ddof=1)) if len(theirs) > 1 else None,
                   "same_as_recommended": (name != "recommended" and nets["recommended"] is not None
                                           and net["arch"] == nets["recommended"]["arch"]),
                   "verdict": None}
            count = min(len(mine), len(theirs))
            if name != "recommended" and not row["same_as_recommended"] and count:
                verdict = compare(np.concatenate([test_correct(r) for r in mine[:count]]),
                                  np.concatenate([test_correct(r) for r in theirs[:count]]),
                                  seed_sd=None if seed_sd is None else seed_sd / math.sqrt(count), alpha=ALPHA)
                row["verdict"] = {"verdict": verdict.verdict, "p_value": verdict.p_value, "margin": verdict.margin,
                                  "noise_margin": verdict.noise_margin, "seeds": count}
            rows[name] = row
        budgets[at] = rows
    why = {at: nets["why_none"] for at, nets in picked.items() if nets["recommended"] is None}
    return {"seeds": bench.args.final_seeds, "seed_sd": seed_sd, "budgets": budgets, "no_recommendation": why}


def picked_why(result: dict[str, Any], at: str) -> str:
    return "no recommendation: " + result["no_recommendation"].get(at, "")


def head_to_head_targets(result: dict[str, Any]) -> dict[str, Any]:
    """Never worse than any beyond noise (True/False; None until compared), and better than the paper's net at some
    budget, with why not at each budget where it is not."""
    verdicts = [(at, name, row["verdict"]["verdict"]) for at, rows in result["budgets"].items()
                for name, row in rows.items() if row is not None and row["verdict"] is not None]
    worse = [f"{at}: worse than {LABELS[name]}" for at, name, verdict in verdicts if verdict == "worse"]
    why_not, better = [], []
    for at, rows in result["budgets"].items():
        paper = rows["paper"]
        if rows["recommended"] is None:
            why_not.append(f"{at}: no recommendation ({result['no_recommendation'].get(at, '')})")
        elif paper is None:
            why_not.append(f"{at}: no paper net within the budget")
        elif paper["same_as_recommended"]:
            why_not.append(f"{at}: the recommendation is the paper's {paper['how']} itself")
        elif paper["verdict"] is None:
            why_not.append(f"{at}: not trained yet")
        elif paper["verdict"]["verdict"] == "better":
            better.append(at)
        else:
            v = paper["verdict"]
            word = "from" if v["verdict"] == "indistinguishable" else "than"
            why_not.append(f"{at}: {v['verdict']} {word} the paper's {paper['how']} ({v['margin']:+.4f}, McNemar "
                           f"p = {v['p_value']:.2g}, seed-noise margin {v['noise_margin'] or 0:.4f})")
    return {"never_worse": (not worse) if verdicts else None, "worse": worse,
            "better_than_paper": bool(better) if result["budgets"] else None, "better_at": better,
            "why_not": why_not}


# -- running it and the report -------------------------------------------------------------------------------------

def planned_trainings(bench: Bench) -> list[tuple[str, str, float, int]]:
    """(phase, arch, MAdds, seeds) of what the benchmark would train at most: the study's first phase, its compound
    phase with EfficientNet's coefficients standing in for the fitted ones (a supernet study scores them), and the
    head-to-head nets that do not depend on the fit, the paper's nearest net included (the recommendation is one
    more net per budget, or one of these)."""
    points = [p for p, _ in bench.grid.first_phase()] + bench.grid.compound(EFFICIENTNET)
    rows: list[tuple[str, str, float, int]] = []
    trained: dict[str, int] = {}  # arch -> its from-scratch runs planned so far (a head-to-head net reuses them)
    phase, reused = ("study, scored", 0) if bench.config.supernet else ("study", bench.args.seeds)
    for point in points:
        if point.spec.to_string() not in trained:
            trained[point.spec.to_string()] = reused
            rows.append((phase, point.spec.to_string(), point.madds, bench.args.seeds))
    for at in bench.args.at:
        for net in fixed_contenders(bench, madds_limit(at, "--at")).values():
            extra = 0 if net is None else bench.args.final_seeds - trained.get(net["arch"], 0)
            if extra > 0:
                rows.append((f"head to head {at}", net["arch"], net["madds"], extra))
                trained[net["arch"]] = bench.args.final_seeds
    return rows


def proxy_madds(bench: Bench, spec: ArchSpec) -> float:
    """A net's multiply-adds per image at its proxy resolution."""
    return count_madds(spec.replace(resolution=proxy_resolution(bench.args.proxy_size, spec.resolution)))


def estimate_seconds(bench: Bench, arch: str) -> float:
    """A training's CPU seconds by :data:`SECONDS_BASE` and :data:`SECONDS_PER_PROXY_GMADDS`."""
    images = len(bench.data(bench.args.proxy_size).train_labels)
    return (SECONDS_BASE + SECONDS_PER_PROXY_GMADDS * proxy_madds(bench, ArchSpec.from_string(arch)) / 1e9 * images
            / 1000 * bench.args.epochs)


def estimate_scoring(bench: Bench, arch: str) -> float:
    """Scoring a point with inherited weights, in CPU seconds (:data:`SCORING_BASE`, :data:`SCORING_FACTOR`)."""
    data = bench.data(bench.args.proxy_size)
    images = min(512, len(data.train_labels)) + len(data.val_labels)  # InheritedWeights' calibration, validation
    return SCORING_BASE + (SCORING_FACTOR * SECONDS_PER_PROXY_GMADDS * proxy_madds(bench, ArchSpec.from_string(arch))
                           / 1e9 * images / 1000)


def estimate_supernet(bench: Bench) -> tuple[float, float]:
    """A supernet epoch's multiply-adds per image of its sandwich step at the proxy (the largest, the smallest and
    two random members, 64 of them drawn with a fixed seed for the mean), and its CPU seconds
    (:data:`SUPERNET_FACTOR`)."""
    classes = {"num_classes": bench.data.num_classes, "in_channels": bench.data.in_channels}
    generator = torch.Generator().manual_seed(0)
    drawn = [proxy_madds(bench, random_member(bench.space, generator, **classes)) for _ in range(64)]
    step = (proxy_madds(bench, supernet_envelope(bench.space, **classes))
            + proxy_madds(bench, bench.space.extreme(count_madds, **classes)) + 2 * float(np.mean(drawn)))
    images = len(bench.data(bench.args.proxy_size).train_labels)
    return step, SUPERNET_FACTOR * SECONDS_PER_PROXY_GMADDS * step / 1e9 * images / 1000


def print_plan(bench: Bench) -> None:
    rows = planned_trainings(bench)
    supernet = bench.config.supernet
    print(f"  plan: base {bench.base.to_string()} ({_m(count_madds(bench.base))} MAdds); MAdds targets "
          + ", ".join(_m(t) for t in madds_targets(count_madds(bench.base),
                                                               nominal_madds(bench.grid.budget))))
    total = 0.0
    if supernet:
        step, seconds = estimate_supernet(bench)
        total += seconds * bench.config.supernet_epochs
        print(f"  {'supernet':24s} {bench.config.supernet_epochs} epoch(s) of sandwich steps, {_m(step)} MAdds an "
              f"image at the proxy  ~{seconds * bench.config.supernet_epochs:5.0f} CPU s")
    for phase, arch, madds, seeds in rows:
        scored = supernet and phase.startswith("study")
        seconds = (estimate_scoring(bench, arch) if scored else estimate_seconds(bench, arch)) * seeds
        total += seconds
        print(f"  {phase:24s} {_m(madds):>7s} x {seeds} seed(s)  ~{seconds:5.0f} CPU s  {arch[:60]}")
    trainings = sum(r[3] for r in rows if not (supernet and r[0].startswith("study")))
    if supernet:  # up to --confirm points of each phase's front, not known before it is scored
        confirmations = 2 * bench.config.confirm
        study = [estimate_seconds(bench, arch) for phase, arch, _, _ in rows if phase.startswith("study")]
        seconds = confirmations * float(np.mean(study))
        total, trainings = total + seconds, trainings + confirmations
        print(f"  {'confirmations':24s} up to {confirmations} nets of the fronts, at the grid's mean training  "
              f"~{seconds:5.0f} CPU s")
    print(f"  estimate: {trainings} trainings, about {total:.0f} CPU s "
          f"({total / 3600:.1f} CPU h; the recommendations add at most {len(bench.args.at)} net(s) x "
          f"{bench.args.final_seeds} seeds)", flush=True)


def summarise(bench: Bench) -> dict[str, Any]:
    """Every figure of the report, as a JSON-ready dict."""
    study = bench.study()
    cap = nominal_madds(madds_limit(bench.args.fit_up_to, "--fit-up-to"))
    full = analyse(study, resamples=bench.args.resamples)
    check = predictive_check(study, cap, bench.args.resamples)
    picked, wanted = head_to_head_runs(bench, full)
    runs = load_state(bench.paths["nets"])
    result = head_to_head(bench, picked, runs)
    labels = bench.data(bench.args.proxy_size).test_labels.numpy()
    return {"options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(bench.args).items()},
            "key": run_key(bench.args), "study": bench.study_name, "strategy": bench.config.strategy,
            "test_images": int(len(labels)), "test_trivial_accuracy": trivial_accuracy(labels), "analysis": full,
            "predictive": check, "head_to_head": result,
            "targets": {"predictive": check["met"], **head_to_head_targets(result)},
            "compute": compute_figures(bench, study, runs), "complete": all(f"{a}@{s}" in runs for a, s in wanted)}


def compute_figures(bench: Bench, study: optuna.Study, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The CPU seconds of the study (a supernet study's by part too: :data:`SUPERNET_PARTS`) and of the head-to-head
    nets, with how many nets each trained or scored."""
    compute = load_state(bench.paths["compute"])
    trials = study.get_trials(deepcopy=False)
    figures = {"strategy": bench.config.strategy, "study_cpu_s": compute.get("study_cpu_s"),
               "study_trainings": sum(1 for t in trials if is_scratch_run(t)),
               "head_to_head_cpu_s": sum(r["cpu_seconds"] for r in runs.values()),
               "head_to_head_trainings": sum(1 for r in runs.values() if not r["from_study"]),
               "head_to_head_reused": sum(1 for r in runs.values() if r["from_study"])}
    if bench.config.supernet:
        supernet = study.user_attrs.get(SUPERNET_ATTR) or {}
        figures.update({part: compute.get(part) for part in SUPERNET_PARTS},
                       supernet_epochs=bench.config.supernet_epochs, supernet_wall_s=supernet.get("train_seconds"),
                       points_scored=sum(1 for t in trials if outcome(t) == Outcome.TRAINED.value
                                         and TrialRecord.from_trial(t).strategy == Strategy.SUPERNET.value),
                       confirmations=sum(1 for t in trials if is_confirmation(t) and is_scratch_run(t)))
    return figures


def met(value: bool | None) -> str:
    return "n/a" if value is None else "MET" if value else "MISSED"


def _m(madds: float) -> str:
    return format_count(madds)


def print_report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    check, result, compute = summary["predictive"], summary["head_to_head"], summary["compute"]
    how = (f"scored with the weights inherited from one supernet ({args.supernet_epochs} epoch(s)), up to "
           f"{args.confirm} point(s) of each phase confirmed from scratch" if args.strategy == Strategy.SUPERNET.value
           else f"{args.seeds} seed(s) a net trained from scratch")
    print(f"\n== the scaling study ({args.strategy}): {args.space} from the base up to {args.budget} on "
          f"{args.dataset}{f' (limit {args.dataset_limit})' if args.dataset_limit else ''}, proxy {args.epochs} "
          f"epochs at {args.proxy_size} px, {how}; the fit of all its nets")
    print(format_analysis(summary["analysis"]))

    print(f"\n== predictive check: fitted on the nets up to {_m(check['fit_up_to'])} MAdds (noise floor "
          f"{check['noise_floor']:.4f}), each direction's nets above it predicted; validation accuracy, mean of "
          f"their seeds")
    print(format_analysis(check["analysis"]))
    print(f"  {'direction':10s} {'MAdds':>8s} {'measured':>9s} {'predicted':>9s} {'95% band':>15s} {'error':>8s}  "
          "within the floor")
    for p in check["points"]:
        if p["predicted"] is None or p["measured"] is None:
            print(f"  {p['direction']:10s} {_m(p['madds']):>8s}  " + (p["reason"] or "not trained yet"))
            continue
        band = "-" if p["interval"] is None else "[{:.3f},{:.3f}]".format(*p["interval"])
        print(f"  {p['direction']:10s} {_m(p['madds']):>8s} {p['measured']:9.4f} {p['predicted']:9.4f} "
              f"{band:>15s} {p['error']:+8.4f}  {'yes' if p['within_floor'] else 'no'}"
              f"{'' if p['within_interval'] else ' (outside the band)'}")
    share = check["share_within_floor"]
    print(f"  {met(check['met'])}: {sum(p['within_floor'] or 0 for p in check['points'])} of {check['judged']} "
          f"held-out points within the noise floor of their prediction"
          + ("" if share is None else f" ({share:.0%}; target {PREDICTED_SHARE:.0%})"))

    sd = result["seed_sd"]
    print(f"\n== head to head: each net trained with {result['seeds']} seeds, scored on the "
          f"{summary['test_images']} test images (trivial accuracy {summary['test_trivial_accuracy']:.3f}); "
          f"the recommendation against each: McNemar on the seeds' predictions paired seed by seed, beyond the "
          f"seed noise of a {result['seeds']}-seed mean (pooled seed sd "
          + ("not measured" if sd is None else f"{sd:.4f}") + ")")
    for at, rows in result["budgets"].items():
        print(f"  at {at}:")
        for name in CONTENDERS:
            row = rows[name]
            if row is None:
                print(f"    {LABELS[name]:26s} " + (picked_why(result, at) if name == "recommended"
                                                     else "none within the budget"))
                continue
            accuracy = "not trained" if row["test_accuracy"] is None else (
                f"test {row['test_accuracy']:.4f}" + ("" if row["test_sd"] is None else f" ± {row['test_sd']:.4f}")
                + f" ({row['seeds']} seeds)")
            text = f"    {LABELS[name]:26s} {_m(row['madds']):>8s}  {accuracy:34s}"
            if row["same_as_recommended"]:
                text += "  the recommended net itself"
            elif row["verdict"] is not None:
                v = row["verdict"]
                text += (f"  recommended {v['verdict']:17s} ({v['margin']:+.4f}, p = {v['p_value']:.2g}, "
                         f"seed-noise margin {v['noise_margin'] or 0:.4f})")
            print(text + f"  [{row['how']}]")
        plateau = rows["recommended"] and rows["recommended"]["plateau"]
        if plateau:
            cheapest = plateau["cheapest"]
            print(f"    (past the knee at {_m(plateau['knee'])}: the fit's cheapest net at the plateau is "
                  f"{cheapest['direction']} at {_m(cheapest['madds'])}, predicted val {cheapest['accuracy']:.3f})")

    goal = summary["targets"]
    print("\n== targets")
    print(f"  {met(goal['predictive'])}: at least {PREDICTED_SHARE:.0%} of the held-out points within the noise floor "
          "of their prediction")
    print(f"  {met(goal['never_worse'])}: the recommendation is never worse than any contender beyond noise"
          + (f" ({'; '.join(goal['worse'])})" if goal["worse"] else ""))
    print(f"  {met(goal['better_than_paper'])}: better than the paper's nearest net on at least one budget"
          + (f" ({', '.join(goal['better_at'])})" if goal["better_at"] else "")
          + ("" if not goal["why_not"] else "; where not: " + "; ".join(goal["why_not"])))
    print(f"\n== compute (CPU s of this process, time.process_time), {compute['strategy']} study: "
          f"{format_compute(compute)}"
          + ("" if summary["complete"] else "\n  INCOMPLETE: some head-to-head runs are not trained yet"))


def format_compute(compute: dict[str, Any]) -> str:
    """The compute figures as one line of text."""
    study = f"study {compute['study_cpu_s'] or 0:.0f}"
    if compute["strategy"] == Strategy.SUPERNET.value:
        wall = compute["supernet_wall_s"]
        study += (f" = supernet training {compute['supernet_cpu_s'] or 0:.0f} ({compute['supernet_epochs']} "
                  f"epoch(s)" + ("" if wall is None else f", {wall:.0f} s wall as the study records it") + ") + "
                  f"scoring the points {compute['scoring_cpu_s'] or 0:.0f} ({compute['points_scored']} nets) + "
                  f"confirmations {compute['confirm_cpu_s'] or 0:.0f} ({compute['confirmations']} trainings)")
    else:
        study += f" ({compute['study_trainings']} trainings)"
    return (f"{study}; head to head {compute['head_to_head_cpu_s']:.0f} ({compute['head_to_head_trainings']} "
            f"trainings, {compute['head_to_head_reused']} runs reused from the study)")


def report(bench: Bench) -> dict[str, Any]:
    summary = summarise(bench)
    atomic_write_text(bench.args.results_dir / f"report-{report_key(bench.args)}.json",
                      json.dumps(summary, indent=1, default=str))
    print_report(summary, bench.args)
    return summary


def main(argv: list[str] | None = None, *, accuracy: AccuracySource | None = None,
         family: Family = paper_nets) -> dict[str, Any] | None:
    """Run (or resume) the benchmark and print its report; ``accuracy`` and ``family`` as for :class:`Bench`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        study_config(args)  # settings it refuses (--seeds 2 with --strategy supernet): before anything is written
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    try:
        print("$ python benchmarks/bench_scaling.py " + shlex.join(argv), flush=True)
        print(f"  results and resumable state: {args.results_dir} (run key {run_key(args)})", flush=True)
        bench = Bench(args, accuracy=accuracy, family=family)
        print_plan(bench)
        if args.plan:
            return None
        if args.report_only:
            return report(bench)
        started = time.perf_counter()
        study = run_study(bench)
        print(f"  the study: {distinct(study.user_attrs[SCALING_ATTR]['points'])} nets "
              + ("scored with inherited weights" if bench.config.supernet else f"x {args.seeds} seed(s) trained"),
              flush=True)
        _, wanted = head_to_head_runs(bench, analyse(study, resamples=args.resamples))
        train_nets(bench, wanted)
        print(f"  all trained; {time.perf_counter() - started:.0f} s wall this run", flush=True)
        return report(bench)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

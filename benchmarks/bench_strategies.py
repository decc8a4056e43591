"""Scratch vs supernet search under the same compute budget: candidates scored, ranking fidelity, confirmed front.

Run (the figure in ``benchmarks/results/bench_strategies.txt``; 2 CPU cores, about 20-35 min wall)::

    python benchmarks/bench_strategies.py --budget-seconds 900 --clock cpu --proxy-size 32 --epochs 2 \
        --supernet-epochs 8 --top 8 --long-factor 5 --confirm 3 --references default --seed 0 --threads 1 --jobs 2

At the issue's scale, on a GPU: e.g. ``--budget-seconds 2400 --clock wall --proxy-size 64 --epochs 8
--supernet-epochs 24 --top 12 --device cuda`` (wall clock there: a process driving a GPU spends little CPU time).

Both strategies search ``--space`` under ``--budget`` on ``--dataset`` with the same settings and seed:

1. ``scratch``: a study whose candidates are trained with the proxy, until the budget is spent;
2. ``supernet``: the supernet trained once, then candidates scored with inherited weights until the budget left,
   less a reserve for the confirmations (``--confirm`` x the mean seconds of the study's own scratch-trained
   reference nets), is spent; then its Pareto candidates are confirmed by scratch training (inside the budget).
3. ``retrain``: ``--top`` distinct candidates spread over MAdds among those the supernet study scored, each trained
   from scratch with the scratch proxy (the scratch strategy's accuracy for exactly those candidates) and with a
   ``--long-factor`` times longer schedule (the target), as ``mobilenet-search fidelity`` does; and the scratch
   study's Pareto front trained once more with the next seed, so that both fronts are compared after one training
   that did not pick them (the scratch study's own front is a maximum over noisy proxy accuracies).

The budget is counted in CPU seconds of the process (``--clock cpu``, ``time.process_time``) by default: the
machine is shared, and CPU time does not grow when other work takes the cores, so both strategies get the same
compute whichever ran under more load, and the two studies can run side by side (``--jobs 2``, one torch thread
each). ``--clock wall`` counts elapsed seconds. The budget is checked after every trial, so a study overshoots by
at most one trial (the seconds actually spent are printed). Both studies train the same reference nets
(``--references``); their seconds are measured and left out of both budgets (printed apart).

Everything is kept under ``--results-dir`` (default ``results/bench/strategies``), keyed by a hash of the options:
studies, the supernet checkpoint (reused by its tag, with its training seconds stored beside it and counted
again), retrained accuracies and each phase's seconds; a rerun with the same options skips what is done and
resumes what is not (a phase killed mid-trial loses that trial's seconds from its count).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.references import spread
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.files import atomic_write_text
from mobilenet_search.measure.data import proxy_resolution
from mobilenet_search.measure.latency import measure_latency
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import (
    SUPERNET_ATTR,
    frame_is_confirmation,
    frame_is_reference,
    pack_correct,
    trial_correct,
    unpack_correct,
)
from mobilenet_search.results.report import hypervolume, search_gain
from mobilenet_search.results.stats import bootstrap_hypervolume_interval
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.coordination import Slots
from mobilenet_search.search.evaluate import init_seed
from mobilenet_search.search.fidelity import correlations
from mobilenet_search.search.space import load_space
from mobilenet_search.search.strategies import checkpoint_tag, default_checkpoint
from mobilenet_search.search.study import RunContext, confirm, make_data, make_objective, open_study, run_search

TRIALS = 10_000  # the budget, not a trial count, ends each search
SCORES = {"scratch": "scratch proxy", "supernet": "supernet (inherited)", "madds": "MAdds alone"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scale = parser.add_argument_group("scale (every knob; the defaults are the 2-core CPU figure)")
    scale.add_argument("--budget-seconds", type=float, default=600.0, help="compute budget of each strategy")
    scale.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                       help="cpu: the process's CPU seconds (robust to other load); wall: elapsed seconds")
    scale.add_argument("--proxy-size", type=int, default=32, help="proxy image size of a 224-px candidate")
    scale.add_argument("--epochs", type=int, default=4, help="scratch proxy epochs")
    scale.add_argument("--supernet-epochs", type=int, default=10)
    scale.add_argument("--top", type=int, default=12, help="candidates retrained for the ranking comparison")
    scale.add_argument("--long-factor", type=int, default=5, help="target schedule: this many times --epochs")
    scale.add_argument("--confirm", type=int, default=3, help="Pareto candidates the supernet study confirms")
    scale.add_argument("--references", default="default", choices=("default", "all", "none"))
    scale.add_argument("--dataset-limit", type=int, default=None)
    scale.add_argument("--device", default="cpu")
    scale.add_argument("--threads", type=int, default=1, help="torch threads per process")
    scale.add_argument("--jobs", type=int, default=2, choices=(1, 2, 3, 4),
                       help="processes at a time: the two studies side by side (2 or more), then the retraining "
                            "split in this many shards")
    parser.add_argument("--budget", default="300M-madds")
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=Path("results/bench/strategies"))
    parser.add_argument("--phase", choices=("all", "scratch", "supernet", "retrain", "report"), default="all",
                        help=argparse.SUPPRESS)
    parser.add_argument("--shard", default="0/1", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace, strategy: str) -> SearchConfig:
    return SearchConfig(budget=args.budget, space=args.space, dataset=args.dataset, dataset_limit=args.dataset_limit,
                        epochs=args.epochs, proxy_size=args.proxy_size, sampler=args.sampler, seed=args.seed,
                        references=args.references, strategy=strategy, supernet_epochs=args.supernet_epochs,
                        confirm=args.confirm)


def run_key(args: argparse.Namespace) -> str:
    """What a run's results depend on, hashed: a rerun with the same options resumes, other options start anew."""
    keys = ("budget_seconds", "clock", "proxy_size", "epochs", "supernet_epochs", "confirm", "references",
            "dataset_limit", "budget", "space", "dataset", "sampler", "seed")
    text = json.dumps({k: getattr(args, k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def study_name(args: argparse.Namespace, strategy: str) -> str:
    return f"{strategy}-{run_key(args)}"


def storage(args: argparse.Namespace, strategy: str) -> str:
    return f"sqlite:///{args.results_dir / (study_name(args, strategy) + '.db')}"


def state_path(args: argparse.Namespace, name: str) -> Path:
    return args.results_dir / f"{name}-{run_key(args)}.json"


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=2))


class Clock:
    """Seconds spent by a phase across runs: what earlier runs stored plus this process's since it started."""

    def __init__(self, kind: str, before: float = 0.0) -> None:
        self.kind, self.before = kind, before
        self.start = self.now()

    def now(self) -> float:
        return time.process_time() if self.kind == "cpu" else time.perf_counter()

    def spent(self) -> float:
        return self.before + self.now() - self.start


def run_study(args: argparse.Namespace, strategy: str) -> None:
    """One strategy's search until the budget is spent (then, for the supernet, its confirmations).

    The reference nets are trained in both studies alike, outside the budget: the seconds of each trial are
    measured (by the budget's clock) between the callbacks that follow trials, and a reference trial's are set
    aside (``references_spent``).
    """
    path = state_path(args, strategy)
    state = load_state(path)
    if state.get("done"):
        return
    clock = Clock(args.clock, state.get("spent", 0.0))
    config = config_of(args, strategy)
    mark = [clock.spent()]  # the clock when the last trial (or the supernet training) ended
    space = load_space(config.space)
    # A supernet checkpoint reused from another run (same tag, other budget) costs this run nothing to load: its
    # training seconds, stored beside it when it was trained, count against this budget all the same.
    cost_file = default_checkpoint(args.results_dir, checkpoint_tag(config, space)).with_suffix(".cost.json")
    if strategy == "supernet" and "train_spent" not in state and cost_file.is_file():
        state["train_reused"] = load_state(cost_file)["train_spent"]

    def save(**changes: Any) -> None:
        state.update(changes, spent=clock.spent())
        state["budget_spent"] = state["spent"] - state.get("references_spent", 0.0) + state.get("train_reused", 0.0)
        save_state(path, state)

    def on_supernet_step(epoch: int, step: int, steps: int, loss: float) -> None:
        if step + 1 == steps:  # the supernet's training seconds so far (the last epoch's end is its end)
            mark[0] = clock.spent()
            save(train_spent=mark[0] - state.get("references_spent", 0.0))
            if epoch + 1 == args.supernet_epochs:
                save_state(cost_file, {"train_spent": state["train_spent"], "clock": args.clock})

    def reserve(study: optuna.Study) -> float | None:
        """The confirmations' expected seconds: ``confirm`` x the mean of the study's scratch-trained references;
        None while a queued reference is still to run (the budget is not checked before they all ran)."""
        trials = study.get_trials(deepcopy=False)
        if any(t.state != optuna.trial.TrialState.COMPLETE and t.user_attrs.get("reference") for t in trials):
            return None
        if strategy == "scratch":
            return 0.0
        seconds = list(state.get("reference_seconds", {}).values())
        return args.confirm * sum(seconds) / len(seconds) if seconds else 0.0

    def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = clock.spent()
        if trial.user_attrs.get("reference"):
            state.setdefault("reference_seconds", {})[str(trial.number)] = now - mark[0]
            state["references_spent"] = state.get("references_spent", 0.0) + now - mark[0]
        mark[0] = now
        held = reserve(study)
        save(reserve=held)
        if held is not None and state["budget_spent"] + held >= args.budget_seconds:
            study.stop()

    started = time.perf_counter()
    study = run_search(config, storage=storage(args, strategy), study_name=study_name(args, strategy), trials=TRIALS,
                       device=args.device, results_dir=args.results_dir, callbacks=[stop_when_spent],
                       on_supernet_step=on_supernet_step)
    save(search_spent=clock.spent() - state.get("references_spent", 0.0) + state.get("train_reused", 0.0),
         search_wall=state.get("search_wall", 0.0) + time.perf_counter() - started)
    if strategy == "supernet":
        # run_search confirms only once the study holds its --trials target; a budget ends it sooner, so the
        # confirmations run here, with the objective run_search builds (the supernet loaded, not trained again).
        objective = make_objective(RunContext.of(config, make_data(config, args.results_dir), space), study,
                                   device=args.device, results_dir=args.results_dir, accuracy=None,
                                   latency=measure_latency, supernet=None, train=False, on_epoch=None,
                                   on_supernet_step=None, slots=Slots(TRIALS))
        confirm(study, objective, config.confirm, results_dir=args.results_dir)
    save(done=True)


def chosen_candidates(args: argparse.Namespace) -> pd.DataFrame:
    """``--top`` distinct architectures spread over MAdds among those the supernet study scored."""
    study, _ = open_study(storage(args, "supernet"), study_name(args, "supernet"), None, load_only=True)
    frame = trained(trials_frame(study))
    scored = frame[~frame_is_reference(frame) & ~frame_is_confirmation(frame)]
    scored = scored.sort_values(["madds", "number"]).drop_duplicates("arch")
    numbers = spread(list(scored["number"]), args.top)
    return scored.set_index("number").loc[numbers].reset_index()


def scratch_front(args: argparse.Namespace) -> pd.DataFrame:
    """The scratch study's Pareto front (proxy accuracy vs MAdds), references excluded."""
    study, _ = open_study(storage(args, "scratch"), study_name(args, "scratch"), None, load_only=True)
    frame = trained(trials_frame(study))
    searched = frame[~frame_is_reference(frame)]
    return searched[pareto_mask(searched)].sort_values("madds")


def retrain(args: argparse.Namespace, shard: str) -> None:
    """Train this shard's chosen candidates from scratch: the scratch proxy, and the long target schedule; and
    this shard's part of the scratch study's front again, with the next seed (``front:ARCH`` entries)."""
    index, count = (int(part) for part in shard.split("/"))
    path = state_path(args, f"retrain-{index}of{count}-long{args.long_factor}x")
    done = load_state(path)
    elsewhere = retrained(args)  # what another shard count already retrained is not trained again
    config = config_of(args, "scratch")
    data_cache = make_data(config, args.results_dir)
    chosen = chosen_candidates(args)
    for _, row in chosen.iloc[index::count].iterrows():
        spec = ArchSpec.from_json(row["spec"])
        data = data_cache(proxy_resolution(config.proxy_size, spec.resolution))
        entry = done.setdefault(row["arch"], {})
        for name, epochs in (("scratch", config.epochs), ("long", args.long_factor * config.epochs)):
            if name in entry or name in elsewhere.get(row["arch"], {}):
                continue
            started, cpu = time.perf_counter(), time.process_time()
            result = train_and_evaluate(build_model(spec, seed=init_seed(spec, config.seed)), data,
                                        train_config(config, args.device, epochs=epochs))
            entry[name] = result.accuracy
            entry[f"{name}_seconds"] = time.perf_counter() - started
            entry[f"{name}_cpu"] = time.process_time() - cpu
            save_state(path, done)
    # The scratch study's front is the best of its noisy proxy accuracies, biased upward as any maximum over
    # noise is; the supernet's is confirmed by one more training. Trained once more, with another seed, the
    # scratch front compares with the confirmed one on equal terms.
    for _, row in scratch_front(args).iloc[index::count].iterrows():
        key = f"front:{row['arch']}"
        if key in done or key in elsewhere:
            continue
        spec = ArchSpec.from_json(row["spec"])
        data = data_cache(proxy_resolution(config.proxy_size, spec.resolution))
        seed = config.seed + 1
        result = train_and_evaluate(build_model(spec, seed=init_seed(spec, seed)), data,
                                    train_config(config, args.device, seed=seed))
        done[key] = {"accuracy": result.accuracy, "madds": float(row["madds"]), "number": int(row["number"]),
                     "correct": pack_correct((result.predictions == data.val_labels).numpy()),
                     "size": len(data.val_labels)}
        save_state(path, done)


def retrained(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every retrained accuracy of this run's options, whichever shard stored it: arch -> scratch, long, seconds."""
    found: dict[str, dict[str, float]] = {}
    for path in sorted(args.results_dir.glob(f"retrain-*-long{args.long_factor}x-{run_key(args)}.json")):
        for arch, entry in load_state(path).items():
            found.setdefault(arch, {}).update(entry)
    return found


def run_phases(args: argparse.Namespace, argv: list[str]) -> None:
    """Both studies, then the retraining: in this process, or (``--jobs 2``) two child processes at a time."""
    make_data(config_of(args, "scratch"), args.results_dir)(args.proxy_size)  # decode the data cache once, first
    if args.jobs == 1:
        run_study(args, "scratch")
        run_study(args, "supernet")
        retrain(args, "0/1")
        return
    shards = [("retrain", f"{i}/{args.jobs}") for i in range(args.jobs)]
    for phases in ([("scratch", "0/1"), ("supernet", "0/1")], shards):
        children = []
        for phase, shard in phases:
            log = args.results_dir / f"{phase}-{shard.replace('/', 'of')}-{run_key(args)}.log"
            command = [sys.executable, __file__, *argv, "--phase", phase, "--shard", shard]
            print(f"  [{time.strftime('%H:%M:%S')}] {phase} {shard}: log {log}", flush=True)
            with open(log, "a") as handle:
                children.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT))
        for child in children:
            if child.wait() != 0:
                sys.exit(f"a child phase failed (exit {child.returncode}); see its log under {args.results_dir}")


def fmt(value: float | None, interval: list[float] | None = None, digits: int = 3) -> str:
    text = "-" if value is None else f"{value:+.{digits}f}"
    return text + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")


def hit(ok: bool | None) -> str:
    return "n/a" if ok is None else "HIT" if ok else "MISS"


def fair_fronts(args: argparse.Namespace, supernet: optuna.Study, confirmed: pd.DataFrame,
                reference_madds: float, floor: float) -> dict[str, Any] | None:
    """Hypervolumes above the trivial classifier's ``floor`` of the supernet's confirmed front and of the scratch
    study's front retrained once more, with bootstrap intervals over the same validation images; None until every
    front trial is retrained."""
    entries = {key.removeprefix("front:"): entry for key, entry in retrained(args).items() if key.startswith("front:")}
    if not entries or len(entries) < len(scratch_front(args)):
        return None
    by_number = {t.number: t for t in supernet.get_trials(deepcopy=False)}
    sup_correct = [trial_correct(by_number[int(n)]) for n in confirmed["number"]]
    size = next(iter(entries.values()))["size"]
    scratch_correct = np.array([unpack_correct(e["correct"], size) for e in entries.values()], dtype=bool)
    scratch_points = pd.DataFrame({"accuracy": [e["accuracy"] for e in entries.values()],
                                   "madds": [e["madds"] for e in entries.values()]})
    intervals = bootstrap_hypervolume_interval(
        np.array(sup_correct, dtype=bool), confirmed["madds"].to_numpy(float) / reference_madds,
        scratch_correct, scratch_points["madds"].to_numpy(float) / reference_madds, seed=args.seed,
        reference_point=(floor, 1.0))
    return {"supernet": hypervolume(confirmed, reference_madds, floor),
            "scratch": hypervolume(scratch_points, reference_madds, floor),
            "intervals": intervals, "entries": entries, "count": len(entries)}


def report(args: argparse.Namespace) -> None:
    studies = {s: open_study(storage(args, s), study_name(args, s), None, load_only=True)[0]
               for s in ("scratch", "supernet")}
    states = {s: load_state(state_path(args, s)) for s in studies}
    frames = {s: trained(trials_frame(study)) for s, study in studies.items()}
    searched = {s: f[~frame_is_reference(f) & ~frame_is_confirmation(f)] for s, f in frames.items()}
    confirmed = frames["supernet"][frame_is_confirmation(frames["supernet"])]
    refs = {s: f[frame_is_reference(f)] for s, f in frames.items()}
    unit = "CPU s" if args.clock == "cpu" else "wall s"

    print(f"\n== compute budget: {args.budget_seconds:.0f} {unit} per strategy ({args.clock} clock, "
          f"{args.threads} torch thread(s) per process, retraining in {args.jobs} process(es)); {args.space} under "
          f"{args.budget} on {args.dataset}, proxy {args.epochs} epochs at {args.proxy_size} px, seed {args.seed}")
    print(f"  {'':44s} {'scratch':>14s} {'supernet':>14s}")
    print(f"  {'candidates scored':44s} {len(searched['scratch']):>14d} {len(searched['supernet']):>14d}")
    print(f"  {'distinct architectures scored':44s} {searched['scratch']['arch'].nunique():>14d} "
          f"{searched['supernet']['arch'].nunique():>14d}")
    print(f"  {'reference nets trained':44s} {len(refs['scratch']):>14d} {len(refs['supernet']):>14d}")
    for label, key in (("search, references excl.", "search_spent"), ("budget spent, confirmations incl.",
                                                                         "budget_spent"),
                       ("reference nets (outside the budget)", "references_spent")):
        print(f"  {label + ' (' + unit + ')':44s} {states['scratch'].get(key, 0):>14.0f} "
              f"{states['supernet'].get(key, 0):>14.0f}")

    # Where the supernet study's seconds went (wall seconds recorded by the study itself).
    sup = frames["supernet"]
    attr = studies["supernet"].user_attrs.get(SUPERNET_ATTR) or {}
    inherited = searched["supernet"]
    print("\n== supernet study, seconds by phase (wall, as the study records them)")
    print(f"  supernet training ({args.supernet_epochs} epochs): {attr.get('train_seconds', float('nan')):.0f} s "
          f"(wall; "
          f"{states['supernet'].get('train_spent', states['supernet'].get('train_reused', float('nan'))):.0f} {unit} "
          "by this benchmark's clock)")
    print(f"  scoring {len(inherited)} candidates: {inherited['time_score'].astype(float).sum():.0f} s in "
          f"time_score ({inherited['time_score'].astype(float).mean():.2f} s each), "
          f"{inherited['duration_s'].astype(float).sum():.0f} s whole trials "
          f"({inherited['duration_s'].astype(float).mean():.2f} s each: latency, zero-cost and storage included)")
    parts = ["time_build", "time_latency", "time_zero_cost", "time_score"]
    means = inherited[parts].astype(float).mean()
    other = inherited["duration_s"].astype(float).mean() - means.sum()
    print("  one scored candidate, mean s: " + ", ".join(f"{name[5:]} {means[name]:.2f}" for name in parts)
          + f", other (sampling, storage) {other:.2f}")
    print(f"  reference nets ({len(refs['supernet'])}, scratch-trained): "
          f"{refs['supernet']['duration_s'].astype(float).sum():.0f} s")
    print(f"  confirmation of {len(confirmed)} Pareto candidates: {confirmed['duration_s'].astype(float).sum():.0f} s "
          f"(reserved {states['supernet'].get('reserve') or 0:.0f} {unit})")
    scratch_trials = searched["scratch"]["duration_s"].astype(float)
    print(f"  (scratch study: {len(scratch_trials)} candidates, {scratch_trials.sum():.0f} s, "
          f"{scratch_trials.mean():.1f} s each)")

    # Ranking against the long training, on the same candidates for both.
    chosen = chosen_candidates(args)
    long = retrained(args)
    rows = pd.DataFrame({
        "number": chosen["number"], "arch": chosen["arch"], "madds": chosen["madds"].astype(float),
        "supernet": chosen["accuracy"].astype(float),
        "scratch": [long.get(a, {}).get("scratch") for a in chosen["arch"]],
        "long_accuracy": [long.get(a, {}).get("long") for a in chosen["arch"]],
    }).astype({"scratch": float, "long_accuracy": float})
    complete = rows.dropna()
    long_epochs = args.long_factor * args.epochs
    print(f"\n== ranking vs {long_epochs}-epoch stand-alone training ({args.long_factor}x the proxy), on the same "
          f"{len(complete)} candidates (of {len(rows)} chosen) spread over MAdds among the supernet study's")
    print(f"  {'trial':>6s} {'MAdds':>8s} {'supernet':>9s} {'scratch':>8s} {'long':>7s}  arch")
    for _, row in rows.iterrows():
        print(f"  {int(row['number']):>6d} {row['madds'] / 1e6:>7.1f}M {row['supernet']:>9.4f} "
              f"{row['scratch']:>8.4f} {row['long_accuracy']:>7.4f}  {row['arch']}")
    seconds = [v for entry in long.values() for k, v in entry.items() if k == "long_seconds"]
    proxy_seconds = [v for entry in long.values() for k, v in entry.items() if k == "scratch_seconds"]
    if seconds:
        print(f"  retraining: scratch proxy {sum(proxy_seconds) / len(proxy_seconds):.1f} s, long "
              f"{sum(seconds) / len(seconds):.1f} s per candidate (wall)")
    corr = correlations(complete, ["supernet", "scratch", "madds"]) if len(complete) >= 3 else {}
    bins = max(1, len(complete) // 4)
    print(f"  {'score':22s} {'Kendall tau [95%]':>24s} {'rho':>7s} {f'tau within {bins} MAdds bins [95%]':>32s}")
    for score, row in corr.items():
        print(f"  {SCORES[score]:22s} {fmt(row['kendall_tau'], row['kendall_tau_interval']):>24s} "
              f"{fmt(row['spearman_rho']):>7s} "
              f"{fmt(row['kendall_tau_within_bins'], row['kendall_tau_within_bins_interval']):>32s}")

    for score in ("supernet", "scratch"):
        if complete[score].nunique() == 1:
            print(f"  {SCORES[score]} gives every candidate the same accuracy, {complete[score].iloc[0]:.4f}: it ranks "
                  "nothing (tau undefined)")
    constant = searched["supernet"]["accuracy"].astype(float)
    if constant.nunique() == 1:
        print(f"  all {len(constant)} candidates the supernet study scored have inherited accuracy "
              f"{constant.iloc[0]:.4f}: its Pareto front is the cheapest of them alone")

    # Hypervolume of each strategy's front (supernet: its confirmations) against the reference family's.
    gains = {s: search_gain(study)["hypervolume"] for s, study in studies.items()}

    def span(hv: dict[str, Any], key: str) -> str:
        interval = hv.get(f"{key}_interval")
        return f"{hv[key]:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")

    point = gains["scratch"]["reference_point"]
    floor = point.get("accuracy", 0.0)
    print(f"\n== hypervolume (accuracy above the trivial classifier's {floor:.4f} x MAdds, up to "
          f"{point['madds'] / 1e6:.0f}M MAdds), 95% bootstrap intervals over validation images")
    for strategy, label, count in (("scratch", "proxy-trained", len(searched["scratch"])),
                                   ("supernet", "confirmed", len(confirmed))):
        hv = gains[strategy]
        print(f"  {strategy} study, {label} front ({count} trials): {span(hv, 'searched')}; its references "
              f"{span(hv, 'reference')}; difference {span(hv, 'difference')}")
    for _, row in confirmed.sort_values("madds").iterrows():
        scored = sup.set_index("number").loc[int(row["confirms"])]
        print(f"    confirmed trial {int(row['confirms'])}: {row['madds'] / 1e6:.1f}M, inherited "
              f"{float(scored['accuracy']):.4f}, from scratch {float(row['accuracy']):.4f}  {row['arch']}")
    fair = fair_fronts(args, studies["supernet"], confirmed, point["madds"], floor)
    if fair is not None:
        print(f"  on equal terms, each front trained once more after the search picked it: scratch study's front "
              f"({fair['count']} trials) retrained with seed {args.seed + 1}: {fair['scratch']:.4f} "
              f"[{fair['intervals'].reference[0]:.4f}, {fair['intervals'].reference[1]:.4f}]; supernet's confirmed "
              f"{fair['supernet']:.4f}; difference {fair['supernet'] - fair['scratch']:+.4f} "
              f"[{fair['intervals'].difference[0]:+.4f}, {fair['intervals'].difference[1]:+.4f}]")
        for arch, entry in sorted(fair["entries"].items(), key=lambda item: item[1]["madds"]):
            print(f"    scratch trial {entry['number']}: {entry['madds'] / 1e6:.1f}M, proxy "
                  f"{float(searched['scratch'].set_index('arch').loc[arch, 'accuracy']):.4f}, retrained "
                  f"{entry['accuracy']:.4f}")

    # Targets.
    ratio = len(searched["supernet"]) / max(1, len(searched["scratch"]))
    sn, sc = corr.get("supernet", {}), corr.get("scratch", {})

    def at_least(a: float | None, b: float | None) -> bool | None:
        """None when neither ranks; a score that ranks nothing (constant: tau undefined) loses to one that does."""
        if a is None or b is None:
            return None if a is None and b is None else b is None
        return a >= b

    hv_sup = gains["supernet"]["searched"]
    refs_hv = max(gains["supernet"]["reference"], gains["scratch"]["reference"])
    beyond = gains["supernet"].get("difference_interval")  # above the references beyond validation noise
    print("\n== targets")
    print(f"  {hit(ratio >= 20)}: supernet scores >= 20x the candidates of scratch: {ratio:.1f}x "
          f"({len(searched['supernet'])} vs {len(searched['scratch'])})")
    print(f"  {hit(at_least(sn.get('kendall_tau'), sc.get('kendall_tau')))}: supernet tau overall >= scratch proxy's: "
          f"{fmt(sn.get('kendall_tau'))} vs {fmt(sc.get('kendall_tau'))}")
    print(f"  {hit(at_least(sn.get('kendall_tau_within_bins'), sc.get('kendall_tau_within_bins')))}: supernet tau "
          f"within MAdds bins >= scratch proxy's: {fmt(sn.get('kendall_tau_within_bins'))} vs "
          f"{fmt(sc.get('kendall_tau_within_bins'))}")
    print(f"  {hit(hv_sup > refs_hv and (beyond is None or beyond[0] > 0))}: supernet confirmed-front hypervolume "
          f"above the references' (above the trivial classifier, interval of the difference above 0): "
          f"{hv_sup:.4f} vs {refs_hv:.4f}")
    print(f"  {hit(hv_sup > gains['scratch']['searched'])}: supernet confirmed-front hypervolume above the scratch "
          f"study's: {hv_sup:.4f} vs {gains['scratch']['searched']:.4f}")
    if fair is not None:
        print(f"  {hit(fair['supernet'] > fair['scratch'])}: the same, the scratch study's front retrained once "
              f"more (equal terms): {fair['supernet']:.4f} vs {fair['scratch']:.4f}")
    print("  (point estimates; the intervals above say how many of these a rerun could flip)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    if args.phase in ("scratch", "supernet"):
        return run_study(args, args.phase)
    if args.phase == "retrain":
        return retrain(args, args.shard)
    if args.phase == "all":
        print("$ python benchmarks/bench_strategies.py " + shlex.join(argv), flush=True)
        print(f"  results and resumable state: {args.results_dir} (run key {run_key(args)})", flush=True)
        started = time.perf_counter()
        run_phases(args, argv)
        print(f"  all phases done in {time.perf_counter() - started:.0f} s wall this run", flush=True)
    report(args)


if __name__ == "__main__":
    main()

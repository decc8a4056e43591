"""Proxy fidelity on the embedded dataset: the default proxy vs 5x longer training, and the zero-cost proxies.

Run: ``python benchmarks/bench_fidelity.py [--candidates 12] [--budget 300M-madds] [--threads 1]``.
Trains a fixed, seeded set of candidates from the MobileNetV2 space under the budget with the
default proxy (a resumable study in ``results/bench/fidelity.db``), retrains them all with 5x the epochs
(``mobilenet-search fidelity``'s code), and prints Kendall tau / Spearman rho against the longer
training, overall and within MAdds bins, for the proxy accuracy, MAdds alone and each zero-cost
proxy, plus the time per candidate of each and where a trial's time goes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
import torch

from mobilenet_search.results.frame import trained, trials_frame
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.fidelity import format_fidelity, run_fidelity
from mobilenet_search.search.study import run_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--budget", default="300M-madds")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--epochs", type=int, default=None, help="proxy epochs (default: the tool's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results-dir", default="results/bench", help="where the resumable study is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    settings = dict(budget=args.budget, dataset=args.dataset, sampler="random", references="none")
    if args.epochs:
        settings["epochs"] = args.epochs
    config = SearchConfig(**settings)
    # A resumable study under results/bench/: an interrupted benchmark picks up where it stopped.
    folder = Path(args.results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'fidelity.db'}"
    study = run_search(config, storage=storage, study_name="fidelity", trials=args.candidates, results_dir=folder,
                       device="cpu")
    summary = run_fidelity(study, top=args.candidates, device="cpu", results_dir=Path("results"))
    frame = trained(trials_frame(study))
    long_seconds = [summary["seconds"][str(n)] for n in summary["trials"] if str(n) in summary.get("seconds", {})]

    n = len(frame)
    print(f"\n{n} candidates from mobilenetv2 under {args.budget} on {args.dataset}, MAdds "
          f"{frame['madds'].min() / 1e6:.1f}M-{frame['madds'].max() / 1e6:.1f}M, torch threads {args.threads}")
    print(format_fidelity(summary))
    print("\ntime per candidate (s):")
    print(f"  proxy training ({config.epochs} epochs), whole trial: {frame['duration_s'].astype(float).mean():.1f}")
    if long_seconds:
        print(f"  longer training ({summary['epochs']} epochs): {sum(long_seconds) / len(long_seconds):.1f}")
    print(f"  all four zero-cost proxies: {frame['time_zero_cost'].astype(float).mean():.2f}")
    phases = frame[["time_build", "time_latency", "time_zero_cost", "time_train", "time_eval", "duration_s"]]
    phases = phases.astype(float).sum()
    print("share of trial time: " + ", ".join(
        f"{name[5:]} {phases[name] / phases['duration_s']:.1%}" for name in phases.index[:-1])
        + f", other (sampling, storage, data) {1 - phases.iloc[:-1].sum() / phases['duration_s']:.1%}")


if __name__ == "__main__":
    main()

"""Try another proxy on the fidelity benchmark's candidates, against the longer training already measured.

Run after ``benchmarks/bench_fidelity.py`` (which leaves its study in ``results/bench/fidelity.db``):
``python benchmarks/fidelity_variant.py --epochs 8`` or ``--lr 0.005`` or ``--proxy-size 48``.
Retrains the same candidates from the same initial weights with the changed proxy and prints
Kendall tau / Spearman rho against the stored longer-training accuracy, overall and within
MAdds bins, for accuracy and balanced accuracy, and the seconds per candidate.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import optuna
import pandas as pd
import torch

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.data import proxy_resolution
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.frame import trained, trials_frame
from mobilenet_search.results.records import CONFIG_ATTR
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import init_seed
from mobilenet_search.search.fidelity import FIDELITY_ATTR, correlations, format_fidelity
from mobilenet_search.search.study import make_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///results/bench/fidelity.db")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--proxy-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    study = optuna.load_study(study_name="fidelity", storage=args.storage)
    config = SearchConfig.from_dict(study.user_attrs[CONFIG_ATTR])
    if args.proxy_size:
        config = dataclasses.replace(config, proxy_size=args.proxy_size)
    changes = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    proxy = dataclasses.replace(train_config(config, "cpu"), **changes)
    data_cache = make_data(config, Path("results"))
    long = study.user_attrs[FIDELITY_ATTR]

    frame = trained(trials_frame(study)).copy()
    accuracy, balanced, seconds = [], [], []
    for row in frame.itertuples():
        spec = ArchSpec.from_json(row.spec)
        data = data_cache(proxy_resolution(config.proxy_size, spec.resolution))
        started = time.perf_counter()
        result = train_and_evaluate(build_model(spec, seed=init_seed(spec, config.seed)), data, proxy)
        seconds.append(time.perf_counter() - started)
        accuracy.append(result.accuracy)
        balanced.append(result.balanced_accuracy)
    frame["accuracy"], frame["balanced_accuracy"] = accuracy, balanced
    frame["madds"] = pd.to_numeric(frame["madds"])
    frame["long_accuracy"] = [long["long_accuracy"][str(n)] for n in frame["number"]]
    summary = {"epochs": long["epochs"], "proxy_epochs": proxy.epochs, "trials": list(frame["number"]),
               "correlations": correlations(frame, ["accuracy", "balanced_accuracy", "madds"])}
    print(f"proxy: {proxy.epochs} epochs, lr {proxy.lr}, proxy size {config.proxy_size}; "
          f"{sum(seconds) / len(seconds):.1f} s of training per candidate (1 thread)")
    print(format_fidelity(summary))


if __name__ == "__main__":
    main()

"""Confirmation by fine-tuning vs from scratch: which gives a supernet study's Pareto candidates the better accuracy?

A supernet study confirms its Pareto candidates by training them from scratch under the reference nets' proxy.
The other choice (issue 15) is fine-tuning from the inherited weights with the same schedule. This takes a finished
supernet study (by default the one ``bench_strategies.py`` leaves in ``results/bench/strategies``), and for every
candidate it confirmed trains the inherited network (BatchNorm recalibrated, exactly as scored) with the study's
proxy schedule, at the study's learning rate and at a tenth of it. It prints, per candidate, the inherited,
from-scratch and fine-tuned accuracies with McNemar's paired test of fine-tuned vs from scratch, then the means.

    python benchmarks/confirm_finetune.py [--db results/bench/strategies/supernet-KEY.db] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.records import CONFIRMS_ATTR, SUPERNET_ATTR, is_confirmation, trial_correct
from mobilenet_search.results.stats import mcnemar_exact
from mobilenet_search.search.config import train_config
from mobilenet_search.search.space import load_space
from mobilenet_search.search.strategies import InheritedWeights, prepare_supernet
from mobilenet_search.search.study import make_data, open_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="the supernet study's SQLite file (default: the newest "
                        "results/bench/strategies/supernet-*.db)")
    parser.add_argument("--results-dir", type=Path, default=Path("results/bench/strategies"),
                        help="where the study's data cache lives")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    db = args.db or max(args.results_dir.glob("supernet-*.db"), key=lambda p: p.stat().st_mtime)
    study, config = open_study(f"sqlite:///{db}", db.stem, None, load_only=True)
    data = make_data(config, args.results_dir)
    supernet, _, _ = prepare_supernet(config, load_space(config.space), data, results_dir=args.results_dir,
                                      checkpoint=Path(study.user_attrs[SUPERNET_ATTR]["checkpoint"]), train=False)
    scorer = InheritedWeights(supernet, seed=config.seed)  # as the study scored: the same network
    by_number = {t.number: t for t in study.trials}
    confirmations = [t for t in study.trials if is_confirmation(t) and t.user_attrs.get("accuracy") is not None]
    print(f"{db}: {len(confirmations)} confirmed candidates; proxy {config.epochs} epochs at size "
          f"{config.proxy_size}, lr {config.lr:g}, {args.threads} threads")
    rates = (config.lr, config.lr / 10)
    print(f"  {'trial':>5} {'MAdds':>8} {'inherited':>9} {'scratch':>8} " +
          " ".join(f"{'fine-tuned lr ' + format(lr, 'g'):>22}" for lr in rates))
    gains: dict[float, list[float]] = {lr: [] for lr in rates}
    started = time.perf_counter()
    for confirmation in confirmations:
        source = by_number[int(confirmation.user_attrs[CONFIRMS_ATTR])]
        spec = ArchSpec.from_json(source.user_attrs["spec"])
        images = data(int(source.user_attrs["proxy_resolution"]))
        scratch = confirmation.user_attrs["accuracy"]
        scratch_correct = trial_correct(confirmation)
        recomputed = scorer(spec, None, images).accuracy  # the same network as the study scored
        if abs(recomputed - source.user_attrs["accuracy"]) > 1e-9:
            raise SystemExit(f"trial {source.number}: inherited accuracy {recomputed} here, "
                             f"{source.user_attrs['accuracy']} in the study")
        cells = []
        for lr in rates:
            result = train_and_evaluate(scorer.model(spec, images).train(), images, train_config(config, "cpu", lr=lr))
            correct = (result.predictions == images.val_labels).numpy()
            test = mcnemar_exact(correct, scratch_correct)
            gains[lr].append(result.accuracy - scratch)
            cells.append(f"{result.accuracy:.4f} ({result.accuracy - scratch:+.3f}, p {test.p_value:.2f})")
        print(f"  {source.number:>5} {source.user_attrs['madds'] / 1e6:7.1f}M {source.user_attrs['accuracy']:9.4f} "
              f"{scratch:8.4f} " + " ".join(f"{cell:>22}" for cell in cells), flush=True)
    for lr, values in gains.items():
        print(f"  fine-tuned at lr {lr:g} minus from scratch: mean {np.mean(values):+.4f}, "
              f"{sum(v > 0 for v in values)} of {len(values)} above")
    print(f"  {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

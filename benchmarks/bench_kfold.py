"""Held-out test split or k-fold cross-validation of the final candidates: is k-fold worth its time? Measured.

A study reports its final candidates on a held-out test split (``--val-fraction 0.2 --test-fraction 0.2``: on the
embedded data 1,574 training, 525 validation and 525 test images). The alternative is k-fold cross-validation of
those candidates at the end. This benchmark trains a fixed set of final candidates, the paper's MobileNetV2 nets
under ``--budget`` spread over MAdds (``--candidates`` of them; 2 gives the tool's default reference nets), with the
tool's proxy (``proxy_resolution(--proxy-size, resolution)``, the default ``TrainConfig`` with ``--epochs``), both
ways:

- **holdout**: the tool's own seeded stratified split (``load_dataset(seed=s)``, the weights' and the training's
  seed ``s`` too, as ``--seed s`` does), trained once on the training images and scored on the test split, for
  ``--holdout-seeds`` seeds: the first is what a study reports, the others show how far the holdout estimate
  itself moves with the split;
- **k-fold**: ``--folds``-fold stratified cross-validation (scikit-learn's ``StratifiedKFold``, seeded) over every
  image of the dataset, training, validation and test alike (the 2,624 of the embedded data): each fold's net
  trains on the other folds and scores its own, and the out-of-fold predictions are pooled, so every image is
  scored once. This is k-fold at its best (most training images, most scored images): if it does not pay here,
  it pays nowhere. (Inside a study the validation images picked the candidates, so a cross-validation that
  includes them overstates the picked ones; a fair in-tool variant would leave them out and score fewer images.)

Printed side by side per candidate: accuracy with its 95 % Wilson interval, CPU seconds (``time.process_time`` of
building and training, 1 torch thread), and the ratios k-fold / holdout of CPU seconds and interval width; then for
every pair of candidates the verdict (:func:`mobilenet_search.results.stats.compare`: exact McNemar on the same
images at 5 %, validation noise only) under each holdout seed and under k-fold, and whether k-fold changes it.
The pooled k-fold interval treats the 2,624 out-of-fold predictions as independent, which they are not (five
nets, overlapping training sets): it is a lower bound on k-fold's real uncertainty.

Resumable: every finished training is stored at once in ``--results-dir/kfold-KEY.json`` (KEY: a hash of the
options); a rerun skips what is stored, and a finished one only reports (no data is loaded).

Run (the figure in ``benchmarks/results/bench_kfold_embedded.txt``; 608 CPU s on 1 thread)::

    python benchmarks/bench_kfold.py --candidates 4 --epochs 3 --proxy-size 64 --folds 5 --holdout-seeds 3 \
        --results-dir results/bench/kfold
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.cost import count_madds, count_params
from mobilenet_search.arch.references import paper_family, spread
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_write_text
from mobilenet_search.measure.data import ImageData, load_dataset, proxy_resolution
from mobilenet_search.measure.train import TrainConfig, TrainResult, train_and_evaluate
from mobilenet_search.results.records import pack_correct, trivial_accuracy, unpack_correct
from mobilenet_search.results.stats import compare, wilson_interval
from mobilenet_search.search.evaluate import init_seed

Trainer = Callable[[torch.nn.Module, ImageData, TrainConfig], TrainResult]
KEY_OPTIONS = ("dataset", "dataset_limit", "budget", "candidates", "family", "epochs", "proxy_size", "val_fraction",
               "test_fraction", "folds", "holdout_seeds", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--dataset-limit", type=int, default=None, help="a stratified subset of the data (tests)")
    parser.add_argument("--budget", default="300M-madds", help="the candidates are the paper nets it admits")
    parser.add_argument("--family", default="mobilenet_v2", choices=("mobilenet_v2", "mobilenet_v1"))
    parser.add_argument("--candidates", type=int, default=4, help="paper nets spread over MAdds (2: the tool's "
                        "default reference nets)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--proxy-size", type=int, default=64)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--holdout-seeds", type=int, default=3, help="splits (and trainings) of the holdout")
    parser.add_argument("--seed", type=int, default=0, help="the first holdout seed; the folds' and k-fold "
                        "trainings' seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    parser.add_argument("--results-dir", type=Path, default=Path("results/bench/kfold"))
    args = parser.parse_args(argv)
    for name, least in (("candidates", 2), ("epochs", 1), ("folds", 2), ("holdout_seeds", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}, not {getattr(args, name)}")
    if not args.test_fraction:
        parser.error("--test-fraction must be above 0: the holdout is scored on the test split")
    return args


def run_key(args: argparse.Namespace) -> str:
    """What the stored runs depend on, hashed: the same options resume, others start anew."""
    text = json.dumps({k: getattr(args, k) for k in KEY_OPTIONS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def final_candidates(budget: str, count: int, *, family: str, num_classes: int, in_channels: int,
                     ) -> dict[str, ArchSpec]:
    """``count`` paper nets of ``family`` that ``budget`` admits, spread over MAdds, cheapest first (as the tool
    picks its reference nets: ``count`` 2 gives its default two)."""
    limits = Budget.parse(budget)
    fitting = sorted((count_madds(spec), name, spec)
                     for name, spec in paper_family(family, num_classes, in_channels).items()
                     if limits.reason(madds=count_madds(spec), params=count_params(spec)) is None)
    if len(fitting) < 2:
        raise UserError(f"budget {budget!r} admits {len(fitting)} {family} paper net(s): need at least 2 to compare")
    return {name: spec for _, name, spec in spread(fitting, count)}


def stratified_folds(labels: Any, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out indices of each of ``folds`` stratified folds of ``labels``, shuffled with ``seed``.

    Disjoint, together every index once, each class in every fold in proportion (within one image).

    >>> labels = np.array([0, 0, 1, 1, 1, 1])
    >>> [labels[fold].tolist() for fold in stratified_folds(labels, 2, seed=0)]
    [[0, 1, 1], [0, 1, 1]]
    """
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held_out for _, held_out in splitter.split(np.zeros(len(labels)), labels)]


def pooled(data: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``data`` (training, validation and test) and its label, in that order."""
    return (torch.cat([data.train_images, data.val_images, data.test_images]),
            torch.cat([data.train_labels, data.val_labels, data.test_labels]))


def fold_data(data: ImageData, images: torch.Tensor, labels: torch.Tensor, held_out: np.ndarray) -> ImageData:
    """``data``'s images as one fold: trained on all but ``held_out``, which is the fold's (validation) split.

    No test split: a fold's net is scored once, on its own fold, and nothing is picked on it.
    """
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[torch.from_numpy(held_out)] = False
    return dataclasses.replace(data, train_images=images[mask].contiguous(), train_labels=labels[mask],
                               val_images=images[~mask].contiguous(), val_labels=labels[~mask],
                               test_images=images[:0], test_labels=labels[:0])


def train_once(spec: ArchSpec, data: ImageData, config: TrainConfig, train: Trainer, split: str) -> dict[str, Any]:
    """Train ``spec`` from its seeded initial weights and score it on ``split``: per-image correctness and CPU s."""
    start = time.process_time()
    model = build_model(spec, seed=init_seed(spec, config.seed))
    result = train(model, data, config)
    cpu_s = time.process_time() - start
    predictions = result.test_predictions if split == "test" else result.predictions
    labels = getattr(data, f"{split}_labels")
    correct = (predictions == labels).numpy()
    return {"correct": pack_correct(correct), "n": len(labels), "accuracy": float(correct.mean()), "cpu_s": cpu_s,
            "trivial": trivial_accuracy(labels.numpy()), "train_images": len(data.train_labels)}


def run_all(args: argparse.Namespace, specs: dict[str, ArchSpec], state: dict[str, Any], save: Callable[[], None],
            train: Trainer) -> None:
    """Train every run not in ``state["runs"]``: holdout at the first seed, the folds, then the other seeds."""
    runs = state["runs"]
    seeds = range(args.seed, args.seed + args.holdout_seeds)
    todo = [(name, "holdout", args.seed) for name in specs]
    todo += [(name, "fold", k) for k in range(args.folds) for name in specs]
    todo += [(name, "holdout", s) for s in seeds[1:] for name in specs]
    todo = [item for item in todo if run_id(*item) not in runs]
    loaded: dict[tuple[int, int], ImageData] = {}

    def data_at(size: int, seed: int) -> ImageData:
        if (size, seed) not in loaded:
            loaded[(size, seed)] = load_dataset(args.dataset, size, seed=seed, val_fraction=args.val_fraction,
                                                test_fraction=args.test_fraction, cache_dir=args.cache_dir,
                                                limit=args.dataset_limit)
        return loaded[(size, seed)]

    for name, kind, index in todo:
        spec = specs[name]
        size = proxy_resolution(args.proxy_size, spec.resolution)
        if kind == "holdout":
            data, seed, split = data_at(size, index), index, "test"
        else:
            # The pool is the first seed's split put back together: the same images in the same order at every size.
            images, labels = pooled(data_at(size, args.seed))
            held_out = stratified_folds(labels.numpy(), args.folds, args.seed)[index]
            data, seed, split = fold_data(data_at(size, args.seed), images, labels, held_out), args.seed, "val"
        config = TrainConfig(epochs=args.epochs, seed=seed, eval_every_epoch=False)
        run = train_once(spec, data, config, train, split)
        runs[run_id(name, kind, index)] = run
        save()
        print(f"  {name} {kind} {index}: accuracy {run['accuracy']:.4f} on {run['n']} images, "
              f"{run['cpu_s']:.1f} CPU s", flush=True)


def run_id(name: str, kind: str, index: int) -> str:
    return f"{name} {kind} {index}"


def cv_correct(runs: dict[str, Any], name: str, folds: int) -> np.ndarray:
    """A candidate's out-of-fold correctness, folds in order (the same images in the same order for every net)."""
    return np.concatenate([unpack_correct(runs[run_id(name, "fold", k)]["correct"], runs[run_id(name, "fold", k)]["n"])
                           for k in range(folds)])


def folds_agreeing(runs: dict[str, Any], a: str, b: str, folds: int) -> int:
    """In how many folds ``a``'s and ``b``'s nets differ in the direction of their pooled difference.

    The pooled McNemar test sees the images' noise only; the folds' nets are trained apart, so a
    difference that holds fold by fold also survives their training noise.
    """
    pooled_sign = np.sign(cv_correct(runs, a, folds).mean() - cv_correct(runs, b, folds).mean())
    return sum(np.sign(runs[run_id(a, "fold", k)]["accuracy"] - runs[run_id(b, "fold", k)]["accuracy"])
               == pooled_sign != 0 for k in range(folds))


def holdout_correct(runs: dict[str, Any], name: str, seed: int) -> np.ndarray:
    run = runs[run_id(name, "holdout", seed)]
    return unpack_correct(run["correct"], run["n"])


def interval(correct: np.ndarray) -> tuple[float, float, float]:
    """Accuracy and its 95 % Wilson interval."""
    low, high = wilson_interval(int(correct.sum()), len(correct))
    return float(correct.mean()), low, high


def verdict_text(a: np.ndarray, b: np.ndarray) -> tuple[str, str]:
    """The verdict of ``a`` against ``b`` (short form) and a cell with its margin and p-value."""
    result = compare(a, b)
    short = {"better": ">", "worse": "<", "indistinguishable": "~"}[result.verdict]
    return short, f"{short} {result.margin:+.3f} (p {result.p_value:.3f})"


def report(args: argparse.Namespace, specs: dict[str, ArchSpec], runs: dict[str, Any], spent: float) -> None:
    """The side-by-side table of holdout and k-fold, and the pairwise verdicts under each."""
    seeds = list(range(args.seed, args.seed + args.holdout_seeds))
    first = runs[run_id(next(iter(specs)), "holdout", args.seed)]
    pool = sum(runs[run_id(next(iter(specs)), "fold", k)]["n"] for k in range(args.folds))
    fold_train = np.mean([runs[run_id(next(iter(specs)), "fold", k)]["train_images"] for k in range(args.folds)])
    total = {kind: sum(r["cpu_s"] for key, r in runs.items() if f" {kind} " in key) for kind in ("holdout", "fold")}
    print(f"\n== holdout (test split) vs {args.folds}-fold cross-validation: {len(specs)} {args.family} paper nets "
          f"under {args.budget} on {args.dataset} ({args.epochs} epochs, proxy {args.proxy_size} px, "
          f"{args.threads} torch thread(s)); holdout trains on {first['train_images']} images and scores {first['n']} "
          f"(trivial accuracy {first['trivial']:.3f}); k-fold trains on {fold_train:.0f} and scores all {pool} once; "
          f"training CPU s in all: holdout {total['holdout']:.0f} ({len(seeds)} seeds), k-fold {total['fold']:.0f}; "
          f"this run {spent:.0f} CPU s")
    print(f"\n| net | MAdds | holdout seed {args.seed} [95 % Wilson] | holdout over {len(seeds)} split seeds "
          f"(mean ± sd) | {args.folds}-fold pooled [95 % Wilson] | fold sd | k-fold − holdout | CPU s holdout | "
          "CPU s k-fold | CPU ratio | interval width ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = {"cpu": [], "width": []}
    for name, spec in specs.items():
        acc, low, high = interval(holdout_correct(runs, name, args.seed))
        repeats = [runs[run_id(name, "holdout", s)]["accuracy"] for s in seeds]
        spread_sd = float(np.std(repeats, ddof=1)) if len(repeats) > 1 else float("nan")
        cv_acc, cv_low, cv_high = interval(cv_correct(runs, name, args.folds))
        fold_sd = float(np.std([runs[run_id(name, "fold", k)]["accuracy"] for k in range(args.folds)], ddof=1))
        cpu_h = runs[run_id(name, "holdout", args.seed)]["cpu_s"]
        cpu_cv = sum(runs[run_id(name, "fold", k)]["cpu_s"] for k in range(args.folds))
        ratios["cpu"].append(cpu_cv / cpu_h)
        ratios["width"].append((cv_high - cv_low) / (high - low))
        print(f"| {name} | {count_madds(spec) / 1e6:.1f}M | {acc:.4f} [{low:.4f}, {high:.4f}] | "
              f"{np.mean(repeats):.4f} ± {spread_sd:.4f} | {cv_acc:.4f} [{cv_low:.4f}, {cv_high:.4f}] | "
              f"{fold_sd:.4f} | {cv_acc - acc:+.4f} | {cpu_h:.1f} | {cpu_cv:.1f} | {ratios['cpu'][-1]:.2f} | "
              f"{ratios['width'][-1]:.2f} |")

    pairs = list(itertools.combinations(specs, 2))
    print("\npairwise verdicts, first net vs second (> better, < worse, ~ indistinguishable: exact McNemar at 5 % "
          "on the same images; margin, p; for k-fold also the folds whose nets differ in the pooled direction):")
    print("| pair | " + " | ".join(f"holdout seed {s}" for s in seeds) + f" | {args.folds}-fold | k-fold changes "
          f"the seed-{args.seed} verdict? |")
    print("|---|" + "---|" * (len(seeds) + 2))
    changed = unstable = reversed_by_cv = reversed_by_seeds = 0
    for a, b in pairs:
        holdout = [verdict_text(holdout_correct(runs, a, s), holdout_correct(runs, b, s)) for s in seeds]
        cv = verdict_text(cv_correct(runs, a, args.folds), cv_correct(runs, b, args.folds))
        changed += cv[0] != holdout[0][0]
        unstable += len({short for short, _ in holdout}) > 1
        holdout_order = [holdout_correct(runs, a, s).mean() > holdout_correct(runs, b, s).mean() for s in seeds]
        reversed_by_cv += holdout_order[0] != (cv_correct(runs, a, args.folds).mean() >
                                               cv_correct(runs, b, args.folds).mean())
        reversed_by_seeds += len(set(holdout_order)) > 1
        agreeing = folds_agreeing(runs, a, b, args.folds)
        print(f"| {a} vs {b} | " + " | ".join(cell for _, cell in holdout) + f" | {cv[1]}, {agreeing}/{args.folds} "
              "folds | "
              f"{'yes' if cv[0] != holdout[0][0] else 'no'} |")
    print(f"\nk-fold / holdout: CPU s x{np.mean(ratios['cpu']):.2f} (per net {min(ratios['cpu']):.2f}-"
          f"{max(ratios['cpu']):.2f}); interval width x{np.mean(ratios['width']):.2f} "
          f"({min(ratios['width']):.2f}-{max(ratios['width']):.2f}); k-fold changes {changed} of {len(pairs)} pairwise "
          f"verdicts and reverses {reversed_by_cv} of {len(pairs)} orderings of the seed-{args.seed} holdout; the "
          f"holdout's own split seeds disagree on {unstable} of {len(pairs)} verdicts and {reversed_by_seeds} of "
          f"{len(pairs)} orderings")


def main(argv: list[str] | None = None, *, train: Trainer = train_and_evaluate) -> int:
    """Run (or resume) the measurement and print the report; ``train`` trains one net (a test counts its calls)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print("$ python " + " ".join([sys.argv[0] if argv is None else "benchmarks/bench_kfold.py",
                                  *(argv if argv is not None else sys.argv[1:])]), flush=True)
    started = time.process_time()
    try:
        Budget.parse(args.budget)  # a malformed budget is refused before any data is read
        path = args.results_dir / f"kfold-{run_key(args)}.json"
        state = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
        state["options"] = {k: getattr(args, k) for k in KEY_OPTIONS}
        if "num_classes" not in state:  # the candidates' heads and stems fit the data (stored: a rerun loads none)
            data = load_dataset(args.dataset, args.proxy_size, seed=args.seed, val_fraction=args.val_fraction,
                                test_fraction=args.test_fraction, cache_dir=args.cache_dir, limit=args.dataset_limit)
            state.update(num_classes=data.num_classes, in_channels=data.in_channels)
        specs = final_candidates(args.budget, args.candidates, family=args.family, num_classes=state["num_classes"],
                                 in_channels=state["in_channels"])
        path.parent.mkdir(parents=True, exist_ok=True)

        def save() -> None:
            atomic_write_text(path, json.dumps(state, indent=1))

        run_all(args, specs, state, save, train)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(args, specs, state["runs"], time.process_time() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

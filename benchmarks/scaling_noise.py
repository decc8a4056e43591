"""Does accuracy keep rising with MAdds beyond seed noise? The paper's width x resolution family on one dataset.

Trains MobileNetV2 0.35/96, 0.5/128, 0.75/160, 1.0/224 and 1.4/224 with several seeds under the
tool's own proxy (``proxy_resolution(--proxy-size, resolution)``, the default TrainConfig with
``--epochs``), at one or more training-subset sizes, and scores each on the validation and the
test split (for fashion-mnist: the two halves of its official test set, 5,000 images each).
Prints a table of every run, then per net and size the mean and seed-to-seed sd of both, and
whether each step up in MAdds gains more than the noise (the difference of means against the
larger of twice the pooled seed sd's standard error and the split's binomial standard error).

Every finished run is appended to ``--out`` (JSON lines) at once; a rerun skips the runs there,
so an interrupted measurement resumes where it stopped.

Run: ``python benchmarks/scaling_noise.py --dataset fashion-mnist --limits 6000 --seeds 3 --threads 1
--out benchmarks/results/scaling_noise_fashion_mnist.jsonl`` (about 45 CPU minutes at 6,000 images).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from mobilenet_search import ArchSpec, build_model, count_madds
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate
from mobilenet_search.search.evaluate import init_seed

NETS = ((0.35, 96), (0.5, 128), (0.75, 160), (1.0, 224), (1.4, 224))


def run_one(dataset: str, limit: int | None, width: float, resolution: int, seed: int, args) -> dict:
    size = proxy_resolution(args.proxy_size, resolution)
    data = load_dataset(dataset, size, limit=limit, test_fraction=args.test_fraction, cache_dir=args.cache_dir)
    spec = ArchSpec.mobilenet_v2(width, resolution, num_classes=data.num_classes, in_channels=data.in_channels)
    model = build_model(spec, seed=init_seed(spec, seed))
    start = time.process_time()
    result = train_and_evaluate(model, data, TrainConfig(epochs=args.epochs, seed=seed, eval_every_epoch=False))
    test = result.test_predictions
    return {"dataset": dataset, "limit": limit, "width": width, "resolution": resolution, "seed": seed,
            "proxy_px": size, "epochs": args.epochs, "madds": count_madds(spec), "train_images": len(data.train_labels),
            "val_images": len(data.val_labels), "test_images": len(data.test_labels),
            "val_accuracy": result.accuracy, "val_balanced": result.balanced_accuracy,
            "test_accuracy": None if test is None else float((test == data.test_labels).double().mean()),
            "cpu_s": time.process_time() - start,
            "train_s": result.train_seconds}


def summarise(runs: list[dict]) -> None:
    print("\n| training images | net | MAdds | val accuracy (mean ± sd) | test accuracy (mean ± sd) | seeds | "
          "gain over the next cheaper net (test) | beyond noise? |")
    print("|---|---|---|---|---|---|---|---|")
    for limit in sorted({r["train_images"] for r in runs}):
        previous = None
        for width, resolution in NETS:
            group = [r for r in runs
                     if r["train_images"] == limit and (r["width"], r["resolution"]) == (width, resolution)]
            if not group:
                continue
            val = [r["val_accuracy"] for r in group]
            test = [r["test_accuracy"] for r in group if r["test_accuracy"] is not None]
            sd = statistics.stdev(test) if len(test) > 1 else math.nan
            mean = statistics.mean(test) if test else math.nan
            gain, verdict = "", ""
            if previous is not None and len(test) > 1:
                prev_mean, prev_sd, n_prev = previous
                pooled = math.sqrt((sd**2 + prev_sd**2) / 2)
                se_seed = pooled * math.sqrt(1 / len(test) + 1 / n_prev)
                # The test split's own noise on a difference of two nets scored on the same images (upper bound).
                se_split = math.sqrt(2 * mean * (1 - mean) / group[0]["test_images"]) / math.sqrt(len(test))
                noise = max(se_seed, se_split)
                gain = f"{mean - prev_mean:+.4f}"
                verdict = f"{'yes' if mean - prev_mean > 2 * noise else 'no'} (2 se = {2 * noise:.4f})"
            print(f"| {limit} | {width}/{resolution} | {group[0]['madds'] / 1e6:.1f}M | "
                  f"{statistics.mean(val):.4f} ± {statistics.stdev(val) if len(val) > 1 else math.nan:.4f} | "
                  f"{mean:.4f} ± {sd:.4f} | {len(group)} | {gain} | {verdict} |")
            previous = (mean, sd, len(test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--limits", type=int, nargs="+", default=[6000],
                        help="training-subset sizes (for fashion-mnist, of its training images)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--proxy-size", type=int, default=64)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended run by run (resumable)")
    parser.add_argument("--summary-only", action="store_true", help="print the table of what --out holds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    done = {(r["dataset"], r["limit"], r["width"], r["resolution"], r["seed"]) for r in runs}
    if not args.summary_only:
        print("| training images | net | proxy px | seed | val accuracy | test accuracy | CPU s |")
        print("|---|---|---|---|---|---|---|")
        # Seed by seed, so that a partial run already covers every net.
        for seed in range(args.seeds):
            for limit in args.limits:
                for width, resolution in NETS:
                    if (args.dataset, limit, width, resolution, seed) in done:
                        continue
                    run = run_one(args.dataset, limit, width, resolution, seed, args)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(run) + "\n")
                    runs.append(run)
                    print(f"| {run['train_images']} | {width}/{resolution} | {run['proxy_px']} | {seed} | "
                          f"{run['val_accuracy']:.4f} | {run['test_accuracy']:.4f} | {run['cpu_s']:.0f} |", flush=True)
    summarise([r for r in runs if r["dataset"] == args.dataset])


if __name__ == "__main__":
    main()

"""Measure the embedded dataset candidates (elpv, mnist) under the default proxy training.

For each dataset, train a cheap MobileNetV2 (width 0.35, resolution 96) and an expensive one
(width 1.0, resolution 224) at their proxy sizes (``proxy_resolution(base, resolution)``)
with the default :class:`TrainConfig`, for a few seeds, and print accuracy, balanced accuracy
and seconds. A useful default dataset does not saturate, separates the two candidates by
more than the seed noise, and trains in about 30 s per candidate on 2 cores.

Run: ``python benchmarks/measure_datasets.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate

CANDIDATES = ((0.35, 96), (1.0, 224))
BASE_SIZES = {"elpv": 64, "mnist": 32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(BASE_SIZES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| data | width | resolution | proxy px | epochs | seed | accuracy | balanced acc. | train s | eval s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for name in args.datasets:
        for width, resolution in CANDIDATES:
            size = proxy_resolution(BASE_SIZES[name], resolution)
            data = load_dataset(name, size)
            runs = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                spec = ArchSpec.mobilenet_v2(width, resolution, num_classes=data.num_classes,
                                             in_channels=data.in_channels)
                start = time.perf_counter()
                result = train_and_evaluate(build_model(spec), data, TrainConfig(epochs=args.epochs, seed=seed))
                runs.append((result, time.perf_counter() - start))
                print(f"| {name} | {width} | {resolution} | {size} | {args.epochs} | {seed} | {result.accuracy:.3f} | "
                      f"{result.balanced_accuracy:.3f} | {result.train_seconds:.1f} | {result.eval_seconds:.1f} |",
                      flush=True)
            summary.append((name, width, resolution, runs))
    print("\nmeans over seeds: data, width, resolution, accuracy, balanced accuracy, total seconds")
    for name, width, resolution, runs in summary:
        print(name, width, resolution, *(f"{statistics.mean(v):.3f}" for v in (
            [r.accuracy for r, _ in runs], [r.balanced_accuracy for r, _ in runs], [s for _, s in runs])))


if __name__ == "__main__":
    main()

"""Evaluating after the last epoch only vs after every epoch: the same accuracy, how much less time?

A study evaluates a candidate after every epoch only where Optuna's pruner reads it (``--objective accuracy``).
This trains the quick start's two reference nets from the same initial weights with the default proxy (8 epochs,
proxy size 64: MobileNetV2 0.35/96 at 32 px, 1.0/224 at 64 px) both ways, alternating, and prints the wall time
of each run, the ratio, and both accuracies (which must be equal).

Run: ``python benchmarks/bench_eval_last.py`` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import torch

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--proxy-size", type=int, default=64)
    args = parser.parse_args()
    print(f"{args.epochs} epochs at proxy size {args.proxy_size}, {torch.get_num_threads()} threads")
    total = {True: 0.0, False: 0.0}
    for width, resolution in ((0.35, 96), (1.0, 224)):
        spec = ArchSpec.mobilenet_v2(width, resolution, num_classes=2, in_channels=1)
        data = load_dataset("embedded", proxy_resolution(args.proxy_size, resolution))
        seconds, accuracy = {}, {}
        for every in (True, False):
            start = time.perf_counter()
            result = train_and_evaluate(build_model(spec, seed=0), data,
                                        TrainConfig(epochs=args.epochs, eval_every_epoch=every))
            seconds[every], accuracy[every] = time.perf_counter() - start, result.accuracy
            total[every] += seconds[every]
        same = "same accuracy" if accuracy[True] == accuracy[False] else "ACCURACIES DIFFER"
        print(f"  MobileNetV2 {width}/{resolution} at {data.size} px: every epoch {seconds[True]:.1f} s, "
              f"last only {seconds[False]:.1f} s, ratio {seconds[True] / seconds[False]:.2f}x; "
              f"accuracy {accuracy[True]:.4f} vs {accuracy[False]:.4f} ({same})", flush=True)
    print(f"  both nets: {total[True]:.1f} s vs {total[False]:.1f} s, ratio {total[True] / total[False]:.2f}x")


if __name__ == "__main__":
    main()

"""Zero-cost proxies: seconds per candidate for each proxy, and for all four together, on MobileNetV2 specs.

Run from the repository root::

    python benchmarks/bench_zero_cost.py                         # 64 px, batch 64, 2 threads, synthetic images
    python benchmarks/bench_zero_cost.py --size 64 --batch 32 --threads 1 --dataset embedded
    python benchmarks/bench_zero_cost.py --threads 1 --clock cpu   # CPU seconds: steadier on a busy machine

Each candidate is built fresh (``build_model``, timed apart), then each proxy is timed alone
(``score(name, ...)``) and all four together (``scores(...)``, where jacob_cov, snip and grad_norm share
one pass). Times are medians over ``--repeat`` runs. Candidates per minute counts build plus all four.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.data import load_dataset
from mobilenet_search.measure.zero_cost import PROXIES, fixed_batch, score, scores

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def median_seconds(run: Callable[[], object], repeat: int, clock: Callable[[], float]) -> float:
    """Median seconds of ``run()`` over ``repeat`` calls, read on ``clock``."""
    times = []
    for _ in range(repeat):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)


def time_candidate(spec: ArchSpec, images: torch.Tensor, labels: torch.Tensor, repeat: int,
                   clock: Callable[[], float]) -> list[float]:
    """Seconds for: building ``spec``, each proxy alone, all four together."""
    model = build_model(spec)
    return ([median_seconds(lambda: build_model(spec), repeat, clock)]
            + [median_seconds(lambda name=name: score(name, model, images, labels), repeat, clock) for name in PROXIES]
            + [median_seconds(lambda: scores(model, images, labels), repeat, clock)])


def main() -> None:
    """Print one row per width multiplier: build, each proxy, all four, and candidates per minute."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="proxy image size in pixels")
    parser.add_argument("--batch", type=int, default=64, help="images in the fixed mini-batch")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (the median is reported)")
    parser.add_argument("--dataset", default="synthetic:256", help="source of the mini-batch (load_dataset syntax)")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.35, 0.5, 0.75, 1.0, 1.4])
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="cpu: process CPU time, steadier than wall time on a shared machine with --threads 1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, args.size, cache_dir=None)
    images, labels = fixed_batch(data, args.batch, seed=0)
    specs = [ArchSpec.mobilenet_v2(w, num_classes=data.num_classes, in_channels=data.in_channels) for w in args.widths]
    clock = CLOCKS[args.clock]
    torch.manual_seed(0)
    time_candidate(specs[0], images, labels, 1, clock)  # warm-up: the first pass pays one-off initialisation
    print(f"MobileNetV2, {args.size} px, batch {len(images)} from {args.dataset} ({data.in_channels} channel(s), "
          f"{data.num_classes} classes), torch threads: {args.threads}, median of {args.repeat}; {args.clock} ms")
    columns = ["build", *PROXIES, "all four"]
    print(f"{'width':>5} " + " ".join(f"{name:>9}" for name in columns) + f" {'cand/min':>8}")
    for width, spec in zip(args.widths, specs, strict=True):
        times = time_candidate(spec, images, labels, args.repeat, clock)
        print(f"{width:>5} " + " ".join(f"{t * 1e3:>9.0f}" for t in times) + f" {60 / (times[0] + times[-1]):>8.0f}")


if __name__ == "__main__":
    main()

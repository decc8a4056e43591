"""Whether ``torch.utils.benchmark.Timer`` could replace measure_latency's own timing loop (issue 23).

Run: ``python benchmarks/bench_timer.py [--rounds 5] [--clock wall|thread]``. For each network, in
interleaved rounds on one CPU thread, it takes measure_latency's median (10 timed runs after 2
warm-ups) and three ways of asking Timer for the same figure:

- ``Timer.timeit(1)`` ten times, median: per-run times as measure_latency keeps them (median,
  quartiles, fastest run), but each call runs 2 warm-up passes of its own first;
- ``Timer.timeit(10)``: the same number of passes as measure_latency, but only their mean;
- ``Timer.blocked_autorange(min_run_time=0.2)``: Timer's own choice of blocks, median of block means.

Prints per network the median over rounds of each figure (ms) and the wall time each way costs (s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from time import perf_counter, thread_time

import torch
from torch.utils.benchmark import Timer

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.measure.latency import measure_latency

POINTS = [(0.35, 96), (0.75, 160), (1.0, 224)]


def _timer_figures(model: torch.nn.Module, inputs: torch.Tensor, clock) -> dict[str, tuple[float, float]]:
    """(ms, seconds the call took) for each Timer variant."""
    timer = Timer("model(inputs)", globals={"model": model, "inputs": inputs}, num_threads=1, timer=clock)
    out = {}
    with torch.inference_mode():
        for _ in range(2):
            model(inputs)
        start = time.perf_counter()
        out["timeit(1) x10 median"] = (statistics.median(timer.timeit(1).mean for _ in range(10)) * 1e3,
                                       time.perf_counter() - start)
        start = time.perf_counter()
        out["timeit(10) mean"] = (timer.timeit(10).mean * 1e3, time.perf_counter() - start)
        start = time.perf_counter()
        out["blocked_autorange median"] = (timer.blocked_autorange(min_run_time=0.2).median * 1e3,
                                           time.perf_counter() - start)
    return out


def main() -> None:
    """Measure each point of :data:`POINTS` in interleaved rounds and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    args = parser.parse_args()
    clock = thread_time if args.clock == "thread" else perf_counter
    print(f"{'network':<10}{'way':<28}{'ms':>9}{'call s':>9}")
    for width_mult, resolution in POINTS:
        spec = ArchSpec.mobilenet_v2(width_mult, resolution)
        model = build_model(spec, seed=0).eval()
        inputs = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
        rows: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            start = time.perf_counter()
            ours = measure_latency(model, (1, 3, resolution, resolution), clock=args.clock)
            rows.setdefault("measure_latency median", []).append((ours.ms, time.perf_counter() - start))
            previous = torch.get_num_threads()
            try:
                for name, figure in _timer_figures(model, inputs, clock).items():
                    rows.setdefault(name, []).append(figure)
            finally:
                torch.set_num_threads(previous)
        for name, figures in rows.items():
            print(f"{width_mult}/{resolution:<6}{name:<28}{statistics.median(ms for ms, _ in figures):>9.2f}"
                  f"{statistics.median(s for _, s in figures):>9.2f}")


if __name__ == "__main__":
    main()

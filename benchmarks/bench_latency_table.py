"""Build the mobilenetv2 latency table on this CPU and check it on random members.

Run: ``python benchmarks/bench_latency_table.py [--results-dir DIR] [--repeats 10] [--passes 3]
[--samples 100] [--rounds 3]``. Builds (or resumes) the table for CPU, 1 thread, batch 1 under
``DIR/latency/``, then times ``--samples`` random members for real and prints the share
predicted within ±10 % and ±5 %, the mean absolute percentage error and Kendall's tau beside
MAdds' tau. A rerun with the same folder skips the build and checks again.

On the project's shared VM (2 cores of an AMD EPYC, shared by 4-5 busy processes; load 1-6),
2026-11-25: 4,020 distinct entries, 12,060 timings, built in 734 s with the overhead fit. Checks of
100 random members: 52-68 % within ±10 %, 23-44 % within ±5 %, mean absolute error 8.4-11.2 %,
Kendall tau 0.78-0.87 against MAdds' 0.78-0.81. The same 40 networks timed twice a few minutes
apart agreed within ±10 % only half the time (mean difference 13.9 %, tau 0.69): on that machine the
measurement itself, not the table, bounds the error. On a quiet device expect much better.
"""

from __future__ import annotations

import argparse
import time

import torch

from mobilenet_search.measure.latency_table import format_check, predict_latency_ms
from mobilenet_search.search.latency_plan import build_space_table, check_space_table, distinct_entries
from mobilenet_search.search.space import load_space


def main() -> None:
    """Build, fit and check, printing each step's size and wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--results-dir", default="results/bench_latency_table")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--fit-samples", type=int, default=4, help="members per resolution for the overhead fit")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", default="auto", choices=["auto", "wall", "thread"])
    args = parser.parse_args()
    torch.set_num_threads(1)

    space = load_space(args.space)
    start = time.perf_counter()
    entries = distinct_entries(space)
    print(f"{space.name}: {space.size:,} members, {len(entries):,} distinct entries "
          f"(enumerated in {time.perf_counter() - start:.1f} s)")
    start = time.perf_counter()
    table, path = build_space_table(space, device="cpu", threads=1, batch=1, results_dir=args.results_dir,
                                    repeats=args.repeats, passes=args.passes, clock=args.clock, rounds=args.rounds,
                                    fit_per_resolution=args.fit_samples, entries=entries)
    print(f"table {path}: {table.device}, {table.passes} passes x ({table.warmup} warm-up + {table.repeats} timed "
          f"runs), statistic {table.statistic}, {table.clock} clock; build and fit {time.perf_counter() - start:.0f} s "
          "(a rerun resumes or skips)")
    print("overhead (ms): " + ", ".join(f"{name} {value:+.2f}" for name, value in table.overhead.items()))

    spec = space.spec()
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        predict_latency_ms(spec, table)
    print(f"predict_latency_ms: {(time.perf_counter() - start) / calls * 1e6:.0f} us per call")

    start = time.perf_counter()
    figures = check_space_table(space, table, device="cpu", samples=args.samples, rounds=args.rounds)
    table.check = figures
    table.save(path)
    print(f"check ({args.rounds} rounds, {time.perf_counter() - start:.0f} s): {format_check(figures)}")


if __name__ == "__main__":
    main()

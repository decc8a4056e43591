"""Analytic cost model vs PyTorch's FlopCounterMode: ``count_madds`` and ``profile_module`` timed side by side.

Run from the repository root::

    python benchmarks/bench_cost.py            # MobileNetV2 0.35-1.4 x 96-224 and MobileNetV1 0.25-1.0 x 128-224
    python benchmarks/bench_cost.py --threads 2 --repeat 5000

The analytic side is ``count_madds(spec)`` (what a search calls to reject an over-budget candidate), and
also ``count_madds`` plus ``count_params``, which is what one profiling pass returns; the profiled side is
``profile_module(build_model(spec), ...)``, with the build timed separately. Both sides are checked to
agree before anything is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.cost import count_madds, count_params, profile_module
from mobilenet_search.arch.spec import ArchSpec


def paper_specs() -> list[ArchSpec]:
    """The papers' grids: MobileNetV2 (Sandler et al. 2018) and MobileNetV1 (Howard et al. 2017)."""
    v2 = [ArchSpec.mobilenet_v2(w, r) for w in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4) for r in (96, 128, 160, 192, 224)]
    v1 = [ArchSpec.mobilenet_v1(w, r) for w in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224)]
    return v2 + v1


def time_analytic(specs: list[ArchSpec], repeat: int, cost: Callable[[ArchSpec], object]) -> float:
    """Seconds per spec for ``cost(spec)``, best of five rounds of ``repeat`` passes over the specs."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            for spec in specs:
                cost(spec)
        rounds.append((time.perf_counter() - start) / (repeat * len(specs)))
    return min(rounds)


def time_profiled(specs: list[ArchSpec]) -> tuple[float, float]:
    """(build seconds per spec, profile seconds per spec), medians over the specs; checks agreement."""
    build_times, profile_times = [], []
    for spec in specs:
        start = time.perf_counter()
        model = build_model(spec)
        built = time.perf_counter()
        measured = profile_module(model, (1, spec.in_channels, spec.resolution, spec.resolution))
        profiled = time.perf_counter()
        expected = (count_madds(spec), count_params(spec))
        if measured != expected:
            raise AssertionError(f"{spec}: FlopCounterMode {measured} != analytic {expected}")
        build_times.append(built - start)
        profile_times.append(profiled - built)
    return statistics.median(build_times), statistics.median(profile_times)


def main() -> None:
    """Print ``analytic: X µs/spec, FlopCounterMode: Y ms/spec, ratio: Z×`` for the papers' nets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the profiled forward pass")
    parser.add_argument("--repeat", type=int, default=200, help="passes over the specs for the analytic timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    specs = paper_specs()
    build_model(specs[0])  # warm-up: the first build and forward pay one-off initialisation
    profile_module(build_model(specs[0]), (1, 3, 224, 224))
    analytic = time_analytic(specs, args.repeat, count_madds)
    both = time_analytic(specs, args.repeat, lambda spec: (count_madds(spec), count_params(spec)))
    build, profiled = time_profiled(specs)
    print(f"specs: {len(specs)} (MobileNetV2 0.35-1.4 x 96-224, MobileNetV1 0.25-1.0 x 128-224), "
          f"torch threads: {args.threads}, all counts agree")
    print(f"analytic: {analytic * 1e6:.1f} µs/spec, FlopCounterMode: {profiled * 1e3:.1f} ms/spec "
          f"(+ build {build * 1e3:.1f} ms/spec), ratio: {profiled / analytic:,.0f}× "
          f"({(profiled + build) / analytic:,.0f}× with build)")
    print(f"analytic madds+params: {both * 1e6:.1f} µs/spec, ratio: {profiled / both:,.0f}× "
          f"({(profiled + build) / both:,.0f}× with build)")


if __name__ == "__main__":
    main()

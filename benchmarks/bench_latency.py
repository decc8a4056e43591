"""Latency of MobileNetV2 across width multipliers and resolutions, and what one measurement costs.

Run: ``python benchmarks/bench_latency.py [--device cpu|cuda|auto] [--threads 1] [--batch 1]``.
Prints one row per network: MAdds, median latency with its quartiles, and the wall time of
the whole ``measure_latency`` call (the price the search pays per candidate).
"""

from __future__ import annotations

import argparse
import time

from mobilenet_search import ArchSpec, build_model, count_madds
from mobilenet_search.measure.latency import measure_latency

POINTS = [(0.35, 96), (0.5, 128), (0.75, 160), (1.0, 160), (1.0, 224), (1.4, 224)]


def main() -> None:
    """Measure each point of :data:`POINTS` once and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    device = None
    print(f"{'network':<18}{'MAdds':>14}{'median ms':>11}{'IQR ms':>15}{'call s':>8}")
    for width_mult, resolution in POINTS:
        spec = ArchSpec.mobilenet_v2(width_mult, resolution)
        model = build_model(spec)
        start = time.perf_counter()
        result = measure_latency(model, (args.batch, 3, resolution, resolution), device=args.device,
                                 repeats=args.repeats, threads=args.threads)
        elapsed = time.perf_counter() - start
        device = result.device
        iqr = f"{result.q1_ms:.2f}-{result.q3_ms:.2f}"
        name = f"V2 {width_mult}/{resolution}"
        print(f"{name:<18}{count_madds(spec):>14,}{result.ms:>11.2f}{iqr:>15}{elapsed:>8.2f}")
    print(f"device: {device}, batch {args.batch}, {args.repeats} repeats")


if __name__ == "__main__":
    main()

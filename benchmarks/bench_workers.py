"""Trial throughput with 1 vs 2 local worker processes on the same small study, side by side.

Run: ``python benchmarks/bench_workers.py [--trials 8] [--epochs 2]``. Each run is the real
command (``mobilenet-search --workers N``) on a fresh SQLite study in a temporary folder, so
process start-up and storage contention are included: random MobileNetV2 candidates under
60M MAdds on 1,024 synthetic images (each worker draws its own). Prints trials per minute and
the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def run(workers: int, trials: int, epochs: int) -> float:
    """Seconds for ``workers`` processes to finish ``trials`` trained candidates."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "mobilenet_search.ui.cli", "--budget", "60M-madds", "--space", "mobilenetv2",
                   "--dataset", "synthetic:1024", "--epochs", str(epochs), "--proxy-size", "64", "--references",
                   "none", "--trials", str(trials), "--workers", str(workers), "--study", f"w{workers}",
                   "--results-dir", folder, "--device", "cpu", "--sampler", "random"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    seconds = {workers: run(workers, args.trials, args.epochs) for workers in (1, 2)}
    for workers, elapsed in seconds.items():
        print(f"{workers} worker(s): {args.trials} trials in {elapsed:.1f} s = {60 * args.trials / elapsed:.1f} "
              "trials/min")
    print(f"throughput ratio, 2 workers / 1 worker: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()

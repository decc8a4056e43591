"""Scoring spread over workers: candidates per minute of a --strategy supernet study with 1 and 2 worker processes.

The study (``mobilenetv2`` under 300M MAdds on the embedded data, proxy size 32, a 1-epoch supernet:
scoring costs the same whatever the weights) is created and its supernet trained once; then each
run is the real command, ``mobilenet-search worker`` started 1 or 2 times at once on a fresh copy of
the study (SQLite), until the study holds ``--candidates`` more scored trials. Every worker loads the
checkpoint once, at its start: process start-up and that load are included, as are each trial's
latency and zero-cost measurements.

Run: ``python benchmarks/bench_supernet_workers.py [--candidates 20]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "mobilenet_search.ui.cli"]
SETTINGS = ["--budget", "300M-madds", "--space", "mobilenetv2", "--dataset", "embedded", "--proxy-size", "32",
            "--strategy", "supernet", "--supernet-epochs", "1", "--references", "none", "--noise-repeats", "0",
            "--confirm", "0", "--sampler", "random", "--device", "cpu"]


def run(folder: Path, workers: int, target: int) -> float:
    """Seconds for ``workers`` worker processes to bring the study in ``folder`` to ``target`` trials."""
    storage = f"sqlite:///{folder / 'sw.db'}"
    command = [*CLI, "worker", "--storage", storage, "--study", "sw", "--trials", str(target), "--device", "cpu",
               "--results-dir", str(folder), "--quiet"]
    # One thread a worker, 1 worker or 2: on a shared machine a worker's 2 OpenMP threads spin-wait on each other
    # (the first run of this benchmark gave 1 worker 2 threads: 27 s a candidate against 3.3 s for 1-thread workers).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    processes = [subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("a worker failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        base = Path(root) / "base"
        base.mkdir()
        # The study and its supernet, once; a worker never trains one.
        subprocess.run([*CLI, *SETTINGS, "--study", "sw", "--trials", "1", "--results-dir", str(base)], check=True,
                       capture_output=True, cwd=base, env={**os.environ, "OMP_NUM_THREADS": "1"})
        seconds = {}
        for workers in (1, 2):
            folder = Path(root) / f"w{workers}"
            shutil.copytree(base, folder)
            seconds[workers] = run(folder, workers, 1 + args.candidates)
    for workers, elapsed in seconds.items():
        print(f"{workers} worker(s): {args.candidates} candidates in {elapsed:.1f} s = "
              f"{60 * args.candidates / elapsed:.1f} candidates/min")
    print(f"throughput ratio, 2 workers / 1 worker: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()

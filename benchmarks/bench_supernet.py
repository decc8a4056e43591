"""Cost of weight sharing on the embedded data: supernet training per step and per epoch, and scoring throughput.

One run measures, side by side on the same machine and thread count: the seconds of each sandwich
step (largest + smallest + random members of ``mobilenetv2``, each at its own proxy size, base 64
px), the resulting seconds per epoch, and how many random members per minute
:func:`score_subnet` scores (extraction, BatchNorm recalibration on ``bn_images`` training images,
evaluation on the validation split). The supernet is only briefly trained: scoring costs the same
whatever the weights.

Run: ``python benchmarks/bench_supernet.py --epochs 1 --steps 10`` (about 2 minutes on one thread;
``--steps 0`` times whole epochs).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.supernet_train import SupernetConfig, calibration_indices, score_subnet, train_supernet
from mobilenet_search.search.space import load_space, supernet_envelope


class _Enough(Exception):
    """Raised from the step callback once enough steps are timed."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--proxy-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1, help="epochs to train (the schedule's length too)")
    parser.add_argument("--steps", type=int, default=10, help="stop after this many steps (0: whole epochs)")
    parser.add_argument("--candidates", type=int, default=10, help="random members to score")
    parser.add_argument("--bn-images", type=int, default=SupernetConfig.bn_images)
    parser.add_argument("--batch-size", type=int, default=SupernetConfig.batch_size)
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    # One thread: the machine is shared, and two spinning OpenMP threads stall each other.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = load_space(args.space)
    loaded = load_dataset("embedded", args.proxy_size, cache_dir=args.cache_dir)
    data_for_size = functools.cache(lambda size: load_dataset("embedded", size, cache_dir=args.cache_dir))
    kwargs = dict(num_classes=loaded.num_classes, in_channels=loaded.in_channels)
    envelope = supernet_envelope(space, **kwargs)
    smallest = space.extreme(**kwargs)

    def proxy_size(spec: ArchSpec) -> int:
        return proxy_resolution(args.proxy_size, spec.resolution)

    def sample(generator: torch.Generator) -> ArchSpec:
        return space.spec({name: values[int(torch.randint(len(values), (1,), generator=generator))]
                           for name, values in space.searched.items()}, **kwargs)

    for resolution in space.parameters["resolution"]:  # decode every size before timing anything
        data_for_size(proxy_resolution(args.proxy_size, resolution))

    config = SupernetConfig(epochs=args.epochs, batch_size=args.batch_size, bn_images=args.bn_images)
    supernet = Supernet(envelope, seed=0)
    # Wall-clock and this process's CPU seconds: on a shared machine the two differ by the other work.
    step_seconds: list[float] = []
    step_cpu: list[float] = []
    last = [time.perf_counter(), time.process_time()]
    steps_per_epoch = [0]

    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        now = [time.perf_counter(), time.process_time()]
        step_seconds.append(now[0] - last[0])
        step_cpu.append(now[1] - last[1])
        last[:] = now
        steps_per_epoch[0] = steps
        print(f"  epoch {epoch + 1} step {step + 1}/{steps}: {step_seconds[-1]:.2f} s ({step_cpu[-1]:.2f} s CPU), "
              f"loss {loss:.3f}", flush=True)
        if args.steps and len(step_seconds) >= args.steps:
            raise _Enough

    with tempfile.TemporaryDirectory() as folder:
        # The first step's time includes setting up (optimizer, input statistics per size).
        last[:] = [time.perf_counter(), time.process_time()]
        try:
            result = train_supernet(supernet, data_for_size, sample, smallest, envelope, proxy_size, config,
                                    Path(folder) / "supernet.pt", "bench", on_step=on_step)
            epoch_seconds = result.train_seconds / args.epochs
            measured = "measured"
        except _Enough:
            epoch_seconds = statistics.median(step_seconds[1:] or step_seconds) * steps_per_epoch[0]
            measured = f"estimated from the median of {len(step_seconds)} steps"

    generator = torch.Generator().manual_seed(1)
    members = [sample(generator) for _ in range(args.candidates)]
    score_seconds, score_cpu = [], []
    for spec in members:
        data = data_for_size(proxy_size(spec))
        calibration = calibration_indices(data, args.bn_images)
        cpu = time.process_time()
        evaluation, seconds = score_subnet(supernet, spec, data, calibration=calibration)
        score_cpu.append(time.process_time() - cpu)
        score_seconds.append(seconds)
        print(f"  scored w{spec.width_mult} r{spec.resolution} ({proxy_size(spec)} px): {seconds:.2f} s "
              f"({score_cpu[-1]:.2f} s CPU), accuracy {evaluation.accuracy:.3f}", flush=True)

    n_train, n_val = len(loaded.train_labels), len(loaded.val_labels)
    print(f"\n{args.space} supernet (envelope {envelope}),")
    print(f"embedded data ({n_train} training / {n_val} validation images), proxy size {args.proxy_size}, "
          f"batch {config.batch_size}, {config.random_subnets} random members per step, {args.threads} thread(s)")
    print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"sandwich step: median {statistics.median(step_seconds):.2f} s wall, "
          f"{statistics.median(step_cpu):.2f} s CPU (wall min {min(step_seconds):.2f}, "
          f"max {max(step_seconds):.2f}, {len(step_seconds)} steps)")
    cpu_epoch = statistics.median(step_cpu[1:] or step_cpu) * steps_per_epoch[0]
    print(f"epoch ({steps_per_epoch[0]} steps): {epoch_seconds:.1f} s wall ({measured}), {cpu_epoch:.1f} s CPU; "
          f"{SupernetConfig.epochs} default epochs: {epoch_seconds * SupernetConfig.epochs / 60:.1f} min wall, "
          f"{cpu_epoch * SupernetConfig.epochs / 60:.1f} min CPU")
    print(f"scoring with {args.bn_images} BatchNorm images: median {statistics.median(score_seconds):.2f} s wall "
          f"({statistics.median(score_cpu):.2f} s CPU) per member; {60 * len(score_seconds) / sum(score_seconds):.1f} "
          f"members per minute wall, {60 * len(score_cpu) / sum(score_cpu):.1f} per CPU minute "
          f"({len(score_seconds)} random members)")


if __name__ == "__main__":
    main()

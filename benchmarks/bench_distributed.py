"""Data-parallel supernet training: one supernet epoch on 1 process vs N ranks, its cost, and the scaling model.

Measures, on this machine, one epoch of ``mobilenetv2``'s supernet on the embedded data (default
proxy size 32, batch 64: 32 sandwich steps) trained

- by one process with 1 thread (and, with ``--threads-too``, with ``--ranks`` threads: on a shared
  machine its OpenMP threads spin-wait on each other, so it is left out by default);
- by ``--ranks`` gloo ranks (1 thread each), gradients averaged by hand (one all-reduce) or by DDP
  (``find_unused_parameters``), BatchNorm synchronised or not;

each variant's wall time and CPU time (all processes, all threads), and, on the ranks, the time of
one all-reduce of the supernet's whole gradient. Then the scaling model: an epoch on N ranks takes
``steps x (t_step(B/N) + t_allreduce(N))``, with ``t_step(B/N)`` the step of one rank on its share
of the batch, checked here against the measured N-rank epoch.

Run: ``python benchmarks/bench_distributed.py`` (about 5 minutes on 2 cores). ``--device cuda`` on
a GPU machine measures the same with nccl, one GPU per rank.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.distributed import DistributedSettings, Launch, Ranks, process_group
from mobilenet_search.measure.supernet_train import SupernetConfig, train_supernet
from mobilenet_search.search.space import load_space, supernet_envelope
from mobilenet_search.search.strategies import random_member

VARIANTS = {  # name -> distributed settings of the ranks
    "allreduce + SyncBN (default)": DistributedSettings(),
    "DDP + SyncBN": DistributedSettings(gradients="ddp"),
    "allreduce, local BN": DistributedSettings(sync_batchnorm=False),
    "DDP, local BN": DistributedSettings(gradients="ddp", sync_batchnorm=False),
}


def _epoch(args: argparse.Namespace, ranks: Ranks, device: str) -> dict:
    """One epoch of the supernet (a fresh one each time); its wall and CPU seconds on this process."""
    space = load_space(args.space)
    data_for_size = functools.cache(lambda size: load_dataset("embedded", size, cache_dir=args.cache_dir))
    base = data_for_size(args.proxy_size)
    kwargs = dict(num_classes=base.num_classes, in_channels=base.in_channels)
    envelope = supernet_envelope(space, **kwargs)

    def proxy_size(spec: ArchSpec) -> int:
        return proxy_resolution(args.proxy_size, spec.resolution)

    for resolution in dict(space.choices).get("resolution", [envelope.resolution]):
        data_for_size(proxy_resolution(args.proxy_size, resolution))  # decoded (or read) before the clock starts
    config = SupernetConfig(epochs=1, batch_size=args.batch_size, warmup_epochs=0, device=device)
    net = Supernet(envelope, seed=0)
    ends = [time.perf_counter()]
    with tempfile.TemporaryDirectory() as folder:
        cpu = time.process_time()
        result = train_supernet(net, data_for_size, lambda g: random_member(space, g, **kwargs),
                                space.extreme(**kwargs), envelope, proxy_size, config, Path(folder) / "s.pt", "bench",
                                ranks=ranks, on_step=lambda *_: ends.append(time.perf_counter()))
        cpu = time.process_time() - cpu
    params = sum(p.numel() for p in net.parameters())
    # The median step: robust to other work on a shared machine stalling a few steps.
    step = statistics.median(b - a for a, b in zip(ends[1:], ends[2:], strict=False))
    return {"wall": result.train_seconds, "cpu": cpu, "steps": result.steps_per_epoch, "params": params,
            "step": step}


def _allreduce_seconds(numel: int, device: str, repeats: int = 10) -> float:
    """The median time of one all-reduce of ``numel`` float32 values over the ranks (one gradient's worth)."""
    import torch.distributed as dist

    flat = torch.ones(numel, device=device)
    times = []
    for _ in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        dist.all_reduce(flat)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    launch = Launch.from_environment()
    device = launch.device(args.device, torch.cuda.device_count())
    figures = {}
    with process_group(launch, device, DistributedSettings(timeout=600)) as group:
        for name, settings in VARIANTS.items():
            figures[name] = _epoch(args, Ranks(group.rank, group.world_size, settings, device), device)
        figures["allreduce"] = _allreduce_seconds(figures[name]["params"], device)
    Path(out, f"rank{rank}.json").write_text(json.dumps(figures))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--proxy-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per rank)")
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    parser.add_argument("--threads-too", action="store_true", help="also one process with --ranks threads")
    args = parser.parse_args()
    device = "cuda:0" if args.device.startswith("cuda") else "cpu"
    print(f"one supernet epoch of {args.space} on the embedded data at proxy size {args.proxy_size}, batch "
          f"{args.batch_size}; {os.cpu_count()} CPU cores, torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if device != "cpu" else ""))

    single = {}
    for threads in sorted({1, args.ranks} if args.threads_too else {1}):
        torch.set_num_threads(threads)
        single[threads] = _epoch(args, Ranks(device=device), device)
        print(f"  1 process, {threads} thread(s): {single[threads]['wall']:.1f} s wall, "
              f"{single[threads]['cpu']:.1f} s CPU ({single[threads]['steps']} steps, median step "
              f"{1000 * single[threads]['step']:.0f} ms)", flush=True)

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_rank, args=(args.ranks, _free_port(), args, out), nprocs=args.ranks)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(args.ranks)]
    for name in VARIANTS:
        wall = max(r[name]["wall"] for r in ranks)
        cpu = sum(r[name]["cpu"] for r in ranks)
        step = max(r[name]["step"] for r in ranks)
        threads = f", at {args.ranks} threads {single[args.ranks]['wall'] / wall:.2f}x" if args.threads_too else ""
        print(f"  {args.ranks} ranks, 1 thread each, {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, median step "
              f"{1000 * step:.0f} ms (speed-up over 1 process at 1 thread {single[1]['wall'] / wall:.2f}x{threads})")

    steps, params = single[1]["steps"], single[1]["params"]
    allreduce = statistics.median(r["allreduce"] for r in ranks)
    step = single[1]["step"]
    predicted = steps * (step / args.ranks + allreduce)
    measured = steps * max(r["allreduce, local BN"]["step"] for r in ranks)
    print("\nscaling model: epoch(N) = steps x (t_step / N + t_allreduce(N)), t_step the 1-rank median step")
    print(f"  gradient: {params:,} parameters = {4 * params / 2**20:.1f} MiB of float32; one all-reduce over "
          f"{args.ranks} ranks: {1000 * allreduce:.1f} ms")
    print(f"  t_step = {1000 * step:.0f} ms (1 process, 1 thread); N = {args.ranks}: predicted {predicted:.1f} s, "
          f"measured {measured:.1f} s (steps x median step, allreduce, local BN; SyncBN adds its own collectives)")


if __name__ == "__main__":
    main()

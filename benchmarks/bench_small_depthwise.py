"""Proxy training steps with and without :class:`SmallMapDepthwise`, side by side, on the CPU.

Run from the repository root::

    python benchmarks/bench_small_depthwise.py              # about 3 minutes on 2 cores
    python benchmarks/bench_small_depthwise.py --steps 20 --rounds 5

For each network (the quick start's three reference nets, three members of the mobilenetv2
space drawn with a fixed seed, and the largest and smallest members of that space's supernet,
run through the supernet's shared weights), at its proxy size for ``--proxy-size 64`` and batch 64 on
embedded-sized random inputs, the script times ``--steps`` training steps (forward, backward,
AdamW) with oneDNN's depthwise convolution everywhere ("plain") and with the broadcast product on
maps of at most 4 pixels ("small-map"), alternating the two ``--rounds`` times so that load on the
machine hits both alike. It prints the median step time of each and their ratio, and, from the
same initial weights and batches, the largest difference in loss after the timed steps (the two
differ only in float rounding). The figure to read is the ratio; the wall-clock times depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time
from collections.abc import Callable, Iterable

import optuna
import torch

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.measure.data import proxy_resolution
from mobilenet_search.measure.small_depthwise import SmallMapDepthwise
from mobilenet_search.search.space import load_space, supernet_envelope


def supernet_members(space_name: str) -> list[tuple[str, ArchSpec, Callable]]:
    """The largest and smallest members of the ``space_name`` supernet, each with a function that resets
    the supernet to its initial weights and returns (forward, parameters)."""
    space = load_space(space_name)
    envelope = supernet_envelope(space, num_classes=2, in_channels=3)
    smallest = space.extreme(num_classes=2, in_channels=3)
    supernet = Supernet(envelope, seed=0).to(memory_format=torch.channels_last)
    initial = copy.deepcopy(supernet.state_dict())

    def member(spec: ArchSpec) -> Callable:
        def fresh() -> tuple[Callable, Iterable[torch.nn.Parameter]]:
            supernet.load_state_dict(initial)
            return functools.partial(supernet, spec=spec), supernet.parameters()
        return fresh

    return [(f"supernet: largest (r{envelope.resolution})", envelope, member(envelope)),
            (f"supernet: smallest (r{smallest.resolution})", smallest, member(smallest))]


def standalone(spec: ArchSpec) -> Callable:
    def fresh() -> tuple[Callable, Iterable[torch.nn.Parameter]]:
        model = build_model(spec, seed=0).to(memory_format=torch.channels_last)
        return model, model.parameters()
    return fresh


def networks(seed: int) -> list[tuple[str, ArchSpec]]:
    nets = [(f"mobilenet_v2_{w}_{r}", ArchSpec.mobilenet_v2(w, r, num_classes=2, in_channels=3))
            for w, r in ((0.35, 96), (1.3, 96), (1.0, 224))]
    space = load_space("mobilenetv2")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for i in range(3):
        spec = space.sample(study.ask(), num_classes=2, in_channels=3)
        nets.append((f"space member {i} (r{spec.resolution})", spec))
    return nets


def run_steps(fresh: Callable, size: int, steps: int, mode: contextlib.AbstractContextManager) -> tuple[float, float]:
    """Median seconds per step and the last loss, from the initial weights ``fresh()`` gives and fixed batches."""
    torch.manual_seed(0)
    model, parameters = fresh()
    optimizer = torch.optim.AdamW(parameters, lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 3, size, size, generator=generator).contiguous(memory_format=torch.channels_last),
                torch.randint(0, 2, (64,), generator=generator)) for _ in range(steps + 2)]
    times, loss = [], torch.zeros(())
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        with mode:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    return statistics.median(times), float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proxy-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 64, {args.steps} steps x "
          f"{args.rounds} rounds")
    print(f"{'network':34} {'px':>3} {'plain ms':>9} {'small-map ms':>13} {'speed-up':>9} {'|d loss|':>9}")
    ratios = []
    rows = [(name, spec, standalone(spec)) for name, spec in networks(args.seed)] + supernet_members("mobilenetv2")
    for name, spec, fresh in rows:
        size = proxy_resolution(args.proxy_size, spec.resolution)
        plain, small, diff = [], [], 0.0
        for _ in range(args.rounds):
            t_plain, loss_plain = run_steps(fresh, size, args.steps, contextlib.nullcontext())
            t_small, loss_small = run_steps(fresh, size, args.steps, SmallMapDepthwise())
            plain.append(t_plain)
            small.append(t_small)
            diff = max(diff, abs(loss_plain - loss_small))
        p, s = statistics.median(plain), statistics.median(small)
        ratios.append(p / s)
        print(f"{name:34} {size:>3} {p * 1e3:>9.0f} {s * 1e3:>13.0f} {p / s:>8.2f}x {diff:>9.1e}", flush=True)
    print(f"geometric-mean speed-up {statistics.geometric_mean(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()

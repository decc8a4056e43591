"""What a latency table must hold for a search space, and the networks that fit and check it.

:func:`distinct_entries` lists every distinct layer group the members of a space can contain
without visiting the members (``mobilenetv2`` has millions): a stage's blocks depend only on
the global choices (width, resolution, ...), the strides of the stages before it, the width of
the stage before it and the stage's own choices, so it varies just those, stage by stage. The
timing itself is :mod:`mobilenet_search.measure.latency_table`'s.

    >>> from mobilenet_search.search.space import load_space
    >>> len(distinct_entries(load_space("tiny")))
    37
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import Any

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.measure.latency_table import (
    LatencyTable,
    Measure,
    build_table,
    check_table,
    device_identity,
    entries_for,
    fit_overhead,
    load_table_for,
    measure_networks,
    table_path,
    table_timer,
)
from mobilenet_search.search.space import STAGE_FIELDS, SearchSpace

DEFAULT_FIT_PER_RESOLUTION = 4


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def distinct_entries(space: SearchSpace, *, num_classes: int = 1000, in_channels: int = 3) -> list:
    """Every distinct :class:`~mobilenet_search.measure.latency_table.Entry` a member of ``space`` needs.

    Each spec built here is a member of the space, so nothing outside it is listed; every
    member's stage ``i`` is matched by one spec that agrees with it on everything stage ``i``
    depends on, so nothing is missed (a test checks this against all members of a small space).
    """
    searched = space.searched
    global_names = [name for name in searched if not name.startswith("stage")]
    found: dict[Any, None] = {}
    for index in range(space.num_stages):
        names = list(global_names)
        names += [f"stage{j + 1}.stride" for j in range(index)]
        if index > 0:
            names.append(f"stage{index}.channels")
        names += [f"stage{index + 1}.{field}" for field in STAGE_FIELDS]
        names = [name for name in _unique(names) if name in searched]
        for combo in product(*(searched[name] for name in names)):
            spec = space.spec(dict(zip(names, combo, strict=True)), num_classes=num_classes, in_channels=in_channels)
            found.update(dict.fromkeys(entries_for(spec)))
    return list(found)


def sample_members(space: SearchSpace, count: int, *, seed: int = 0, num_classes: int = 1000,
                   in_channels: int = 3, by_resolution: bool = False) -> list[ArchSpec]:
    """``count`` members drawn uniformly at random (seeded); with ``by_resolution``, ``count`` per resolution."""
    rng = random.Random(seed)
    searched = space.searched
    resolutions = searched.get("resolution") if by_resolution else None
    plan: list[dict[str, Any]] = []
    for resolution in resolutions or [None]:
        for _ in range(count):
            params = {name: rng.choice(values) for name, values in searched.items()}
            if resolution is not None:
                params["resolution"] = resolution
            plan.append(params)
    return [space.spec(params, num_classes=num_classes, in_channels=in_channels) for params in plan]


def build_space_table(space: SearchSpace, *, device: str = "auto", batch: int = 1, threads: int = 1,
                      results_dir: str | Path = "results", statistic: str = "min", clock: str = "auto", warmup: int = 2,
                      repeats: int = 10, passes: int = 3, rounds: int = 3,
                      fit_per_resolution: int = DEFAULT_FIT_PER_RESOLUTION, num_classes: int = 1000,
                      in_channels: int = 3, measure: Measure | None = None, progress: bool = True,
                      seed: int = 0, entries: Sequence[Any] | None = None) -> tuple[LatencyTable, Path]:
    """Build (or complete) this device's table for ``space`` and fit its overhead; returns it and its path.

    An existing table of this device keeps its entries and its timing settings (``statistic``,
    ``clock``, ``warmup``, ``repeats``, ``passes`` apply to a new table only). The overhead is refitted after
    adding ``fit_per_resolution`` random members per resolution, each timed in ``rounds``
    interleaved rounds; ``measure`` replaces the timer (tests); ``entries`` saves enumerating the
    space again when the caller has :func:`distinct_entries` already.
    """
    identity = device_identity(device, threads, batch)
    path = table_path(results_dir, identity.key)
    table = load_table_for(device, batch, results_dir, threads=threads) or LatencyTable.new(
        identity, statistic=statistic, clock=clock, warmup=warmup, repeats=repeats, passes=passes)
    measure = measure or table_timer(table, identity.device)
    if entries is None:
        entries = distinct_entries(space, num_classes=num_classes, in_channels=in_channels)
    build_table(entries, table, measure=measure, path=path, progress=progress, seed=seed)
    known = {sample["arch"] for sample in table.fit}
    specs = [spec for spec in sample_members(space, fit_per_resolution, seed=seed + 1, num_classes=num_classes,
                                             in_channels=in_channels, by_resolution=True)
             if spec.to_string() not in known]
    measured = measure_networks(specs, measure, batch=batch, rounds=rounds, statistic=table.statistic,
                                progress=progress, desc="fitting the overhead")
    fit_overhead(table, specs, measured)
    table.save(path)
    return table, path


def check_space_table(space: SearchSpace, table: LatencyTable, *, device: str = "auto", samples: int = 100,
                      rounds: int = 3, seed: int = 1000, num_classes: int = 1000, in_channels: int = 3,
                      measure: Measure | None = None, progress: bool = True) -> dict[str, Any]:
    """Time ``samples`` random members of ``space`` for real and compare them with the table's predictions.

    Networks the overhead was fitted on are left out of the sample. Returns
    :func:`~mobilenet_search.measure.latency_table.check_table`'s figures, plus the space's name
    and the number of rounds; the caller stores them with the table.
    """
    if samples < 2:
        raise UserError(f"invalid samples {samples}: a check needs at least 2 networks")
    fitted = {sample["arch"] for sample in table.fit}
    specs: list[ArchSpec] = []
    rng_seed = seed
    while len(specs) < samples:
        drawn = sample_members(space, samples, seed=rng_seed, num_classes=num_classes, in_channels=in_channels)
        specs += [spec for spec in drawn if spec.to_string() not in fitted][: samples - len(specs)]
        rng_seed += 1
        if rng_seed - seed > 20:
            raise UserError(f"space {space.name!r} has too few members outside the overhead fit for {samples} samples")
    for spec in specs:  # a missing entry fails now, not after minutes of timing
        if any(table.ms(entry.key) is None for entry in entries_for(spec)):
            raise UserError(f"latency table {table.device_key} does not cover space {space.name!r}: run "
                            f"`mobilenet-search latency-table build --space {space.name}` first")
    measure = measure or table_timer(table, device)
    measured = measure_networks(specs, measure, batch=table.batch, rounds=rounds, statistic=table.statistic,
                                progress=progress, desc="checking")
    figures = check_table(specs, table, measured)
    return {"space": space.name, "rounds": rounds, **figures}

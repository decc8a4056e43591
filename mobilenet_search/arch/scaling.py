"""Scaling a base network by width, resolution, depth or all three: pure arithmetic on an :class:`ArchSpec`.

EfficientNet (Tan & Le 2019, Section 3.3) scales depth by ``d = alpha^phi``, width by ``w = beta^phi``
and resolution by ``r = gamma^phi`` with ``alpha * beta^2 * gamma^2 ~= 2``, so that MAdds grow about
``2^phi``; depth multiplies every stage's ``n`` and rounds up. Each direction here is a path
``t -> multipliers`` on that same scale (``t`` about ``log2`` of the MAdds ratio):

- ``width``: ``(1, 2^(t/2), 1)`` (MAdds grow as width squared);
- ``resolution``: ``(1, 1, 2^(t/2))``;
- ``depth``: ``(2^t, 1, 1)``;
- ``compound``: ``(alpha^phi, beta^phi, gamma^phi)`` with ``phi = t / log2(alpha beta^2 gamma^2)``.

:func:`solve` finds the point of a path whose MAdds are nearest a target, after an optional ``snap``
to the nearest member of a search space (the search layer passes it in), among the networks a
budget ``admits``. Nothing here builds a network.

>>> base = ArchSpec.mobilenet_v2(0.35, 96, num_classes=10)
>>> point = solve(base, "width", 4 * count_madds(base))
>>> point.spec.width_mult, round(point.miss, 3)
(0.825, 1.008)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.spec import ArchSpec

DIRECTIONS = ("width", "resolution", "depth", "compound")
BASE = "base"  # the direction name of the base network itself (step 0 of every direction)


class Multipliers(NamedTuple):
    """Depth, width and resolution multipliers relative to a base network."""

    depth: float = 1.0
    width: float = 1.0
    resolution: float = 1.0

    @property
    def madds_ratio(self) -> float:
        """How much a network scaled this way costs relative to its base, before rounding: ``d w^2 r^2``."""
        return self.depth * self.width ** 2 * self.resolution ** 2


#: EfficientNet's coefficients (alpha depth, beta width, gamma resolution), fitted once on ImageNet (Section 3.3).
EFFICIENTNET = Multipliers(depth=1.2, width=1.1, resolution=1.15)


def coefficient_grid(depths: tuple[float, ...] = (1.0, 1.2, 1.4), widths: tuple[float, ...] = (1.0, 1.1, 1.2)
                     ) -> list[Multipliers]:
    """EfficientNet's small grid at ``phi = 1``: alpha and beta from the lists, gamma from
    ``alpha beta^2 gamma^2 = 2``, kept where gamma >= 1 (no dimension shrinks).

    >>> [tuple(round(v, 3) for v in m) for m in coefficient_grid((1.2,), (1.1,))]
    [(1.2, 1.1, 1.174)]
    """
    grid = []
    for alpha in depths:
        for beta in widths:
            gamma = math.sqrt(2 / (alpha * beta ** 2))
            if gamma >= 1:
                grid.append(Multipliers(alpha, beta, gamma))
    return grid


def path(direction: str, t: float, coefficients: Multipliers = EFFICIENTNET) -> Multipliers:
    """The multipliers of ``direction`` at ``t`` (about log2 of the MAdds ratio; see the module doc)."""
    if direction == "width":
        return Multipliers(width=2 ** (t / 2))
    if direction == "resolution":
        return Multipliers(resolution=2 ** (t / 2))
    if direction == "depth":
        return Multipliers(depth=2 ** t)
    if direction == "compound":
        phi = t / math.log2(coefficients.madds_ratio)
        return Multipliers(*(c ** phi for c in coefficients))
    raise ValueError(f"unknown scaling direction {direction!r}: expected one of {', '.join(DIRECTIONS)}")


def scale(base: ArchSpec, multipliers: Multipliers) -> ArchSpec:
    """``base`` scaled: width multiplier times ``width`` (4 decimals), resolution times ``resolution``
    (rounded, at least 32), every stage's ``n`` times ``depth`` rounded up, as EfficientNet does.

    >>> [s.repeats for s in scale(ArchSpec.mobilenet_v2(), Multipliers(depth=1.2)).stages]
    [2, 3, 4, 5, 4, 4, 2]
    """
    # The 1e-9 keeps 3 * 1.0000000001 at 3: float noise must not add a block.
    stages = tuple(dataclasses.replace(stage, repeats=math.ceil(stage.repeats * multipliers.depth - 1e-9))
                   for stage in base.stages)
    return base.replace(width_mult=round(base.width_mult * multipliers.width, 4),
                        resolution=max(32, round(base.resolution * multipliers.resolution)), stages=stages)


def multipliers_of(spec: ArchSpec, base: ArchSpec) -> Multipliers:
    """What ``spec`` is relative to ``base``: depth as the ratio of total blocks, width and resolution as ratios."""
    return Multipliers(depth=sum(s.repeats for s in spec.stages) / sum(s.repeats for s in base.stages),
                       width=spec.width_mult / base.width_mult, resolution=spec.resolution / base.resolution)


class ScaledPoint(NamedTuple):
    """One point of a scaling grid: the network picked for a MAdds target along a direction."""

    direction: str
    step: int  # 0 for the base, k for the k-th target
    target_madds: int
    spec: ArchSpec
    madds: int  # achieved: the target where the space allows, else the nearest member's

    @property
    def miss(self) -> float:
        """Achieved over target MAdds (1.0 on target)."""
        return self.madds / self.target_madds


Snap = Callable[[ArchSpec], ArchSpec]
Admits = Callable[[ArchSpec], bool]


def _distance(madds: int, target: float) -> float:
    return abs(math.log(madds / target))


def solve(base: ArchSpec, direction: str, target_madds: float, *, coefficients: Multipliers = EFFICIENTNET,
          snap: Snap | None = None, admits: Admits | None = None, step: int = 1, resolution: float = 0.01
          ) -> ScaledPoint:
    """The network along ``direction`` whose MAdds are nearest ``target_madds`` (in ratio), among those
    ``admits`` accepts (default: all), after ``snap`` (default: none, any ArchSpec).

    Without ``snap`` the path is solved by bisection to the MAdds step just below and just above the
    target (widths round to multiples of 8, so MAdds move in steps) and the nearer is taken. With
    ``snap`` the path is walked every ``resolution`` in ``t`` and each point snapped: the member of the
    space nearest the target is taken, its MAdds recorded. Ties go to the cheaper network.
    """
    base_madds = count_madds(base)
    top = math.log2(max(target_madds, base_madds) / base_madds) + 2  # past the target, whatever rounding does

    def at(t: float) -> ArchSpec:
        spec = scale(base, path(direction, t, coefficients))
        return snap(spec) if snap is not None else spec

    candidates = [base]
    if snap is None:
        low, high = 0.0, top
        for _ in range(60):  # bisection to the MAdds step around the target
            middle = (low + high) / 2
            low, high = (middle, high) if count_madds(at(middle)) < target_madds else (low, middle)
        candidates += [at(low), at(high)]
    else:
        candidates += [at(i * resolution) for i in range(int(top / resolution) + 1)]
    scored = {spec: count_madds(spec) for spec in candidates if admits is None or admits(spec)}
    if not scored:
        raise ValueError("solve: no network along the path is admitted, not even the base")
    spec = min(scored, key=lambda s: (_distance(scored[s], target_madds), scored[s]))
    return ScaledPoint(direction, step, round(target_madds), spec, scored[spec])


def madds_targets(base_madds: float, budget_madds: float) -> list[int]:
    """The geometric grid from the base up to the budget: ``base x 2, x 4, x 8, ...`` while within the
    budget, then the budget itself when it lies more than ``sqrt(2)`` above the last doubling.

    >>> madds_targets(10e6, 50e6)
    [20000000, 40000000]
    >>> madds_targets(10e6, 300e6)
    [20000000, 40000000, 80000000, 160000000, 300000000]
    """
    targets = []
    target = 2 * base_madds
    while target <= budget_madds:
        targets.append(round(target))
        target *= 2
    last = targets[-1] if targets else base_madds
    if budget_madds / last > math.sqrt(2):
        targets.append(round(budget_madds))
    return targets


def scaling_grid(base: ArchSpec, budget_madds: float, *, coefficients: Multipliers = EFFICIENTNET,
                 directions: tuple[str, ...] = DIRECTIONS, snap: Snap | None = None,
                 admits: Admits | None = None) -> list[ScaledPoint]:
    """The base (step 0) and, per direction, one point per target of :func:`madds_targets`."""
    base_madds = count_madds(base)
    points = [ScaledPoint(BASE, 0, base_madds, base, base_madds)]
    for direction in directions:
        for step, target in enumerate(madds_targets(base_madds, budget_madds), start=1):
            points.append(solve(base, direction, target, coefficients=coefficients, snap=snap, admits=admits,
                                step=step))
    return points

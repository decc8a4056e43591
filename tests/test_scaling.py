"""Scaling a base network along width, resolution, depth and compound to MAdds targets (arch/scaling.py)."""

import math

import pytest

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.scaling import (
    DIRECTIONS,
    EFFICIENTNET,
    Multipliers,
    coefficient_grid,
    madds_targets,
    multipliers_of,
    path,
    scale,
    scaling_grid,
)
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.search.space import load_space

BASE = ArchSpec.mobilenet_v2(0.35, 96, num_classes=10)


def _nearest_on_path(direction, target, step=0.001):
    """Brute force: the MAdds along the unsnapped path nearest ``target``, walking ``t`` finely past it."""
    top = math.log2(target / count_madds(BASE)) + 0.5
    return min((count_madds(scale(BASE, path(direction, i * step))) for i in range(int(top / step))),
               key=lambda m: abs(math.log(m / target)))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_free_grid_points_hit_their_targets_as_near_as_the_rounding_allows(direction):
    points = [p for p in scaling_grid(BASE, 100e6) if p.direction == direction]
    assert [p.target_madds for p in points] == madds_targets(count_madds(BASE), 100e6)
    for point in points:
        assert count_madds(point.spec) == point.madds
        best = _nearest_on_path(direction, point.target_madds)
        assert abs(math.log(point.madds / point.target_madds)) <= abs(math.log(best / point.target_madds)) + 1e-12
        # Channels round to multiples of 8 and strided feature maps to whole pixels: MAdds move in steps,
        # here within 12 % (resolution 128 -> 129 adds a row and column to every feature map).
        assert 0.88 <= point.miss <= 1.12, (direction, point)


def test_each_direction_changes_only_its_own_dimensions():
    by_direction = {p.direction: p.spec for p in scaling_grid(BASE, 50e6) if p.step == 1}
    base_depths = [s.repeats for s in BASE.stages]
    assert by_direction["width"].resolution == 96 and [s.repeats for s in by_direction["width"].stages] == base_depths
    assert by_direction["resolution"].width_mult == 0.35
    assert [s.repeats for s in by_direction["resolution"].stages] == base_depths
    assert (by_direction["depth"].width_mult, by_direction["depth"].resolution) == (0.35, 96)
    compound = multipliers_of(by_direction["compound"], BASE)
    assert compound.depth > 1 and compound.width > 1 and compound.resolution > 1


def test_depth_multiplies_every_stage_and_rounds_up_as_efficientnet_does():
    spec = scale(BASE, Multipliers(depth=1.5))
    assert [s.repeats for s in spec.stages] == [math.ceil(n * 1.5) for n in (1, 2, 3, 4, 3, 3, 1)]
    assert [s.repeats for s in scale(BASE, Multipliers(depth=1.0)).stages] == [1, 2, 3, 4, 3, 3, 1]


def test_compound_path_follows_the_coefficients():
    # phi = 1 at t = log2(alpha beta^2 gamma^2): exactly the coefficients.
    at_one = path("compound", math.log2(EFFICIENTNET.madds_ratio), EFFICIENTNET)
    assert at_one == pytest.approx(EFFICIENTNET)
    for m in coefficient_grid():
        assert m.madds_ratio == pytest.approx(2.0) and min(m) >= 1.0
    assert path("compound", 1.0, Multipliers(1.0, 1.0, math.sqrt(2))) == pytest.approx(path("resolution", 1.0))


def test_snapped_points_are_the_nearest_members_and_record_their_madds():
    space = load_space("mobilenetv2")
    budget = 300e6
    for point in scaling_grid(BASE, budget, snap=space.nearest, admits=lambda s: count_madds(s) < 301e6):
        assert space.params_of(point.spec) is not None, point  # a member of the space
        assert point.madds == count_madds(point.spec) < 301e6
        if point.direction == "width":  # brute force over every member that differs from the base in width only
            members = [BASE.replace(width_mult=w) for w in space.parameters["width_mult"]]
            fitting = [count_madds(m) for m in members if count_madds(m) < 301e6]
            best = min(fitting, key=lambda m: (abs(math.log(m / point.target_madds)), m))
            assert point.madds == best
        if point.direction == "resolution":
            members = [BASE.replace(resolution=r) for r in space.parameters["resolution"]]
            best = min((count_madds(m) for m in members), key=lambda m: (abs(math.log(m / point.target_madds)), m))
            assert point.madds == best
    # The space's widths stop at 1.4: beyond ~107M MAdds the width direction cannot follow its targets.
    widest = [p for p in scaling_grid(BASE, budget, snap=space.nearest, directions=("width",))][-1]
    assert widest.spec.width_mult == 1.4 and widest.miss < 0.5


def test_admits_keeps_every_point_inside_the_budget():
    bound = 301e6
    points = scaling_grid(BASE, 300e6, admits=lambda s: count_madds(s) < bound)
    assert all(p.madds < bound for p in points)
    unbounded = [p for p in scaling_grid(BASE, 300e6) if p.direction == "compound"][-1]
    assert unbounded.madds >= bound  # without it the nearest compound net lies above the budget


def test_targets_are_doublings_then_the_budget():
    assert madds_targets(10e6, 15e6) == [15000000]
    assert madds_targets(10e6, 12e6) == []
    assert madds_targets(10e6, 80e6) == [20000000, 40000000, 80000000]


def test_the_scaling_space_holds_the_paper_net_scaled_with_enough_points_in_every_direction():
    space = load_space("mobilenetv2_scaling")
    base = ArchSpec.mobilenet_v2(0.35, 96, num_classes=10)
    assert space.params_of(base) is not None and space.params_of(ArchSpec.mobilenet_v2(num_classes=10)) is not None
    points = scaling_grid(base, 300e6, snap=space.nearest, admits=lambda s: count_madds(s) < 301e6)
    for direction in DIRECTIONS:
        specs = {p.spec for p in points if p.direction in (direction, "base")}
        assert len({count_madds(s) for s in specs}) >= 3, direction  # enough distinct networks to fit a curve
        for spec in specs:  # t and c stay the paper's: only width, resolution and depth move
            assert [(s.expansion, s.channels) for s in spec.stages] == [(s.expansion, s.channels) for s in base.stages]

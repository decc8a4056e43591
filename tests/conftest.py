"""Shared fixtures: seeded random architectures that other test files may reuse."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from mobilenet_search.spec import ArchSpec, StageSpec

# Tests run on 2 shared cores: with more than one intra-op thread, small CPU convolutions spend
# their time spin-waiting on a busy core (the builder tests take 40 s instead of 3 s).
torch.set_num_threads(1)


def random_spec(rng: random.Random, family: str | None = None) -> ArchSpec:
    """A valid ArchSpec drawn from ``rng``, kept small (width <= 1.3, resolution <= 160) so building is fast.

    Covers both families, 1-5 stages of random (t, c, n, s), odd widths and resolutions,
    both heads and activations, the non-linear bottleneck, no head layer, 1-4 input channels
    and channel divisors other than 8.
    """
    family = family or rng.choice(["mobilenet_v2", "mobilenet_v1"])
    stages = tuple(
        StageSpec(
            1 if family == "mobilenet_v1" else rng.randint(1, 6),
            rng.randint(4, 96),
            rng.randint(1, 3),
            rng.choice([1, 2]),
        )
        for _ in range(rng.randint(1, 5))
    )
    return ArchSpec(
        family=family,
        width_mult=rng.choice([round(rng.uniform(0.1, 1.3), rng.randint(1, 4)), rng.uniform(0.1, 1.3)]),
        resolution=rng.choice([32, 33, 63, 64, 97, 128, 150, 160, rng.randint(32, 160)]),
        stages=stages,
        stem_channels=rng.randint(1, 48),
        head_channels=rng.choice([None, rng.randint(1, 640)]),
        activation=rng.choice(["relu6", "relu"]),
        linear_bottleneck=rng.choice([True, False]),
        head=rng.choice(["fc", "conv1x1"]),
        dropout=rng.choice([0.0, 0.2, rng.random() * 0.99]),
        num_classes=rng.randint(1, 100),
        in_channels=rng.randint(1, 4),
        round_nearest=rng.choice([8, 8, 4, 1, 16]),
    )


@pytest.fixture(scope="session")
def make_random_spec() -> Callable[[random.Random, str | None], ArchSpec]:
    """The :func:`random_spec` generator, for tests that draw their own specs."""
    return random_spec


@pytest.fixture(scope="session")
def random_specs() -> list[ArchSpec]:
    """300 seeded random valid specs, half MobileNetV1 and half MobileNetV2."""
    rng = random.Random(20180113)
    return [random_spec(rng, family) for _ in range(150) for family in ("mobilenet_v1", "mobilenet_v2")]

"""Shared fixtures: seeded random architectures that other test files may reuse."""

from __future__ import annotations

import functools
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from mobilenet_search.arch.spec import ArchSpec, StageSpec

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


def _postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (Debian keeps them out of PATH), if installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 for the session, as a URL with a password.

    ``MOBILENET_SEARCH_TEST_POSTGRES`` names an existing server instead. Skipped only when
    PostgreSQL's server programs are not installed (``apt-get install postgresql``).
    """
    if os.environ.get("MOBILENET_SEARCH_TEST_POSTGRES"):
        yield os.environ["MOBILENET_SEARCH_TEST_POSTGRES"]
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    data = Path(tempfile.mkdtemp(prefix="mobilenet-search-pg-"))
    # PostgreSQL refuses to run as root: run it as the postgres user the Debian package creates.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "mnsearch"])
    run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "start",
         "-o", f"-h 127.0.0.1 -p {port} -k {data}"])
    try:
        run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mnsearch", "studies"])
        # trust authentication accepts any password: the URL carries one so redaction is tested for real.
        yield f"postgresql://mnsearch:pg-s3cret-pw@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def interrupt_on_call(real: Callable, nth: int, calls: list) -> Callable:
    """``real`` (a training function), except that its ``nth`` call raises KeyboardInterrupt (a Ctrl-C)."""
    def wrapper(model, data, config, on_epoch=None):
        calls.append(config.epochs)
        if len(calls) == nth:
            raise KeyboardInterrupt
        return real(model, data, config, on_epoch=on_epoch)

    return wrapper

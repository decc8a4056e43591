"""A latency lookup table measured on the user's own device: a network's latency predicted from its spec.

Timing a candidate costs a fraction of a second per network and moves with the machine's load.
The table times each distinct layer group a search space can produce once, at the input
resolution and channels it meets in the network: the stem, every inverted-residual (or
MobileNetV1 depthwise-separable) block by its expansion, stride and channels, the last 1x1
convolution (the head) and global pooling with the classifier. :func:`predict_latency_ms`
then adds up a spec's entries plus a per-network overhead fitted on a few whole networks timed
for real (what running the blocks back to back costs beyond timing them one at a time: cold
caches, the network's own dispatch). Like :func:`~mobilenet_search.arch.cost.count_madds`, the
prediction is arithmetic on the spec, and importing this module does not import torch.

Tables are JSON, one file per device and batch size, named by :func:`device_key` under
``RESULTS_DIR/latency/``; a table measured elsewhere is refused with one line. Building is
resumable: the file is rewritten atomically every few entries and a rerun measures only what is
missing. Entries are timed with :func:`mobilenet_search.measure.latency.measure_latency`, the
same warm-up and timed runs the search uses, over several passes in shuffled order so that a
burst of load on a shared machine lands on a few passes of scattered entries rather than on a
whole stage, and the per-pass figures are combined by the table's ``statistic`` (the minimum by
default). On one CPU thread the clock is the thread's CPU time by default (see :func:`make_timer`).

    >>> from mobilenet_search import ArchSpec
    >>> [entry.key for entry in entries_for(ArchSpec.mobilenet_v2())][:3]
    ['stem r224 3>32 s2 relu6', 'block r112 32>16 t1 s1 relu6 linear', 'block r112 16>24 t6 s2 relu6 linear']
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mobilenet_search.arch.cost import conv_out, count_madds
from mobilenet_search.arch.spec import ArchSpec, Block
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_write_text, read_text_file

if TYPE_CHECKING:
    from torch import nn

SCHEMA_VERSION = 1
KINDS = ("stem", "block", "head", "classifier")
STATISTICS = ("min", "median")
CLOCKS = ("wall", "thread")  # see measure_latency; "auto" picks thread on one CPU thread, else wall
TABLE_DIR = "latency"  # under the results folder
DTYPE = "float32"  # what build_model builds and measure_latency feeds

# (module, input shape) -> milliseconds: how an entry or a whole network is timed; tests pass their own.
Measure = Callable[["nn.Module", tuple[int, ...]], float]


class Entry(NamedTuple):
    """One distinct layer group at the shapes it meets: what the table times once.

    ``resolution`` is the side of the input feature map. ``variant`` is ``linear``/``nonlinear``
    (the projection of a block) or ``fc``/``conv1x1`` (the classifier); ``activation`` is empty for
    the classifier. Blocks with ``expansion == 1`` have no expansion layer, as in the builder.
    """

    kind: str
    resolution: int
    in_channels: int
    out_channels: int
    stride: int = 1
    expansion: int = 1
    residual: bool = False
    activation: str = ""
    variant: str = ""

    @property
    def key(self) -> str:
        """The table's key, readable: ``block r56 24>24 t6 s1 relu6 linear residual``."""
        shape = f"{self.kind} r{self.resolution} {self.in_channels}>{self.out_channels}"
        if self.kind == "stem":
            return f"{shape} s{self.stride} {self.activation}"
        if self.kind == "block":
            return (f"{shape} t{self.expansion} s{self.stride} {self.activation} {self.variant}"
                    + (" residual" if self.residual else ""))
        if self.kind == "head":
            return f"{shape} {self.activation}"
        return f"{shape} {self.variant}"

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.in_channels, self.resolution, self.resolution)

    def module(self) -> nn.Module:
        """The PyTorch module this entry times, made of the builder's own layers."""
        from torch import nn
        from torchvision.ops import Conv2dNormActivation

        from mobilenet_search.arch.builder import ACTIVATION_LAYERS, InvertedResidual

        act = ACTIVATION_LAYERS.get(self.activation)
        if self.kind == "stem":
            return Conv2dNormActivation(self.in_channels, self.out_channels, 3, self.stride, activation_layer=act)
        if self.kind == "head":
            return Conv2dNormActivation(self.in_channels, self.out_channels, 1, activation_layer=act)
        if self.kind == "block":
            block = Block(0, self.in_channels, self.in_channels * self.expansion, self.out_channels, self.stride,
                          self.expansion, self.residual)
            return InvertedResidual(block, act, linear=self.variant == "linear")
        # MobileNet.forward's tail: global average pooling, then dropout and the linear layer or its 1x1 conv twin.
        if self.variant == "fc":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(),
                                 nn.Linear(self.in_channels, self.out_channels))
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(), nn.Conv2d(self.in_channels, self.out_channels, 1),
                             nn.Flatten(1))


def _block_entry(block: Block, size: int, activation: str, variant: str) -> Entry:
    return Entry("block", size, block.in_channels, block.out_channels, block.stride, block.expansion, block.residual,
                 activation, variant)


def spec_entries(spec: ArchSpec) -> list[tuple[Entry, int]]:
    """The spec's layer groups in network order, each with how many times the network runs it.

    Walks the spec as :func:`~mobilenet_search.arch.cost.stage_table` does: a stage's first block,
    then its repeated block ``n - 1`` times.
    """
    activation = spec.activation
    variant = "linear" if spec.linear_projection else "nonlinear"
    size = spec.resolution
    entries = [(Entry("stem", size, spec.in_channels, spec.stem_out, 2, 1, False, activation), 1)]
    size = conv_out(size, 2)
    for (first, repeat), stage in zip(spec.stage_blocks(), spec.stages, strict=True):
        entries.append((_block_entry(first, size, activation, variant), 1))
        size = conv_out(size, first.stride)
        if repeat is not None:
            entries.append((_block_entry(repeat, size, activation, variant), stage.repeats - 1))
    if spec.head_out is not None:
        entries.append((Entry("head", size, spec.stages_out, spec.head_out, 1, 1, False, activation), 1))
    entries.append((Entry("classifier", size, spec.features_out, spec.num_classes, variant=spec.head), 1))
    return entries


def entries_for(spec: ArchSpec) -> list[Entry]:
    """The distinct table entries the spec needs, in network order."""
    return list(dict.fromkeys(entry for entry, _ in spec_entries(spec)))


# -- the device ----------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def _nvidia_driver() -> str:
    """The NVIDIA driver version from the kernel module, where Linux shows it."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d[\d.]*)", text)
    return match[1] if match else "unknown"


@dataclass(frozen=True)
class DeviceIdentity:
    """What a table's timings belong to: ``key`` names the file, ``name`` is the hardware in words."""

    key: str
    name: str
    device: str  # resolved: cpu, cuda, cuda:N
    threads: int | None  # CPU intra-op threads; None on CUDA
    batch: int


def device_identity(device: str = "auto", threads: int = 1, batch: int = 1) -> DeviceIdentity:
    """The identity of this machine's ``device`` as a table records it; see :func:`device_key`."""
    from mobilenet_search.measure.latency import cpu_name, describe_device, resolve_device

    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"invalid batch {batch!r}: expected an integer >= 1")
    resolved = resolve_device(device)
    if resolved.startswith("cuda"):
        name = describe_device(resolved)
        driver = _nvidia_driver()
        key = f"cuda-{_slug(name)}-driver{driver}-{DTYPE}-b{batch}"
        return DeviceIdentity(key, f"{name} (driver {driver}, {DTYPE})", resolved, None, batch)
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"invalid threads {threads!r}: expected an integer >= 1")
    key = f"cpu-{_slug(cpu_name())}-{threads}t-{DTYPE}-b{batch}"
    return DeviceIdentity(key, describe_device(resolved, threads), resolved, threads, batch)


def device_key(device: str = "auto", threads: int = 1, batch: int = 1) -> str:
    """The name of this machine's table for ``device``: CPU model and thread count, or GPU name,
    driver and dtype, and the batch size; e.g. ``cpu-amd-epyc-1t-float32-b1``.

    >>> device_key("cpu", threads=1, batch=1).startswith("cpu-") and device_key("cpu").endswith("-1t-float32-b1")
    True
    """
    return device_identity(device, threads, batch).key


def table_path(results_dir: str | Path, key: str) -> Path:
    """Where the table of device ``key`` lives: ``RESULTS_DIR/latency/KEY.json``."""
    return Path(results_dir) / TABLE_DIR / f"{key}.json"


# -- the table ----------------------------------------------------------------------------


@dataclass
class LatencyTable:
    """Measured entries of one device and batch size, with the fitted overhead and the last check.

    ``times`` maps an entry's key to its figure in each pass (milliseconds); :meth:`ms` combines
    them by ``statistic``. ``fit`` holds the whole networks timed for the overhead (``arch``,
    ``ms``), ``overhead`` the fitted terms (see :func:`overhead_ms`), ``check`` the figures of the
    last :func:`check_table`.
    """

    device_key: str
    device: str
    batch: int
    threads: int | None = 1
    dtype: str = DTYPE
    statistic: str = "min"
    clock: str = "wall"
    warmup: int = 2
    repeats: int = 10
    passes: int = 3
    times: dict[str, list[float]] = field(default_factory=dict)
    fit: list[dict[str, Any]] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=dict)
    check: dict[str, Any] | None = None
    version: int = SCHEMA_VERSION

    @classmethod
    def new(cls, identity: DeviceIdentity, *, statistic: str = "min", clock: str = "auto", warmup: int = 2,
            repeats: int = 10, passes: int = 3) -> LatencyTable:
        """An empty table for ``identity`` (see :func:`device_identity`).

        ``clock="auto"`` is ``thread`` (CPU time, see :func:`make_timer`) on one CPU thread, else ``wall``.
        """
        if statistic not in STATISTICS:
            raise UserError(f"invalid statistic {statistic!r}: expected one of {', '.join(STATISTICS)}")
        if clock == "auto":
            clock = "thread" if identity.threads == 1 else "wall"
        if clock not in CLOCKS or (clock == "thread" and identity.threads != 1):
            raise UserError(f"invalid clock {clock!r}: expected auto, wall, or thread (CPU and 1 thread only)")
        for name, value, least in (("warmup", warmup, 0), ("repeats", repeats, 1), ("passes", passes, 1)):
            if not isinstance(value, int) or value < least:
                raise UserError(f"invalid {name} {value!r}: expected an integer >= {least}")
        return cls(identity.key, identity.name, identity.batch, identity.threads, statistic=statistic, clock=clock,
                   warmup=warmup, repeats=repeats, passes=passes)

    def ms(self, key: str) -> float | None:
        """The entry's latency in milliseconds, or None when it has not been measured."""
        figures = self.times.get(key)
        return combine(figures, self.statistic) if figures else None

    def missing(self, entries: Iterable[Entry]) -> list[Entry]:
        """The entries not measured in every pass yet."""
        return [entry for entry in entries if len(self.times.get(entry.key, ())) < self.passes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "device_key": self.device_key, "device": self.device, "batch": self.batch,
            "threads": self.threads, "dtype": self.dtype, "statistic": self.statistic, "clock": self.clock,
            "warmup": self.warmup,
            "repeats": self.repeats, "passes": self.passes, "overhead": self.overhead, "check": self.check,
            "fit": self.fit, "times": self.times,
        }

    def save(self, path: str | Path) -> None:
        """Write the table as JSON, atomically (a reader sees the old table or the new one)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Any, where: str = "latency table") -> LatencyTable:
        """Validate a parsed table; anything wrong is a one-line :class:`UserError` naming ``where``."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: not a latency table (expected a JSON object)")
        if data.get("version") != SCHEMA_VERSION:
            raise UserError(f"{where}: latency table version {data.get('version')!r} is not {SCHEMA_VERSION}; "
                            "build it again with `mobilenet-search latency-table build`")
        expected = {"device_key": str, "device": str, "batch": int, "dtype": str, "statistic": str, "clock": str,
                    "warmup": int,
                    "repeats": int, "passes": int, "overhead": dict, "fit": list, "times": dict}
        for name, kind in expected.items():
            if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
                raise UserError(f"{where}: field {name!r} is missing or not a {kind.__name__}")
        if data["statistic"] not in STATISTICS or data["clock"] not in CLOCKS or data["batch"] < 1 \
                or data["passes"] < 1:
            raise UserError(f"{where}: invalid statistic, clock, batch or passes")
        for key, figures in data["times"].items():
            if not isinstance(figures, list) or not all(_is_ms(v) for v in figures):
                raise UserError(f"{where}: entry {key!r} is not a list of positive milliseconds")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in data["overhead"].values()):
            raise UserError(f"{where}: field 'overhead' holds a value that is not a number")
        for sample in data["fit"]:
            if not isinstance(sample, dict) or not isinstance(sample.get("arch"), str) or not _is_ms(sample.get("ms")):
                raise UserError(f"{where}: field 'fit' holds a sample that is not {{arch, ms}}")
        if data.get("threads") is not None and (not isinstance(data["threads"], int) or data["threads"] < 1):
            raise UserError(f"{where}: field 'threads' is not a positive integer or null")
        if data.get("check") is not None and not isinstance(data["check"], dict):
            raise UserError(f"{where}: field 'check' is not an object")
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**fields)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read and validate a table file; a missing, truncated or malformed file is a :class:`UserError`."""
        path = Path(path)
        text = read_text_file(path, "latency table")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"latency table {str(path)!r} is not valid JSON (truncated or corrupt: {exc.msg} at "
                            f"line {exc.lineno}); delete it and build again") from None
        return cls.from_dict(data, where=f"latency table {str(path)!r}")

    def require_device(self, identity: DeviceIdentity, where: str = "latency table") -> None:
        """Refuse, in one line, a table measured on another device or batch size than ``identity``."""
        if self.device_key != identity.key:
            raise UserError(f"{where} was measured on {self.device}, batch {self.batch} ({self.device_key}); this is "
                            f"{identity.name}, batch {identity.batch} ({identity.key}): build a table here with "
                            "`mobilenet-search latency-table build`")


def combine(figures: Sequence[float], statistic: str) -> float:
    """Several timings of one thing as one figure: their minimum or their median (``statistic``)."""
    return min(figures) if statistic == "min" else statistics.median(figures)


def _is_ms(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def load_table_for(device: str = "auto", batch: int = 1, results_dir: str | Path = "results", *,
                   threads: int = 1) -> LatencyTable | None:
    """This device's table under ``results_dir``, or None when none has been built.

    A table file that is corrupt, or that was measured on another device, is a :class:`UserError`.
    """
    identity = device_identity(device, threads, batch)
    path = table_path(results_dir, identity.key)
    if not path.exists():
        return None
    table = LatencyTable.load(path)
    table.require_device(identity, where=f"latency table {str(path)!r}")
    return table


# -- building -----------------------------------------------------------------------------


def make_timer(device: str = "cpu", *, threads: int | None = 1, warmup: int = 2, repeats: int = 10,
               statistic: str = "min", clock: str = "wall") -> Measure:
    """A :data:`Measure` that times with :func:`~mobilenet_search.measure.latency.measure_latency`.

    ``statistic`` picks the figure of its timed runs: ``min`` (the fastest, the least moved by
    other load on a shared machine) or ``median`` (what the search records for a candidate).
    ``clock="thread"`` counts the CPU time of the timing thread instead of elapsed time: on one
    CPU thread the same work, without the time other processes hold the core (on a machine shared
    by several busy processes, a 30 ms network is preempted in every run and its wall-clock
    minimum is several times its CPU time, while a 0.3 ms block often runs undisturbed).
    """
    from mobilenet_search.measure.latency import measure_latency

    if statistic not in STATISTICS:
        raise UserError(f"invalid statistic {statistic!r}: expected one of {', '.join(STATISTICS)}")

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        result = measure_latency(module, input_shape, device=device, warmup=warmup, repeats=repeats, threads=threads,
                                 clock=clock)
        return result.min_ms if statistic == "min" else result.ms

    return measure


def table_timer(table: LatencyTable, device: str) -> Measure:
    """The timer a table was built with, so whole networks are timed as its entries were."""
    return make_timer(device, threads=table.threads, warmup=table.warmup, repeats=table.repeats,
                      statistic=table.statistic, clock=table.clock)


def build_table(entries: Sequence[Entry], table: LatencyTable, *, measure: Measure, path: str | Path | None = None,
                save_every: int = 25, progress: bool = True, seed: int = 0) -> LatencyTable:
    """Time every entry not yet in ``table``, ``table.passes`` times each, saving to ``path`` as it goes.

    Each pass visits the entries in a shuffled order (seeded): a burst of load then lands on
    scattered entries instead of one stage, and the progress bar's rate, hence its ETA, stays
    steady instead of swinging between small and large entries. The file is rewritten
    atomically every ``save_every`` measurements and when the loop ends, also by an
    interruption (Ctrl-C): a rerun measures only what is missing.
    """
    from tqdm.auto import tqdm

    distinct = list(dict.fromkeys(entries))
    rng = random.Random(seed)
    todo: list[Entry] = []
    for done_passes in range(table.passes):
        order = [entry for entry in distinct if len(table.times.get(entry.key, ())) <= done_passes]
        rng.shuffle(order)
        todo += order
    total = len(distinct) * table.passes
    unsaved = 0
    try:
        with tqdm(total=total, initial=total - len(todo), desc="latency table", unit="entry", smoothing=0.05,
                  disable=not progress) as bar:
            for entry in todo:
                ms = measure(entry.module(), entry.input_shape(table.batch))
                table.times.setdefault(entry.key, []).append(float(ms))
                unsaved += 1
                bar.update()
                if path is not None and unsaved >= save_every:
                    table.save(path)
                    unsaved = 0
    finally:
        if path is not None and unsaved:
            table.save(path)
    return table


def measure_networks(specs: Sequence[ArchSpec], measure: Measure, *, batch: int = 1, rounds: int = 3,
                     statistic: str = "min", progress: bool = True, desc: str = "timing networks") -> list[float]:
    """Each spec's latency in milliseconds: ``rounds`` interleaved timings combined by ``statistic``.

    Rounds visit every network before the next begins, so a slow minute on a shared machine
    touches one round of many networks rather than every round of one.
    """
    from tqdm.auto import tqdm

    from mobilenet_search.arch.builder import build_model

    figures: list[list[float]] = [[] for _ in specs]
    with tqdm(total=len(specs) * rounds, desc=desc, unit="net", disable=not progress) as bar:
        for _ in range(rounds):
            for index, spec in enumerate(specs):
                model = build_model(spec, seed=0)
                figures[index].append(measure(model, (batch, spec.in_channels, spec.resolution, spec.resolution)))
                bar.update()
    return [combine(f, statistic) for f in figures]


# -- predicting ---------------------------------------------------------------------------


def table_sum_ms(spec: ArchSpec, table: LatencyTable) -> float:
    """The sum of the spec's entries, each as often as the network runs it (no overhead)."""
    total = 0.0
    for entry, count in spec_entries(spec):
        ms = table.ms(entry.key)
        if ms is None:
            raise UserError(f"latency table {table.device_key} has no entry {entry.key!r} for {spec.to_string()}: "
                            "build it for the space this architecture comes from "
                            "(`mobilenet-search latency-table build --space NAME`)")
        total += ms * count
    return total


def overhead_ms(spec: ArchSpec, table: LatencyTable) -> float:
    """The fitted per-network overhead for ``spec``: the term of its resolution (``r224``), else ``intercept``.

    0 before a fit (:func:`fit_overhead`).
    """
    terms = table.overhead
    return terms.get(f"r{spec.resolution}", terms.get("intercept", 0.0))


def predict_latency_ms(spec: ArchSpec, table: LatencyTable) -> float:
    """Predicted latency of ``spec`` in milliseconds: its entries' sum plus the fitted overhead.

    Arithmetic on the spec (tens of microseconds); an entry the table lacks is a :class:`UserError`.
    """
    return table_sum_ms(spec, table) + overhead_ms(spec, table)


def fit_overhead(table: LatencyTable, specs: Sequence[ArchSpec] = (), measured_ms: Sequence[float] = ()) -> None:
    """Add the measured networks to ``table.fit`` and refit the overhead on all of them.

    A constant per input resolution, fitted by least squares of the relative error: the ``c``
    minimising the sum of ``((measured - sum - c) / measured) ** 2`` over that resolution's
    networks, so that a small network's few milliseconds count as much as a large one's tens
    (the check scores relative errors); ``intercept`` is the same fit over all networks, for
    resolutions without a sample. With equal latencies ``c`` is the mean residual.
    """
    table.fit += [{"arch": spec.to_string(), "ms": float(ms)} for spec, ms in zip(specs, measured_ms, strict=True)]
    groups: dict[int, list[tuple[float, float]]] = {}
    for sample in table.fit:
        spec = ArchSpec.from_string(sample["arch"])
        groups.setdefault(spec.resolution, []).append((sample["ms"], table_sum_ms(spec, table)))

    def relative_fit(pairs: list[tuple[float, float]]) -> float:
        return sum((y - total) / y**2 for y, total in pairs) / sum(1 / y**2 for y, _ in pairs)

    table.overhead = {}
    if groups:
        table.overhead["intercept"] = relative_fit([pair for pairs in groups.values() for pair in pairs])
        table.overhead.update({f"r{resolution}": relative_fit(pairs) for resolution, pairs in sorted(groups.items())})


# -- checking -----------------------------------------------------------------------------


def check_table(specs: Sequence[ArchSpec], table: LatencyTable, measured_ms: Sequence[float]) -> dict[str, Any]:
    """How well the table predicts ``measured_ms``, beside MAdds as the baseline ranking.

    Returns the share of networks predicted within 10 % and 5 % of their measured latency, the
    mean absolute percentage error, and Kendall's tau of predicted vs measured latency and of
    MAdds vs measured latency; the per-network rows are under ``nets``.
    """
    from scipy.stats import kendalltau

    if len(specs) < 2 or len(specs) != len(measured_ms):
        raise UserError(f"a check needs at least 2 networks with a measurement each, got {len(specs)}")
    predicted = [predict_latency_ms(spec, table) for spec in specs]
    madds = [count_madds(spec) for spec in specs]
    errors = [(p - m) / m for p, m in zip(predicted, measured_ms, strict=True)]
    return {
        "samples": len(specs),
        "within_10": sum(abs(e) <= 0.10 for e in errors) / len(errors),
        "within_5": sum(abs(e) <= 0.05 for e in errors) / len(errors),
        "mape": statistics.fmean(abs(e) for e in errors),
        "tau": float(kendalltau(predicted, measured_ms).statistic),
        "tau_madds": float(kendalltau(madds, measured_ms).statistic),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "nets": [{"arch": spec.to_string(), "ms": float(m), "predicted_ms": p, "madds": a}
                 for spec, m, p, a in zip(specs, measured_ms, predicted, madds, strict=True)],
    }


def format_check(figures: dict[str, Any]) -> str:
    """The check's figures as one paragraph for a terminal."""
    return (f"{figures['samples']} networks: {figures['within_10']:.0%} predicted within ±10 %, "
            f"{figures['within_5']:.0%} within ±5 %; mean absolute error {figures['mape']:.1%}; "
            f"Kendall tau {figures['tau']:.3f} (MAdds: {figures['tau_madds']:.3f})")

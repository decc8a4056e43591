"""The architecture as data: one frozen :class:`ArchSpec` describes a candidate network.

Everything in mobilenet-search (builder, cost model, search, dashboard, model library)
reads an architecture from this one type. It validates itself, resolves its channel
counts with torchvision's rounding rule (:func:`make_divisible`) in one place
(:meth:`ArchSpec.blocks`), and round-trips losslessly through JSON and a one-line string::

    >>> spec = ArchSpec.mobilenet_v2(width_mult=0.75, resolution=160)
    >>> ArchSpec.from_string(spec.to_string()) == spec
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mobilenet_search.errors import UserError

FAMILIES = ("mobilenet_v2", "mobilenet_v1")
ACTIVATIONS = ("relu6", "relu")
HEADS = ("fc", "conv1x1")
REFERENCE_RESOLUTION = 224  # the papers' resolution multiplier is resolution / 224

# Sandler et al. 2018, Table 2: rows of (t, c, n, s).
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Howard et al. 2017, Table 1: the 13 depthwise-separable layers after the stem, with
# consecutive equal widths merged into stages whose first layer carries the stride.
MOBILENET_V1_STAGES = (
    (1, 64, 1, 1),
    (1, 128, 2, 2),
    (1, 256, 2, 2),
    (1, 512, 6, 2),
    (1, 1024, 2, 2),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` the way torchvision's ``_make_divisible`` does.

    Round half up to the nearest multiple, never below ``divisor`` and never more than
    10 % below ``value``. ``make_divisible(0.35 * 32) == 16``, ``make_divisible(1.4 * 1280) == 1792``.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise UserError(f"invalid {name}={value!r}: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class StageSpec:
    """One row of the papers' architecture tables: ``n`` blocks of expansion ``t``, width ``c``.

    The first block of the stage has stride ``s``; the others have stride 1.
    MobileNetV1 stages always have ``expansion == 1`` (a depthwise-separable layer).
    """

    expansion: int  # t
    channels: int  # c, before the width multiplier
    repeats: int  # n
    stride: int  # s

    def __post_init__(self) -> None:
        _check(_is_int(self.expansion) and self.expansion >= 1, "expansion (t)", self.expansion, "an integer >= 1")
        _check(_is_int(self.channels) and self.channels >= 1, "channels (c)", self.channels, "an integer >= 1")
        _check(_is_int(self.repeats) and self.repeats >= 1, "repeats (n)", self.repeats, "an integer >= 1")
        _check(self.stride in (1, 2) and _is_int(self.stride), "stride (s)", self.stride, "1 or 2")

    def to_string(self) -> str:
        return f"t{self.expansion}c{self.channels}n{self.repeats}s{self.stride}"


class Block(NamedTuple):
    """One resolved building block, channels after the width multiplier and rounding.

    ``hidden == in_channels`` when there is no expansion layer (t = 1). ``residual`` says
    whether the block adds its input to its output (MobileNetV2, stride 1, equal channels).
    A named tuple rather than a frozen dataclass: as immutable, and built several times faster,
    which the cost model (tens of blocks per candidate, thousands of candidates) feels.
    """

    stage: int
    in_channels: int
    hidden: int
    out_channels: int
    stride: int
    expansion: int
    residual: bool


@dataclass(frozen=True)
class ArchSpec:
    """A complete, validated description of one MobileNetV1/V2 network.

    Channels are scaled by ``width_mult`` and rounded to multiples of ``round_nearest`` with
    :func:`make_divisible`; the last 1x1 convolution (``head_channels``, 1280 in MobileNetV2)
    is kept for ``width_mult < 1`` and scaled above 1, as in the paper and torchvision.
    ``head_channels=None`` means no such layer (MobileNetV1).

    ``linear_bottleneck=False`` is the paper's ablation that puts the activation after the
    projection layer too; ``head`` is ``"fc"`` (dropout + linear, as torchvision) or
    ``"conv1x1"`` (dropout + 1x1 convolution, as in the paper's Table 2).
    """

    family: str = "mobilenet_v2"
    width_mult: float = 1.0
    resolution: int = 224
    stages: tuple[StageSpec, ...] = field(
        default_factory=lambda: tuple(StageSpec(*row) for row in MOBILENET_V2_STAGES)
    )
    stem_channels: int = 32
    head_channels: int | None = 1280
    activation: str = "relu6"
    linear_bottleneck: bool = True
    head: str = "fc"
    dropout: float = 0.2
    num_classes: int = 1000
    in_channels: int = 3
    round_nearest: int = 8

    def __post_init__(self) -> None:
        # Accept lists of rows or of StageSpecs (as JSON and YAML give them), store a tuple.
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(*s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if _is_int(self.width_mult):
            object.__setattr__(self, "width_mult", float(self.width_mult))
        _check(self.family in FAMILIES, "family", self.family, f"one of {', '.join(FAMILIES)}")
        _check(
            isinstance(self.width_mult, float) and math.isfinite(self.width_mult) and self.width_mult > 0,
            "width_mult", self.width_mult, "a number > 0",
        )
        _check(_is_int(self.resolution) and self.resolution >= 32, "resolution", self.resolution, "an integer >= 32")
        _check(len(stages) >= 1, "stages", self.stages, "at least one stage")
        _check(_is_int(self.stem_channels) and self.stem_channels >= 1, "stem_channels", self.stem_channels,
               "an integer >= 1")
        _check(self.head_channels is None or (_is_int(self.head_channels) and self.head_channels >= 1),
               "head_channels", self.head_channels, "an integer >= 1 or null")
        _check(self.activation in ACTIVATIONS, "activation", self.activation, f"one of {', '.join(ACTIVATIONS)}")
        _check(isinstance(self.linear_bottleneck, bool), "linear_bottleneck", self.linear_bottleneck, "true or false")
        _check(self.head in HEADS, "head", self.head, f"one of {', '.join(HEADS)}")
        _check(isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
               and 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1)")
        object.__setattr__(self, "dropout", float(self.dropout))
        _check(_is_int(self.num_classes) and self.num_classes >= 1, "num_classes", self.num_classes,
               "an integer >= 1")
        _check(_is_int(self.in_channels) and self.in_channels >= 1, "in_channels", self.in_channels,
               "an integer >= 1")
        _check(_is_int(self.round_nearest) and self.round_nearest >= 1, "round_nearest", self.round_nearest,
               "an integer >= 1")
        if self.family == "mobilenet_v1":
            for i, stage in enumerate(stages):
                _check(stage.expansion == 1, f"stages[{i}].expansion (t)", stage.expansion,
                       "1 in MobileNetV1 (depthwise-separable layers have no expansion)")

    # -- the papers' networks -------------------------------------------------------------

    @classmethod
    def mobilenet_v2(cls, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                     **overrides: Any) -> ArchSpec:
        """MobileNetV2 as in Sandler et al. 2018 (Table 2) and torchvision's ``mobilenet_v2``."""
        return cls(family="mobilenet_v2", width_mult=width_mult, resolution=resolution,
                   num_classes=num_classes, **overrides)

    @classmethod
    def mobilenet_v1(cls, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                     **overrides: Any) -> ArchSpec:
        """MobileNetV1 as in Howard et al. 2017 (Table 1): stem, 13 depthwise-separable layers, FC."""
        fields = dict(stages=MOBILENET_V1_STAGES, head_channels=None, dropout=0.0)
        fields.update(overrides)
        return cls(family="mobilenet_v1", width_mult=width_mult, resolution=resolution,
                   num_classes=num_classes, **fields)

    # -- derived quantities -----------------------------------------------------------------

    @property
    def resolution_mult(self) -> float:
        """The papers' resolution multiplier rho = resolution / 224."""
        return self.resolution / REFERENCE_RESOLUTION

    def scaled(self, channels: int) -> int:
        """``channels`` under this spec's width multiplier, rounded to ``round_nearest``."""
        return make_divisible(channels * self.width_mult, self.round_nearest)

    @property
    def stem_out(self) -> int:
        return self.scaled(self.stem_channels)

    @property
    def stages_out(self) -> int:
        """Channels after the last stage."""
        return self.scaled(self.stages[-1].channels)

    @property
    def head_out(self) -> int | None:
        """Channels of the last 1x1 convolution, kept at its base width for width_mult < 1."""
        if self.head_channels is None:
            return None
        return make_divisible(self.head_channels * max(1.0, self.width_mult), self.round_nearest)

    @property
    def features_out(self) -> int:
        """Channels that reach the classifier."""
        head = self.head_out
        return head if head is not None else self.stages_out

    @property
    def linear_projection(self) -> bool:
        """Whether each block's 1x1 projection has no activation (the linear bottleneck).

        Only MobileNetV2 has one; MobileNetV1's depthwise-separable layers always end with the activation.
        """
        return self.linear_bottleneck and self.family == "mobilenet_v2"

    def stage_blocks(self) -> Iterator[tuple[Block, Block | None]]:
        """Per stage, its first block and the block it then repeats ``n - 1`` times (None if n = 1).

        Channels are resolved here and nowhere else: the builder and the cost model both read them.
        """
        in_channels = self.stem_out
        for index, stage in enumerate(self.stages):
            out_channels = self.scaled(stage.channels)
            first = self._block(index, in_channels, out_channels, stage.stride, stage.expansion)
            repeat = self._block(index, out_channels, out_channels, 1, stage.expansion) if stage.repeats > 1 else None
            yield first, repeat
            in_channels = out_channels

    def _block(self, stage: int, in_channels: int, out_channels: int, stride: int, expansion: int) -> Block:
        return Block(stage=stage, in_channels=in_channels, hidden=in_channels * expansion, out_channels=out_channels,
                     stride=stride, expansion=expansion,
                     residual=self.family == "mobilenet_v2" and stride == 1 and in_channels == out_channels)

    def blocks(self) -> Iterator[Block]:
        """The network's blocks in order, channels resolved."""
        for (first, repeat), stage in zip(self.stage_blocks(), self.stages, strict=True):
            yield first
            for _ in range(stage.repeats - 1):
                yield repeat

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [[s.expansion, s.channels, s.repeats, s.stride] for s in self.stages]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        if not isinstance(data, dict):
            raise UserError(f"invalid architecture: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"invalid architecture: unknown field(s) {', '.join(unknown)}")
        if "stages" in data:
            stages = data["stages"]
            if not isinstance(stages, (list, tuple)) or not all(
                isinstance(row, (list, tuple)) and len(row) == 4 for row in stages
            ):
                raise UserError(f"invalid stages={stages!r}: expected a list of [t, c, n, s] rows")
            data = {**data, "stages": tuple(StageSpec(*row) for row in stages)}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"invalid architecture JSON: {exc}") from None
        return cls.from_dict(data)

    def to_string(self) -> str:
        """A compact one-line name, e.g. ``mnv2_w1.0_r224_stem32_t1c16n1s1-..._head1280_relu6_...``.

        Tokens, joined by ``_``: family (``mnv2``/``mnv1``), width, resolution, stem channels,
        the stages as ``t{t}c{c}n{n}s{s}`` joined by ``-``, head channels (``head0`` for none),
        activation, ``linear``/``nonlinear`` bottleneck, classifier head, dropout, classes,
        input channels and channel divisor. :meth:`from_string` inverts it exactly.
        """
        return "_".join([
            _FAMILY_TOKENS[self.family],
            f"w{self.width_mult!r}",
            f"r{self.resolution}",
            f"stem{self.stem_channels}",
            "-".join(stage.to_string() for stage in self.stages),
            f"head{self.head_channels or 0}",
            self.activation,
            "linear" if self.linear_bottleneck else "nonlinear",
            self.head,
            f"drop{self.dropout!r}",
            f"cls{self.num_classes}",
            f"in{self.in_channels}",
            f"div{self.round_nearest}",
        ])

    @classmethod
    def from_string(cls, text: str) -> ArchSpec:
        """Parse :meth:`to_string`'s form; a malformed string is a :class:`UserError`."""
        match = _STRING_RE.fullmatch(text.strip())
        if match is None:
            raise UserError(f"invalid architecture string {text!r}: expected the form {_STRING_FORM}")
        g = match.groupdict()
        stages = tuple(
            StageSpec(int(t), int(c), int(n), int(s)) for t, c, n, s in _STAGE_RE.findall(g["stages"])
        )
        head = int(g["head"])
        return cls(
            family={v: k for k, v in _FAMILY_TOKENS.items()}[g["family"]],
            width_mult=float(g["width"]),
            resolution=int(g["resolution"]),
            stages=stages,
            stem_channels=int(g["stem"]),
            head_channels=head or None,
            activation=g["activation"],
            linear_bottleneck=g["bottleneck"] == "linear",
            head=g["head_kind"],
            dropout=float(g["dropout"]),
            num_classes=int(g["classes"]),
            in_channels=int(g["in_channels"]),
            round_nearest=int(g["divisor"]),
        )

    def __str__(self) -> str:
        return self.to_string()


_FAMILY_TOKENS = {"mobilenet_v2": "mnv2", "mobilenet_v1": "mnv1"}
_NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_STAGE = r"t\d+c\d+n\d+s\d+"
_STAGE_RE = re.compile(r"t(\d+)c(\d+)n(\d+)s(\d+)")
_STRING_RE = re.compile(
    rf"(?P<family>mnv1|mnv2)_w(?P<width>{_NUMBER})_r(?P<resolution>\d+)_stem(?P<stem>\d+)"
    rf"_(?P<stages>{_STAGE}(?:-{_STAGE})*)_head(?P<head>\d+)_(?P<activation>relu6|relu)"
    rf"_(?P<bottleneck>linear|nonlinear)_(?P<head_kind>fc|conv1x1)_drop(?P<dropout>{_NUMBER})"
    rf"_cls(?P<classes>\d+)_in(?P<in_channels>\d+)_div(?P<divisor>\d+)"
)
_STRING_FORM = "mnv2_w1.0_r224_stem32_t1c16n1s1-t6c24n2s2-..._head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8"


def parse_arch(text: str) -> ArchSpec:
    """An architecture from its one-line string or its JSON (what a user may paste)."""
    text = text.strip()
    return ArchSpec.from_json(text) if text.startswith("{") else ArchSpec.from_string(text)

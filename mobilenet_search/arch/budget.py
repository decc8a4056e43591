"""Budgets: the grammar of ``--budget`` and the feasibility of a candidate against it.

A budget is one or more limits joined by commas, each kind at most once::

    300M-madds            multiply-adds (K, M, G suffixes: 1e3, 1e6, 1e9; case-insensitive)
    3.4M-params           parameters
    5ms-latency           measured latency in milliseconds (the unit ms is required)
    300M-madds,4M-params  both at once

Precision rule: a limit compares at the precision it was written in, the way the papers
report counts. ``300M-madds`` admits every candidate whose exact count rounds down to
300M at that precision, i.e. a count below 301,000,000 -- MobileNetV2 1.0/224 with its
300,774,272 multiply-adds is a "300M" network and is inside. Likewise ``300.5M-madds``
admits below 300.6M, ``1.2G-madds`` below 1.3G, ``5ms-latency`` below 6 ms and
``5.25ms-latency`` below 5.26 ms. Write more digits for a tighter limit. Bounds are
exact decimals and a measured float compares as the decimal it prints as, so no binary
rounding ever flips a verdict.

>>> budget = Budget.parse("300M-madds, 4M-params")
>>> str(budget)
'300M-madds,4M-params'
>>> budget.violations(madds=300_774_272, params=3_504_872)
{}
>>> print(budget.reason(madds=320_112_000, params=3_504_872))
madds 320,112,000 over budget 300M-madds (admits < 301,000,000)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from numbers import Integral, Real

from mobilenet_search.errors import UserError

#: kind -> keyword of its measured value; the order is the canonical order of a budget's limits.
KINDS: dict[str, str] = {"madds": "madds", "params": "params", "latency": "latency_ms"}
_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
_ITEM = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[A-Za-z]*)-(?P<kind>[A-Za-z_]+)")
_EXPECTED = ("expected NUMBER[K|M|G]-madds, NUMBER[K|M|G]-params or NUMBERms-latency, joined by commas, "
             "e.g. 300M-madds,4M-params,5ms-latency")
# An over-budget value exactly at the exclusive bound has relative excess 0; it still has to
# read as infeasible (> 0), and 1e-12 is below one unit of any count budget under 1e12.
_AT_BOUND = 1e-12


def _finite(value: Real) -> Decimal:
    """``value`` as a Decimal; NaN and infinities are bugs.

    A float converts through its shortest repr, the digits it prints as, so a latency
    that prints as 5.26 is 5.26 and not the binary 5.25999... below it.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"a measured value must be a finite number, got {value!r}")
    return Decimal(int(value)) if isinstance(value, Integral) else Decimal(repr(float(value)))


@dataclass(frozen=True)
class Limit:
    """One limit of a budget: ``kind`` (madds, params, latency), its canonical ``text``
    (``"300M-madds"``) and ``bound``, the exclusive upper bound in counts or milliseconds
    that the precision rule gives (``Decimal(301000000)`` for ``300M-madds``).

    >>> limit = Limit.parse("300M-madds")
    >>> limit.bound
    Decimal('301000000')
    >>> limit.admits(300_999_999), limit.admits(301_000_000)
    (True, False)
    """

    kind: str
    text: str
    bound: Decimal

    @classmethod
    def parse(cls, item: str) -> Limit:
        """Parse one item such as ``300M-madds`` or ``5.25ms-latency``; raise UserError if malformed."""
        item = item.strip()
        match = _ITEM.fullmatch(item)
        if not match:
            raise UserError(f"budget item {item!r} is malformed: {_EXPECTED}")
        number, unit, kind = match["number"], match["unit"].upper(), match["kind"].lower()
        if kind not in KINDS:
            raise UserError(f"budget item {item!r} has unknown kind {kind!r} (kinds: {', '.join(KINDS)}): {_EXPECTED}")
        if kind == "latency":
            if unit != "MS":
                raise UserError(f"budget item {item!r}: latency is in milliseconds and needs the unit ms, "
                                f"e.g. 5ms-latency")
            unit, scale = "ms", 1
        elif unit in _SUFFIXES:
            scale = _SUFFIXES[unit]
        else:
            raise UserError(f"budget item {item!r} has unknown suffix {match['unit']!r} (use K, M or G): {_EXPECTED}")
        value = Decimal(number)
        if value == 0:
            raise UserError(f"budget item {item!r} must be above zero: {_EXPECTED}")
        # One unit in the last written digit: "300" -> 1, "300.5" -> 0.1, "5.25" -> 0.01.
        step = Decimal(1).scaleb(value.as_tuple().exponent)
        with localcontext() as context:
            context.prec = len(number) + 12  # enough digits that the bound is exact, however long the number
            bound = (value + step) * scale
            if bound == bound.to_integral_value():
                bound = bound.quantize(Decimal(1))
        return cls(kind, f"{value:f}{unit}-{kind}", bound)

    def admits(self, value: Real) -> bool:
        """Whether a measured value (a count, or milliseconds for latency) is inside the limit."""
        return _finite(value) < self.bound

    def excess(self, value: Real) -> float:
        """How far ``value`` is over the limit, relative to the bound: ``(value - bound) / bound``.

        It is <= 0 exactly when :meth:`admits` is true and > 0 otherwise, a value at the
        bound included, so it can go straight to Optuna's constraints (feasible when <= 0);
        being relative, excesses of different kinds are comparable.

        >>> limit = Limit.parse("300M-madds")
        >>> limit.excess(300_999_999) <= 0 < limit.excess(301_000_000)
        True
        >>> round(limit.excess(331_100_000), 3)
        0.1
        """
        relative = float((_finite(value) - self.bound) / self.bound)
        return relative if self.admits(value) else max(relative, _AT_BOUND)

    def format_value(self, value: Real) -> str:
        """A measured value in this limit's units, for messages: ``320,112,000`` or ``6.31 ms``.

        Latencies show two decimals more than the bound has, so a value just over the bound
        never prints as equal to it.
        """
        if self.kind == "latency":
            return f"{float(value):.{max(0, -self.bound.as_tuple().exponent) + 2}f} ms"
        return f"{value:,}"

    def format_bound(self) -> str:
        """The exclusive bound, exactly, for messages: ``301,000,000`` or ``5.26 ms``."""
        return f"{self.bound} ms" if self.kind == "latency" else f"{self.bound:,}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Budget:
    """A set of limits, at most one per kind, kept in the canonical order madds, params, latency.

    Build one with :meth:`parse`; ``str(budget)`` gives back the canonical text.
    """

    limits: tuple[Limit, ...]

    def __post_init__(self) -> None:
        kinds = [limit.kind for limit in self.limits]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"a budget holds each kind at most once, got {kinds}")
        object.__setattr__(self, "limits", tuple(sorted(self.limits, key=lambda limit: list(KINDS).index(limit.kind))))

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``"300M-madds,4M-params"``; raise UserError naming the bad item if malformed.

        Each limit admits values below one unit of its last written digit above the number
        (the precision rule in the module docstring):

        >>> Budget.parse("1.2G-madds").get("madds").bound
        Decimal('1300000000')
        >>> Budget.parse("5.25ms-latency").get("latency").bound
        Decimal('5.26')
        """
        if not text.strip():
            raise UserError(f"budget {text!r} is empty: {_EXPECTED}")
        limits: dict[str, Limit] = {}
        for item in text.split(","):
            if not item.strip():
                raise UserError(f"budget {text!r} has an empty item between commas: {_EXPECTED}")
            limit = Limit.parse(item)
            if limit.kind in limits:
                raise UserError(f"budget {text!r} gives {limit.kind} twice ({limits[limit.kind]} and {limit}): "
                                f"each kind at most once, e.g. 300M-madds,4M-params")
            limits[limit.kind] = limit
        return cls(tuple(limits.values()))

    def __str__(self) -> str:
        return ",".join(limit.text for limit in self.limits)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this budget limits, in canonical order."""
        return tuple(limit.kind for limit in self.limits)

    @property
    def needs_latency(self) -> bool:
        """Whether checking this budget needs a latency measurement."""
        return "latency" in self.kinds

    def get(self, kind: str) -> Limit | None:
        """The limit on ``kind`` (madds, params, latency), or None if this budget has none."""
        return next((limit for limit in self.limits if limit.kind == kind), None)

    def _measured(self, measured: dict[str, Real | None]) -> list[tuple[Limit, Real]]:
        """(limit, value) for each limit whose value was measured; unknown keywords are bugs."""
        unknown = set(measured) - set(KINDS.values())
        if unknown:
            raise TypeError(f"unknown measured values {sorted(unknown)}; expected some of {list(KINDS.values())}")
        return [(limit, measured[KINDS[limit.kind]]) for limit in self.limits
                if measured.get(KINDS[limit.kind]) is not None]

    def excesses(self, **measured: Real | None) -> dict[str, float]:
        """:meth:`Limit.excess` of every limited kind that was measured (keywords madds,
        params, latency_ms; None or absent means not measured), over budget or not:
        the values to report as Optuna constraints.
        """
        return {limit.kind: limit.excess(value) for limit, value in self._measured(measured)}

    def violations(self, **measured: Real | None) -> dict[str, float]:
        """The measured kinds that are over budget, with their (positive) excess; empty when feasible.

        >>> over = Budget.parse("300M-madds,5ms-latency").violations(madds=310_000_000, latency_ms=5.9)
        >>> {kind: round(excess, 4) for kind, excess in over.items()}
        {'madds': 0.0299}
        """
        return {kind: excess for kind, excess in self.excesses(**measured).items() if excess > 0}

    def reason(self, **measured: Real | None) -> str | None:
        """One line saying which measured values are over budget and by how much, or None if none is.

        >>> Budget.parse("5ms-latency").reason(latency_ms=6.25)
        'latency 6.25 ms over budget 5ms-latency (admits < 6 ms)'
        """
        over = [
            f"{limit.kind} {limit.format_value(value)} over budget {limit} (admits < {limit.format_bound()})"
            for limit, value in self._measured(measured) if not limit.admits(value)
        ]
        return "; ".join(over) or None

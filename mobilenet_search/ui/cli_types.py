"""Option values as the command line takes them: ASCII numbers inside documented bounds, non-empty text.

Python's ``int()`` and ``float()`` take Arabic-Indic and full-width digits, underscores, ``nan`` and
``inf``; an option value here is refused with one argparse line instead (exit 2, before anything runs),
and its bounds are written into the option's ``--help``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _bounds(low: float | None, high: float | None, *, open_low: bool = False, open_high: bool = False) -> str:
    def show(value: float | None, infinity: str) -> str:
        return infinity if value is None else str(value) if isinstance(value, int) else f"{value:g}"

    return f"{'(' if open_low else '['}{show(low, '-inf')}, {show(high, 'inf')}{')' if open_high else ']'}"


def integer(low: int | None, high: int | None) -> Callable[[str], int]:
    """An argparse ``type``: an ASCII integer in ``[low, high]`` (None: unbounded on that side)."""
    def parse(text: str) -> int:
        value = int(text) if _INTEGER.fullmatch(text.strip()) and len(text) < 40 else None
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer in {_bounds(low, high)}")
        return value

    parse.bounds = f"an integer in {_bounds(low, high)}"  # type: ignore[attr-defined]
    parse.low, parse.high = low, high  # type: ignore[attr-defined]  # read by the malformed-input sweep
    return parse


def number(low: float | None, high: float | None, *, open_low: bool = False,
           open_high: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite ASCII number in ``[low, high]`` (``open_low``, ``open_high``: the ends
    excluded)."""
    bounds = _bounds(low, high, open_low=open_low, open_high=open_high)

    def parse(text: str) -> float:
        value = float(text) if _NUMBER.fullmatch(text.strip()) and len(text) < 40 else math.nan
        above = low is None or value > low or (value == low and not open_low)
        below = high is None or value < high or (value == high and not open_high)
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in {bounds}")
        return value

    parse.bounds = f"a number in {bounds}"  # type: ignore[attr-defined]
    parse.low, parse.high = low, high  # type: ignore[attr-defined]
    return parse


def text(what: str) -> Callable[[str], str]:
    """An argparse ``type``: a non-empty string (an empty ``--study ''`` must not fall back to a default)."""
    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected {what}")
        return value

    return parse


def add_bounded(parser: argparse.ArgumentParser, flag: str, kind: Callable[[str], Any], **kwargs: Any) -> None:
    """``parser.add_argument`` with ``type=kind``, its bounds appended to the help."""
    parser.add_argument(flag, type=kind, help=f"{kwargs.pop('help')} ({kind.bounds})", **kwargs)


def document_bounds(parser: argparse.ArgumentParser) -> None:
    """Over ``parser`` and its subcommands: append each bounded option's bounds to its help, and make
    every other string option and argument refuse an empty value (``--study ''`` silently took the default)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                document_bounds(sub)
        elif hasattr(action.type, "bounds") and action.help and action.type.bounds not in action.help:
            action.help = f"{action.help} ({action.type.bounds})"
        elif type(action) is argparse._StoreAction and action.type is None:
            action.type = text(f"a non-empty {action.metavar or action.dest.replace('_', ' ')}")

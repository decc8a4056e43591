"""Atomic file writes: readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mobilenet_search.errors import UserError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    If the block fails (or is interrupted), the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SAFE_NAME_RULE = "1-128 letters, digits and . _ -, starting with a letter or digit, without '..'"


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can be a file name that never leaves its folder (see :func:`check_safe_name`)."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None and ".." not in name


def check_safe_name(name: str, what: str) -> str:
    """``name`` if it can be a file name that never leaves its folder; a :class:`UserError` naming ``what`` otherwise.

    >>> check_safe_name("mnv2-300M_v1.2", "entry name")
    'mnv2-300M_v1.2'
    """
    if not is_safe_name(name):
        raise UserError(f"invalid {what} {name!r}: expected {SAFE_NAME_RULE}")
    return name

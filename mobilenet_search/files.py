"""Atomic file writes: readers see the old content or the new, never half of it.

A file written here gets the mode a plain ``open()`` would give a new file (``0o666`` less the
process umask), so result files, library entries and ONNX exports are as readable as the user's
other files. A write that the file system refuses (a folder that cannot be created or written, a
path component that is a file, a full disk) is a :class:`UserError` naming the path, and leaves no
temporary file behind.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from mobilenet_search.errors import UserError

_NAME_ATTEMPTS = 100  # random temporary names tried before giving up (as tempfile.mkstemp)


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created with mode 0o666 so that the kernel applies the umask.

    ``tempfile.mkstemp`` creates 0o600 files whatever the umask; the file renamed onto ``path``
    would keep that mode.
    """
    for _ in range(_NAME_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _reason(exc: OSError, path: Path) -> str:
    """What the file system said, naming the path it refused when that is a parent folder of ``path``."""
    reason = exc.strerror or str(exc)
    culprit = exc.filename
    if culprit is not None and Path(os.fsdecode(culprit)) in path.parents:
        reason += f" ({os.fsdecode(culprit)})"
    return reason


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    If the block fails (or is interrupted), the temporary file is removed and ``path`` is untouched.
    An ``OSError`` (from creating the folder, writing, renaming) becomes
    ``UserError("cannot write PATH: REASON")``; other exceptions pass through unchanged.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_path(Path(folder) / "out.txt") as tmp:
    ...         _ = tmp.write_text("done")
    ...     sorted(p.name for p in Path(folder).iterdir())
    ['out.txt']
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {_reason(exc, path)}") from None
    finally:  # also on KeyboardInterrupt and on errors the block raises
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
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


def save_weights(model: Any, path: Path) -> Path:
    """A network's state dict as a safetensors file (tensors only, never a pickle), written atomically."""
    from safetensors.torch import save_model

    with atomic_path(Path(path)) as tmp:
        mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 less the umask (see _create_temporary)
        save_model(model, str(tmp))  # moves tensors to the CPU, makes them contiguous
        os.chmod(tmp, mode)  # safetensors leaves a 0o600 file whatever the umask
    return Path(path)


def load_weights(model: Any, path: Path) -> Any:
    """``model`` with the weights :func:`save_weights` wrote loaded strictly (every key, every shape).

    A missing or corrupt file is one :class:`UserError` line; weights that do not fit ``model``
    raise the :class:`RuntimeError` of ``load_state_dict``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(path), strict=True)
    except (OSError, SafetensorError) as exc:
        raise UserError(f"cannot read weights {str(path)!r}: {exc}") from None
    return model


def check_not_special(path: Path, what: str) -> None:
    """Refuse a ``path`` that exists but is not a regular file: a folder, or a FIFO or device, which would block
    a reader or never end. A missing path passes (callers say what missing means for them)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UserError(f"{what} {str(path)!r} is not a regular file (a FIFO or device?)")


def read_text_file(path: Path, what: str) -> str:
    """A text file's content; a missing, special, unreadable or non-UTF-8 file is one :class:`UserError` line
    naming ``what`` and the path."""
    path = Path(path)
    check_not_special(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {str(path)!r} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise UserError(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None

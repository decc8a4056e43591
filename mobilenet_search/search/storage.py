"""Optuna storages from one URL string, with heartbeats, and URLs safe to print.

- ``sqlite:///results/study.db``: the default; one machine. SQLite takes one writer at a time
  and makes the others wait, which is safe for a few local worker processes whose trials take
  seconds (``--workers`` up to about 4); it supports heartbeats, so a killed worker's trial is
  retried.
- ``postgresql://USER:PASS@HOST/DB`` (or any SQLAlchemy URL): many workers on many machines.
- ``journal:PATH``: Optuna's journal file (``JournalFileBackend``), safe for many local
  writers through file locks, but without heartbeats: a killed worker's trial stays RUNNING.

Every RDB storage gets heartbeats (``heartbeat`` seconds, grace period twice that) and
Optuna's ``RetryHeartbeatStaleTrialCallback(max_retry=1)``: a trial whose worker died is
marked failed after the grace period and queued once more for any worker to take.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from mobilenet_search.errors import UserError, require

if TYPE_CHECKING:  # optuna takes half a second to import: `mobilenet-search --help` must not wait for it
    import optuna

DEFAULT_HEARTBEAT = 30  # seconds between heartbeats; a trial is stale after twice that
SQLITE_LOCK_TIMEOUT = 60  # seconds a SQLite writer waits for the lock before failing
SCHEMA_ATTEMPTS = 3  # tries at opening an RDB storage (racing table creation in a new database)


def redact(url: str) -> str:
    """A storage URL with any password replaced by ``***``.

    >>> redact("postgresql://alice:s3cret@db.local/optuna")
    'postgresql://alice:***@db.local/optuna'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _password(url: str) -> str | None:
    match = re.search(r"://[^:/@]+:([^@]*)@", url)
    return match.group(1) if match and match.group(1) else None


def clean_message(exc: BaseException, url: str) -> str:
    """One line of an exception's message, with the URL's password removed wherever it appears."""
    text = " ".join(str(exc).split())
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return redact(text)[:300]


def storage_file(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` or ``journal:`` storage; None for servers and in-memory databases."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
            return Path(url[len(prefix):].split("?", 1)[0])
    return None


def _folder_problem(folder: Path) -> str | None:
    """Why a storage file cannot live in ``folder`` (missing, not a folder), or None."""
    if folder.is_dir():
        return None
    if folder.exists() or any(parent.is_file() for parent in folder.parents):
        return f"{folder} is not a folder"
    return f"folder {folder} does not exist"


def check_storage_writable(url: str) -> None:
    """Refuse, with a :class:`UserError` naming the path, a file storage this process cannot write to.

    For ``sqlite:///FILE`` and ``journal:FILE``: the folder must exist and accept new files
    (SQLite and the journal's lock both create files beside the storage), and an existing
    storage file must be writable. Server URLs and in-memory databases are not checked here
    (opening them says whether they work). Call it before creating a study or running trials,
    so a read-only or missing folder is one line rather than a failure in the first write.

    >>> check_storage_writable("journal:no/such/j.log")
    Traceback (most recent call last):
    ...
    mobilenet_search.errors.UserError: cannot write storage journal:no/such/j.log: folder no/such does not exist
    """
    file = storage_file(url)
    if file is None:
        return
    problem = _folder_problem(file.parent)
    if problem is None and file.is_dir():
        problem = f"{file} is a folder"
    if problem is None:
        try:  # a real file, not os.access: root passes access() in a read-only folder it may not write
            fd, probe = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = f"folder {file.parent} does not accept new files ({exc.strerror or exc})"
    if problem is None and file.exists():
        try:
            with open(file, "ab"):
                pass
        except OSError as exc:
            problem = f"{file} is not writable ({exc.strerror or exc})"
    if problem is not None:
        raise UserError(f"cannot write storage {redact(url)}: {problem}")


SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_FULL = 13  # sqlite3.SQLITE_FULL: "database or disk is full"
POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain (causes and contexts) that says a disk is full, or None.

    Recognises ``OSError`` ENOSPC and EDQUOT (our own files, Optuna's journal file), SQLite's
    SQLITE_FULL and PostgreSQL's SQLSTATE 53100, wherever Optuna and SQLAlchemy wrapped them: Optuna's
    RDB storage raises ``StorageInternalError``, and when the trial's final write fails too its
    ``study.optimize`` raises ``AssertionError: Should not reach.`` with those in its context.

    >>> disk_full(ValueError("x")) is None
    True
    >>> disk_full(OSError(errno.ENOSPC, "No space left on device")).strerror
    'No space left on device'
    """
    for error in error_chain(exc):
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        if getattr(error, "sqlite_errorcode", None) == SQLITE_FULL:
            return error
        if POSTGRES_DISK_FULL in (getattr(error, "sqlstate", None), getattr(error, "pgcode", None)):
            return error
    return None


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every error in its chain (causes and contexts), each once, ``exc`` first."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending += [error.__cause__, error.__context__]


def check_storage_url(url: str) -> None:
    """Refuse, before anything is written, a storage URL that cannot hold a study: malformed, in memory
    (lost at exit), a database driver that is not installed, or a file that is not an SQLite database.

    Servers are not contacted here (:func:`make_storage` says whether they answer).

    >>> check_storage_url("sqlite:///results/study.db")
    >>> check_storage_url("sqlite://")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mobilenet_search.errors.UserError: invalid storage 'sqlite://': an in-memory database is lost when ...
    """
    if not url.strip():
        raise UserError("invalid storage '': expected e.g. sqlite:///results/study.db, postgresql://USER:PASS@HOST/DB "
                        "or journal:PATH")
    if url.startswith("journal:"):
        if not url[len("journal:"):]:
            raise UserError("invalid storage 'journal:': expected journal:PATH")
        return
    if "://" not in url:
        raise UserError(f"invalid storage URL {redact(url)!r}: expected e.g. sqlite:///results/study.db, "
                        "postgresql://USER:PASS@HOST/DB or journal:PATH")
    if url.startswith("sqlite") and storage_file(url) is None:
        raise UserError(f"invalid storage {redact(url)!r}: an in-memory database is lost when the process exits; "
                        "give a file, e.g. sqlite:///results/study.db")
    if url.startswith(("postgresql", "postgres:")):
        require("psycopg", "postgres", f"storage {redact(url)}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise UserError(f"cannot open storage {redact(url)}: {clean_message(exc, url)}") from None
    except ImportError as exc:
        raise UserError(f"cannot open storage {redact(url)}: missing database driver ({exc.name or exc})") from None
    file = storage_file(url)
    if file is not None and file.is_file() and file.stat().st_size:
        with open(file, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise UserError(f"cannot open storage {redact(url)}: {file} is not an SQLite database")


def make_storage(url: str, heartbeat: float | None = DEFAULT_HEARTBEAT, *,
                 must_exist: bool = False) -> optuna.storages.BaseStorage:
    """The storage a URL names (see the module doc); a bad or unreachable URL is a :class:`UserError`.

    With ``must_exist``, a storage file that does not exist is refused rather than created
    empty (reading a study through a mistyped path). A storage file whose folder is missing is
    refused, and a file this call created is removed again if opening fails (a full or
    read-only disk leaves no empty ``.db``).
    """
    check_storage_url(url)
    file = storage_file(url)
    if file is not None:
        if must_exist and not file.is_file():
            raise UserError(f"storage {redact(url)} does not exist (no file {str(file)!r}); give the --storage the "
                            "search used")
        problem = _folder_problem(file.parent)
        if problem is not None:
            raise UserError(f"cannot open storage {redact(url)}: {problem}")
    existed = file is not None and file.exists()
    try:
        return _open(url, heartbeat)
    except BaseException:
        if file is not None and not existed:
            _remove_empty(file)
        raise


def _remove_empty(file: Path) -> None:
    """Remove a storage file that a failed open created: only while still empty, so never another process's data."""
    with suppress(OSError):
        if file.stat().st_size == 0:
            file.unlink()
            Path(f"{file}-journal").unlink(missing_ok=True)  # SQLite's rollback journal, if it got that far


def drop_partial_record(journal: Path) -> bool:
    """Cut a journal file's last record when a write was cut short (a full disk: no final newline).

    Optuna's ``JournalFileBackend`` appends after whatever is there: its next record would be joined to
    the partial one, and from then on every read of the journal fails. The cut is made under the
    backend's own lock (``JournalFileSymlinkLock``, its default), so no writer is mid-record. Returns
    whether a partial record was cut.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    if not journal.is_file() or journal.stat().st_size == 0:
        return False
    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        with open(journal, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return False
            end = size
            while end > 0:  # back to the last complete record's newline, a block at a time
                start = max(0, end - 65536)
                f.seek(start)
                at = f.read(end - start).rfind(b"\n")
                if at >= 0:
                    end = start + at + 1
                    break
                end = start
            f.truncate(end)
            return True
    finally:
        lock.release()


@functools.cache
def _rdb_storage_class() -> type[optuna.storages.RDBStorage]:
    """Optuna's RDB storage, whose heartbeat thread lets a full disk pass (defined on first use: optuna
    imports slowly)."""
    import optuna

    class RDBStorage(optuna.storages.RDBStorage):
        def record_heartbeat(self, trial_id: int) -> None:
            # A heartbeat refused by a full disk would end Optuna's heartbeat thread with a traceback in the
            # middle of the run; skipped, the trial's own next write meets the full disk and stops the run
            # with one line (study._run_recorded), and other workers see the trial go stale, as they should.
            try:
                super().record_heartbeat(trial_id)
            except Exception as exc:
                if disk_full(exc) is None:
                    raise

    return RDBStorage


def _open(url: str, heartbeat: float | None) -> optuna.storages.BaseStorage:
    import optuna

    if url.startswith("journal:"):  # check_storage_url has refused what is malformed
        try:
            drop_partial_record(Path(url[len("journal:"):]))
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url[len("journal:"):]))
        except OSError as exc:
            raise UserError(f"cannot open storage {redact(url)}: {exc.strerror or exc}") from None
    engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}} if url.startswith("sqlite") else {}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental, stable since Optuna 2.x
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                kwargs = {}
                if heartbeat:
                    kwargs = dict(heartbeat_interval=max(1, round(heartbeat)),
                                  grace_period=max(2, round(2 * heartbeat)),
                                  heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                                      max_retry=1))
                return _rdb_storage_class()(url, engine_kwargs=engine_kwargs, **kwargs)
        except ImportError as exc:
            raise UserError(f"cannot open storage {redact(url)}: missing database driver ({exc.name or exc})") from None
        except Exception as exc:  # SQLAlchemy's errors: bad URL, unknown driver, unreachable server, bad login
            # Two processes creating Optuna's tables in a new database at once: one of them loses
            # the race on CREATE TABLE, and a second try finds the tables made.
            if attempt + 1 == SCHEMA_ATTEMPTS:
                raise UserError(f"cannot open storage {redact(url)}: {clean_message(exc, url)}") from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("the loop above returns or raises")

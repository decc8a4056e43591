"""Local worker processes of ``search --workers N``: bounded, and living and dying with their parent.

- The parent starts at most one worker per trial left and refuses more workers than this machine
  has CPU cores (:func:`max_workers`); each worker imports PyTorch, about half a gigabyte.
- SIGINT and SIGTERM reaching the parent are passed on to every worker, which records its running
  trial as interrupted (queued again on resume); the parent waits for them up to :data:`STOP_GRACE`
  seconds, kills any still running, then exits 130.
- A worker exits when its parent dies, even by SIGKILL: on Linux the kernel sends it SIGTERM
  (``PR_SET_PDEATHSIG``); elsewhere a thread watching the parent's process id does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from mobilenet_search.errors import UserError

PARENT_ENV = "MOBILENET_SEARCH_PARENT_PID"  # set by the parent: the worker watches that process
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
STOP_GRACE = 30  # seconds the workers get to record their interrupted trials before they are killed


def max_workers() -> int:
    """The most local workers this machine takes: its CPU cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """Refuse a ``--workers`` below 1 or above :func:`max_workers`, before anything is created."""
    limit = max_workers()
    if not 1 <= workers <= limit:
        raise UserError(f"invalid --workers {workers}: expected an integer in [1, {limit}] (the CPU cores of this "
                        "machine; for more, start `worker` processes on other machines)")


def workers_for(requested: int, trials_left: int) -> int:
    """How many workers to start: one per trial left at most (``--workers 8 --trials 1`` starts one)."""
    return max(0, min(requested, trials_left))


def exit_with_parent() -> None:
    """In a worker the CLI started: exit (by SIGTERM, as a stop) when the parent process dies.

    Does nothing in a process nobody started with :data:`PARENT_ENV` (a ``worker`` run by hand).
    """
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit():
        return
    parent_pid = int(parent)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl: nobody will send the signal
                os.kill(os.getpid(), signal.SIGTERM)
            return

    def watch() -> None:  # no prctl: poll for the parent (the process is re-parented when it dies)
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def _forward_signals(processes: Sequence[subprocess.Popen]) -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM go to every worker too; the list holds the signals received."""
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)  # a worker takes SIGTERM as Ctrl-C

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_workers(commands: Sequence[Sequence[str]], env: dict[str, str], on_tick: Callable[[], None],
                grace: float = STOP_GRACE) -> list[int]:
    """Start one process per command, call ``on_tick`` every second until all have exited; their exit codes.

    A SIGINT or SIGTERM to this process stops the workers: it is forwarded, each worker gets ``grace``
    seconds to record its running trial, one still alive then is killed (its trial is failed and run
    again on resume), and ``KeyboardInterrupt`` is raised.
    """
    env = {**env, PARENT_ENV: str(os.getpid())}
    processes: list[subprocess.Popen] = []
    with _forward_signals(processes) as received:
        try:
            for command in commands:
                # Their own session: a Ctrl-C at the terminal reaches the parent alone, which passes it on once.
                processes.append(subprocess.Popen(list(command), env=env, start_new_session=True))
                if received:  # a stop arrived while starting: forward it to the late ones too
                    processes[-1].send_signal(signal.SIGTERM)
            while not received and any(p.poll() is None for p in processes):
                on_tick()
                time.sleep(1.0)
            if not received:
                on_tick()
        finally:
            _reap(processes, grace)
    if received:
        raise KeyboardInterrupt
    return [p.returncode for p in processes]


def _reap(processes: Sequence[subprocess.Popen], grace: float) -> None:
    """Wait for every worker; one that outlives ``grace`` seconds is killed (no orphan is left)."""
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

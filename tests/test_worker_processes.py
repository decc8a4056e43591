"""`search --workers N`: bounded by the machine and the trials left, stopped by signals, gone with their parent.

Real processes throughout (ui/cli_workers.py): the parent is the command line in a subprocess, its workers
are found through /proc, and a worker counts as gone once it no longer exists or is a zombie.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from mobilenet_search.ui.cli import _stop_signals, main
from mobilenet_search.ui.cli_workers import PARENT_ENV, max_workers, run_workers, workers_for

TREE = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(TREE)}
SLOW = ["--space", "tiny", "--dataset", "synthetic:512", "--epochs", "6", "--proxy-size", "32", "--batch-size", "16",
        "--references", "none", "--noise-repeats", "0", "--device", "cpu"]
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_workers_for_is_at_most_one_per_trial_left():
    assert [workers_for(8, left) for left in (-1, 0, 1, 3, 8, 20)] == [0, 0, 1, 3, 8, 8]


@pytest.mark.parametrize("workers", ["0", "-1", str(max_workers() + 1), "99999"])
def test_workers_outside_the_machine_bound_are_refused_before_anything_is_written(tmp_path, capsys, workers):
    os.chdir(tmp_path)
    code = main(["--budget", "300M-madds", "--workers", workers, "--trials", "1", "--results-dir", "results"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1
    assert f"invalid --workers {workers}: expected an integer in [1, {max_workers()}]" in captured.err
    assert list(tmp_path.iterdir()) == []


@linux_only
def test_a_worker_exits_when_its_parent_is_killed(tmp_path):
    """exit_with_parent alone, without torch: a parent that starts a watching child is killed with SIGKILL."""
    parent_code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "from mobilenet_search.ui.cli_workers import exit_with_parent; "
                                  "exit_with_parent(); import time; time.sleep(120)"],
                                 env={{**os.environ, {PARENT_ENV!r}: str(os.getpid())}})
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=ENV, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has set up its watch
    assert _alive(child)
    parent.kill()
    parent.wait()
    assert _wait_for(lambda: not _alive(child), 10), "the child outlived its parent"


@linux_only
def test_workers_are_capped_by_the_trials_left(tmp_path):
    fast = ["--space", "tiny", "--dataset", "synthetic:64", "--epochs", "1", "--proxy-size", "32", "--references",
            "none", "--noise-repeats", "0", "--device", "cpu"]
    result = subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", "--budget", "2M-madds", *fast,
                             "--workers", "2", "--trials", "1", "--study", "one", "--results-dir", "results"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "starting 1 of --workers 2: the study has 1 trial left" in result.stderr
    study = optuna.load_study(study_name="one", storage=f"sqlite:///{tmp_path / 'results' / 'one.db'}")
    workers = {t.user_attrs.get("worker") for t in study.trials}
    assert len(workers) == 1 and len(study.trials) >= 1


@linux_only
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_stopping_the_parent_stops_every_worker(tmp_path, how):
    parent = _start(tmp_path, "--budget", "2M-madds", *SLOW, "--workers", "2", "--trials", "8", "--study", "stop",
                    "--results-dir", "results", "--heartbeat", "2")
    assert _wait_for(lambda: len(_children(parent.pid)) == 2, 240), parent.stderr.read() if parent.poll() else ""
    workers = _children(parent.pid)
    storage = f"sqlite:///{tmp_path / 'results' / 'stop.db'}"
    study = optuna.load_study(study_name="stop", storage=storage)
    # Wait until a trial is training, so the stop interrupts real work.
    assert _wait_for(lambda: any(t.user_attrs.get("claimed") for t in study.get_trials(
        states=(optuna.trial.TrialState.RUNNING,))), 240)
    parent.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    gone = _wait_for(lambda: not any(_alive(pid) for pid in workers), 60)
    _, stderr = parent.communicate(timeout=60)
    assert gone, "workers outlived their parent"
    if how == "sigterm":
        assert parent.returncode == 130, stderr
        assert stderr.rstrip().endswith("mobilenet-search: interrupted"), stderr
        assert "Traceback" not in stderr
        # The workers recorded their trials as interrupted: none is left RUNNING.
        running = optuna.load_study(study_name="stop", storage=storage).get_trials(
            states=(optuna.trial.TrialState.RUNNING,))
        assert running == []
    else:
        assert parent.returncode == -signal.SIGKILL


@linux_only
def test_a_worker_that_ignores_the_stop_is_killed_after_the_grace(tmp_path):
    """The parent's stop is bounded: a worker still alive ``grace`` seconds after the forwarded SIGTERM is killed."""
    pid_file = tmp_path / "pid"
    code = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)")
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def stop_once_the_worker_ignores_sigterm() -> None:  # this process is the parent: the stop comes to it
        if pid_file.exists() and pid_file.read_text():
            os.kill(os.getpid(), signal.SIGTERM)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_workers([[sys.executable, "-c", code, str(pid_file)]], dict(os.environ),
                    stop_once_the_worker_ignores_sigterm, grace=1.0)
    assert time.monotonic() - start < 60
    assert not _alive(int(pid_file.read_text()))
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


class _StoppedInFinaliser:
    """A SIGTERM that arrives while Python runs a ``__del__``: its KeyboardInterrupt is printed and lost."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        total = 0
        for step in range(100_000):  # the handler runs here, between bytecodes, and raises in the finaliser
            total += step


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_lost_in_a_finaliser_is_raised_again_by_the_check():
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with _stop_signals() as stop_requested:
        finaliser = _StoppedInFinaliser()
        del finaliser  # the interrupt is lost here (were it not, the test would end here) and the run goes on
        with pytest.raises(KeyboardInterrupt):
            stop_requested()  # after the next epoch or trial: the stop is raised again
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM is ignored: it must not break the clean-up
        time.sleep(0.1)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


def test_the_check_raises_nothing_without_a_stop():
    with _stop_signals() as stop_requested:
        stop_requested()


@linux_only
def test_a_stop_inside_a_database_commit_waits_until_the_commit_is_done(tmp_path):
    """A SIGTERM that lands inside SQLAlchemy is raised once the commit has returned: the row is stored, and the
    interrupt comes at once after it, not inside the transaction (where it could leave a lock taken)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'stop.db'}")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE t (x INTEGER)"))

    def stop_during_commit(connection) -> None:  # called by SQLAlchemy, inside its commit
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):  # the handler runs here, between bytecodes, with SQLAlchemy's frames below
            pass

    sqlalchemy.event.listen(engine, "commit", stop_during_commit)
    committed = []
    with _stop_signals(), pytest.raises(KeyboardInterrupt):
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
        committed.append(True)  # reached: the commit returned without the interrupt
        time.sleep(5)  # the stop arrives here, from the retry
    assert committed == [True]
    sqlalchemy.event.remove(engine, "commit", stop_during_commit)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT x FROM t")).scalars().all() == [1]
    engine.dispose()

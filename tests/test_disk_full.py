"""A disk that fills during a run (issue 24): one line naming what could not be written, the trial failed with
that reason where the storage still takes it, and no RUNNING trial left once the study resumes.

Two ways to fill a disk. The unit tests pass in a storage that refuses writes with ENOSPC after N of them
(deterministic, any machine). The end-to-end tests fill a real tmpfs (SQLite and Optuna's journal meet a real
ENOSPC, Optuna's own error handling included); mounting needs root with CAP_SYS_ADMIN, so where the mount is
refused they skip, saying so. They never skip after the mount worked.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mobilenet_search.errors import UserError
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.storage import disk_full, drop_partial_record, make_storage
from mobilenet_search.search.study import optimize, run_search

TREE = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(TREE)}
LABEL = "journal:/full/disk/study.log"  # the storage URL the messages name


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


# -- recognising a full disk in what Optuna raises ------------------------------------------------


def _sqlite_full() -> BaseException:
    """What Optuna's RDB storage raises on a full disk: StorageInternalError from SQLAlchemy from sqlite3."""
    import sqlalchemy.exc

    low = sqlite3.OperationalError("database or disk is full")
    low.sqlite_errorcode = 13  # set by sqlite3 itself on a real error (SQLITE_FULL)
    try:
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, low) from low
        except sqlalchemy.exc.OperationalError as mid:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from mid
    except optuna.exceptions.StorageInternalError as top:
        return top


def test_disk_full_is_found_through_optunas_wrapping_and_nothing_else_is():
    storage_error = _sqlite_full()
    assert disk_full(storage_error).sqlite_errorcode == 13
    try:  # Optuna's study.optimize when the trial's final write fails too: its finally asserts
        try:
            raise storage_error
        except optuna.exceptions.StorageInternalError:
            raise AssertionError("Should not reach.")  # noqa: B904 (as Optuna raises it)
    except AssertionError as exc:
        assert disk_full(exc) is not None
    postgres = RuntimeError("could not extend file")
    postgres.sqlstate = "53100"
    assert disk_full(postgres) is postgres
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    for other in (OSError(errno.EACCES, "Permission denied"), OSError(errno.EFBIG, "File too large"),
                  AssertionError("Should not reach."), sqlite3.OperationalError("database is locked")):
        assert disk_full(other) is None, other


# -- a storage passed in that fills --------------------------------------------------------------


class FillingStorage(optuna.storages.InMemoryStorage):
    """An in-memory storage whose writes fail with ENOSPC from the ``full_at``-th on; with ``frees`` only that
    one write fails (a large write refused while a small one still fits, or space freed meanwhile)."""

    WRITES = ("create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
              "set_trial_user_attr", "set_trial_system_attr")

    def __init__(self, full_at: int, frees: bool = False) -> None:
        super().__init__()
        self.full_at, self.frees, self.writes, self.armed = full_at, frees, 0, False
        for name in self.WRITES:
            setattr(self, name, self._counted(getattr(super(), name)))

    def _counted(self, write):
        def counted(*args, **kwargs):
            if self.armed:
                self.writes += 1
                if self.writes == self.full_at or (self.writes > self.full_at and not self.frees):
                    raise _enospc()
            return write(*args, **kwargs)
        return counted


def _objective(trial: optuna.Trial) -> float:
    trial.set_user_attr("worker", "here")
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("big", "x" * 1000)
    trial.set_user_attr("outcome", "trained")  # counts towards the target
    return x


def _study(storage: FillingStorage) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(storage=storage, study_name="full", sampler=optuna.samplers.RandomSampler(seed=0))


def test_a_storage_full_for_good_stops_the_run_with_one_line_and_leaves_the_trial_to_the_next_run(tmp_path):
    storage = FillingStorage(full_at=3)
    study = _study(storage)
    optimize(study, _objective, trials=2, timeout=None, results_dir=tmp_path)  # two trials, disk not yet full
    storage.armed = True
    with pytest.raises(UserError) as refused:
        optimize(study, _objective, trials=5, timeout=None, results_dir=tmp_path, storage=LABEL)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"the disk is full: cannot write storage {LABEL}: No space left on device; ")
    assert "trial 2 could not be recorded: the next run fails it and runs it again" in message
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    # The result files were brought up to date before the line: both finished trials, the running one.
    assert (tmp_path / "full" / "trials.csv").read_text().count("\n") == 4


def test_a_trial_the_full_disk_stopped_is_failed_with_its_reason_where_the_storage_takes_the_write(tmp_path):
    storage = FillingStorage(full_at=3, frees=True)  # the trial's third write (its big attribute) is refused
    study = _study(storage)
    storage.armed = True
    with pytest.raises(UserError, match="trial 0 is recorded as failed"):
        optimize(study, _objective, trials=3, timeout=None, results_dir=tmp_path, storage=LABEL)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["outcome"] == "failed"
    assert trial.user_attrs["status_reason"] == (f"disk full: cannot write storage {LABEL}: "
                                                 "No space left on device")
    assert "big" not in trial.user_attrs


# -- a journal whose last record was cut short ----------------------------------------------------


def test_a_journal_record_cut_short_by_a_full_disk_is_dropped_and_the_study_goes_on(tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(study_name="j", storage=make_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    complete = (tmp_path / "j.log").read_bytes()
    with open(tmp_path / "j.log", "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"w","trial_id":1,"user_attr":{"spec":"{\\"act')  # ENOSPC here
    study = optuna.load_study(study_name="j", storage=make_storage(url))  # cuts the partial record
    assert (tmp_path / "j.log").read_bytes() == complete
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    again = optuna.load_study(study_name="j", storage=make_storage(url))
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 3
    assert drop_partial_record(tmp_path / "j.log") is False  # a whole journal is left as it is


# -- a real full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards; the test skips, naming why, where mounting is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", f"disk-full-{uuid.uuid4().hex[:8]}", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root with CAP_SYS_ADMIN: {(done.stderr or done.stdout).strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# The child fills the disk from inside its second trial (after training, before the trial's writes), and for a
# while (3 heartbeats) keeps that trial running; it prints a UserError as the command line does.
CHILD = """
import sys, time
from pathlib import Path
from mobilenet_search.errors import UserError
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import ScratchTraining
from mobilenet_search.search.study import run_search
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)

disk, storage, results = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
config = SearchConfig(budget="2M-madds", space="tiny", dataset="synthetic:64", epochs=1, proxy_size=32,
                      references="none", noise_repeats=0)
calls = []

def filling(model, data, cfg, on_epoch=None):
    result = train_and_evaluate(model, data, cfg, on_epoch=on_epoch)
    calls.append(1)
    if len(calls) == 2:
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(bytes(65536))
                    f.flush()
            except OSError:
                pass
        time.sleep(3.5)
    return result

try:
    run_search(config, storage=storage, study_name="s", trials=4, results_dir=results, heartbeat=1,
               accuracy=ScratchTraining(train_config(config, "cpu"), train=filling))
except UserError as exc:
    print(f"mobilenet-search: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.parametrize("full", ["sqlite", "journal", "results"])
def test_a_disk_that_fills_during_a_run_ends_it_with_one_line_and_the_resumed_study_has_no_zombie(
        small_disk, tmp_path, full):
    """``full`` names what is on the small disk: the SQLite storage, the journal storage, or the result files."""
    storage = {"sqlite": f"sqlite:///{small_disk / 's.db'}", "journal": f"journal:{small_disk / 's.log'}",
               "results": f"sqlite:///{tmp_path / 's.db'}"}[full]
    results = small_disk / "results" if full == "results" else tmp_path / "results"
    done = subprocess.run([sys.executable, "-c", CHILD, str(small_disk), storage, str(results)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr  # heartbeats too
    if full == "results":  # the trials were recorded; the result files could not be written
        assert done.stderr.startswith(f"mobilenet-search: error: the disk is full: cannot write {results / 's'}")
        assert "No space left on device" in done.stderr
        running = []
    else:
        assert done.stderr.startswith(f"mobilenet-search: error: the disk is full: cannot write storage {storage}: ")
        assert "trial 1 could not be recorded: the next run fails it and runs it again" in done.stderr
        running = [TrialState.RUNNING]
    study = optuna.load_study(study_name="s", storage=make_storage(storage, heartbeat=None))
    assert [t.state for t in study.trials][:2] == [TrialState.COMPLETE, *running] or not running

    config = SearchConfig(budget="2M-madds", space="tiny", dataset="synthetic:64", epochs=1, proxy_size=32,
                          references="none", noise_repeats=0)
    with pytest.raises(UserError, match="^the disk is full: cannot write "):  # resumed while still full
        run_search(config, storage=storage, study_name="s", trials=4, results_dir=results)

    (small_disk / "filler").unlink()  # space freed: the same command resumes
    study = run_search(config, storage=storage, study_name="s", trials=2 if running else 4, results_dir=results)
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert (results / "s" / "trials.csv").read_text().count("\n") == len(trials) + 1
    if running:  # the trial the full disk stopped is failed on resume, and run again
        stopped = trials[1]
        assert stopped.state == TrialState.FAIL and stopped.user_attrs["outcome"] == "interrupted"
        assert "died (killed, or stopped by a full disk)" in stopped.user_attrs["status_reason"]
        retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)
        assert retry.params == stopped.params and retry.user_attrs["outcome"] == "trained"

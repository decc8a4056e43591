"""Several processes on one study: slots, stopping, retries, recovery of dead trials, sampler offsets.

Every rule here reads the study through Optuna's storage, so it holds across processes and
machines: the study-wide ``--trials`` target (workers claim slots before training), the
re-queueing of interrupted trials, and, when a local process died without a word
(``kill -9``), failing its trial at once and running it again before anything new.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
import zlib

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from mobilenet_search.results.records import (
    Outcome,
    TrialRecord,
    counts_toward_target,
    is_confirmation,
    is_reference,
    outcome,
    retry_record,
    set_attrs,
)

HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"  # which process ran a trial


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one runs again: one interrupted (our ``retry_of``) or failed by heartbeat (Optuna's)."""
    mine = TrialRecord.from_trial(trial).retry_of
    if mine is not None:
        return mine
    with warnings.catch_warnings():  # marked experimental, stable since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def evaluated_count(study: optuna.Study) -> int:
    """How many trials count towards ``--trials`` (see :func:`counts_toward_target`), across all workers."""
    return sum(counts_toward_target(t) for t in study.get_trials(deepcopy=False))


def _process_is_gone(worker: str | None) -> bool:
    """Whether ``worker`` (``host:pid``) names a process on this host that no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail, with a reason, every RUNNING trial whose process on this host is gone (killed with -9, or a
    crash), so that :func:`requeue_interrupted` runs it again at once instead of after the heartbeat
    grace period. Returns their numbers."""
    recovered = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord.from_trial(frozen).worker
        if not _process_is_gone(worker):
            continue
        reason = f"its process {worker} died (killed, or stopped by a full disk); run again on resume"
        if fail_trial(study, frozen, Outcome.INTERRUPTED, reason):
            recovered.append(frozen.number)
    return recovered


def fail_trial(study: optuna.Study, frozen: FrozenTrial, outcome: Outcome, reason: str) -> bool:
    """Record a RUNNING trial as FAIL with ``outcome`` and ``reason`` (its ``status_reason``).

    False when that cannot be written: another process finished the trial first, or the storage
    refuses the write (a full disk); the trial then stays as it was.
    """
    # Optuna has no public number -> id lookup; FrozenTrial._trial_id is what its own callbacks use.
    trial = optuna.Trial(study, frozen._trial_id)
    try:
        set_attrs(trial, outcome=outcome, status_reason=reason)
        study.tell(frozen.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError, OSError,
            optuna.exceptions.StorageInternalError):
        return False
    return True


def requeue_interrupted(study: optuna.Study) -> int:
    """Enqueue once again every interrupted trial not yet retried, so resuming loses nothing.

    Queued trials run before any new sample (Optuna pops WAITING trials first), and
    :class:`Slots` leaves the last slots to them.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {retry_of(t) for t in trials}
    count = 0
    for trial in trials:
        if (trial.state == TrialState.FAIL and outcome(trial) == Outcome.INTERRUPTED.value
                and trial.number not in retried):
            study.enqueue_trial(trial.params, user_attrs=retry_record(trial).to_attrs())
            count += 1
    return count


class Slots:
    """The study-wide ``--trials`` target: a searched trial claims a slot before training, or gives up.

    Workers claim by marking their running trial; the lowest-numbered claimants get the free
    slots, so several workers finish exactly the target. A claimant first waits until every
    lower-numbered searched trial still running has claimed too (or ended): otherwise it could
    count the slots before a lower trial's claim is visible, while that trial, counting only
    those below it, takes the same slot (seen on PostgreSQL: 7 trained for a target of 6).
    While claimed trials ahead of this one are still running, wait: one may die, fail by
    heartbeat and free its slot. A fresh sample that would take a slot a queued retry needs
    gives up as ``surplus`` (never trained), so a killed trial is always evaluated, even in the
    last slot. Trials whose process on this host is gone never hold anyone up.
    """

    def __init__(self, target: int, poll_seconds: float = 1.0) -> None:
        self.target, self.poll_seconds = target, poll_seconds

    def take(self, trial: optuna.Trial) -> bool:
        """Claim a slot for ``trial``; False if it must give up (the study is full or a retry needs it)."""
        set_attrs(trial, claimed=True)
        study = trial.study
        is_retry = retry_of(next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)) is not None
        while True:
            with warnings.catch_warnings():  # marked experimental, stable since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = sum(counts_toward_target(t) for t in trials)
            below = [t for t in trials if t.state == TrialState.RUNNING and t.number < trial.number
                     and not is_reference(t) and not is_confirmation(t)
                     and not _process_is_gone(TrialRecord.from_trial(t).worker)]
            ahead = sum(1 for t in below if TrialRecord.from_trial(t).claimed)
            waiting = sum(1 for t in trials if t.state == TrialState.WAITING and not is_reference(t))
            if done >= self.target:  # full: this trial ends as surplus, and StopAfter stops the study
                return False
            if ahead < len(below):  # a lower trial has not claimed yet: its claim may come first
                time.sleep(self.poll_seconds)
                continue
            if done + ahead + (0 if is_retry else waiting) < self.target:
                return True
            if not is_retry and waiting:
                return False
            time.sleep(self.poll_seconds)


class StopAfter:
    """Stop the study once it holds ``target`` evaluated trials (counted across all workers).

    Over-budget rejections cost milliseconds and do not count, but at most ``max_attempts``
    trials are started in all, so a budget that only the rare candidate meets still ends.
    """

    def __init__(self, target: int, max_attempts: int) -> None:
        self.target, self.max_attempts = target, max_attempts

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if evaluated_count(study) >= self.target or len(study.get_trials(deepcopy=False)) >= self.max_attempts:
            study.stop()


def sampler_offset(study: optuna.Study, worker: bool) -> int:
    """A sampler joining an existing study must not replay the random draws of the process before it:
    offset its seed by the trials already there, and for a worker also by who it is, since workers
    start side by side on the same history."""
    return len(study.get_trials(deepcopy=False)) + (zlib.crc32(WORKER.encode()) if worker else 0)

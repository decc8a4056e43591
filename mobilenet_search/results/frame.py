"""The read side of a study: trials as a pandas frame, the Pareto set, files on disk.

Shared by the command line, the dashboard and the model library, so that all of them see a
study the same way. A trial's measurements live in Optuna user attributes with the names in
:data:`TRIAL_ATTRS` (:class:`records.TrialRecord`'s fields); this module never needs to know how they were produced.
"""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from mobilenet_search.files import atomic_write_text
from mobilenet_search.results.records import (
    FRAME_ATTRS,
    INTERVAL_COLUMNS,  # noqa: F401  (read with the frame: its interval columns)
    INTERVAL_SEED,
    LEARNED_NOTHING_ATTR,
    VAL_SIZE_ATTR,
    StudySettings,
    TrialRecord,
    frame_is_cached,
    frame_is_noise_repeat,
    is_cached,
    is_feasible,
    is_noise_repeat,
    learned_nothing,
    quality_key,
    study_val_labels,
    trivial_accuracy,
)
from mobilenet_search.results.stats import bootstrap_balanced_accuracy_interval, wilson_interval

# The user attributes every trial records (the contract with the dashboard and export): TrialRecord's fields.
TRIAL_ATTRS = FRAME_ATTRS
FRAME_COLUMNS = ("number", "state", "feasible", *TRIAL_ATTRS, "duration_s")
HISTORY_ATTRS = ("accuracy_history", "loss_history")  # per-epoch lists


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial's row of :func:`trials_frame`: number, state, feasibility, every recorded attribute, duration.

    The one place a row is made: :func:`trials_frame` and :class:`ResultsWriter` both call it.
    """
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "feasible": is_feasible(trial)}
    record = TrialRecord.from_trial(trial)
    row.update({key: getattr(record, key) for key in TRIAL_ATTRS})
    # Lists (the per-epoch histories) do not fit a CSV cell: keep them as JSON text.
    for key in HISTORY_ATTRS:
        if isinstance(row[key], list):
            row[key] = json.dumps(row[key])
    if trial.datetime_start and trial.datetime_complete:
        row["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return row


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The trials frame of rows made by :func:`trial_row`, in the order given (by trial number)."""
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial (:func:`trial_row`), by trial number: every recorded attribute, 95 % intervals included.

    The intervals are recorded with each trial (:func:`interval_attrs`), so reading a study of
    thousands of trials computes none; the packed per-image record stays out of the frame (and
    trials.csv): only the statistics read it, through :func:`records.trial_correct`.
    """
    frame = rows_frame([trial_row(trial) for trial in study.get_trials(deepcopy=False)])
    return fill_learned_nothing(frame, study_val_labels(study))


def fill_learned_nothing(frame: pd.DataFrame, labels: np.ndarray | None) -> pd.DataFrame:
    """``learned_nothing`` for trials recorded before it was, from their accuracy and the validation ``labels``."""
    missing = frame[LEARNED_NOTHING_ATTR].isna() & frame["accuracy"].notna() & frame[VAL_SIZE_ATTR].notna()
    if labels is not None and len(labels) and missing.any():
        trivial = trivial_accuracy(labels)
        frame[LEARNED_NOTHING_ATTR] = frame[LEARNED_NOTHING_ATTR].astype(object)
        frame.loc[missing, LEARNED_NOTHING_ATTR] = [
            learned_nothing(round(accuracy * size), int(size), trivial)
            for accuracy, size in frame.loc[missing, ["accuracy", VAL_SIZE_ATTR]].itertuples(index=False)]
    return frame


def interval_attrs(correct: np.ndarray, labels: np.ndarray | None, *, seed: int = INTERVAL_SEED,
                   resamples: int = 1000) -> dict[str, float]:
    """The :data:`INTERVAL_COLUMNS` of one trial from its per-image correctness, recorded with the trial:
    Wilson for accuracy, a seeded bootstrap over validation images for balanced accuracy."""
    low, high = wilson_interval(int(correct.sum()), len(correct))
    attrs = {"accuracy_low": low, "accuracy_high": high}
    if labels is not None and len(labels) == len(correct):
        low, high = bootstrap_balanced_accuracy_interval(correct, labels, seed=seed, resamples=resamples)
        attrs.update(balanced_accuracy_low=low, balanced_accuracy_high=high)
    return attrs


def trained(frame: pd.DataFrame, quality: str = "accuracy") -> pd.DataFrame:
    """The complete, feasible trials that have a measured ``quality`` (accuracy, or a zero-cost score).

    A cached trial (``cached_from``) is left out: its record is its source's, which stands for it, so no
    architecture is on a front, in a table or in a count twice.
    """
    ok = (frame["state"] == "COMPLETE") & frame["feasible"].astype(bool) & frame[quality].notna()
    return frame[ok & ~frame_is_cached(frame)]


def pareto_mask(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy") -> pd.Series:
    """Which rows are Pareto-optimal: no other row has lower-or-equal cost and higher quality.

    A sort by cost, then one scan keeping each row that beats the best quality seen so far
    (ties in cost go to the higher quality). Rows with a missing value are never optimal.
    """
    mask = pd.Series(False, index=frame.index)
    valid = frame[[cost, quality]].dropna()
    if valid.empty:
        return mask
    values = valid[quality].to_numpy(float)
    order = np.lexsort((-values, valid[cost].to_numpy(float)))
    ordered = values[order]
    # A row is optimal when it beats every cheaper (or equally cheap, better) row: a running maximum.
    before = np.concatenate(([-np.inf], np.maximum.accumulate(ordered)[:-1]))
    mask.loc[valid.index[order[ordered > before]]] = True
    return mask


def pareto_front(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy") -> pd.DataFrame:
    """The Pareto-optimal trained trials, cheapest first."""
    candidates = trained(frame, quality)
    return candidates[pareto_mask(candidates, cost, quality)].sort_values(cost)


def study_quality(study: optuna.Study) -> str:
    """What the study maximises: ``accuracy``, or ``zc_NAME`` for ``--objective zero-cost:NAME``."""
    return quality_key(StudySettings.from_study(study))


def write_results(study: optuna.Study, folder: Path) -> pd.DataFrame:
    """Write ``trials.csv`` and ``pareto.json`` of ``study`` into ``folder``; return the frame.

    Reads every trial: after each trial of a long study, :class:`ResultsWriter` costs less.
    """
    frame = trials_frame(study)
    quality = study_quality(study)
    _write_files(folder, study.study_name, frame, pareto_front(frame[~frame_is_noise_repeat(frame)], quality=quality),
                 quality)
    return frame


def _write_files(folder: Path, study_name: str, frame: pd.DataFrame, front: pd.DataFrame, quality: str) -> None:
    atomic_write_text(folder / "trials.csv", frame.to_csv(index=False))
    records = json.loads(front[["number", "arch", "madds", "params", "latency_ms", quality, LEARNED_NOTHING_ATTR]]
                         .to_json(orient="records"))
    atomic_write_text(folder / "pareto.json", json.dumps({"study": study_name, "pareto": records}, indent=2))


class ResultsWriter:
    """``trials.csv`` and ``pareto.json`` of a running study, at a cost proportional to what changed.

    :meth:`update` replaces one trial's row (:func:`trial_row`) in memory and updates the Pareto
    set in place (a sorted list, cheapest first); the files are rewritten, complete and
    atomically, by :meth:`flush`, which :meth:`update` calls once ``every`` trials have come in
    since the last flush, or ``interval`` seconds have passed, whichever is first. Rewriting is
    linear in the study's size, so the count grows with the study (a tenth of its rows, at least
    ``every``), which keeps the total cost of a study's bookkeeping linear in its trials. The
    files are then what :func:`write_results` writes for the same trials.

    :meth:`sync` takes in the trials of a study that this writer has not seen finished (those
    of other workers, or one a Ctrl-C ended without a callback); a writer made by
    :meth:`for_study` syncs before every flush, so its files hold every trial in the storage,
    as :func:`write_results`' do::

        >>> import optuna, tempfile
        >>> study = optuna.create_study()
        >>> writer = ResultsWriter(Path(tempfile.mkdtemp()), study.study_name, "accuracy", every=2)
        >>> def objective(trial):
        ...     trial.set_user_attr("madds", 300_000_000)
        ...     trial.set_user_attr("accuracy", 0.5 + 0.2 * trial.number)
        ...     return 0.0
        >>> study.optimize(objective, n_trials=2, callbacks=[lambda study, trial: writer.update(trial)])
        >>> writer.front, len(pd.read_csv(writer.folder / "trials.csv"))
        ([1], 2)
    """

    #: Flush once the rows since the last flush reach this fraction of the study, if above ``every``.
    GROWTH = 0.1

    def __init__(self, folder: Path, study_name: str, quality: str = "accuracy", *, every: int = 50,
                 interval: float = 30.0) -> None:
        self.folder, self.study_name, self.quality = Path(folder), study_name, quality
        self.every, self.interval = every, interval
        self._rows: dict[int, dict[str, Any]] = {}
        self._front: list[tuple[float, float, int]] = []  # (cost, -quality, number): pareto_mask's scan order
        self._candidates: dict[int, tuple[float, float, int]] = {}  # every row the front could hold
        self._unfinished: set[int] = set()  # trials last seen running or waiting: sync looks at them again
        self._synced = 0  # sync has seen trials 0 .. _synced - 1
        self._pending = 0
        self._last_flush = time.monotonic()
        self._study: optuna.Study | None = None

    @classmethod
    def for_study(cls, study: optuna.Study, folder: Path, **options: Any) -> ResultsWriter:
        """A writer for ``study`` (its name and quality) that holds its trials so far and syncs before each flush."""
        writer = cls(folder, study.study_name, study_quality(study), **options)
        writer._study = study
        writer.sync(study)
        return writer

    @property
    def front(self) -> list[int]:
        """The trial numbers of the Pareto set, cheapest first (as :func:`pareto_front` orders them)."""
        return [number for _, _, number in self._front]

    def update(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Take in one trial's current state; flush if it is time to. Whether it flushed."""
        self._set(trial)
        self._pending += 1
        due = max(self.every, int(self.GROWTH * len(self._rows)))
        if self._pending >= due or time.monotonic() - self._last_flush >= self.interval:
            self.flush()
            return True
        return False

    def sync(self, study: optuna.Study) -> int:
        """Take in every trial of ``study`` not yet seen in a finished state (finished trials never change).

        Looks only at the trials past those seen and at those not finished when last seen, so it
        costs what changed, not the study's size. How many trials it took in.
        """
        trials = study.get_trials(deepcopy=False)
        if trials and trials[-1].number == len(trials) - 1:  # trial i is trials[i], as in every Optuna storage
            numbers = [n for n in sorted(self._unfinished) if n < len(trials)]
            changed = [trials[n] for n in numbers] + trials[self._synced:]
            self._synced = len(trials)
        else:
            changed = trials
        count = 0
        for trial in changed:
            row = self._rows.get(trial.number)
            if row is None or row["state"] != trial.state.name or not trial.state.is_finished():
                self._set(trial)
                count += 1
        return count

    def flush(self) -> pd.DataFrame:
        """Write ``trials.csv`` and ``pareto.json`` now (each complete, atomically); return the frame."""
        if self._study is not None:
            self.sync(self._study)
        frame = rows_frame([self._rows[number] for number in sorted(self._rows)])
        front = frame.set_index("number", drop=False).loc[self.front]
        _write_files(self.folder, self.study_name, frame, front, self.quality)
        self._pending, self._last_flush = 0, time.monotonic()
        return frame

    def _set(self, trial: optuna.trial.FrozenTrial) -> None:
        row = self._rows[trial.number] = trial_row(trial)
        if trial.state.is_finished():
            self._unfinished.discard(trial.number)
        else:
            self._unfinished.add(trial.number)
        old = self._candidates.pop(trial.number, None)
        cost, quality = row["madds"], row[self.quality]
        # trained() then pareto_mask(): complete, feasible, both values present, compared as floats.
        new = None
        # Seed noise is on no front; a cached trial's source stands for it (see trained()).
        on_front = (row["state"] == "COMPLETE" and row["feasible"] and not is_noise_repeat(trial)
                    and not is_cached(trial))
        if on_front and pd.notna(cost) and pd.notna(quality):
            new = self._candidates[trial.number] = (float(cost), -float(quality), trial.number)
        if old is not None and old != new:  # a candidate changed (rare): the front again from all of them
            self._front = []
            for key in sorted(self._candidates.values()):
                self._add_to_front(key)
        elif new is not None and old is None:
            self._add_to_front(new)

    def _add_to_front(self, key: tuple[float, float, int]) -> None:
        # The front's qualities rise with its cost: a newcomer is dominated exactly when the front member
        # just before it in scan order is at least as good, and it dominates the run just after it that is
        # no better than it.
        at = bisect.bisect_left(self._front, key)
        if at > 0 and self._front[at - 1][1] <= key[1]:
            return
        end = at
        while end < len(self._front) and self._front[end][1] >= key[1]:
            end += 1
        self._front[at:end] = [key]

"""What a running study shows on the terminal: one progress bar, one line per finished trial, an honest ETA.

tqdm's own rate and ETA would count reference nets, over-budget rejections (milliseconds) and
trials finished before a resume alike, so the bar shows neither. The ETA here is hidden until a
searched candidate has been trained in this run: the reference nets train first and are the
cheapest and the dearest the budget admits, so their mean says nothing of what the search
samples (after the quick start's first, 23 s, it said 2 minutes for the 6 still to go). Then it is
the mean time of the searched candidates trained times those still to train, plus the reference
nets still queued at their own mean.
"""

from __future__ import annotations

import math

import optuna
from tqdm.auto import tqdm

from mobilenet_search.arch.cost import format_count
from mobilenet_search.results.records import (
    Outcome,
    TrialRecord,
    counts_toward_target,
    is_cached,
    is_reference,
    outcome,
)

_BAR = "{desc}: {n}/{total} trials [{elapsed}{postfix}]"


def _duration(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def trial_line(trial: optuna.trial.FrozenTrial, quality: str = "accuracy") -> str:
    """One line for a finished trial: number, outcome, quality, balanced accuracy, costs, time."""
    record = TrialRecord.from_trial(trial)
    quality = "accuracy" if quality == "balanced_accuracy" else quality  # balanced accuracy follows anyway
    state = record.outcome or trial.state.name.lower()
    parts = [f"trial {trial.number:>3d}", f"{state:<11s}"]
    value = getattr(record, quality)
    if value is not None:
        parts.append(f"{quality} {value:.3f}" if quality == "accuracy" else f"{quality} {value:.4g}")
        if record.balanced_accuracy is not None:
            parts.append(f"balanced {record.balanced_accuracy:.3f}")
    if record.madds is not None:
        parts.append(f"{format_count(record.madds)} MAdds")
    if record.latency_ms is not None:
        parts.append(f"{record.latency_ms:.2f} ms")
    seconds = _duration(trial)
    if record.cached_from is not None:  # its figures are an earlier trial's: it took no time of its own
        parts.append(f"[cached from trial {record.cached_from}]")
    elif seconds is not None and state != Outcome.OVER_BUDGET.value:
        parts.append(f"{seconds:.0f} s")
    if record.reference_name:
        seed = record.noise_seed
        parts.append(f"[{record.reference_name}" + (f", seed {seed}]" if seed is not None else "]"))
    if record.learned_nothing:
        parts.append("learned nothing")
    if state in (Outcome.FAILED.value, Outcome.OVER_BUDGET.value) and record.status_reason:
        parts.append(f"({record.status_reason})")
    return "  ".join(parts)


class SearchProgress:
    """Progress of one study for the CLI: pass :meth:`after_trial` as a callback and :meth:`on_epoch`."""

    def __init__(self, study: optuna.Study, trials: int, *, enabled: bool = True, quality: str = "accuracy") -> None:
        self.study, self.trials, self.quality = study, trials, quality
        # The reference nets and their noise repeats, queued when the study was created (not their retries).
        self.references = sum(1 for t in study.get_trials(deepcopy=False)
                              if is_reference(t) and TrialRecord.from_trial(t).retry_of is None)
        self._seconds: dict[bool, list[float]] = {True: [], False: []}  # trained this run: reference or not
        self.bar = tqdm(total=trials + self.references, desc=study.study_name, unit="trial", disable=not enabled,
                        dynamic_ncols=True, bar_format=_BAR)
        self._update("first trial: decoding the data at its size, then training" if self.bar.n == 0 else "")

    def _done(self) -> tuple[int, int]:
        """Searched trials counted towards the target, and reference nets finished."""
        trials = self.study.get_trials(deepcopy=False)
        searched = min(sum(counts_toward_target(t) for t in trials), self.trials)
        refs = sum(1 for t in trials if is_reference(t) and t.state.is_finished()
                   and outcome(t) != Outcome.INTERRUPTED.value)
        return searched, min(refs, self.references)

    def eta(self) -> float | None:
        """Seconds still to go, or None until a searched candidate has been trained in this run."""
        return self._eta(*self._done())

    def _eta(self, done: int, refs: int) -> float | None:
        searched = self._seconds[False]
        if not searched:
            return None
        per_search = sum(searched) / len(searched)
        references = self._seconds[True]
        per_reference = sum(references) / len(references) if references else per_search
        return (self.trials - done) * per_search + (self.references - refs) * per_reference

    def _update(self, note: str = "") -> None:
        done, refs = self._done()  # one pass over the study's trials per update
        self.bar.n = done + refs
        eta = self._eta(done, refs)
        if eta is not None and self.bar.n < self.bar.total:
            note = f"{note}, ETA ~{_clock(eta)}" if note else f"ETA ~{_clock(eta)}"
        self.bar.set_postfix_str(note, refresh=True)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.bar.set_postfix_str(f"training: {epoch}/{epochs} epochs done", refresh=True)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.bar.write(trial_line(trial, self.quality))
        seconds = _duration(trial)
        if outcome(trial) == Outcome.TRAINED.value and seconds is not None and not is_cached(trial):
            self._seconds[is_reference(trial)].append(seconds)
        self._update()

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


"""The read side of a study: trials as a pandas frame, the Pareto set, files on disk.

Shared by the command line, the dashboard and the model library, so that all of them see a
study the same way. A trial's measurements live in Optuna user attributes with the names in
:data:`TRIAL_ATTRS`; this module never needs to know how they were produced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from mobilenet_search.files import atomic_write_text
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    INTERVAL_COLUMNS,
    INTERVAL_SEED,
    NOISE_SEED_ATTR,
    VAL_SIZE_ATTR,
    is_feasible,
    quality_key,
    unpack_correct,
)
from mobilenet_search.results.stats import bootstrap_balanced_accuracy_interval, wilson_interval

# The user attributes every trial records (the contract with the dashboard and export).
TRIAL_ATTRS = (
    "arch", "spec", "madds", "params", "latency_ms", "latency_device", "latency_batch", "accuracy",
    "balanced_accuracy", VAL_SIZE_ATTR, "accuracy_history", "proxy_resolution", "epochs", "train_seconds", "time_build",
    "time_latency", "time_train", "time_eval", "time_zero_cost", "outcome", "status_reason", "retry_of", "reference",
    "reference_name", NOISE_SEED_ATTR, "worker", "zc_synflow", "zc_jacob_cov", "zc_snip", "zc_grad_norm",
    *INTERVAL_COLUMNS,
)
FRAME_COLUMNS = ("number", "state", "feasible", *TRIAL_ATTRS, "duration_s")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, feasibility, every recorded attribute (95 % intervals included), duration.

    The intervals are recorded with each trial (:func:`interval_attrs`), so reading a study of
    thousands of trials computes none; the packed per-image record stays out of the frame (and
    trials.csv): only the statistics read it, through :func:`records.trial_correct`.
    """
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                               "feasible": is_feasible(trial)}
        row.update({key: trial.user_attrs.get(key) for key in TRIAL_ATTRS})
        if trial.datetime_start and trial.datetime_complete:
            row["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    # Lists (the per-epoch history) do not fit a CSV cell: keep them as JSON text.
    frame["accuracy_history"] = frame["accuracy_history"].map(
        lambda h: json.dumps(h) if isinstance(h, list) else h)
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
    """The complete, feasible trials that have a measured ``quality`` (accuracy, or a zero-cost score)."""
    ok = (frame["state"] == "COMPLETE") & frame["feasible"].astype(bool) & frame[quality].notna()
    return frame[ok]


def pareto_mask(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy") -> pd.Series:
    """Which rows are Pareto-optimal: no other row has lower-or-equal cost and higher quality.

    A sort by cost, then one scan keeping each row that beats the best quality seen so far
    (ties in cost go to the higher quality). Rows with a missing value are never optimal.
    """
    mask = pd.Series(False, index=frame.index)
    valid = frame[[cost, quality]].dropna()
    if valid.empty:
        return mask
    order = np.lexsort((-valid[quality].to_numpy(float), valid[cost].to_numpy(float)))
    best = -np.inf
    for position in order:
        value = valid[quality].iat[position]
        if value > best:
            mask.at[valid.index[position]] = True
            best = value
    return mask


def pareto_front(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy") -> pd.DataFrame:
    """The Pareto-optimal trained trials, cheapest first."""
    candidates = trained(frame, quality)
    return candidates[pareto_mask(candidates, cost, quality)].sort_values(cost)


def study_quality(study: optuna.Study) -> str:
    """What the study maximises: ``accuracy``, or ``zc_NAME`` for ``--objective zero-cost:NAME``."""
    return quality_key(study.user_attrs.get(CONFIG_ATTR))


def write_results(study: optuna.Study, folder: Path) -> pd.DataFrame:
    """Write ``trials.csv`` and ``pareto.json`` of ``study`` into ``folder``; return the frame."""
    frame = trials_frame(study)
    atomic_write_text(folder / "trials.csv", frame.to_csv(index=False))
    quality = study_quality(study)
    front = pareto_front(frame, quality=quality)
    records = json.loads(front[["number", "arch", "madds", "params", "latency_ms", quality]].to_json(
        orient="records"))
    atomic_write_text(folder / "pareto.json", json.dumps({"study": study.study_name, "pareto": records}, indent=2))
    return frame

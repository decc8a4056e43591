"""What a study records, defined once: attribute keys, trial outcomes, and the rules that read them.

No torch and no search here: the search writes these records, and results, report, export,
dashboard and figures read them through this module alone. Every rule comes in two forms, one
for an Optuna ``FrozenTrial`` and one for a row-per-trial pandas frame
(:func:`mobilenet_search.results.frame.trials_frame`), so both always agree.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import pandas as pd

# Study user attributes.
CONFIG_ATTR = "mobilenet_search.config"  # the SearchConfig a study was created with
REFERENCES_ATTR = "mobilenet_search.references"  # the reference networks queued at creation
FIDELITY_ATTR = "mobilenet_search.fidelity"  # proxy-fidelity results, stored as they come


class Outcome(str, Enum):
    """How a trial ended, recorded as its ``outcome`` user attribute (the enum's value)."""

    TRAINED = "trained"  # accuracy measured by proxy training (or inherited weights)
    SCORED = "scored"  # a zero-cost score instead of accuracy (``--objective zero-cost:NAME``)
    OVER_BUDGET = "over_budget"  # rejected before training; the reason is in ``status_reason``
    PRUNED = "pruned"  # stopped early by Optuna's pruner
    FAILED = "failed"  # NaN loss, out of memory, a spec the builder rejects, a dead worker
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; queued again when the study resumes
    SURPLUS = "surplus"  # lost the race for the study's last slot; never trained

    def __str__(self) -> str:
        return self.value


#: Outcomes of a searched trial that count towards ``--trials``.
COUNTED = frozenset({Outcome.TRAINED.value, Outcome.SCORED.value, Outcome.FAILED.value, Outcome.PRUNED.value})
#: Outcomes that carry a quality (accuracy or a zero-cost score).
EVALUATED = frozenset({Outcome.TRAINED.value, Outcome.SCORED.value})


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether every Optuna constraint of the trial is satisfied (<= 0); a trial without any is feasible."""
    return all(v <= 0 for v in (trial.constraints or {}).values())


def is_reference(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial is one of the paper's networks, trained alongside the search, not proposed by it."""
    return bool(trial.user_attrs.get("reference"))


def outcome(trial: optuna.trial.FrozenTrial) -> str | None:
    """The trial's recorded outcome (an :class:`Outcome` value), or None while running or when killed."""
    return trial.user_attrs.get("outcome")


def counts_toward_target(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards ``--trials``: a finished searched candidate trained, scored, pruned or failed.

    Over-budget rejections, interrupted or killed trials, surplus trials and the reference
    networks do not count.
    """
    return trial.state.is_finished() and outcome(trial) in COUNTED and not is_reference(trial)


def frame_is_reference(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_reference` for every row of a trials frame."""
    import pandas as pd

    if "reference" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["reference"].fillna(False).astype(bool)


def frame_counts_toward_target(frame: pd.DataFrame) -> pd.Series:
    """:func:`counts_toward_target` for every row of a trials frame."""
    finished = frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])
    return finished & frame["outcome"].isin(COUNTED) & ~frame_is_reference(frame)


def quality_key(config: dict[str, Any] | None) -> str:
    """What a study maximises, from its stored settings: ``accuracy``, or ``zc_NAME`` for a zero-cost objective."""
    kind, _, name = (config or {}).get("objective", "multi").partition(":")
    return f"zc_{name}" if kind == "zero-cost" else "accuracy"


def set_outcome(trial: optuna.Trial, value: Outcome, reason: str | None = None) -> None:
    """Record how a trial ended, and why when it did not train (stored as plain strings)."""
    trial.set_user_attr("outcome", value.value)
    if reason is not None:
        trial.set_user_attr("status_reason", " ".join(reason.split())[:500])


# Per-image validation correctness of a trained trial, for intervals and paired tests.
CORRECT_ATTR = "val_correct"  # numpy.packbits of the bool vector, base64 text
VAL_SIZE_ATTR = "val_size"  # how many validation images the vector covers


def pack_correct(correct: Any) -> dict[str, Any]:
    """The user attributes that record a bool vector of per-image correctness compactly (1 bit per image)."""
    import base64

    import numpy as np

    bits = np.asarray(correct, dtype=bool).ravel()
    return {CORRECT_ATTR: base64.b64encode(np.packbits(bits).tobytes()).decode("ascii"), VAL_SIZE_ATTR: len(bits)}


def unpack_correct(attrs: dict[str, Any]) -> Any:
    """The bool vector :func:`pack_correct` stored, or None when the trial has none."""
    import base64

    import numpy as np

    text, size = attrs.get(CORRECT_ATTR), attrs.get(VAL_SIZE_ATTR)
    if text is None or size is None:
        return None
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=int(size)).astype(bool)

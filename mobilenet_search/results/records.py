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
    import numpy as np
    import optuna
    import pandas as pd

# Study user attributes.
CONFIG_ATTR = "mobilenet_search.config"  # the SearchConfig a study was created with
REFERENCES_ATTR = "mobilenet_search.references"  # the reference networks queued at creation
FIDELITY_ATTR = "mobilenet_search.fidelity"  # proxy-fidelity results, stored as they come
SUPERNET_ATTR = "mobilenet_search.supernet"  # a supernet study's checkpoint: its path and tag
CONFIRMS_ATTR = "confirms"  # on a trial that retrains a supernet-scored trial from scratch: that trial's number
WEIGHTS_ATTR = "weights"  # a trial's trained weights saved by the study (safetensors file)
VAL_LABELS_ATTR = "mobilenet_search.val_labels"  # validation labels, once per study (:func:`pack_labels`)
TEST_LABELS_ATTR = "mobilenet_search.test_labels"  # test labels, once per study; absent when it has no test split
# How images become inputs (measure.preprocessing.Preprocessing.to_dict), once per proxy resolution R:
# the attribute "mobilenet_search.preprocessing.R" (one key each, so workers never overwrite each other).
PREPROCESSING_ATTR = "mobilenet_search.preprocessing"

# Trial user attributes read by the statistics (results/stats.py, results/report.py).
CORRECT_ATTR = "val_correct"  # which validation images the trial got right (:func:`pack_correct`)
VAL_SIZE_ATTR = "val_size"  # how many validation images: the length of the unpacked ``val_correct``
# The same on the test split: scored once after the last epoch, never read by the search (it picks on validation).
TEST_CORRECT_ATTR = "test_correct"
TEST_SIZE_ATTR = "test_size"
TEST_ATTRS = ("test_accuracy", "test_balanced_accuracy", TEST_SIZE_ATTR)
LEARNED_NOTHING_ATTR = "learned_nothing"  # not better than always answering the most frequent class (see below)
LEARNED_NOTHING_ALPHA = 0.05  # the one-sided binomial test's level
# 95 % intervals, recorded with each trained trial (Wilson; seeded bootstrap for balanced accuracy).
INTERVAL_COLUMNS = ("accuracy_low", "accuracy_high", "balanced_accuracy_low", "balanced_accuracy_high")
INTERVAL_SEED = 0  # the bootstrap seed: the same intervals for the same record, run after run
NOISE_SEED_ATTR = "noise_seed"  # on a reference net retrained with another seed (``--noise-repeats``) only
# On a searched trial whose architecture an earlier searched trial evaluated (same seed and settings): that trial's
# number. Its record is a copy of that trial's (see :mod:`mobilenet_search.search.cache`), not a second measurement.
CACHED_FROM_ATTR = "cached_from"


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


def is_confirmation(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial retrains a supernet-scored candidate from scratch (``confirms`` its number)."""
    return trial.user_attrs.get(CONFIRMS_ATTR) is not None


def counts_toward_target(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards ``--trials``: a finished searched candidate trained, scored, pruned or failed.

    Over-budget rejections, interrupted or killed trials, surplus trials, the reference
    networks and the confirmations of a supernet study do not count.
    """
    return (trial.state.is_finished() and outcome(trial) in COUNTED and not is_reference(trial)
            and not is_confirmation(trial))


def frame_is_reference(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_reference` for every row of a trials frame."""
    import pandas as pd

    if "reference" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["reference"].fillna(False).astype(bool)


def frame_is_confirmation(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_confirmation` for every row of a trials frame."""
    import pandas as pd

    if CONFIRMS_ATTR not in frame:
        return pd.Series(False, index=frame.index)
    return frame[CONFIRMS_ATTR].notna()


def frame_counts_toward_target(frame: pd.DataFrame) -> pd.Series:
    """:func:`counts_toward_target` for every row of a trials frame."""
    finished = frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])
    return finished & frame["outcome"].isin(COUNTED) & ~frame_is_reference(frame) & ~frame_is_confirmation(frame)


def quality_key(config: dict[str, Any] | None) -> str:
    """What a study maximises, from its stored settings: ``accuracy``, ``balanced_accuracy`` (``--metric
    balanced``), or ``zc_NAME`` for a zero-cost objective."""
    kind, _, name = (config or {}).get("objective", "multi").partition(":")
    if kind == "zero-cost":
        return f"zc_{name}"
    return "balanced_accuracy" if (config or {}).get("metric") == "balanced" else "accuracy"


# -- the trivial classifier: where every gain starts ------------------------------------------------


def trivial_accuracy(labels: Any) -> float | None:
    """The accuracy of always answering the most frequent class of ``labels`` (None without labels).

    >>> trivial_accuracy([0, 0, 1, 0])
    0.75
    """
    import numpy as np

    values = np.asarray(labels, dtype=np.int64).ravel()
    return None if values.size == 0 else float(np.bincount(values).max() / values.size)


def trivial_quality(quality: str, labels: Any) -> float | None:
    """The trivial classifier's score in ``quality``: the majority share for accuracy, 1/classes for balanced
    accuracy (whatever it answers, one class's recall is 1 and the others' 0). None for other qualities.

    >>> trivial_quality("balanced_accuracy", [0, 0, 1, 2, 2, 2])
    0.3333333333333333
    """
    import numpy as np

    if quality.endswith("balanced_accuracy"):
        classes = len(np.unique(np.asarray(labels)))
        return 1.0 / classes if classes else None
    return trivial_accuracy(labels) if quality.endswith("accuracy") else None


def learned_nothing(correct: int, size: int, trivial: float, alpha: float = LEARNED_NOTHING_ALPHA) -> bool:
    """Whether ``correct`` right answers of ``size`` are not better than the trivial classifier's accuracy
    ``trivial``: a one-sided exact binomial test at level ``alpha`` fails to reject "no better".

    >>> learned_nothing(361, 525, 0.688), learned_nothing(420, 525, 0.688)
    (True, False)
    """
    from scipy.stats import binomtest

    if size <= 0:
        raise ValueError("learned_nothing needs at least one image")
    if trivial >= 1.0:
        return True
    return bool(binomtest(int(correct), int(size), float(trivial), alternative="greater").pvalue >= alpha)


# -- per-image validation records ---------------------------------------------------------------
# Validation images come in the same order for every trial of a study (same seed, same split), so
# two trials' correctness vectors are paired image by image. numpy is imported inside the helpers:
# importing this module stays cheap.


def pack_correct(correct: Any) -> str:
    """Per-image correctness (bools, one per validation image) as base64 ASCII of its packed bits.

    Bits are packed little-endian (``numpy.packbits(..., bitorder="little")``): image ``i`` is bit
    ``i % 8`` of byte ``i // 8``. 525 images take 66 bytes, 88 characters.

    >>> pack_correct([True, False, True])
    'BQ=='
    >>> unpack_correct('BQ==', 3).tolist()
    [True, False, True]
    """
    import base64

    import numpy as np

    bits = np.packbits(np.asarray(correct, dtype=bool).ravel(), bitorder="little")
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_correct(text: str, size: int) -> np.ndarray:
    """The bool vector of ``size`` images that :func:`pack_correct` packed into ``text``."""
    import base64

    import numpy as np

    packed = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    if len(packed) != (size + 7) // 8:
        raise ValueError(f"val_correct holds {len(packed)} bytes, not the {(size + 7) // 8} of {size} images")
    return np.unpackbits(packed, count=size, bitorder="little").astype(bool)


def pack_labels(labels: Any) -> str:
    """Validation labels (class indices 0-255) as base64 ASCII of their ``uint8`` bytes.

    >>> unpack_labels(pack_labels([0, 2, 1])).tolist()
    [0, 2, 1]
    """
    import base64

    import numpy as np

    values = np.asarray(labels).ravel()
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError("validation labels must be class indices 0-255 to be stored as uint8")
    return base64.b64encode(values.astype(np.uint8).tobytes()).decode("ascii")


def unpack_labels(text: str) -> np.ndarray:
    """The label vector that :func:`pack_labels` stored in ``text`` (``uint8``)."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8).copy()


def trial_correct(trial: optuna.trial.FrozenTrial, split: str = "val") -> np.ndarray | None:
    """The trial's per-image correctness on the validation split (``split="test"``: the test split), or None when
    it recorded none (old or zero-cost studies, a study without a test split, weights inherited from a supernet)."""
    keys = (CORRECT_ATTR, VAL_SIZE_ATTR) if split == "val" else (TEST_CORRECT_ATTR, TEST_SIZE_ATTR)
    text, size = (trial.user_attrs.get(key) for key in keys)
    if text is None or size is None:
        return None
    return unpack_correct(text, int(size))


def study_val_labels(study: optuna.Study) -> np.ndarray | None:
    """The study's validation labels, or None when it did not record them."""
    text = study.user_attrs.get(VAL_LABELS_ATTR)
    return None if text is None else unpack_labels(text)


def study_test_labels(study: optuna.Study) -> np.ndarray | None:
    """The study's test labels, or None when it has no test split (made before test splits, or ``--test-fraction 0``)."""
    text = study.user_attrs.get(TEST_LABELS_ATTR)
    return None if text is None else unpack_labels(text)


def is_noise_repeat(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial retrains a reference net with another seed: a seed-noise measurement, not on any front."""
    return is_reference(trial) and trial.user_attrs.get(NOISE_SEED_ATTR) is not None


def frame_is_noise_repeat(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_noise_repeat` for every row of a trials frame."""
    import pandas as pd

    if NOISE_SEED_ATTR not in frame:
        return pd.Series(False, index=frame.index)
    return frame_is_reference(frame) & frame[NOISE_SEED_ATTR].notna()


def is_cached(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's record is a copy of an earlier trial's (``cached_from`` its number): on no front, in no
    count of trained nets; it still counts towards ``--trials``, as the sampler's proposal it is."""
    return trial.user_attrs.get(CACHED_FROM_ATTR) is not None


def frame_is_cached(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_cached` for every row of a trials frame."""
    import pandas as pd

    if CACHED_FROM_ATTR not in frame:
        return pd.Series(False, index=frame.index)
    return frame[CACHED_FROM_ATTR].notna()

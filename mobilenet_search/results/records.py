"""What a study records, defined once: its settings, its trials' attributes, outcomes and roles, and the rules
that read them.

No torch, no Optuna and no pandas at import: the search writes these records, and results, report, export,
dashboard and figures read them through this module alone. A study's settings are a :class:`StudySettings`,
a trial's attributes a :class:`TrialRecord` (its field names are the attribute names), what a trial is for a
:class:`Role`. Every rule comes in two forms, one for an Optuna ``FrozenTrial`` and one for a row-per-trial
pandas frame (:func:`mobilenet_search.results.frame.trials_frame`), so both always agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from mobilenet_search.arch.budget import Budget
from mobilenet_search.bounds import (
    INT_BOUNDS,
    MAX_BUDGET,
    MAX_BUDGET_CHARS,
    MAX_LR,
    MAX_SYNTHETIC,
    SYNTHETIC_CLASSES,
    SYNTHETIC_DEFAULT_SIZE,
    ZERO_COST_PROXIES,
)
from mobilenet_search.errors import UserError

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


class Strategy(str, Enum):
    """How a candidate gets its accuracy (``--strategy``), recorded as a trained trial's ``strategy``."""

    SCRATCH = "scratch"  # proxy training from its initial weights
    SUPERNET = "supernet"  # weights inherited from a trained weight-sharing supernet

    def __str__(self) -> str:
        return self.value


class Role(str, Enum):
    """What a trial is in its study, derived from its record (:func:`role`), never stored."""

    SEARCHED = "searched"  # proposed by the sampler (or queued by a scaling plan): the search's own candidates
    REFERENCE = "reference"  # one of the paper's networks, trained alongside the search
    NOISE_REPEAT = "noise_repeat"  # a reference net retrained with another seed: seed noise, on no front
    CONFIRMATION = "confirmation"  # a supernet-scored candidate retrained from scratch

    def __str__(self) -> str:
        return self.value


def _attr(*, frame: bool = True) -> Any:
    """A :class:`TrialRecord` field: None when not recorded; ``frame=False`` keeps it out of the trials frame."""
    return field(default=None, metadata={"frame": frame})


@dataclass(frozen=True)
class TrialRecord:
    """Every user attribute a trial may record, by its stored name; None where the trial recorded none.

    The one list of trial attributes: writers set them through :meth:`to_attrs` (an unknown name is a
    ``TypeError`` at construction), readers get them from :meth:`from_trial`, which ignores names it does not
    know and leaves missing ones None, so studies of older versions open. The trials frame's columns are the
    fields not marked ``frame=False`` (:data:`FRAME_ATTRS`), in this order.

    >>> record = TrialRecord(arch="w1.0_r224", reference=True, reference_name="mobilenet_v2_1.0_224")
    >>> record.to_attrs()["reference_name"], record.role
    ('mobilenet_v2_1.0_224', <Role.REFERENCE: 'reference'>)
    >>> TrialRecord.from_attrs({"arch": "w1.0_r224", "from_a_later_version": 1}).madds is None
    True
    """

    arch: str | None = _attr()  # the architecture's lossless string
    spec: str | None = _attr()  # its JSON
    madds: int | None = _attr()
    params: int | None = _attr()
    latency_ms: float | None = _attr()
    latency_device: str | None = _attr()
    latency_batch: int | None = _attr()
    accuracy: float | None = _attr()  # on the validation split
    balanced_accuracy: float | None = _attr()
    val_size: int | None = _attr()  # validation images: the length of the unpacked ``val_correct``
    accuracy_history: list[float] | None = _attr()  # per epoch
    loss_history: list[float] | None = _attr()
    proxy_resolution: int | None = _attr()  # the image size it was trained at
    epochs: int | None = _attr()
    train_seconds: float | None = _attr()
    time_build: float | None = _attr()
    time_latency: float | None = _attr()
    time_train: float | None = _attr()
    time_eval: float | None = _attr()
    time_zero_cost: float | None = _attr()
    outcome: str | None = _attr()  # an :class:`Outcome` value
    status_reason: str | None = _attr()  # why it was rejected or failed
    retry_of: int | None = _attr()  # the number of the trial it reruns
    reference: bool | None = _attr()  # one of the paper's networks
    reference_name: str | None = _attr()
    noise_seed: int | None = _attr()  # retrained with this seed (a noise repeat, or a scaling point's other seed)
    worker: str | None = _attr()  # host:pid of the process that ran it
    zc_synflow: float | None = _attr()  # zero-cost scores at initialisation, one per ZERO_COST_PROXIES name
    zc_jacob_cov: float | None = _attr()
    zc_snip: float | None = _attr()
    zc_grad_norm: float | None = _attr()
    accuracy_low: float | None = _attr()  # 95 % intervals (INTERVAL_COLUMNS)
    accuracy_high: float | None = _attr()
    balanced_accuracy_low: float | None = _attr()
    balanced_accuracy_high: float | None = _attr()
    strategy: str | None = _attr()  # a :class:`Strategy` value: how its accuracy was measured
    confirms: int | None = _attr()  # the supernet-scored trial it retrains from scratch
    time_score: float | None = _attr()  # seconds to score with inherited weights
    latency_predicted_ms: float | None = _attr()  # by the device's latency table
    learned_nothing: bool | None = _attr()  # not better than the trivial classifier
    test_accuracy: float | None = _attr()
    test_balanced_accuracy: float | None = _attr()
    test_size: int | None = _attr()
    cached_from: int | None = _attr()  # a copy of that earlier trial's record (:data:`CACHED_FROM_ATTR`)
    # Kept out of the frame: packed per-image records, paths and coordination marks.
    val_correct: str | None = _attr(frame=False)  # :func:`pack_correct` of the validation split
    test_correct: str | None = _attr(frame=False)
    weights: str | None = _attr(frame=False)  # the saved trained weights (safetensors file)
    claimed: bool | None = _attr(frame=False)  # took one of the study's ``--trials`` slots
    scaling_direction: str | None = _attr(frame=False)  # the scaling plan's point that queued it
    scaling_step: int | None = _attr(frame=False)
    promoted_from: int | None = _attr(frame=False)  # successive halving: the rung-0 trial it trains further

    def to_attrs(self) -> dict[str, Any]:
        """The recorded attributes by name, without the None ones; enum members as their values."""
        return {f.name: value.value if isinstance(value, Enum) else value
                for f in dataclasses.fields(self) if (value := getattr(self, f.name)) is not None}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        """The record of stored attributes: unknown names are ignored, missing ones are None."""
        return cls(**{name: attrs[name] for name in TRIAL_FIELDS if name in attrs})

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial) -> TrialRecord:
        """The record of an Optuna trial (frozen or running)."""
        return cls.from_attrs(trial.user_attrs)

    @property
    def role(self) -> Role:
        """What the trial is in its study (:func:`role_of`)."""
        return role_of(self.reference, self.noise_seed, self.confirms)


#: Every trial attribute name; :data:`FRAME_ATTRS` the ones the trials frame has a column for, in order.
TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialRecord))
FRAME_ATTRS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.metadata["frame"])


def role_of(reference: Any, noise_seed: Any, confirms: Any) -> Role:
    """A trial's :class:`Role` from the three attributes that decide it (the one rule; :func:`frame_role` applies
    it to a frame). A confirmation retrains a candidate; a reference net with a noise seed measures seed noise."""
    if confirms is not None:
        return Role.CONFIRMATION
    if reference:
        return Role.REFERENCE if noise_seed is None else Role.NOISE_REPEAT
    return Role.SEARCHED


def role(trial: optuna.trial.FrozenTrial) -> Role:
    """The trial's :class:`Role`."""
    attrs = trial.user_attrs
    return role_of(attrs.get("reference"), attrs.get(NOISE_SEED_ATTR), attrs.get(CONFIRMS_ATTR))


def frame_role(frame: pd.DataFrame) -> pd.Series:
    """:func:`role` for every row of a trials frame (:class:`Role` values), by the same rule as :func:`role_of`."""
    import numpy as np
    import pandas as pd

    confirmation, reference = frame_is_confirmation(frame), frame_is_reference(frame)
    noise = frame_is_noise_repeat(frame)
    roles = np.select([confirmation, noise, reference], [Role.CONFIRMATION.value, Role.NOISE_REPEAT.value,
                                                         Role.REFERENCE.value], Role.SEARCHED.value)
    return pd.Series(roles, index=frame.index, dtype=object)


#: What decides a trial's role (and a noise repeat's seed).
ROLE_FIELDS = ("reference", "reference_name", NOISE_SEED_ATTR, CONFIRMS_ATTR)
#: What a retry of a trial keeps of it: its role, and what queued it (a scaling plan's point, a halving rung's source).
RETRY_FIELDS = (*ROLE_FIELDS, "scaling_direction", "scaling_step", "promoted_from")


def retry_record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """The record a retry of ``trial`` is queued with: the trial it reruns, its role's attributes and what queued
    it (:data:`RETRY_FIELDS`)."""
    record = TrialRecord.from_trial(trial)
    return TrialRecord(retry_of=trial.number, **{name: getattr(record, name) for name in RETRY_FIELDS})


def set_attrs(trial: optuna.Trial, **attrs: Any) -> None:
    """Set trial user attributes by :class:`TrialRecord` field name (an unknown name raises ``TypeError``)."""
    for key, value in TrialRecord(**attrs).to_attrs().items():
        trial.set_user_attr(key, value)


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


def quality_attr(metric: str, zero_cost: str | None = None) -> str:
    """The trial attribute a study ranks by: ``zc_NAME`` for a zero-cost objective, else ``balanced_accuracy`` under
    ``--metric balanced``, else ``accuracy``. The one rule: :attr:`StudySettings.quality` and the pipeline read it.

    >>> quality_attr("balanced"), quality_attr("accuracy", "synflow")
    ('balanced_accuracy', 'zc_synflow')
    """
    if zero_cost is not None:
        return f"zc_{zero_cost}"
    return "balanced_accuracy" if metric == "balanced" else "accuracy"


def quality_key(settings: StudySettings | None) -> str:
    """What a study of ``settings`` maximises (:attr:`StudySettings.quality`); ``accuracy`` for a study without
    stored settings."""
    return "accuracy" if settings is None else settings.quality


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
    """The study's test labels, or None when it has no test split (made before test splits, or
    ``--test-fraction 0``)."""
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


# -- a study's settings -----------------------------------------------------------------------------

OBJECTIVES = ("multi", "accuracy")
SAMPLERS = ("tpe", "nsga2", "random", "grid")
STRATEGIES = tuple(s.value for s in Strategy)
REFERENCE_CHOICES = ("default", "all", "none")
METRICS = ("accuracy", "balanced")
MIN_SPLIT = 2  # every dataset has at least 2 classes: each needs a training and a validation image


@dataclass(frozen=True)
class StudySettings:
    """What defines a study: stored in it (:data:`CONFIG_ATTR`), so every run or worker of the study uses the same.

    Every field is checked here, before a study or a file exists, without torch: a bad setting is one
    :class:`UserError` line naming the option. Readers get a study's with :meth:`from_study`.
    """

    budget: str
    space: str = "mobilenetv2"
    dataset: str = "embedded"
    dataset_limit: int | None = None  # a seeded stratified subset, for quick runs and tests
    epochs: int = 8  # measured: 4 epochs ranked candidates no better than chance within MAdds bins
    batch_size: int = 64
    proxy_size: int = 64
    lr: float = 2e-3
    objective: str = "multi"
    sampler: str = "tpe"
    seed: int = 0
    latency_batch: int = 1
    references: str = "default"  # the papers' scaling family trained alongside: default (<= 2), all, none
    val_fraction: float = 0.2  # share of the images held out for validation (stratified, seeded): ranks candidates
    test_fraction: float = 0.2  # share held out for the test split: reports the final figures, never ranks
    metric: str = "accuracy"  # what a candidate is ranked by: accuracy, or balanced accuracy (imbalanced data)
    noise_repeats: int = 1  # the cheapest reference net retrained with this many other seeds: the seed noise
    strategy: str = "scratch"  # how a candidate gets its accuracy: a :class:`Strategy` value
    supernet_epochs: int = 24  # supernet training epochs (strategy supernet): 3x the 8-epoch proxy
    confirm: int = 3  # Pareto candidates trained from scratch when a supernet study ends

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", check_budget(self.budget))
        if self.objective not in OBJECTIVES and self.zero_cost not in ZERO_COST_PROXIES:
            raise UserError(f"invalid objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)} or "
                            f"zero-cost:NAME with NAME one of {', '.join(ZERO_COST_PROXIES)}")
        for name, value, choices in (("references", self.references, REFERENCE_CHOICES),
                                     ("sampler", self.sampler, SAMPLERS), ("strategy", self.strategy, STRATEGIES),
                                     ("metric", self.metric, METRICS)):
            if value not in choices:
                raise UserError(f"invalid --{name} {value!r}: expected one of {', '.join(choices)}")
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name == "dataset_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"invalid --{name.replace('_', '-')} {value!r}: expected an integer in [{low}, {high}]")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise UserError(f"invalid --lr {self.lr!r}: expected a number in (0, {MAX_LR:g}]")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise UserError(f"invalid --val-fraction {self.val_fraction!r}: expected a number in (0, 1)")
        if not 0 <= self.test_fraction < 1:
            raise UserError(f"invalid --test-fraction {self.test_fraction!r}: expected a number in [0, 1)")
        if self.val_fraction + self.test_fraction >= 0.95:
            raise UserError(f"invalid --val-fraction {self.val_fraction!r} with --test-fraction {self.test_fraction!r}:"
                            " together they must leave at least 5 % of the images for training")
        check_dataset(self.dataset)
        check_split(self.dataset, self.dataset_limit, self.val_fraction, self.test_fraction)
        if self.metric == "balanced" and self.zero_cost is not None:
            raise UserError("--metric balanced ranks by balanced accuracy; a zero-cost objective trains nothing")
        if self.strategy == Strategy.SUPERNET and self.objective != "multi":
            raise UserError(f"--strategy supernet scores with inherited weights; it takes --objective multi, "
                            f"not {self.objective!r}")

    @property
    def zero_cost(self) -> str | None:
        """The zero-cost proxy that replaces accuracy (``--objective zero-cost:NAME``), if any."""
        kind, _, name = self.objective.partition(":")
        return name if kind == "zero-cost" else None

    @property
    def supernet(self) -> bool:
        """Whether candidates are scored with weights inherited from a supernet (``--strategy supernet``)."""
        return self.strategy == Strategy.SUPERNET

    @property
    def quality(self) -> str:
        """What the study maximises: ``accuracy``, ``balanced_accuracy`` (``--metric balanced``) or ``zc_NAME``."""
        return quality_attr(self.metric, self.zero_cost)

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored in a study."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """The settings stored in a study; fields added since it was created take their defaults, except that a
        study made before test splits existed has none (``test_fraction`` 0), so its split stays the same.
        Names it does not know (stored by a later version) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        legacy = {} if "test_fraction" in data else {"test_fraction": 0.0}
        return cls(**{**legacy, **{k: v for k, v in data.items() if k in known}})

    @classmethod
    def from_study(cls, study: Any) -> StudySettings | None:
        """The settings ``study`` (an Optuna study, or its user attributes as a dict) was created with; None for a
        study mobilenet-search did not create."""
        attrs = study if isinstance(study, dict) else study.user_attrs
        stored = attrs.get(CONFIG_ATTR)
        return None if stored is None else cls.from_dict(stored)


def study_settings(study: Any) -> StudySettings | None:
    """:meth:`StudySettings.from_study`, for callers that take a function."""
    return StudySettings.from_study(study)


def check_budget(text: str) -> str:
    """A ``--budget`` in its canonical form: ASCII only (``\\d`` would take Arabic-Indic or full-width digits),
    at most :data:`MAX_BUDGET_CHARS` characters, each limit below :data:`MAX_BUDGET`."""
    if not isinstance(text, str) or not text.isascii() or len(text) > MAX_BUDGET_CHARS:
        shown = text if len(str(text)) <= 40 else f"{str(text)[:40]}..."
        raise UserError(f"invalid --budget {shown!r}: expected ASCII digits and at most {MAX_BUDGET_CHARS} characters, "
                        "e.g. 300M-madds")
    budget = Budget.parse(text)
    for limit in budget.limits:
        if limit.bound > MAX_BUDGET[limit.kind]:
            raise UserError(f"invalid --budget {text!r}: {limit.text} is above {MAX_BUDGET[limit.kind]:.0e} "
                            f"{'ms' if limit.kind == 'latency' else limit.kind}")
    return str(budget)


def check_dataset(source: str) -> None:
    """What of a ``--dataset`` can be checked without reading it: ``synthetic:N`` has ASCII digits and N is
    at most :data:`MAX_SYNTHETIC`; an empty source is refused."""
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"invalid --dataset {source!r}: expected embedded, elpv, mnist, cifar10:ROOT, "
                        "imagefolder:ROOT or synthetic[:N]")
    kind, sep, count = source.partition(":")
    if kind == "synthetic" and sep and not (count.isascii() and count.isdigit() and int(count) <= MAX_SYNTHETIC):
        raise UserError(f"invalid --dataset {source!r}: expected synthetic:N with N an integer in [8, "
                        f"{MAX_SYNTHETIC:,}] (ASCII digits)")


def stratified_counts(counts: list[int], n: int) -> list[int]:
    """How many items of each class a stratified subset of ``n`` takes from classes of ``counts`` items:
    each class's share rounded down, the rest one each to the largest remainders (ties to the earlier class).
    The arithmetic of :func:`mobilenet_search.measure.data.stratified_subset`, without torch; a class of no items
    takes none.

    >>> stratified_counts([3, 3, 2, 2], 3)
    [1, 1, 1, 0]
    """
    total = sum(counts)
    present = [i for i, count in enumerate(counts) if count]
    quotas = {i: counts[i] * n / total for i in present}
    take = {i: math.floor(quotas[i]) for i in present}
    extra = n - sum(take.values())
    for i in sorted(present, key=lambda i: -(quotas[i] - take[i]))[:max(extra, 0)]:  # sorted() is stable
        take[i] += 1
    return [min(take.get(i, 0), count) for i, count in enumerate(counts)]


def check_split(source: str, limit: int | None, val_fraction: float, test_fraction: float = 0.0) -> None:
    """Refuse, by arithmetic alone, a ``--dataset-limit``/``--val-fraction``/``--test-fraction`` that leaves a class
    without a training, validation or test image: at least :data:`MIN_SPLIT` images on each side for any data, and
    for ``synthetic:N`` (4 classes in turn) each class's share of the stratified split exactly
    (:func:`stratified_counts`). Fashion-MNIST's limit keeps training images only (validation and test come from
    its test set): at least one per class."""
    kind, sep, count = source.partition(":")
    if kind == "fashion-mnist":
        if limit is not None and limit < 10:
            raise UserError(f"invalid --dataset-limit {limit}: fashion-mnist has 10 classes; keep at least 10 "
                            "training images")
        return
    if limit is not None:
        val, test = round(limit * val_fraction), round(limit * test_fraction)
        if val < MIN_SPLIT or limit - val - test < MIN_SPLIT or (test_fraction and test < MIN_SPLIT):
            raise UserError(f"invalid --dataset-limit {limit} with --val-fraction {val_fraction:g} and "
                            f"--test-fraction {test_fraction:g}: {limit - val - test} training, {val} validation "
                            f"and {test} test images; every class needs one of each (at least {MIN_SPLIT} of each)")
    if kind != "synthetic":
        return
    total = int(count) if sep else SYNTHETIC_DEFAULT_SIZE
    size = min(total, limit or total)
    counts = [len(range(c, size, SYNTHETIC_CLASSES)) for c in range(SYNTHETIC_CLASSES)]
    val = stratified_counts(counts, round(size * val_fraction))
    rest = [c - v for c, v in zip(counts, val, strict=True)]
    test = stratified_counts(rest, round(size * test_fraction)) if test_fraction else [0] * SYNTHETIC_CLASSES
    train = [r - t for r, t in zip(rest, test, strict=True)]
    sides = [("validation", val), ("training", train)] + ([("test", test)] if test_fraction else [])
    for side, per_class in sides:
        if not all(per_class):
            what = f"--dataset-limit {limit} with " if limit else ""
            raise UserError(f"invalid {what}--val-fraction {val_fraction:g} and --test-fraction {test_fraction:g}: "
                            f"a class of {source!r} gets no {side} image")


def is_cached(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's record is a copy of an earlier trial's (``cached_from`` its number): on no front, in no
    count of trained nets; it still counts towards ``--trials``, as the sampler's proposal it is."""
    return TrialRecord.from_trial(trial).cached_from is not None


def frame_is_cached(frame: pd.DataFrame) -> pd.Series:
    """:func:`is_cached` for every row of a trials frame."""
    import pandas as pd

    if CACHED_FROM_ATTR not in frame:
        return pd.Series(False, index=frame.index)
    return frame[CACHED_FROM_ATTR].notna()

"""How sure a study's numbers are: intervals, paired tests and noise floors (numpy and scipy only).

Every trained trial records which validation images it got right (``val_correct``, see
:mod:`mobilenet_search.results.records`). The images are the same, in the same order, for every
trial of a study, so two trials' correctness vectors are paired. That gives three kinds of
uncertainty, each handled here:

- a trial's own accuracy on a finite validation split: :func:`wilson_interval`, and for balanced
  accuracy :func:`bootstrap_balanced_accuracy_interval`;
- two trials compared on the same images: :func:`mcnemar_exact` on the images where they disagree,
  far more sensitive than comparing two accuracies, and :func:`compare`, which also asks that the
  difference exceed the seed-to-seed noise of retraining (:func:`seed_noise`, :func:`noise_floor`);
- whole fronts: :func:`hypervolume_2d` and :func:`bootstrap_hypervolume_interval`, which resamples
  the validation images once per replicate and applies that resample to every trial, so the pairing
  between trials is kept.

Bootstraps take an explicit ``seed`` and give the same interval for the same inputs, run after run.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

# scipy.stats is imported inside the functions that need it (Wilson, McNemar's binomial, Kendall's tau):
# the trials frame imports this module, and scipy.stats would add about a second to every start.

#: What :func:`compare` answers.
VERDICTS = ("better", "worse", "indistinguishable")
_CHUNK = 1000  # trials or replicates per block of the bootstraps: about 8 MB of float64 per 1,000 x 1,000


class Interval(NamedTuple):
    """A two-sided confidence interval."""

    low: float
    high: float


class Estimate(NamedTuple):
    """A statistic with its confidence interval."""

    value: float
    low: float
    high: float


class McNemar(NamedTuple):
    """An exact McNemar test: two-sided p-value and the discordant counts.

    ``b01``: images that ``a`` got wrong and ``b`` right; ``b10``: ``a`` right and ``b`` wrong.
    """

    p_value: float
    b01: int
    b10: int


@dataclass(frozen=True)
class Verdict:
    """Whether ``a`` is better than, worse than or indistinguishable from ``b`` (see :func:`compare`)."""

    verdict: str  # one of VERDICTS
    p_value: float  # exact McNemar, two-sided
    margin: float  # accuracy of a minus accuracy of b, on the same images
    b01: int  # images a got wrong and b right
    b10: int  # images a got right and b wrong
    n: int  # validation images
    noise_margin: float | None  # how far |margin| must exceed to be beyond seed noise; None: seed noise unknown


class HypervolumeIntervals(NamedTuple):
    """Bootstrap intervals of two fronts' hypervolumes and of their difference (searched minus reference)."""

    searched: Interval
    reference: Interval
    difference: Interval


@functools.lru_cache(maxsize=32)
def _z(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 at 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _bool_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one vector of per-image correctness, not shape {array.shape}")
    return array.astype(bool)


def _percentiles(values: np.ndarray, confidence: float, axis: int = 0) -> tuple[Any, Any]:
    """Percentile-interval bounds along ``axis``, the replicates' axis."""
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2], axis=axis)
    return low, high


# -- one trial --------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a binomial proportion (no continuity correction), as scipy's ``binomtest`` gives it.

    Unlike the normal-approximation interval it stays inside [0, 1] and keeps close to its nominal
    coverage near 0 and 1 and for small ``n``.

    >>> low, high = wilson_interval(394, 525)  # 75 % of the embedded data's validation split
    >>> round(low, 4), round(high, 4)
    (0.7117, 0.7856)
    """
    from scipy import stats

    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, not {successes} of {n}")
    if not 0 < confidence < 1:  # scipy answers NaN bounds there
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    low, high = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(low), float(high))


def _stratified_counts(labels: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """How often each image is drawn in each replicate (resamples x images), resampling within each class."""
    counts = np.zeros((resamples, len(labels)))
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        counts[:, where] = rng.multinomial(len(where), np.full(len(where), 1 / len(where)), size=resamples)
    return counts


def balanced_accuracy(correct: Any, labels: Any) -> float:
    """Mean per-class recall over the classes present in ``labels``.

    >>> balanced_accuracy([True, True, True, False], [0, 0, 0, 1])
    0.5
    """
    correct, labels = _bool_vector(correct, "correct"), np.asarray(labels).ravel()
    return float(np.mean([correct[labels == label].mean() for label in np.unique(labels)]))


def bootstrap_balanced_accuracy_interval(correct: Any, labels: Any, *, seed: int, resamples: int = 1000,
                                         confidence: float = 0.95) -> Interval | tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of balanced accuracy, resampling validation images within each class.

    Resampling within each class keeps every class's image count fixed, as balanced accuracy (a mean
    of per-class recalls) assumes, and never leaves a class empty. ``correct`` is one correctness
    vector, or a matrix of them (trials x images) for trials of one study: every row then gets the same
    replicates (one matrix product), and the result is two arrays, lows and highs, one per row.

    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 525)
    >>> correct = rng.random(525) < 0.8
    >>> bootstrap_balanced_accuracy_interval(correct, labels, seed=0) == \\
    ...     bootstrap_balanced_accuracy_interval(correct, labels, seed=0)
    True
    """
    matrix = np.asarray(correct, dtype=bool)
    labels = np.asarray(labels).ravel()
    if matrix.ndim not in (1, 2) or matrix.shape[-1] != len(labels) or len(labels) == 0:
        raise ValueError(f"correctness of shape {matrix.shape} does not match {len(labels)} labels")
    classes, inverse, class_sizes = np.unique(labels, return_inverse=True, return_counts=True)
    counts = _stratified_counts(labels, np.random.default_rng(seed), resamples)
    # Balanced accuracy of a replicate: sum over images of count * correct / (classes * class size).
    # float32: half the time of float64, and 1e-7 is far below any interval's width.
    weights = (counts / (len(classes) * class_sizes[inverse])).T.astype(np.float32)
    rows = matrix.reshape(-1, len(labels))
    low, high = np.empty(len(rows)), np.empty(len(rows))
    for start in range(0, len(rows), _CHUNK):  # chunk x resamples at a time: bounded memory on big studies
        chunk = slice(start, start + _CHUNK)
        low[chunk], high[chunk] = _percentiles(rows[chunk].astype(np.float32) @ weights, confidence, axis=1)
    if matrix.ndim == 1:
        return Interval(float(low[0]), float(high[0]))
    return low, high


# -- two trials -------------------------------------------------------------------------------


def mcnemar_exact(a_correct: Any, b_correct: Any) -> McNemar:
    """Exact McNemar test of two classifiers scored on the same images.

    Only the images where they disagree carry information: under the null hypothesis (same
    accuracy) each disagreement goes either way with probability 1/2, so the two-sided p-value is
    a binomial test of ``b10`` successes in ``b01 + b10`` trials, ``min(1, 2 P(X <= min(b01, b10)))``.
    No disagreement at all gives p = 1.

    >>> mcnemar_exact([True, True, True, False], [True, False, False, False])
    McNemar(p_value=0.5, b01=0, b10=2)
    """
    from scipy import stats

    a, b = _bool_vector(a_correct, "a_correct"), _bool_vector(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {len(a)} and {len(b)} images")
    b01, b10 = int(np.count_nonzero(~a & b)), int(np.count_nonzero(a & ~b))
    discordant = b01 + b10
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(b10, discordant, 0.5).pvalue)
    return McNemar(p_value, b01, b10)


def seed_noise_margin(seed_sd: float, alpha: float = 0.05) -> float:
    """The accuracy difference two single-seed runs of the same architecture stay within, 1 - alpha of the time.

    Each run carries seed-to-seed noise of sd ``seed_sd``; the difference of two independent runs
    has sd ``sqrt(2) * seed_sd``, so the two-sided bound is ``z(1 - alpha/2) * sqrt(2) * seed_sd``
    (2.77 seed_sd at alpha 0.05).

    >>> round(seed_noise_margin(0.01), 4)
    0.0277
    """
    return _z(1 - alpha) * math.sqrt(2) * seed_sd


def compare(a_correct: Any, b_correct: Any, *, seed_sd: float | None = None, alpha: float = 0.05) -> Verdict:
    """Whether network ``a`` is better than, worse than, or indistinguishable from ``b`` on the same images.

    The rule: ``better`` when (1) the exact McNemar test rejects equal accuracy at ``alpha`` and
    a's accuracy is the higher, and (2) when ``seed_sd`` is known, the margin also exceeds what
    retraining alone moves an accuracy difference by, :func:`seed_noise_margin` (2.77 x ``seed_sd``
    at alpha 0.05). ``worse`` is the mirror image; anything else is ``indistinguishable``.

    Why both: McNemar asks whether these two trained networks differ on images like the validation
    images, but says nothing of training noise; two runs of one architecture with different seeds
    can disagree on enough images to differ by about ``sqrt(2) * seed_sd``. Without ``seed_sd`` the
    verdict covers validation noise only.

    The test is of the two trained networks given. When ``a`` was picked as the best of many
    candidates on these same images, its margin is optimistic; retrain it with a few seeds to confirm.

    >>> rng = np.random.default_rng(0)
    >>> good, chance = rng.random(525) < 0.9, rng.random(525) < 0.5
    >>> compare(good, chance).verdict, compare(chance, good).verdict, compare(good, good).verdict
    ('better', 'worse', 'indistinguishable')
    """
    test = mcnemar_exact(a_correct, b_correct)
    n = len(np.asarray(a_correct))
    margin = (test.b10 - test.b01) / n
    noise_margin = None if seed_sd is None else seed_noise_margin(seed_sd, alpha)
    beyond_noise = noise_margin is None or abs(margin) > noise_margin
    verdict = "indistinguishable"
    if test.p_value < alpha and beyond_noise and margin != 0:
        verdict = "better" if margin > 0 else "worse"
    return Verdict(verdict, test.p_value, margin, test.b01, test.b10, n, noise_margin)


# -- noise floor ------------------------------------------------------------------------------


def seed_noise(accuracies_by_seed: Sequence[float] | Mapping[Any, Sequence[float]]) -> float | None:
    """Seed-to-seed standard deviation of accuracy: the same network retrained with other seeds.

    A sequence (one network, one accuracy per seed) gives its sample standard deviation. A mapping
    of network to accuracies gives the pooled standard deviation,
    ``sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1))``, of the networks with at least two runs. None when
    no network has two runs.

    >>> round(seed_noise([0.7543, 0.7810, 0.7581, 0.7543]), 3)  # MobileNetV2 0.75/160, seeds 0-3 (weight-sharing.md)
    0.013
    """
    groups = accuracies_by_seed.values() if isinstance(accuracies_by_seed, Mapping) else [accuracies_by_seed]
    squares, dof = 0.0, 0
    for group in groups:
        values = np.asarray(group, dtype=float)
        if len(values) >= 2:
            squares += float(np.sum((values - values.mean()) ** 2))
            dof += len(values) - 1
    return None if dof == 0 else math.sqrt(squares / dof)


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` images: ``sqrt(p (1 - p) / n)``.

    >>> round(binomial_se(0.75, 525), 4)  # the embedded data's validation split (weight-sharing.md)
    0.0189
    """
    return math.sqrt(accuracy * (1 - accuracy) / n)


def noise_floor(accuracy: float, n: int, seed_sd: float | None = None) -> float:
    """The larger of the two noises on one accuracy: seed-to-seed sd, and the binomial se of ``n`` images.

    Differences well inside it are noise, whatever a single run says.

    >>> noise_floor(0.75, 525, seed_sd=0.012) == binomial_se(0.75, 525)
    True
    """
    return max(seed_sd or 0.0, binomial_se(accuracy, n))


# -- fronts -----------------------------------------------------------------------------------


def _hypervolumes(accuracy: np.ndarray, cost: np.ndarray, reference_point: Sequence[float]) -> np.ndarray:
    """Hypervolume of each row of ``accuracy`` (replicates x points) with the points' ``cost``.

    Sorted by cost, each point adds the strip between the best accuracy seen at lower cost and its own,
    as wide as from its cost to the reference cost. Ties in cost add the same whatever their order.
    """
    accuracy_ref, cost_ref = float(reference_point[0]), float(reference_point[1])
    if accuracy.shape[-1] == 0:
        return np.zeros(accuracy.shape[:-1])
    order = np.argsort(cost, kind="stable")
    accuracy, width = accuracy[..., order], np.clip(cost_ref - cost[order], 0.0, None)
    best_before = np.maximum.accumulate(accuracy, axis=-1)
    best_before = np.concatenate([np.full(accuracy.shape[:-1] + (1,), accuracy_ref),
                                  np.maximum(best_before[..., :-1], accuracy_ref)], axis=-1)
    return np.sum(width * np.clip(accuracy - best_before, 0.0, None), axis=-1)


def hypervolume_2d(points: Any, reference_point: Sequence[float]) -> float:
    """Area dominated by two-objective points, accuracy maximised and cost minimised, up to a reference point.

    ``points`` is (accuracy, cost) rows, the cost usually MAdds over a reference MAdds, and
    ``reference_point`` is (accuracy, cost): the least accuracy and the most cost that count.
    Points no better than it in either objective add nothing; dominated points add nothing.

    >>> round(hypervolume_2d([(0.5, 0.2), (0.8, 0.6), (0.4, 0.5)], (0.0, 1.0)), 6)  # 0.5 * 0.8 + 0.3 * 0.4
    0.52
    """
    array = np.asarray(points, dtype=float).reshape(-1, 2)
    return float(_hypervolumes(array[:, 0], array[:, 1], reference_point))


def _bootstrap_accuracies(correct: np.ndarray, counts: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Each trial's accuracy in each replicate (replicates x trials); with ``labels``, its balanced accuracy
    (each class's recall over that class's drawn images, averaged over the classes)."""
    if labels is None:
        return counts @ correct.T.astype(float) / counts.shape[1]
    classes = np.unique(labels)
    recalls = [counts[:, labels == c] @ correct[:, labels == c].T.astype(float)
               / counts[:, labels == c].sum(1, keepdims=True) for c in classes]
    return np.mean(recalls, axis=0)


def bootstrap_hypervolume_interval(searched_correct: Any, searched_cost: Any, reference_correct: Any,
                                   reference_cost: Any, *, seed: int, reference_point: Sequence[float] = (0.0, 1.0),
                                   resamples: int = 1000, confidence: float = 0.95,
                                   labels: Any = None) -> HypervolumeIntervals:
    """Bootstrap intervals of the searched and the reference fronts' hypervolumes and of their difference.

    ``*_correct`` are correctness matrices (trials x images, the same images for every row) of every
    trained trial that could be on each front, not only the observed front; ``*_cost`` their costs
    (normalised as in :func:`hypervolume_2d`). Each replicate draws validation images with
    replacement once and applies the draw to every trial, which keeps the pairing between trials;
    each trial's accuracy, hence each front and its hypervolume, is recomputed from it. Costs are
    exact and stay fixed. Validation noise only: seed-to-seed noise is not in these intervals.
    With ``labels`` (one per image) the fronts are of balanced accuracy, and images are drawn within
    each class (a stratified bootstrap, as for :func:`bootstrap_balanced_accuracy_interval`).
    """
    searched = np.asarray(searched_correct, dtype=bool)
    reference = np.asarray(reference_correct, dtype=bool)
    searched_cost, reference_cost = np.asarray(searched_cost, float).ravel(), np.asarray(reference_cost, float).ravel()
    width = searched.shape[-1] if searched.size else reference.shape[-1]
    searched, reference = searched.reshape(-1, width), reference.reshape(-1, width)
    if len(searched) != len(searched_cost) or len(reference) != len(reference_cost):
        raise ValueError("each trial needs one correctness vector and one cost")
    if width == 0:
        raise ValueError("no validation images to resample")
    rng = np.random.default_rng(seed)
    if labels is None:
        counts = rng.multinomial(width, np.full(width, 1 / width), size=resamples).astype(float)
    else:
        labels = np.asarray(labels).ravel()
        counts = _stratified_counts(labels, rng, resamples).astype(float)
    searched_hv, reference_hv = np.empty(resamples), np.empty(resamples)
    step = max(1, _CHUNK * _CHUNK // max(1, len(searched)))  # replicates x trials stays about 1,000 x 1,000
    for start in range(0, resamples, step):
        block = slice(start, start + step)
        searched_hv[block] = _hypervolumes(_bootstrap_accuracies(searched, counts[block], labels), searched_cost,
                                           reference_point)
        reference_hv[block] = _hypervolumes(_bootstrap_accuracies(reference, counts[block], labels), reference_cost,
                                            reference_point)
    return HypervolumeIntervals(*(Interval(*map(float, _percentiles(values, confidence)))
                                  for values in (searched_hv, reference_hv, searched_hv - reference_hv)))


# -- ranking ----------------------------------------------------------------------------------


def kendall_tau_interval(x: Any, y: Any, *, seed: int, resamples: int = 1000, confidence: float = 0.95) -> Estimate:
    """Kendall's tau-b of ``x`` and ``y`` with a percentile-bootstrap interval over candidates.

    Candidates (pairs ``x[i], y[i]``) are drawn with replacement (``scipy.stats.bootstrap``, paired);
    replicates whose tau is undefined (all of one variable tied) are left out. For proxy fidelity: how
    well a cheap score ranks the candidates that a longer training ranks, and how sure that is with a
    dozen candidates.

    >>> estimate = kendall_tau_interval([1, 2, 3, 4, 5], [1, 3, 2, 4, 5], seed=0, resamples=200)
    >>> round(estimate.value, 2), estimate.low <= estimate.value <= estimate.high
    (0.8, True)
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need at least 3 paired values, not {len(x)} and {len(y)}")
    value = float(stats.kendalltau(x, y).statistic)
    with warnings.catch_warnings():
        # A replicate with one variable all tied has no tau (NaN), and then neither has scipy's own interval,
        # which it says with a warning; the interval below leaves those replicates out instead.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap((x, y), lambda a, b: stats.kendalltau(a, b).statistic, paired=True,
                                 vectorized=False, n_resamples=resamples, method="percentile",
                                 rng=np.random.default_rng(seed))
    replicates = result.bootstrap_distribution
    replicates = replicates[~np.isnan(replicates)]
    if len(replicates) == 0:
        return Estimate(value, math.nan, math.nan)
    low, high = _percentiles(replicates, confidence)
    return Estimate(value, float(low), float(high))


def validation_noise(accuracy: float, size: int, seed_sd: float | None = None,
                     confidence: float = 0.95) -> dict[str, float]:
    """The validation split's own noise at ``accuracy`` on ``size`` images, and the noise floor with ``seed_sd``:
    ``at_accuracy``, ``validation_se``, ``validation_half_width`` (of the Wilson interval) and ``floor``.

    >>> round(validation_noise(0.75, 525)["validation_se"], 3)
    0.019
    """
    low, high = wilson_interval(round(accuracy * size), size, confidence)
    return {"at_accuracy": accuracy, "validation_se": binomial_se(accuracy, size),
            "validation_half_width": (high - low) / 2, "floor": noise_floor(accuracy, size, seed_sd)}

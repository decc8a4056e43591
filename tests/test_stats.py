"""Intervals, paired tests, hypervolume and noise floors (results/stats.py), checked against scipy and Optuna."""

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume  # private: only to cross-check ours
from scipy import stats as sp
from scipy.stats.contingency import crosstab

from mobilenet_search.results.stats import (
    binomial_se,
    bootstrap_balanced_accuracy_interval,
    bootstrap_hypervolume_interval,
    compare,
    hypervolume_2d,
    kendall_tau_interval,
    mcnemar_exact,
    noise_floor,
    seed_noise,
    seed_noise_margin,
    wilson_interval,
)

VAL_SIZE = 525  # the embedded data's validation split (notes/weight-sharing.md)


def _rerun(correct: np.ndarray, lost: int, gained: int, rng: np.random.Generator) -> np.ndarray:
    """Another run of the same network: ``lost`` right images now wrong, ``gained`` wrong images now right."""
    out = correct.copy()
    out[rng.choice(np.flatnonzero(correct), lost, replace=False)] = False
    out[rng.choice(np.flatnonzero(~correct), gained, replace=False)] = True
    return out


# -- the hand-written versions these functions replaced (issue 23), kept as references ------------


def _old_wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    z = sp.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return 0.0 if successes == 0 else centre - half, 1.0 if successes == n else centre + half


def _old_mcnemar_p_value(b01: int, b10: int) -> float:
    discordant = b01 + b10
    return 1.0 if discordant == 0 else min(1.0, 2 * float(sp.binom.cdf(min(b01, b10), discordant, 0.5)))


def _old_kendall_tau_interval(x, y, seed: int, resamples: int, confidence: float = 0.95) -> tuple[float, float, float]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    replicates = np.array([sp.kendalltau(x[rows], y[rows]).statistic for rows in draws], dtype=float)
    replicates = replicates[~np.isnan(replicates)]
    alpha = 1 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return sp.kendalltau(x, y).statistic, low, high


def _wilson_cases() -> list[tuple[int, int, float]]:
    """Edge cases (no success, all, one trial) at three confidences, then random counts and confidences."""
    cases = [(k, n, c) for k, n in [(0, 10), (10, 10), (3, 17), (394, 525), (1, 1), (50, 100), (262, 525)]
             for c in (0.95, 0.9, 0.99)]
    rng = np.random.default_rng(10)
    for _ in range(300):
        n = int(rng.integers(1, 5000))
        cases.append((int(rng.integers(0, n + 1)), n, float(rng.choice([0.8, 0.95, rng.uniform(0.5, 0.999)]))))
    return cases


def test_wilson_interval_equals_the_hand_written_formula_it_replaced():
    for successes, n, confidence in _wilson_cases():
        low, high = wilson_interval(successes, n, confidence)
        assert (low, high) == pytest.approx(_old_wilson_interval(successes, n, confidence), abs=1e-12)
        assert 0 <= low <= successes / n <= high <= 1


def test_wilson_interval_rejects_impossible_counts_and_confidences():
    for successes, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            wilson_interval(successes, n)
    with pytest.raises(ValueError):
        wilson_interval(3, 5, confidence=1.0)


def test_mcnemar_exact_counts_the_discordant_pairs_and_equals_the_hand_written_binomial_it_replaced():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 800))
        a = rng.random(n) < rng.uniform(0.05, 0.95)
        b = np.where(rng.random(n) < rng.uniform(0, 0.6), ~a, a)
        test = mcnemar_exact(a, b)
        # The 2 x 2 table by scipy: rows a wrong/right, columns b wrong/right.
        table = crosstab(a, b, levels=([False, True], [False, True])).count
        assert (test.b01, test.b10) == (table[0, 1], table[1, 0])
        assert test.p_value == pytest.approx(_old_mcnemar_p_value(test.b01, test.b10), rel=1e-12, abs=1e-300)


def test_mcnemar_exact_without_disagreements_and_with_mismatched_lengths():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == (1.0, 0, 0)
    with pytest.raises(ValueError):
        mcnemar_exact(same, same[:2])


def test_ninety_percent_right_is_better_than_chance_and_chance_worse():
    rng = np.random.default_rng(1)
    good, chance = rng.random(VAL_SIZE) < 0.9, rng.random(VAL_SIZE) < 0.5
    verdict = compare(good, chance, seed_sd=0.012)
    assert verdict.verdict == "better" and verdict.p_value < 1e-10
    assert verdict.margin == pytest.approx(good.mean() - chance.mean())
    assert verdict.b10 - verdict.b01 == good.sum() - chance.sum() and verdict.n == VAL_SIZE
    assert compare(chance, good, seed_sd=0.012).verdict == "worse"


def test_two_runs_of_the_same_architecture_are_indistinguishable():
    rng = np.random.default_rng(2)
    first = rng.random(VAL_SIZE) < 0.75
    for lost, gained in [(0, 0), (2, 2), (6, 4), (12, 8), (25, 25)]:
        second = _rerun(first, lost, gained, rng)
        verdict = compare(second, first, seed_sd=0.012)
        assert verdict.verdict == "indistinguishable" and verdict.p_value > 0.3, (lost, gained)
        assert (verdict.b01, verdict.b10) == (lost, gained)


def test_a_significant_margin_inside_seed_noise_is_indistinguishable():
    # 30 images that only a gets right and 10 that only b does: McNemar rejects (p ~ 0.002), margin 20/525 = 0.038.
    a = np.zeros(VAL_SIZE, dtype=bool)
    b = np.zeros(VAL_SIZE, dtype=bool)
    a[:300], b[:300] = True, True
    a[300:330] = True
    b[330:340] = True
    without = compare(a, b)
    assert without.verdict == "better" and without.p_value < 0.01 and without.noise_margin is None
    assert compare(a, b, seed_sd=0.005).verdict == "better"  # needs 2.77 x 0.005 = 0.014
    noisy = compare(a, b, seed_sd=0.017)  # the 1.0/224 net's seed sd: needs 0.047
    assert noisy.verdict == "indistinguishable" and noisy.noise_margin == pytest.approx(seed_noise_margin(0.017))
    assert seed_noise_margin(0.01) == pytest.approx(sp.norm.ppf(0.975) * np.sqrt(2) * 0.01)


def test_bootstrap_balanced_accuracy_interval_is_seeded_and_reproducible():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, VAL_SIZE)
    correct = rng.random(VAL_SIZE) < np.array([0.9, 0.6, 0.3])[labels]
    first = bootstrap_balanced_accuracy_interval(correct, labels, seed=7)
    assert first == bootstrap_balanced_accuracy_interval(correct, labels, seed=7)
    assert first != bootstrap_balanced_accuracy_interval(correct, labels, seed=8)
    estimate = np.mean([correct[labels == k].mean() for k in range(3)])
    assert first.low < estimate < first.high and first.high - first.low < 0.15
    # Rows of a matrix get the same replicates as one vector with the same seed.
    other = rng.random(VAL_SIZE) < 0.5
    lows, highs = bootstrap_balanced_accuracy_interval(np.stack([correct, other]), labels, seed=7)
    assert (lows[0], highs[0]) == pytest.approx(first)
    assert bootstrap_balanced_accuracy_interval(np.ones(VAL_SIZE, bool), labels, seed=0) == pytest.approx((1, 1))


def test_hypervolume_2d_matches_optuna_on_random_fronts():
    rng = np.random.default_rng(4)
    for _ in range(100):
        m = int(rng.integers(1, 40))
        points = np.column_stack([rng.random(m), rng.uniform(0, 1.2, m)])
        if rng.random() < 0.3:
            points = np.round(points, 1)  # ties in either objective
        inside = (points[:, 0] > 0) & (points[:, 1] < 1)  # Optuna wants every point to dominate the reference
        losses = np.column_stack([-points[inside, 0], points[inside, 1]])
        expected = compute_hypervolume(losses, np.array([0.0, 1.0])) if inside.any() else 0.0
        assert hypervolume_2d(points, (0.0, 1.0)) == pytest.approx(expected, abs=1e-12)


def test_hypervolume_2d_of_a_hand_made_front_and_an_empty_one():
    # 0.5 * (1 - 0.2) + (0.8 - 0.5) * (1 - 0.6); (0.4, 0.5) is dominated, (0.9, 1.0) at the bound
    assert hypervolume_2d([(0.5, 0.2), (0.8, 0.6), (0.4, 0.5), (0.9, 1.0)], (0, 1)) == pytest.approx(0.52)
    assert hypervolume_2d([(0.5, 0.2)], (0.6, 1.0)) == 0  # below the reference accuracy
    assert hypervolume_2d(np.empty((0, 2)), (0, 1)) == 0


def test_bootstrap_hypervolume_keeps_the_pairing_and_is_seeded():
    rng = np.random.default_rng(5)
    correct = rng.random((6, VAL_SIZE)) < rng.uniform(0.5, 0.9, (6, 1))
    cost = rng.uniform(0.05, 0.9, 6)
    same = bootstrap_hypervolume_interval(correct, cost, correct, cost, seed=0, resamples=300)
    assert same.difference == (0.0, 0.0)  # the same resample for both: identical fronts never differ
    assert same.searched == same.reference
    point = hypervolume_2d(np.column_stack([correct.mean(1), cost]), (0, 1))
    assert same.searched.low < point < same.searched.high
    first = bootstrap_hypervolume_interval(correct, cost, correct[:2], cost[:2], seed=3, resamples=300)
    assert first == bootstrap_hypervolume_interval(correct, cost, correct[:2], cost[:2], seed=3, resamples=300)
    assert first.difference.low >= 0  # a superset's front dominates at least as much, replicate by replicate
    empty = bootstrap_hypervolume_interval(correct, cost, np.empty((0, VAL_SIZE)), [], seed=0, resamples=50)
    assert empty.reference == (0.0, 0.0) and empty.difference == empty.searched


def test_kendall_tau_interval_is_scipys_tau_with_a_seeded_interval():
    rng = np.random.default_rng(6)
    x = rng.random(12)
    y = x + rng.normal(0, 0.2, 12)
    estimate = kendall_tau_interval(x, y, seed=1, resamples=400)
    assert estimate.value == pytest.approx(sp.kendalltau(x, y).statistic)
    assert estimate.low <= estimate.value <= estimate.high
    assert estimate == kendall_tau_interval(x, y, seed=1, resamples=400)
    assert kendall_tau_interval(x, x, seed=0, resamples=100) == pytest.approx((1, 1, 1))
    with pytest.raises(ValueError):
        kendall_tau_interval([1, 2], [2, 1], seed=0)


def test_seed_noise_of_the_published_repeats():
    # notes/weight-sharing.md, default proxy, seeds 0-3: 0.762 +- 0.013 and 0.769 +- 0.017
    mid = [0.7543, 0.7810, 0.7581, 0.7543]
    large = [0.7943, 0.7562, 0.7638, 0.7619]
    assert round(seed_noise(mid), 3) == 0.013 and round(seed_noise(large), 3) == 0.017
    assert seed_noise(mid) == pytest.approx(np.std(mid, ddof=1))
    pooled = seed_noise({"0.75/160": mid, "1.0/224": large, "single run": [0.7]})
    assert pooled == pytest.approx(np.sqrt((np.var(mid, ddof=1) + np.var(large, ddof=1)) / 2))
    assert seed_noise([0.7]) is None and seed_noise({}) is None


def test_noise_floor_is_the_larger_of_seed_and_validation_noise():
    # notes/weight-sharing.md: at 0.75 on 525 images the binomial se is about 0.019; seed sd about 0.012
    assert binomial_se(0.75, VAL_SIZE) == pytest.approx(0.019, abs=5e-4)
    assert noise_floor(0.75, VAL_SIZE, 0.012) == binomial_se(0.75, VAL_SIZE)
    assert noise_floor(0.75, VAL_SIZE, 0.03) == 0.03
    assert noise_floor(0.75, VAL_SIZE) == binomial_se(0.75, VAL_SIZE)


def test_kendall_tau_interval_equals_the_hand_written_bootstrap_on_random_cases():
    # scipy.stats.bootstrap(paired=True) draws the same candidate indices from the same generator as the old loop,
    # so the intervals are the same, including cases with ties where some replicates have no tau and are left out.
    rng = np.random.default_rng(12)
    for case in range(24):
        n = int(rng.integers(3, 25))
        x = rng.random(n)
        y = x + rng.normal(0, rng.uniform(0.05, 1.0), n)
        if case % 3 == 0:
            x, y = np.round(x, 1), np.round(y, 1)
        if case % 4 == 0:
            x = rng.integers(0, 2, n).astype(float)  # two values: many replicates all tied
        estimate = kendall_tau_interval(x, y, seed=case, resamples=300)
        assert tuple(estimate) == pytest.approx(_old_kendall_tau_interval(x, y, case, 300), abs=1e-12, nan_ok=True)

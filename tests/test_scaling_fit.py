"""The saturating fit, its bootstrap bands, the knee and the compound coefficients (results/scaling_fit.py)."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from mobilenet_search.results.scaling_fit import (
    Curve,
    Point,
    best_coefficients,
    fit_curve,
    fit_direction,
    plateau_summary,
    predict,
)

BASE = 10e6
MADDS = [BASE * 2 ** k for k in range(6)]


def _truth(a=0.85, b=0.35, c=0.8):
    return Curve(a, b, c, BASE)


def _points(truth, images=4000, seeds=2, seed=1):
    """Per-image correctness drawn from the true curve: each image right with the predicted probability."""
    rng = np.random.default_rng(seed)
    return [Point(m, rng.random((seeds, images)) < truth.predict(m)) for m in MADDS]


@pytest.mark.parametrize("a,b,c", [(0.85, 0.35, 0.8), (0.6, 0.2, 0.4), (0.95, 0.5, 1.6)])
def test_exact_accuracies_give_back_their_coefficients(a, b, c):
    truth = _truth(a, b, c)
    curve = fit_curve(MADDS, truth.predict(MADDS), BASE, floor=0.1)
    assert curve[:3] == pytest.approx((a, b, c), abs=1e-4)


def test_the_fit_agrees_with_scipy_curve_fit_on_noisy_points():
    rng = np.random.default_rng(0)
    y = _truth().predict(MADDS) + rng.normal(0, 0.01, len(MADDS))
    ours = fit_curve(MADDS, y, BASE)
    x = np.asarray(MADDS) / BASE
    theirs, _ = curve_fit(lambda x, a, b, c: a - b * x ** (-c), x, y, p0=(0.9, 0.3, 1.0))
    assert ours[:3] == pytest.approx(tuple(theirs), rel=1e-3)


def test_the_plateau_never_falls_below_the_trivial_floor():
    flat = [0.3, 0.31, 0.29, 0.3, 0.3, 0.31]  # a net that learned nothing at any size, floor 0.5
    assert fit_curve(MADDS, flat, BASE, floor=0.5).plateau >= 0.5


def test_bootstrap_intervals_cover_the_true_coefficients_of_simulated_trials():
    truth = _truth()
    fit = fit_direction(_points(truth), BASE, floor=0.1, noise=0.01, resamples=100)
    low, high = fit["plateau_interval"]
    assert low <= truth.plateau <= high and high - low < 0.1
    first = truth.gain_per_doubling()
    low, high = fit["gain_first_doubling_interval"]
    assert low <= first <= high
    band = fit["band"]
    inside = [lo <= t <= hi for lo, t, hi in zip(band["low"], truth.predict(band["madds"]), band["high"], strict=True)]
    assert sum(inside) >= 0.9 * len(inside)
    assert fit["measured_madds"] == [BASE, MADDS[-1]] and [p["seeds"] for p in fit["points"]] == [2] * 6


def test_the_knee_is_where_the_prediction_comes_within_the_noise_floor_of_the_plateau():
    curve = _truth()
    knee = curve.knee(0.02)
    assert curve.plateau - curve.predict(knee) == pytest.approx(0.02)
    assert curve.plateau - curve.predict(0.99 * knee) > 0.02  # cheaper nets are further from it
    assert Curve(0.8, 0.01, 1.0, BASE).knee(0.02) == BASE  # already within noise at the base
    assert Curve(0.8, 0.5, 0.001, BASE).knee(0.01) == float("inf")  # a curve that never bends has no knee
    flat = fit_curve(MADDS, [1.0] * len(MADDS), BASE)  # every image right at every size: nothing to gain
    assert flat.knee(0.001) == BASE and flat.plateau == pytest.approx(1.0)


def test_predict_gives_the_curve_and_an_interval_around_it():
    fit = fit_direction(_points(_truth()), BASE, floor=0.1, noise=0.01, resamples=50)
    value, (low, high) = predict(fit, 3 * BASE)
    assert low <= value <= high
    assert value == pytest.approx(float(_truth().predict(3 * BASE)), abs=0.02)


def test_plateau_summary_picks_the_cheapest_knee_among_the_highest_plateaus():
    fits = {"width": {"plateau": 0.80, "knee": 40e6, "knee_measured": True},
            "depth": {"plateau": 0.795, "knee": 20e6, "knee_measured": True},
            "resolution": {"plateau": 0.70, "knee": 5e6, "knee_measured": True}}
    summary = plateau_summary(fits, noise=0.01)
    assert summary["directions"] == ["depth", "width"] and summary["cheapest_direction"] == "depth"
    assert summary["knee"] == 20e6


def test_best_coefficients_names_the_most_accurate_and_those_tied_with_it():
    rng = np.random.default_rng(2)
    candidates = [((1.2, 1.1, 1.15), Point(20e6, rng.random((1, 1000)) < 0.80)),
                  ((1.0, 1.0, 1.41), Point(21e6, rng.random((1, 1000)) < 0.70)),
                  ((1.4, 1.1, 1.09), Point(19e6, rng.random((1, 1000)) < 0.79))]
    best = best_coefficients(candidates, noise=0.03)
    assert best["coefficients"] == [1.2, 1.1, 1.15] and best["tied"] == [[1.4, 1.1, 1.09]] and best["tried"] == 3


def test_too_few_distinct_points_cannot_fit():
    with pytest.raises(ValueError, match="3 distinct MAdds"):
        fit_curve([BASE, BASE, 2 * BASE], [0.5, 0.5, 0.6], BASE)

"""How accuracy grows with MAdds along a scaling direction: a saturating fit, its bootstrap bands, the knee.

Per direction, accuracy is fitted against MAdds with ``acc = a - b * x^(-c)``, ``x = MAdds / base
MAdds``, by :func:`scipy.optimize.least_squares` within bounds: the plateau ``a`` no lower than
the trivial classifier's accuracy and at most 1, ``b >= 0`` (accuracy never falls with MAdds in
the model), ``c`` in ``[0.1, 5]`` (see :data:`MIN_EXPONENT`). From the fit:

- the **gain per doubling**: ``f(2 x) - f(x)`` at the base, and the mean gain per doubling over the
  measured range;
- the **plateau** ``a``;
- the **knee**: the cheapest MAdds whose predicted accuracy is within the noise floor of the
  plateau, ``x = (b / floor)^(1/c)`` (the base itself when ``b`` is already within it).

Bands and intervals come from a paired bootstrap: each replicate resamples the validation images
(the same images for every point, as every trial is scored on the same split) and each point's
seeds, and refits. No torch here: numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import least_squares

MIN_POINTS = 3  # three parameters: fewer distinct MAdds cannot fit the curve
# A slower curve (c < 0.1) reaches its plateau only after hundreds of doublings: over the few doublings of a
# scaling grid it cannot be told from a straight line in log MAdds, and its fitted plateau is arbitrary (often 1).
MIN_EXPONENT = 0.1
RESAMPLES = 200
SEED = 0
CONFIDENCE = 0.95
KNEE_CAP = 1000  # knees are capped at this many times the largest measured MAdds
_STARTS = (0.3, 1.0, 2.5)  # starting exponents c: the fit is not convex in c


class Curve(NamedTuple):
    """``acc = plateau - b * (madds / base_madds)^(-c)``."""

    plateau: float
    b: float
    c: float
    base_madds: float

    def predict(self, madds: Any) -> Any:
        """Predicted accuracy at ``madds`` (a number or an array)."""
        return self.plateau - self.b * (np.asarray(madds, dtype=float) / self.base_madds) ** (-self.c)

    def gain_per_doubling(self, madds: float | None = None) -> float:
        """Accuracy gained by doubling MAdds from ``madds`` (default: the base)."""
        madds = self.base_madds if madds is None else madds
        return float(self.predict(2 * madds) - self.predict(madds))

    def knee(self, noise: float) -> float:
        """The cheapest MAdds (at least the base's) whose predicted accuracy is within ``noise`` of the plateau."""
        if self.b <= max(noise, 1e-9):  # below 1e-9: the optimiser's rounding of a flat curve
            return float(self.base_madds)
        if noise <= 0:
            return math.inf
        doublings = math.log2(self.b / noise) / self.c
        return math.inf if doublings > 1000 else float(self.base_madds * 2 ** doublings)  # a curve that never bends


class Point(NamedTuple):
    """One measured network: its MAdds and its per-image validation correctness, one row per seed."""

    madds: float
    correct: np.ndarray  # bool, (seeds, images)

    @property
    def accuracy(self) -> float:
        """Mean accuracy over seeds and images."""
        return float(np.asarray(self.correct, dtype=float).mean())


def fit_curve(madds: Sequence[float], accuracy: Sequence[float], base_madds: float, floor: float = 0.0) -> Curve:
    """Least-squares fit of ``acc = a - b x^(-c)`` to the points, ``a`` in ``[floor, 1]``, ``b >= 0``, ``c`` in
    ``[0.1, 5]``; the best of a few starting exponents. Needs :data:`MIN_POINTS` distinct MAdds.

    >>> x = [1e6, 2e6, 4e6, 8e6, 16e6]
    >>> curve = fit_curve(x, [0.8 - 0.3 * (m / 1e6) ** -0.7 for m in x], 1e6)
    >>> [round(v, 3) for v in curve[:3]]
    [0.8, 0.3, 0.7]
    """
    x = np.asarray(madds, dtype=float) / base_madds
    y = np.asarray(accuracy, dtype=float)
    if len(np.unique(x)) < MIN_POINTS:
        raise ValueError(f"fit_curve needs {MIN_POINTS} distinct MAdds, got {len(np.unique(x))}")
    floor = min(max(float(floor), 0.0), 1.0 - 1e-6)
    best = None
    for c0 in _STARTS:
        a0 = min(max(y.max() + 0.01, floor + 1e-6), 1.0)
        start = (a0, max(a0 - y[np.argmin(x)], 1e-6), c0)
        result = least_squares(lambda p: p[0] - p[1] * x ** (-p[2]) - y, start,
                               bounds=([floor, 0.0, MIN_EXPONENT], [1.0, 2.0, 5.0]))
        if best is None or result.cost < best.cost - 1e-15:
            best = result
    a, b, c = (float(v) for v in best.x)
    return Curve(a, b, c, float(base_madds))


def _interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(values) == 0:
        return None
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def bootstrap_curves(points: Sequence[Point], base_madds: float, floor: float = 0.0, *, resamples: int = RESAMPLES,
                     seed: int = SEED) -> list[Curve]:
    """Refits on ``resamples`` paired bootstrap replicates: validation images resampled once per replicate for
    every point, each point's seeds resampled on their own."""
    rng = np.random.default_rng(seed)
    sizes = {p.correct.shape[1] for p in points}
    if len(sizes) != 1:
        raise ValueError("bootstrap_curves: the points were scored on different numbers of images")
    images = sizes.pop()
    madds = [p.madds for p in points]
    curves = []
    for _ in range(resamples):
        idx = rng.integers(0, images, images)
        accuracy = []
        for point in points:
            rows = rng.integers(0, len(point.correct), len(point.correct))
            accuracy.append(float(point.correct[rows][:, idx].mean()))
        curves.append(fit_curve(madds, accuracy, base_madds, floor))
    return curves


def fit_direction(points: Sequence[Point], base_madds: float, *, floor: float, noise: float,
                  resamples: int = RESAMPLES, seed: int = SEED, band_points: int = 25) -> dict[str, Any]:
    """The fit of one direction as a JSON-ready dict: the curve, the plateau, the gains per doubling and the knee,
    each with a bootstrap interval, and a band of predictions from the base to the largest measured MAdds.

    ``floor``: the trivial classifier's accuracy (the plateau's lower bound); ``noise``: the noise floor
    that defines the knee. The points' correctness rows are seeds, their columns the same validation images.
    """
    points = sorted(points, key=lambda p: p.madds)
    madds = [p.madds for p in points]
    curve = fit_curve(madds, [p.accuracy for p in points], base_madds, floor)
    replicates = bootstrap_curves(points, base_madds, floor, resamples=resamples, seed=seed)
    top = max(madds)
    grid = np.geomspace(base_madds, top, band_points) if top > base_madds else np.array([base_madds])
    predictions = np.array([r.predict(grid) for r in replicates])

    def mean_gain(c: Curve) -> float:
        doublings = math.log2(top / base_madds)
        return float((c.predict(top) - c.predict(base_madds)) / doublings) if doublings > 0 else 0.0

    # A curve that barely bends puts its knee astronomically far: capped, as "far beyond the data" (JSON has no inf).
    cap = KNEE_CAP * top
    knee = min(curve.knee(noise), cap)
    return {
        "curve": {"plateau": curve.plateau, "b": curve.b, "c": curve.c, "base_madds": base_madds},
        "points": [{"madds": p.madds, "accuracy": p.accuracy, "seeds": len(p.correct)} for p in points],
        "measured_madds": [float(min(madds)), float(top)],
        "plateau": curve.plateau, "plateau_interval": _interval([r.plateau for r in replicates]),
        "gain_first_doubling": curve.gain_per_doubling(),
        "gain_first_doubling_interval": _interval([r.gain_per_doubling() for r in replicates]),
        "gain_per_doubling": mean_gain(curve), "gain_per_doubling_interval": _interval(map(mean_gain, replicates)),
        "knee": knee, "knee_interval": _interval([min(r.knee(noise), cap) for r in replicates]),
        "knee_measured": knee <= top,  # beyond the largest measured net the knee is an extrapolation
        "band": {"madds": grid.tolist(), "accuracy": curve.predict(grid).tolist(),
                 "low": np.percentile(predictions, (1 - CONFIDENCE) / 2 * 100, axis=0).tolist(),
                 "high": np.percentile(predictions, (1 + CONFIDENCE) / 2 * 100, axis=0).tolist()},
        "replicates": [list(r[:3]) for r in replicates],
    }


def predict(fit: dict[str, Any], madds: float) -> tuple[float, list[float] | None]:
    """A direction fit's predicted accuracy at ``madds`` and its bootstrap interval."""
    base = fit["curve"]["base_madds"]
    curve = Curve(fit["curve"]["plateau"], fit["curve"]["b"], fit["curve"]["c"], base)
    values = [float(Curve(a, b, c, base).predict(madds)) for a, b, c in fit["replicates"]]
    return float(curve.predict(madds)), _interval(values)


def plateau_summary(fits: dict[str, dict[str, Any]], noise: float) -> dict[str, Any] | None:
    """Where the data stops paying: the best plateau, the directions whose plateau is within ``noise`` of it,
    and among them the one with the cheapest knee (None without fits)."""
    if not fits:
        return None
    best = max(fit["plateau"] for fit in fits.values())
    level = {name: fit for name, fit in fits.items() if fit["plateau"] >= best - noise}
    direction = min(level, key=lambda name: level[name]["knee"])
    return {"plateau": best, "directions": sorted(level), "cheapest_direction": direction,
            "knee": level[direction]["knee"], "knee_measured": level[direction]["knee_measured"]}


def best_coefficients(candidates: Sequence[tuple[Any, Point]], noise: float) -> dict[str, Any] | None:
    """EfficientNet's step 1 on the user's data: of the networks scaled to about twice the base's MAdds by
    coefficients ``(alpha, beta, gamma)`` with ``alpha beta^2 gamma^2 ~= 2``, the most accurate, and every
    candidate within ``noise`` of it (the data cannot tell those apart). ``candidates``: (coefficients, point)."""
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda item: -item[1].accuracy)
    best_coefficients_, best_point = ranked[0]
    return {"coefficients": list(best_coefficients_), "accuracy": best_point.accuracy, "madds": best_point.madds,
            "tied": [list(c) for c, p in ranked[1:] if p.accuracy >= best_point.accuracy - noise],
            "tried": len(candidates)}

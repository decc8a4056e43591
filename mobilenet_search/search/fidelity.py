"""Proxy fidelity: does the short proxy training rank candidates the way longer training does?

``mobilenet-search fidelity`` retrains K of a study's trained candidates (the Pareto set, then
candidates spread over the MAdds range) with a longer schedule and reports rank correlations
between the proxy's accuracy and the longer training's: over all K and within MAdds bins.
Within bins is the figure that matters: MAdds alone rank MobileNets well (Kendall tau 0.96
between MAdds and top-1 over the paper's 22 MobileNetV2 checkpoints), so a global figure
flatters any proxy; the tau of MAdds alone is reported as the baseline to beat, and so is each
zero-cost proxy's tau. Each retrained result is stored in the study as soon as it is known,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from scipy import stats

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.references import spread
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.measure.train import train_and_evaluate
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import FIDELITY_ATTR, Strategy, StudySettings
from mobilenet_search.results.stats import kendall_tau_interval
from mobilenet_search.search.config import train_config
from mobilenet_search.search.evaluate import init_seed
from mobilenet_search.search.study import make_data

LONG_FACTOR = 5  # default longer schedule: 5x the study's epochs
MIN_BIN = 3  # the smallest bin with a meaningful rank correlation
BOOTSTRAP_SEED = 0  # the same intervals for the same retrained candidates
BOOTSTRAP_RESAMPLES = 500


def select_trials(frame: pd.DataFrame, k: int) -> list[int]:
    """K trained trials: the Pareto set first (spread, if it alone is larger), then others spread over MAdds."""
    candidates = trained(frame).sort_values("madds")
    front = candidates[pareto_mask(candidates)]
    chosen = spread(list(front["number"]), k)
    rest = [n for n in candidates["number"] if n not in chosen]
    chosen += spread(rest, k - len(chosen)) if k > len(chosen) else []
    return sorted(int(n) for n in chosen)


def _tau(x: pd.Series, y: pd.Series) -> float | None:
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return None
    value = stats.kendalltau(x, y).statistic
    return None if math.isnan(value) else float(value)


def _rho(x: pd.Series, y: pd.Series) -> float | None:
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return None
    value = stats.spearmanr(x, y).statistic
    return None if math.isnan(value) else float(value)


def madds_bins(frame: pd.DataFrame, bins: int) -> list[pd.DataFrame]:
    """``frame`` cut into ``bins`` groups of consecutive MAdds, as equal in size as possible."""
    ordered = frame.sort_values("madds")
    size = len(ordered)
    return [ordered.iloc[round(i * size / bins):round((i + 1) * size / bins)] for i in range(bins)]


def within_bins(frame: pd.DataFrame, score: str, target: str, bins: int) -> float | None:
    """Kendall tau of ``score`` vs ``target`` inside each MAdds bin, averaged weighted by pairs."""
    total = weight = 0.0
    for group in madds_bins(frame, bins):
        tau = _tau(group[score], group[target])
        if tau is not None:
            pairs = len(group) * (len(group) - 1) / 2
            total, weight = total + tau * pairs, weight + pairs
    return total / weight if weight else None


def within_bins_interval(frame: pd.DataFrame, score: str, target: str, bins: int, *, seed: int = BOOTSTRAP_SEED,
                         resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """A 95 % percentile-bootstrap interval of :func:`within_bins`: candidates resampled within their bin."""
    groups = [group for group in madds_bins(frame, bins) if len(group) >= 2]
    if not groups:
        return None
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(resamples):
        resampled = pd.concat([group.iloc[rng.integers(0, len(group), len(group))] for group in groups])
        value = within_bins(resampled, score, target, len(groups)) if len(groups) > 1 else _tau(
            resampled[score], resampled[target])
        if value is not None:
            replicates.append(value)
    return [float(v) for v in np.percentile(replicates, [2.5, 97.5])] if replicates else None


def correlations(frame: pd.DataFrame, scores: list[str], target: str = "long_accuracy",
                 bins: int | None = None) -> dict[str, dict[str, Any]]:
    """For each score column: Kendall tau (with a bootstrap interval over candidates) and Spearman rho
    against ``target``, overall and within MAdds bins."""
    bins = bins or max(1, len(frame) // max(MIN_BIN, 4))
    result = {}
    for score in scores:
        rows = frame[list(dict.fromkeys([score, target, "madds"]))].dropna()
        tau = _tau(rows[score], rows[target])
        interval = None
        if tau is not None and len(rows) >= 3:
            estimate = kendall_tau_interval(rows[score], rows[target], seed=BOOTSTRAP_SEED,
                                            resamples=BOOTSTRAP_RESAMPLES)
            interval = None if math.isnan(estimate.low) else [estimate.low, estimate.high]
        result[score] = {
            "kendall_tau": tau,
            "kendall_tau_interval": interval,
            "spearman_rho": _rho(rows[score], rows[target]),
            "kendall_tau_within_bins": within_bins(rows, score, target, bins),
            "kendall_tau_within_bins_interval": within_bins_interval(rows, score, target, bins),
        }
    return result


def run_fidelity(study: optuna.Study, *, top: int = 12, epochs: int | None = None, device: str = "cpu",
                 results_dir: Path = Path("results"), on_trial: Callable[[int, int], None] | None = None,
                 train: Callable[..., Any] = train_and_evaluate) -> dict[str, Any]:
    """Retrain ``top`` trials of ``study`` for ``epochs`` (default 5x the study's) and store the fidelity.

    Results already stored for the same epochs are reused, so an interrupted run resumes.
    ``train`` is the stand-alone training (a test passes a fake of the same signature).
    """
    config = StudySettings.from_study(study)
    if config is None:
        raise UserError(f"study {study.study_name!r} was not created by mobilenet-search (no stored settings)")
    epochs = epochs or LONG_FACTOR * config.epochs
    if top < MIN_BIN:
        raise UserError(f"invalid --top {top}: expected at least {MIN_BIN} trials to correlate")
    frame = trials_frame(study)
    if config.supernet:  # the searched trials' inherited accuracy is the proxy under test
        frame = frame[frame["strategy"] == Strategy.SUPERNET]
    chosen = select_trials(frame, top)
    if len(chosen) < MIN_BIN:
        raise UserError(f"study {study.study_name!r} has {len(chosen)} trained trial(s); fidelity needs at least "
                        f"{MIN_BIN}")
    stored = study.user_attrs.get(FIDELITY_ATTR) or {}
    same = stored.get("epochs") == epochs
    done = {int(k): v for k, v in stored.get("long_accuracy", {}).items()} if same else {}
    seconds = {int(k): v for k, v in stored.get("seconds", {}).items()} if same else {}

    data_cache = make_data(config, results_dir)
    proxy = train_config(config, device, epochs=epochs)
    by_number = frame.set_index("number")
    for index, number in enumerate(chosen):
        if on_trial:
            on_trial(index, len(chosen))
        if number in done:
            continue
        spec = ArchSpec.from_json(by_number.at[number, "spec"])
        data = data_cache(int(by_number.at[number, "proxy_resolution"]))
        started = time.perf_counter()
        done[number] = train(build_model(spec, seed=init_seed(spec, config.seed)), data,
                             proxy).accuracy
        seconds[number] = time.perf_counter() - started
        study.set_user_attr(FIDELITY_ATTR, {"epochs": epochs, "long_accuracy": {str(k): v for k, v in done.items()},
                                            "seconds": {str(k): v for k, v in seconds.items()}})

    rows = by_number.loc[chosen].reset_index()
    rows["long_accuracy"] = [done[n] for n in chosen]
    scores = ["accuracy", "madds", *sorted(c for c in rows.columns if c.startswith("zc_"))]
    for column in scores:
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    summary = {
        "epochs": epochs, "proxy_epochs": config.epochs, "trials": chosen,
        "long_accuracy": {str(k): v for k, v in done.items()},
        "seconds": {str(k): v for k, v in seconds.items()},
        "correlations": correlations(rows, scores),
    }
    study.set_user_attr(FIDELITY_ATTR, summary)
    return summary


def format_fidelity(summary: dict[str, Any]) -> str:
    """The fidelity summary as a small table."""
    lines = [f"proxy fidelity: {len(summary['trials'])} trials retrained for {summary['epochs']} epochs "
             f"(proxy: {summary['proxy_epochs']})",
             f"  {'score':16s} {'tau [95% interval]':>24s} {'rho':>7s} {'tau within MAdds bins [95%]':>30s}"]

    def fmt(value: float | None, interval: list[float] | None = None) -> str:
        text = "-" if value is None else f"{value:+.3f}"
        return text + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")

    names = {"accuracy": "proxy accuracy", "madds": "MAdds (baseline)"}
    for score, row in summary["correlations"].items():
        tau = fmt(row["kendall_tau"], row.get("kendall_tau_interval"))
        within = fmt(row["kendall_tau_within_bins"], row.get("kendall_tau_within_bins_interval"))
        lines.append(f"  {names.get(score, score):16s} {tau:>24s} {fmt(row['spearman_rho']):>7s} {within:>30s}")
    return "\n".join(lines)

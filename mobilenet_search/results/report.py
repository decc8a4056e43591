"""How far a study's search beat the papers' hand scaling, and whether that is more than noise.

The reference networks (the papers' width x resolution family) are trained in the study under
exactly the same proxy as the searched candidates and marked with the user attributes
``reference=True`` and ``reference_name``. Noise repeats (a reference net retrained with another
``noise_seed``) measure seed-to-seed noise and are on no front. This module compares the two
fronts, and where trials recorded their per-image validation correctness (``val_correct``) it
says how sure each comparison is (:mod:`mobilenet_search.results.stats`): a paired test of each
reference against the searched candidates, bootstrap intervals of both hypervolumes, the study's
noise floor, and one sentence that sums it up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from mobilenet_search.arch.budget import Budget
from mobilenet_search.files import atomic_write_text
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    FIDELITY_ATTR,
    frame_is_noise_repeat,
    frame_is_confirmation,
    frame_is_reference,
    trial_correct,
)
from mobilenet_search.results.stats import (
    Verdict,
    binomial_se,
    bootstrap_hypervolume_interval,
    compare,
    hypervolume_2d,
    noise_floor,
    seed_noise,
    seed_noise_margin,
    validation_noise,
    wilson_interval,
)

#: How the report's statistics are computed: fixed, so that report.json is the same run after run.
REPORT_SEED = 0
RESAMPLES = 1000
CONFIDENCE = 0.95
ALPHA = 0.05


def hypervolume(frame: pd.DataFrame, reference_madds: float) -> float:
    """Area dominated by ``frame``'s (accuracy, MAdds) points, in units of accuracy x reference MAdds.

    Both objectives are measured against the point (accuracy 0, MAdds / reference_madds = 1):
    points at or beyond the reference MAdds contribute nothing. The result lies in [0, 1].
    """
    points = frame[["accuracy", "madds"]].dropna().to_numpy(float)
    return hypervolume_2d(np.column_stack([points[:, 0], points[:, 1] / reference_madds]), (0.0, 1.0))


def _correctness(study: optuna.Study, numbers: pd.Series) -> dict[int, np.ndarray]:
    """The per-image correctness of the trials ``numbers`` that recorded it; {} unless all vectors are paired."""
    wanted = set(numbers.astype(int))
    vectors = {t.number: v for t in study.get_trials(deepcopy=False)
               if t.number in wanted and (v := trial_correct(t)) is not None}
    if len({len(v) for v in vectors.values()}) > 1:  # not the same validation images: nothing is paired
        return {}
    return vectors


def _interval(row: Any) -> list[float] | None:
    low, high = row["accuracy_low"], row["accuracy_high"]
    return None if pd.isna(low) else [float(low), float(high)]


def _comparison(prefix: str, verdict: Verdict | None) -> dict[str, Any]:
    return {f"{prefix}verdict": None if verdict is None else verdict.verdict,
            f"{prefix}p_value": None if verdict is None else verdict.p_value,
            f"{prefix}margin": None if verdict is None else verdict.margin}


def _reference_row(ref: pd.Series, searched: pd.DataFrame, correct: dict[int, np.ndarray],
                   seed_sd: float | None, tolerance: float | None) -> dict[str, Any]:
    """One reference net against the searched candidates at no more MAdds: the best, and the cheapest no worse.

    "No worse": not ``worse`` by :func:`stats.compare`, and no more than ``tolerance`` (the noise
    floor) less accurate. The second condition matters: on 525 images a net five points less accurate
    can escape a ``worse`` verdict (p = 0.07), and calling it "the same accuracy" would be wrong.
    """
    cheaper = searched[searched["madds"] <= ref["madds"]]
    best = cheaper.loc[cheaper["accuracy"].idxmax()] if not cheaper.empty else None
    ref_correct = correct.get(int(ref["number"]))
    verdict = None
    if best is not None and ref_correct is not None and int(best["number"]) in correct:
        verdict = compare(correct[int(best["number"])], ref_correct, seed_sd=seed_sd, alpha=ALPHA)
    cheapest, cheapest_verdict = None, None
    if ref_correct is not None:
        for _, candidate in cheaper.sort_values(["madds", "accuracy"], ascending=[True, False]).iterrows():
            if int(candidate["number"]) in correct:
                result = compare(correct[int(candidate["number"])], ref_correct, seed_sd=seed_sd, alpha=ALPHA)
                if result.verdict != "worse" and tolerance is not None and result.margin >= -tolerance:
                    cheapest, cheapest_verdict = candidate, result
                    break
    return {
        "reference_name": ref["reference_name"], "trial": int(ref["number"]), "madds": int(ref["madds"]),
        "accuracy": float(ref["accuracy"]), "accuracy_interval": _interval(ref),
        "best_searched_trial": None if best is None else int(best["number"]),
        "best_searched_madds": None if best is None else int(best["madds"]),
        "best_searched_accuracy": None if best is None else float(best["accuracy"]),
        "best_searched_accuracy_interval": None if best is None else _interval(best),
        "accuracy_gain": None if best is None else float(best["accuracy"] - ref["accuracy"]),
        **_comparison("", verdict),
        "searched_only_correct": None if verdict is None else verdict.b10,
        "reference_only_correct": None if verdict is None else verdict.b01,
        "cheapest_no_worse_trial": None if cheapest is None else int(cheapest["number"]),
        "cheapest_no_worse_madds": None if cheapest is None else int(cheapest["madds"]),
        "cheapest_no_worse_accuracy": None if cheapest is None else float(cheapest["accuracy"]),
        **_comparison("cheapest_no_worse_", cheapest_verdict),
        "madds_ratio": None if cheapest is None else float(ref["madds"] / cheapest["madds"]),
    }


def _noise(refs: pd.DataFrame, repeats: pd.DataFrame, fallback: pd.DataFrame,
           correct: dict[int, np.ndarray]) -> dict[str, Any]:
    """Seed-to-seed sd from the noise repeats, next to the validation split's own noise at a typical accuracy.

    The typical accuracy is the reference nets' mean (``fallback``'s, the searched front, without
    references): where the report's comparisons are made.
    """
    runs = pd.concat([refs, repeats])
    names = sorted(repeats["reference_name"].dropna().unique())
    seed_runs = {name: [float(a) for a in runs.loc[runs["reference_name"] == name, "accuracy"]] for name in names}
    seed_sd = seed_noise(seed_runs)
    size = len(next(iter(correct.values()))) if correct else None
    noise = {"seed_sd": seed_sd, "seed_runs": seed_runs,
             "noise_margin": None if seed_sd is None else seed_noise_margin(seed_sd, ALPHA),
             "val_size": size, "at_accuracy": None, "validation_se": None, "validation_half_width": None,
             "floor": None}
    typical = refs if not refs.empty else fallback
    if size and not typical.empty:
        noise.update(validation_noise(float(typical["accuracy"].mean()), size, seed_sd, CONFIDENCE))
    return noise


def _hypervolume_intervals(searched: pd.DataFrame, refs: pd.DataFrame, correct: dict[int, np.ndarray],
                           reference_madds: float) -> dict[str, list[float] | None]:
    """Bootstrap intervals of both fronts' hypervolumes; None unless every trial of both recorded correctness."""
    none = {"searched_interval": None, "reference_interval": None, "difference_interval": None}
    groups = [group[group["madds"].notna()] for group in (searched, refs)]
    if not correct or any(int(n) not in correct for group in groups for n in group["number"]):
        return none
    size = len(next(iter(correct.values())))

    def matrix(group: pd.DataFrame) -> np.ndarray:
        return np.array([correct[int(n)] for n in group["number"]], dtype=bool).reshape(len(group), size)

    intervals = bootstrap_hypervolume_interval(
        matrix(groups[0]), groups[0]["madds"].to_numpy(float) / reference_madds,
        matrix(groups[1]), groups[1]["madds"].to_numpy(float) / reference_madds,
        seed=REPORT_SEED, resamples=RESAMPLES, confidence=CONFIDENCE)
    return {"searched_interval": list(intervals.searched), "reference_interval": list(intervals.reference),
            "difference_interval": list(intervals.difference)}


def _beyond(noise: dict[str, Any]) -> str:
    if noise["seed_sd"] is None:
        return "beyond validation noise (seed noise not measured: --noise-repeats)"
    return f"beyond validation and seed noise (seed sd {noise['seed_sd']:.3f})"


def _verdict(rows: list[dict[str, Any]], hv: dict[str, Any], noise: dict[str, Any]) -> tuple[str | None, str | None]:
    """What the report's comparisons add up to: a gain kind and one plain sentence (None, None without data).

    ``more_accurate``: some searched net is ``better`` than a reference net at no more MAdds, by the
    paired test and beyond seed noise when measured. Else ``fewer_madds``: some searched net is no
    worse than a reference net (see :func:`_reference_row`) at fewer MAdds; the largest saving is
    named. Else ``none``.
    """
    if not rows or noise["val_size"] is None:  # nothing to compare, or no per-image records to compare with
        return None, None
    tested = [row for row in rows if row["verdict"] is not None or row["cheapest_no_worse_verdict"] is not None]
    if not tested:
        return "none", "No searched net is as cheap as a reference network: there is nothing to compare."
    tail = ""
    if hv["difference_interval"] is not None:
        low, high = hv["difference_interval"]
        tail = f"; hypervolume difference {hv['difference']:+.4f} (95 % interval {low:+.4f} to {high:+.4f})"
    better = [row for row in tested if row["verdict"] == "better"]
    if better:
        row = max(better, key=lambda r: r["margin"])
        return "more_accurate", (
            f"The search beat hand scaling {_beyond(noise)}: trial {row['best_searched_trial']} is more accurate "
            f"than {row['reference_name']} at no more MAdds, {row['best_searched_accuracy']:.3f} vs "
            f"{row['accuracy']:.3f} (McNemar p = {row['p_value']:.2g}){tail}.")
    cheaper = [row for row in tested if row["madds_ratio"] is not None and row["madds_ratio"] > 1]
    if cheaper:
        row = max(cheaper, key=lambda r: r["madds_ratio"])
        return "fewer_madds", (
            f"No searched net is more accurate than a reference net {_beyond(noise)}, but trial "
            f"{row['cheapest_no_worse_trial']} matches {row['reference_name']} within noise at "
            f"{row['madds_ratio']:.1f}x fewer MAdds, {row['cheapest_no_worse_accuracy']:.3f} vs {row['accuracy']:.3f} "
            f"(McNemar p = {row['cheapest_no_worse_p_value']:.2g}){tail}.")
    return "none", (f"The search did not beat hand scaling {_beyond(noise)}: no searched net is more accurate than a "
                    f"reference net at no more MAdds, nor as accurate at fewer{tail}.")


def search_gain(study: optuna.Study) -> dict[str, Any]:
    """The study's search gain over its reference family, and how sure it is, as a JSON-ready dict.

    ``hypervolume``: of the searched front and of the reference front, same reference point
    (the budget's MAdds bound if it has one, else 1.1 x the largest trained MAdds), their
    ``difference``, and bootstrap intervals over validation images (``*_interval``).
    ``references``: for each reference net (noise repeats excluded), the most accurate searched
    trial with no more MAdds and the accuracy gain (None when no searched trial is that cheap);
    its paired comparison (``verdict``, ``p_value``, ``margin``, see :func:`stats.compare`); and the
    cheapest searched trial at no more MAdds that is not ``worse`` and at most one noise floor less
    accurate, with the MAdds ratio it saves (``madds_ratio``, reference MAdds / its MAdds).
    ``noise``: seed-to-seed sd from the noise repeats, the validation split's standard error and
    interval half-width at the reference nets' mean accuracy, and the larger of the two (``floor``).
    ``gain`` and ``verdict``: what it adds up to, a kind and one sentence.
    Everything that needs per-image correctness (``val_correct``) is None when trials lack it.
    """
    frame = trained(trials_frame(study))
    is_ref, is_repeat, confirmed = frame_is_reference(frame), frame_is_noise_repeat(frame), frame_is_confirmation(frame)
    config = study.user_attrs.get(CONFIG_ATTR, {})
    # A supernet study's inherited accuracies come from other weights than the references' training: only its
    # confirmations (the Pareto candidates retrained from scratch, the same way) are compared with them.
    supernet = config.get("strategy") == "supernet"
    searched = frame[confirmed] if supernet else frame[~is_ref & ~confirmed]
    refs, repeats = frame[is_ref & ~is_repeat], frame[is_repeat]
    limit = Budget.parse(config["budget"]).get("madds") if config.get("budget") else None
    largest = frame["madds"].max()  # NaN when nothing trained yet
    reference_madds = float(limit.bound) if limit is not None else 1.1 * float(largest) if largest > 0 else 1.0
    correct = _correctness(study, frame["number"])
    searched_front = searched[pareto_mask(searched)]
    noise = _noise(refs, repeats, searched_front, correct)

    rows = [_reference_row(ref, searched, correct, noise["seed_sd"], noise["floor"])
            for _, ref in refs.sort_values("madds").iterrows()]
    searched_hv = hypervolume(searched_front, reference_madds)
    reference_hv = hypervolume(refs[pareto_mask(refs)], reference_madds)
    hv = {
        "reference_point": {"accuracy": 0.0, "madds": reference_madds},
        "searched": searched_hv, "reference": reference_hv, "difference": searched_hv - reference_hv,
        **_hypervolume_intervals(searched, refs, correct, reference_madds),
    }
    gain, verdict = _verdict(rows, hv, noise)
    return {
        "study": study.study_name,
        "trained": {"searched": int(len(searched)), "reference": int(len(refs)), "noise_repeats": int(len(repeats)),
                    "inherited": int((~is_ref & ~confirmed).sum()) if supernet else 0},
        "compared": "confirmed (retrained from scratch)" if supernet else "proxy-trained",
        "statistics": {"confidence": CONFIDENCE, "alpha": ALPHA, "bootstrap_seed": REPORT_SEED,
                       "resamples": RESAMPLES},
        "hypervolume": hv,
        "references": rows,
        "noise": noise,
        "gain": gain,
        "verdict": verdict,
    }


def _span(interval: list[float] | None, digits: int = 3) -> str:
    return "" if interval is None else f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def format_gain(gain: dict[str, Any]) -> str:
    """The search gain as a few lines of text, with intervals, paired verdicts and the noise floor when known."""
    hv = gain["hypervolume"]
    inherited = gain["trained"].get("inherited")
    searched = (f"{gain['trained']['searched']} confirmed of {inherited} scored with inherited weights" if inherited
                else f"{gain['trained']['searched']} searched")
    lines = [
        f"search gain ({searched}, {gain['trained']['reference']} reference nets trained):",
        f"  hypervolume (accuracy x MAdds, up to {hv['reference_point']['madds'] / 1e6:.1f}M MAdds): "
        f"searched {hv['searched']:.4f}{_span(hv.get('searched_interval'), 4)}, "
        f"hand-scaled references {hv['reference']:.4f}{_span(hv.get('reference_interval'), 4)}",
    ]
    for row in gain["references"]:
        head = f"  {row['reference_name']:24s} {row['accuracy']:.3f}{_span(row.get('accuracy_interval'))} at " \
               f"{row['madds'] / 1e6:.1f}M"
        if row["best_searched_trial"] is None:
            lines.append(f"{head}: no searched candidate as cheap")
            continue
        lines.append(
            f"{head}; best searched at no more MAdds: trial {row['best_searched_trial']} "
            f"{row['best_searched_accuracy']:.3f}{_span(row.get('best_searched_accuracy_interval'))} at "
            f"{row['best_searched_madds'] / 1e6:.1f}M ({row['accuracy_gain']:+.3f})")
        if row.get("verdict") is not None:
            lines.append(f"    paired test: {row['verdict']} (McNemar p = {row['p_value']:.2g}, "
                         f"margin {row['margin']:+.3f})")
        if row.get("cheapest_no_worse_trial") is not None:
            lines.append(f"    cheapest not worse: trial {row['cheapest_no_worse_trial']} "
                         f"{row['cheapest_no_worse_accuracy']:.3f} at {row['cheapest_no_worse_madds'] / 1e6:.1f}M, "
                         f"{row['madds_ratio']:.1f}x fewer MAdds ({row['cheapest_no_worse_verdict']}, "
                         f"p = {row['cheapest_no_worse_p_value']:.2g})")
    if not gain["references"]:
        lines.append("  no reference network was trained in this study")
    noise = gain.get("noise") or {}
    if noise.get("floor") is not None:
        seed = "not measured" if noise["seed_sd"] is None else f"{noise['seed_sd']:.4f}"
        lines.append(f"  noise floor {noise['floor']:.4f}: seed-to-seed sd {seed}, validation se "
                     f"{noise['validation_se']:.4f} (95 % half-width {noise['validation_half_width']:.4f} on "
                     f"{noise['val_size']} images at accuracy {noise['at_accuracy']:.3f})")
    if gain.get("verdict"):
        lines.append(f"  verdict: {gain['verdict']}")
    return "\n".join(lines)


def write_report(study: optuna.Study, folder: Path) -> dict[str, Any]:
    """Write ``report.json`` (search gain and, once measured, proxy fidelity) into ``folder``."""
    report = search_gain(study)
    report["fidelity"] = study.user_attrs.get(FIDELITY_ATTR)
    atomic_write_text(Path(folder) / "report.json", json.dumps(report, indent=2))
    return report

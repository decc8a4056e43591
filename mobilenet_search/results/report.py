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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from mobilenet_search.arch.budget import Budget
from mobilenet_search.files import atomic_write_text
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import (
    FIDELITY_ATTR,
    Role,
    StudySettings,
    frame_role,
    learned_nothing,
    quality_key,
    study_test_labels,
    study_val_labels,
    trial_correct,
    trivial_accuracy,
    trivial_quality,
)
from mobilenet_search.results.stats import (
    Verdict,
    bootstrap_hypervolume_interval,
    compare,
    hypervolume_2d,
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


def hypervolume(frame: pd.DataFrame, reference_madds: float, floor: float = 0.0, quality: str = "accuracy") -> float:
    """Area dominated by ``frame``'s (``quality``, MAdds) points above ``floor``, in units of quality x reference MAdds.

    The reference point is (``floor``, MAdds / reference_madds = 1): the trivial classifier's
    score (:func:`records.trivial_quality`) and the budget. Points at or below the floor, or at or
    beyond the reference MAdds, contribute nothing: a net that learned nothing adds no area.
    """
    points = frame[[quality, "madds"]].dropna().to_numpy(float)
    return hypervolume_2d(np.column_stack([points[:, 0], points[:, 1] / reference_madds]), (floor, 1.0))


def _correctness(study: optuna.Study, numbers: pd.Series, split: str) -> dict[int, np.ndarray]:
    """The per-image correctness on ``split`` of the trials ``numbers`` that recorded it; {} unless all are paired."""
    wanted = set(numbers.astype(int))
    vectors = {t.number: v for t in study.get_trials(deepcopy=False)
               if t.number in wanted and (v := trial_correct(t, split)) is not None}
    if len({len(v) for v in vectors.values()}) > 1:  # not the same images: nothing is paired
        return {}
    return vectors


def _interval(correct: np.ndarray | None) -> list[float] | None:
    return None if correct is None else list(wilson_interval(int(correct.sum()), len(correct)))


def _comparison(prefix: str, verdict: Verdict | None) -> dict[str, Any]:
    return {f"{prefix}verdict": None if verdict is None else verdict.verdict,
            f"{prefix}p_value": None if verdict is None else verdict.p_value,
            f"{prefix}margin": None if verdict is None else verdict.margin}


@dataclass(frozen=True)
class Splits:
    """Where the report picks (``select``: validation) and where it reports (``report``: test, when the study has one).

    Picking on one split and reporting on another keeps the reported figures free of the
    maximum-over-noise bias of the candidates a search picked.
    """

    select: dict[int, np.ndarray]
    report: dict[int, np.ndarray]
    quality: str  # the column picked on: accuracy or balanced_accuracy
    reported: str  # the column reported: the same, or test_<it>
    trivial_accuracy: float | None  # on the report split: where "learned nothing" starts

    def accuracy(self, row: pd.Series) -> float:
        """The trial's accuracy on the report split: its recorded validation accuracy, or its test vector's mean."""
        vector = self.report.get(int(row["number"])) if self.reported.startswith("test_") else None
        return float(row["accuracy"]) if vector is None else float(vector.mean())

    def learned(self, number: int) -> bool:
        """Whether the trial beat the trivial classifier on the report split (unknown counts as learned)."""
        vector = self.report.get(number)
        if vector is None or self.trivial_accuracy is None:
            return True
        return not learned_nothing(int(vector.sum()), len(vector), self.trivial_accuracy)


def reference_row(ref: pd.Series, searched: pd.DataFrame, splits: Splits, seed_sd: float | None,
                   tolerance: float | None) -> dict[str, Any]:
    """One reference net against the searched candidates at no more MAdds: the best, and the cheapest no worse.

    Both are picked on the validation split and tested on the report split. "No worse": not
    ``worse`` by :func:`stats.compare`, and no more than ``tolerance`` (the noise floor) less
    accurate. The second condition matters: on 525 images a net five points less accurate can
    escape a ``worse`` verdict (p = 0.07), and calling it "the same accuracy" would be wrong.
    """
    cheaper = searched[searched["madds"] <= ref["madds"]]
    best = cheaper.loc[cheaper[splits.quality].idxmax()] if not cheaper.empty else None
    number = int(ref["number"])
    ref_correct, ref_select = splits.report.get(number), splits.select.get(number)
    verdict = None
    if best is not None and ref_correct is not None and int(best["number"]) in splits.report:
        verdict = compare(splits.report[int(best["number"])], ref_correct, seed_sd=seed_sd, alpha=ALPHA)
    cheapest, cheapest_verdict = None, None
    if ref_select is not None:
        for _, candidate in cheaper.sort_values(["madds", splits.quality], ascending=[True, False]).iterrows():
            picked = splits.select.get(int(candidate["number"]))
            if picked is None or int(candidate["number"]) not in splits.report:
                continue
            result = compare(picked, ref_select, seed_sd=seed_sd, alpha=ALPHA)
            if result.verdict != "worse" and tolerance is not None and result.margin >= -tolerance:
                cheapest = candidate
                cheapest_verdict = compare(splits.report[int(candidate["number"])], ref_correct, seed_sd=seed_sd,
                                           alpha=ALPHA)
                break
    # Confirmed on the report split: still not worse and within the noise floor there.
    confirmed = (cheapest_verdict is not None and cheapest_verdict.verdict != "worse" and tolerance is not None
                 and cheapest_verdict.margin >= -tolerance and splits.learned(int(cheapest["number"])))

    def interval(row: pd.Series | None) -> list[float] | None:
        return None if row is None else _interval(splits.report.get(int(row["number"])))

    ref_accuracy = splits.accuracy(ref)
    best_accuracy = None if best is None else splits.accuracy(best)
    return {
        "reference_name": ref["reference_name"], "trial": number, "madds": int(ref["madds"]),
        "accuracy": ref_accuracy, "accuracy_interval": interval(ref),
        "reference_learned": splits.learned(number),
        "best_searched_trial": None if best is None else int(best["number"]),
        "best_searched_madds": None if best is None else int(best["madds"]),
        "best_searched_accuracy": best_accuracy,
        "best_searched_accuracy_interval": interval(best),
        "best_searched_learned": None if best is None else splits.learned(int(best["number"])),
        "accuracy_gain": None if best is None else float(best_accuracy - ref_accuracy),
        **_comparison("", verdict),
        "searched_only_correct": None if verdict is None else verdict.b10,
        "reference_only_correct": None if verdict is None else verdict.b01,
        "cheapest_no_worse_trial": None if cheapest is None else int(cheapest["number"]),
        "cheapest_no_worse_madds": None if cheapest is None else int(cheapest["madds"]),
        "cheapest_no_worse_accuracy": None if cheapest is None else splits.accuracy(cheapest),
        **_comparison("cheapest_no_worse_", cheapest_verdict),
        "cheapest_no_worse_confirmed": confirmed,
        "madds_ratio": None if cheapest is None else float(ref["madds"] / cheapest["madds"]),
    }


def _noise(refs: pd.DataFrame, repeats: pd.DataFrame, fallback: pd.DataFrame, splits: Splits) -> dict[str, Any]:
    """Seed-to-seed sd from the noise repeats, next to the report split's own noise at a typical accuracy.

    The typical accuracy is the reference nets' mean (``fallback``'s, the searched front, without
    references): where the report's comparisons are made.
    """
    runs = pd.concat([refs, repeats])
    names = sorted(repeats["reference_name"].dropna().unique())

    seed_runs = {name: [splits.accuracy(row) for _, row in runs[runs["reference_name"] == name].iterrows()]
                 for name in names}
    seed_sd = seed_noise(seed_runs)
    size = len(next(iter(splits.report.values()))) if splits.report else None
    noise = {"seed_sd": seed_sd, "seed_runs": seed_runs,
             "noise_margin": None if seed_sd is None else seed_noise_margin(seed_sd, ALPHA),
             "val_size": size, "at_accuracy": None, "validation_se": None, "validation_half_width": None,
             "floor": None}
    typical = refs if not refs.empty else fallback
    if size and not typical.empty:
        noise.update(validation_noise(float(np.mean([splits.accuracy(row) for _, row in typical.iterrows()])), size,
                                      seed_sd, CONFIDENCE))
    return noise


def _hypervolume_intervals(searched: pd.DataFrame, refs: pd.DataFrame, correct: dict[int, np.ndarray],
                           reference_madds: float, floor: float,
                           labels: np.ndarray | None) -> dict[str, list[float] | None]:
    """Bootstrap intervals of both fronts' hypervolumes; None unless every trial of both recorded correctness."""
    none = {"searched_interval": None, "reference_interval": None, "difference_interval": None}
    groups = [group[group["madds"].notna()] for group in (searched, refs)]
    if not correct or any(int(n) not in correct for group in groups for n in group["number"]):
        return none
    size = len(next(iter(correct.values())))
    if labels is not None and len(labels) != size:
        return none

    def matrix(group: pd.DataFrame) -> np.ndarray:
        return np.array([correct[int(n)] for n in group["number"]], dtype=bool).reshape(len(group), size)

    intervals = bootstrap_hypervolume_interval(
        matrix(groups[0]), groups[0]["madds"].to_numpy(float) / reference_madds,
        matrix(groups[1]), groups[1]["madds"].to_numpy(float) / reference_madds,
        seed=REPORT_SEED, resamples=RESAMPLES, confidence=CONFIDENCE, reference_point=(floor, 1.0), labels=labels)
    return {"searched_interval": list(intervals.searched), "reference_interval": list(intervals.reference),
            "difference_interval": list(intervals.difference)}


def _beyond(noise: dict[str, Any]) -> str:
    if noise["seed_sd"] is None:
        return "beyond validation noise (seed noise not measured: --noise-repeats)"
    return f"beyond validation and seed noise (seed sd {noise['seed_sd']:.3f})"


def _verdict(rows: list[dict[str, Any]], hv: dict[str, Any], noise: dict[str, Any]) -> tuple[str | None, str | None]:
    """What the report's comparisons add up to: a gain kind and one plain sentence (None, None without data).

    ``more_accurate``: some searched net that learned something is ``better`` than a reference net
    at no more MAdds, by the paired test on the report split and beyond seed noise when measured.
    Else ``fewer_madds``: some searched net that learned something, picked on validation as no
    worse than a reference net at fewer MAdds, is still no worse on the report split; the largest
    saving is named. Else ``none``. A net no better than the trivial classifier is never a gain.
    """
    if not rows or noise["val_size"] is None:  # nothing to compare, or no per-image records to compare with
        return None, None
    tested = [row for row in rows if row["verdict"] is not None or row["cheapest_no_worse_verdict"] is not None]
    if not tested:
        return "none", "No searched net is as cheap as a reference network: there is nothing to compare."
    tail = ""
    if hv["difference_interval"] is not None:
        low, high = hv["difference_interval"]
        tail = f"; hypervolume difference above the trivial classifier {hv['difference']:+.4f} (95 % interval " \
               f"{low:+.4f} to {high:+.4f})"
    better = [row for row in tested if row["verdict"] == "better" and row["best_searched_learned"]]
    if better:
        row = max(better, key=lambda r: r["margin"])
        return "more_accurate", (
            f"The search beat hand scaling {_beyond(noise)}: trial {row['best_searched_trial']} is more accurate "
            f"than {row['reference_name']} at no more MAdds, {row['best_searched_accuracy']:.3f} vs "
            f"{row['accuracy']:.3f} (McNemar p = {row['p_value']:.2g}){tail}.")
    cheaper = [row for row in tested if row["madds_ratio"] is not None and row["madds_ratio"] > 1
               and row["cheapest_no_worse_confirmed"]]
    if cheaper:
        row = max(cheaper, key=lambda r: r["madds_ratio"])
        return "fewer_madds", (
            f"No searched net is more accurate than a reference net {_beyond(noise)}, but trial "
            f"{row['cheapest_no_worse_trial']} matches {row['reference_name']} within noise at "
            f"{row['madds_ratio']:.1f}x fewer MAdds, {row['cheapest_no_worse_accuracy']:.3f} vs {row['accuracy']:.3f} "
            f"(McNemar p = {row['cheapest_no_worse_p_value']:.2g}){tail}.")
    return "none", (f"The search did not beat hand scaling {_beyond(noise)}: no searched net that learned something "
                    f"is more accurate than a reference net at no more MAdds, nor as accurate at fewer{tail}.")


def search_gain(study: optuna.Study) -> dict[str, Any]:
    """The study's search gain over its reference family, and how sure it is, as a JSON-ready dict.

    Candidates are picked on the validation split (the front, the best searched net under each
    reference, the cheapest one no worse) and every figure is reported on the test split when the
    study has one (``split``: ``test``; ``validation`` for a study without, whose figures then
    carry the bias of a maximum over noise).

    ``hypervolume``: of the searched front and of the reference front above the trivial classifier
    (reference point ``(trivial, budget MAdds)``, see :func:`hypervolume`), their ``difference``, and
    bootstrap intervals over the report split's images (``*_interval``).
    ``references``: for each reference net (noise repeats excluded), the most accurate searched
    trial with no more MAdds and the accuracy gain (None when no searched trial is that cheap);
    its paired comparison (``verdict``, ``p_value``, ``margin``, see :func:`stats.compare`); and the
    cheapest searched trial at no more MAdds that is not ``worse`` and at most one noise floor less
    accurate, with the MAdds ratio it saves (``madds_ratio``, reference MAdds / its MAdds).
    ``trivial``: the trivial classifier's accuracy and how many nets did not beat it.
    ``noise``: seed-to-seed sd from the noise repeats, the report split's standard error and
    interval half-width at the reference nets' mean accuracy, and the larger of the two (``floor``).
    ``gain`` and ``verdict``: what it adds up to, a kind and one sentence.
    Everything that needs per-image correctness (``val_correct``) is None when trials lack it.
    """
    settings = StudySettings.from_study(study)
    quality = quality_key(settings)
    quality = quality if quality.endswith("accuracy") else "accuracy"  # a zero-cost study's trials have no score
    frame = trained(trials_frame(study), quality)
    roles = frame_role(frame)
    # A supernet study's inherited accuracies come from other weights than the references' training: only its
    # confirmations (the Pareto candidates retrained from scratch, the same way) are compared with them.
    supernet = settings is not None and settings.supernet
    searched = frame[roles == Role.CONFIRMATION] if supernet else frame[roles == Role.SEARCHED]
    refs, repeats = frame[roles == Role.REFERENCE], frame[roles == Role.NOISE_REPEAT]
    limit = Budget.parse(settings.budget).get("madds") if settings is not None else None
    largest = frame["madds"].max()  # NaN when nothing trained yet
    reference_madds = float(limit.bound) if limit is not None else 1.1 * float(largest) if largest > 0 else 1.0

    test_labels = study_test_labels(study)
    split = "test" if test_labels is not None else "validation"
    labels = test_labels if test_labels is not None else study_val_labels(study)
    select = _correctness(study, frame["number"], "val")
    report = _correctness(study, frame["number"], "test") if split == "test" else select
    splits = Splits(select, report, quality, f"test_{quality}" if split == "test" else quality,
                     None if labels is None else trivial_accuracy(labels))
    floor = (trivial_quality(quality, labels) if labels is not None else None) or 0.0

    searched_front = searched[pareto_mask(searched, quality=quality)]  # picked on validation
    reference_front = refs[pareto_mask(refs, quality=quality)]
    noise = _noise(refs, repeats, searched_front, splits)
    rows = [reference_row(ref, searched, splits, noise["seed_sd"], noise["floor"])
            for _, ref in refs.sort_values("madds").iterrows()]
    if split == "test":  # the fronts stay as picked; the bootstrap re-scores them on test images
        fronts = (searched_front, reference_front)
        scored = [front.assign(**{quality: front[splits.reported]}) for front in fronts]
    else:  # every trial that could be on the front, the front recomputed in each replicate
        fronts, scored = (searched, refs), (searched_front, reference_front)
    searched_hv = hypervolume(scored[0], reference_madds, floor, quality)
    reference_hv = hypervolume(scored[1], reference_madds, floor, quality)
    hv = {
        "reference_point": {quality: floor, "madds": reference_madds}, "quality": quality,
        "searched": searched_hv, "reference": reference_hv, "difference": searched_hv - reference_hv,
        **_hypervolume_intervals(*fronts, report, reference_madds, floor,
                                 labels if quality == "balanced_accuracy" else None),
    }
    gain, verdict = _verdict(rows, hv, noise)
    nothing = {group: sum(not splits.learned(int(n)) for n in frame_["number"])
               for group, frame_ in (("searched", searched), ("reference", refs))}
    return {
        "study": study.study_name,
        "split": {"picked_on": "validation", "reported_on": split,
                  "images": None if labels is None else int(len(labels))},
        "trained": {"searched": int(len(searched)), "reference": int(len(refs)), "noise_repeats": int(len(repeats)),
                    "inherited": int((roles == Role.SEARCHED).sum()) if supernet else 0},
        "compared": "confirmed (retrained from scratch)" if supernet else "proxy-trained",
        "statistics": {"confidence": CONFIDENCE, "alpha": ALPHA, "bootstrap_seed": REPORT_SEED,
                       "resamples": RESAMPLES},
        "trivial": {"accuracy": splits.trivial_accuracy, "floor": floor, "learned_nothing": nothing},
        "hypervolume": hv,
        "references": rows,
        "noise": noise,
        "gain": gain,
        "verdict": verdict,
        "next": next_step(gain, rows, noise, nothing, int(len(searched)), supernet),
    }


#: Below this many searched candidates a study is a first look, not a search.
FEW_CANDIDATES = 20


def next_step(gain: str | None, rows: list[dict[str, Any]], noise: dict[str, Any], nothing: dict[str, int],
              searched: int, supernet: bool) -> str | None:
    """What a user should do next, in one sentence, from what the report found (None when it found nothing)."""
    if gain is None:
        return None
    if gain != "none":
        return ("Export the net the verdict names (mobilenet-search export --study NAME --trial N) and check it "
                "on your own held-out data.")
    if searched and nothing["searched"] == searched:
        return ("Every searched net learned nothing: train longer (--epochs), on larger images (--proxy-size), or on "
                "more data before searching.")
    floor = noise.get("floor")
    accuracies = [(row["madds"], row["accuracy"]) for row in rows]
    if floor is not None and len(accuracies) >= 2:
        (cheap_madds, cheap), (dear_madds, dear) = min(accuracies), max(accuracies)
        if dear - cheap <= 2 * floor:
            return (f"The reference nets from {cheap_madds / 1e6:.0f}M to {dear_madds / 1e6:.0f}M MAdds lie within "
                    f"twice the noise floor of each other ({cheap:.3f} vs {dear:.3f}): on this data accuracy has "
                    "stopped rising with size, so no search can show a gain; take the cheapest net that is good "
                    "enough, or search on data where accuracy still rises with MAdds.")
    if searched < FEW_CANDIDATES:
        more = 200 if supernet else 50
        return (f"{searched} searched candidates are too few to beat a hand-scaled family: run the same command "
                f"with --trials {more} (the study resumes) and read this verdict again.")
    return ("The search found nothing better than hand scaling at this proxy: check the proxy's fidelity "
            "(mobilenet-search fidelity --study NAME) before searching longer.")


def _span(interval: list[float] | None, digits: int = 3) -> str:
    return "" if interval is None else f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def format_gain(gain: dict[str, Any]) -> str:
    """The search gain as a few lines of text, with intervals, paired verdicts and the noise floor when known."""
    hv = gain["hypervolume"]
    inherited = gain["trained"].get("inherited")
    searched = (f"{gain['trained']['searched']} confirmed of {inherited} scored with inherited weights" if inherited
                else f"{gain['trained']['searched']} searched")
    split = gain.get("split") or {"reported_on": "validation"}
    where = ("picked on the validation split, reported on the test split" if split["reported_on"] == "test"
             else "picked and reported on the validation split: the study has no test split")
    lines = [f"search gain ({searched}, {gain['trained']['reference']} reference nets trained; {where}):"]
    trivial = gain.get("trivial") or {}
    quality = hv.get("quality", "accuracy")
    floor = hv["reference_point"].get(quality, 0.0)
    if inherited == 0 and gain["trained"]["searched"] == 0 and gain.get("compared", "").startswith("confirmed"):
        lines.append("  no candidate was confirmed (--confirm 0, or the search ended first): nothing to compare")
    else:
        lines.append(
            f"  hypervolume ({quality.replace('_', ' ')} above the trivial classifier's {floor:.3f} x MAdds, "
            f"up to {hv['reference_point']['madds'] / 1e6:.1f}M MAdds): "
            f"searched {hv['searched']:.4f}{_span(hv.get('searched_interval'), 4)}, "
            f"hand-scaled references {hv['reference']:.4f}{_span(hv.get('reference_interval'), 4)}")
    for row in gain["references"]:
        nothing = "" if row.get("reference_learned", True) else " (learned nothing)"
        head = f"  {row['reference_name']:24s} {row['accuracy']:.3f}{_span(row.get('accuracy_interval'))} at " \
               f"{row['madds'] / 1e6:.1f}M{nothing}"
        if row["best_searched_trial"] is None:
            lines.append(f"{head}: no searched candidate as cheap")
            continue
        learned = "" if row.get("best_searched_learned", True) else ", learned nothing"
        lines.append(
            f"{head}; best searched at no more MAdds: trial {row['best_searched_trial']} "
            f"{row['best_searched_accuracy']:.3f}{_span(row.get('best_searched_accuracy_interval'))} at "
            f"{row['best_searched_madds'] / 1e6:.1f}M ({row['accuracy_gain']:+.3f}{learned})")
        if row.get("verdict") is not None:
            lines.append(f"    paired test: {row['verdict']} (McNemar p = {row['p_value']:.2g}, "
                         f"margin {row['margin']:+.3f})")
        if row.get("cheapest_no_worse_trial") is not None:
            held = "holds on the test split" if row.get("cheapest_no_worse_confirmed") else "not confirmed"
            lines.append(f"    cheapest not worse: trial {row['cheapest_no_worse_trial']} "
                         f"{row['cheapest_no_worse_accuracy']:.3f} at {row['cheapest_no_worse_madds'] / 1e6:.1f}M, "
                         f"{row['madds_ratio']:.1f}x fewer MAdds ({row['cheapest_no_worse_verdict']}, "
                         f"p = {row['cheapest_no_worse_p_value']:.2g}; {held})")
    if not gain["references"]:
        lines.append("  no reference network was trained in this study")
    if trivial.get("accuracy") is not None:
        counts = trivial["learned_nothing"]
        lines.append(f"  trivial classifier {trivial['accuracy']:.3f} (always the most frequent class); "
                     f"learned nothing (one-sided binomial test, 5 %): {counts['searched']} searched, "
                     f"{counts['reference']} reference")
    noise = gain.get("noise") or {}
    if noise.get("floor") is not None:
        seed = "not measured" if noise["seed_sd"] is None else f"{noise['seed_sd']:.4f}"
        lines.append(f"  noise floor {noise['floor']:.4f}: seed-to-seed sd {seed}, split se "
                     f"{noise['validation_se']:.4f} (95 % half-width {noise['validation_half_width']:.4f} on "
                     f"{noise['val_size']} images at accuracy {noise['at_accuracy']:.3f})")
    if gain.get("verdict"):
        lines.append(f"  verdict: {gain['verdict']}")
    if gain.get("next"):
        lines.append(f"  next: {gain['next']}")
    return "\n".join(lines)


def write_report(study: optuna.Study, folder: Path) -> dict[str, Any]:
    """Write ``report.json`` (search gain and, once measured, proxy fidelity) into ``folder``."""
    report = search_gain(study)
    report["fidelity"] = study.user_attrs.get(FIDELITY_ATTR)
    atomic_write_text(Path(folder) / "report.json", json.dumps(report, indent=2))
    return report

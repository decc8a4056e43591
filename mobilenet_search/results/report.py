"""How far a study's search beat the papers' hand scaling: search gain and hypervolumes.

The reference networks (the papers' width x resolution family) are trained in the study under
exactly the same proxy as the searched candidates and marked with the user attributes
``reference=True`` and ``reference_name``. This module compares the two fronts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna._hypervolume import compute_hypervolume  # Optuna's only hypervolume (private, see notes)

from mobilenet_search.arch.budget import Budget
from mobilenet_search.files import atomic_write_text
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import CONFIG_ATTR, FIDELITY_ATTR, frame_is_reference


def hypervolume(frame: pd.DataFrame, reference_madds: float) -> float:
    """Area dominated by ``frame``'s (accuracy, MAdds) points, in units of accuracy x reference MAdds.

    Both objectives are turned into losses (−accuracy, MAdds / reference_madds) and measured
    against the point (0, 1): accuracy 0 at the reference MAdds. Points at or beyond the
    reference MAdds contribute nothing. The result lies in [0, 1].
    """
    points = frame[["accuracy", "madds"]].dropna().to_numpy(float)
    points = points[points[:, 1] < reference_madds]
    if len(points) == 0:
        return 0.0
    losses = np.column_stack([-points[:, 0], points[:, 1] / reference_madds])
    return float(compute_hypervolume(losses, np.array([0.0, 1.0])))


def search_gain(study: optuna.Study) -> dict[str, Any]:
    """The study's search gain over its reference family, as a JSON-ready dict.

    ``hypervolume``: of the searched front and of the reference front, same reference point
    (the budget's MAdds bound if it has one, else 1.1 x the largest trained MAdds).
    ``references``: for each reference net, the most accurate searched trial with no more
    MAdds, and the accuracy gain (None when no searched trial is that cheap).
    """
    frame = trained(trials_frame(study))
    is_ref = frame_is_reference(frame)
    searched, refs = frame[~is_ref], frame[is_ref]
    config = study.user_attrs.get(CONFIG_ATTR, {})
    limit = Budget.parse(config["budget"]).get("madds") if config.get("budget") else None
    reference_madds = float(limit.bound) if limit is not None else 1.1 * float(frame["madds"].max() or 1)

    rows = []
    for ref in refs.sort_values("madds").itertuples():
        cheaper = searched[searched["madds"] <= ref.madds]
        best = cheaper.loc[cheaper["accuracy"].idxmax()] if not cheaper.empty else None
        rows.append({
            "reference_name": ref.reference_name, "trial": int(ref.number), "madds": int(ref.madds),
            "accuracy": float(ref.accuracy),
            "best_searched_trial": None if best is None else int(best["number"]),
            "best_searched_madds": None if best is None else int(best["madds"]),
            "best_searched_accuracy": None if best is None else float(best["accuracy"]),
            "accuracy_gain": None if best is None else float(best["accuracy"] - ref.accuracy),
        })
    return {
        "study": study.study_name,
        "trained": {"searched": int(len(searched)), "reference": int(len(refs))},
        "hypervolume": {
            "reference_point": {"accuracy": 0.0, "madds": reference_madds},
            "searched": hypervolume(searched[pareto_mask(searched)], reference_madds),
            "reference": hypervolume(refs[pareto_mask(refs)], reference_madds),
        },
        "references": rows,
    }


def format_gain(gain: dict[str, Any]) -> str:
    """The search gain as a few lines of text."""
    hv = gain["hypervolume"]
    lines = [
        f"search gain ({gain['trained']['searched']} searched, {gain['trained']['reference']} reference nets trained):",
        f"  hypervolume (accuracy x MAdds, up to {hv['reference_point']['madds'] / 1e6:.1f}M MAdds): "
        f"searched {hv['searched']:.4f}, hand-scaled references {hv['reference']:.4f}",
    ]
    for row in gain["references"]:
        if row["best_searched_trial"] is None:
            lines.append(f"  {row['reference_name']:24s} {row['accuracy']:.3f} at {row['madds'] / 1e6:.1f}M: "
                         "no searched candidate as cheap")
        else:
            lines.append(
                f"  {row['reference_name']:24s} {row['accuracy']:.3f} at {row['madds'] / 1e6:.1f}M; best searched "
                f"at no more MAdds: trial {row['best_searched_trial']} {row['best_searched_accuracy']:.3f} at "
                f"{row['best_searched_madds'] / 1e6:.1f}M ({row['accuracy_gain']:+.3f})")
    if not gain["references"]:
        lines.append("  no reference network was trained in this study")
    return "\n".join(lines)


def write_report(study: optuna.Study, folder: Path) -> dict[str, Any]:
    """Write ``report.json`` (search gain and, once measured, proxy fidelity) into ``folder``."""
    report = search_gain(study)
    report["fidelity"] = study.user_attrs.get(FIDELITY_ATTR)
    atomic_write_text(Path(folder) / "report.json", json.dumps(report, indent=2))
    return report

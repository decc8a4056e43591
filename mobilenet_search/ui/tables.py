"""Text tables for the terminal: the Pareto-optimal candidates of a study, readable at 120 columns."""

from __future__ import annotations

import re

import numpy as np
import optuna
import pandas as pd

from mobilenet_search.arch.cost import format_count
from mobilenet_search.results.frame import pareto_front
from mobilenet_search.results.records import (
    CONFIRMS_ATTR,
    LEARNED_NOTHING_ATTR,
    Role,
    StudySettings,
    frame_role,
    study_val_labels,
    trivial_accuracy,
)

# The parts of an architecture string every member of a shipped space shares: dropped in tables.
_CONSTANT_PARTS = re.compile(r"^mnv[12]_|_stem\d+|_head\d+|_(relu6|relu)|_(linear|nonlinear)|_(fc|conv1x1)"
                             r"|_drop[\d.]+|_cls\d+|_in\d+|_div\d+")
ARCH_WIDTH = 64


def short_arch(arch: str, width: int = ARCH_WIDTH) -> str:
    """An architecture string without the parts a space keeps fixed, cut to ``width`` characters.

    >>> short_arch("mnv2_w0.35_r96_stem32_t1c16n1s1-t6c24n2s2_head1280_relu6_linear_fc_drop0.2_cls2_in1_div8")
    'w0.35_r96_t1c16n1s1-t6c24n2s2'
    """
    text = _CONSTANT_PARTS.sub("", arch)
    return text if len(text) <= width else text[:width - 1] + "…"


def imbalanced(study: optuna.Study) -> bool:
    """Whether the validation classes are unequal enough that top-1 accuracy flatters (elpv: 69 % one class)."""
    labels = study_val_labels(study)
    if labels is None or len(labels) == 0:
        return True
    shares = np.bincount(labels) / len(labels)
    return bool(shares.max() > 1 / len(shares) + 0.05)


def _with_interval(row: pd.Series, column: str) -> str:
    value, low, high = row.get(column), row.get(f"{column}_low"), row.get(f"{column}_high")
    if value is None or pd.isna(value):
        return "-"
    if low is None or pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f},{high:.2f}]"


def front_table(study: optuna.Study, frame: pd.DataFrame, quality: str, budget: str) -> str:
    """The Pareto-optimal candidates (``quality`` vs MAdds) as lines of text, with 95 % intervals.

    A supernet study's front is its inherited-weight scores, with each confirmation's scratch-trained
    accuracy beside the trial it confirms; balanced accuracy is shown where the classes are imbalanced.
    """
    settings = StudySettings.from_study(study)
    supernet = settings is not None and settings.supernet
    roles = frame_role(frame)
    confirmations = frame[roles == Role.CONFIRMATION]
    front = pareto_front(frame[(roles == Role.SEARCHED) | (roles == Role.REFERENCE)], quality=quality)
    if front.empty:
        return "no evaluated candidate inside the budget yet"
    shown = "accuracy" if quality == "balanced_accuracy" else quality  # balanced accuracy has its own column
    label = "inherited" if supernet else shown
    balanced = quality == "accuracy" and imbalanced(study)
    balanced = balanced or quality == "balanced_accuracy"
    header = [f"{'trial':>5s}", f"{'MAdds':>8s}", f"{'params':>8s}", f"{'latency':>9s}", f"{label:>20s}"]
    if balanced:
        header.append(f"{'balanced':>20s}")
    if supernet:
        header.append(f"{'confirmed':>20s}")
    note = ", 95 % intervals in brackets" if shown == "accuracy" else ""
    lines = [f"\nPareto-optimal candidates ({quality} vs MAdds), budget {budget}{note}:", " ".join(header) + "  arch"]
    confirmed = {int(row[CONFIRMS_ATTR]): row for _, row in confirmations.iterrows() if pd.notna(row["accuracy"])}
    for _, row in front.iterrows():
        latency = "-" if pd.isna(row["latency_ms"]) else f"{row['latency_ms']:.2f}ms"
        value = _with_interval(row, "accuracy") if shown == "accuracy" else f"{row[quality]:.4g}"
        cells = [f"{int(row['number']):5d}", f"{format_count(row['madds']):>8s}", f"{format_count(row['params']):>8s}",
                 f"{latency:>9s}", f"{value:>20s}"]
        if balanced:
            cells.append(f"{_with_interval(row, 'balanced_accuracy'):>20s}")
        if supernet:
            twin = confirmed.get(int(row["number"]))
            cells.append(f"{'-' if twin is None else _with_interval(twin, 'accuracy'):>20s}")
        name = f"  [{row['reference_name']}]" if isinstance(row["reference_name"], str) else ""
        nothing = "  LEARNED NOTHING" if row.get(LEARNED_NOTHING_ATTR) is True else ""
        lines.append(" ".join(cells) + f"  {short_arch(row['arch'])}{name}{nothing}")
    labels = study_val_labels(study)
    if labels is not None and len(labels) and shown == "accuracy":
        lines.append(f"trivial classifier (always the most frequent class): accuracy {trivial_accuracy(labels):.3f}; "
                     "LEARNED NOTHING marks a net not better than it (one-sided binomial test, 5 %)")
    return "\n".join(lines)

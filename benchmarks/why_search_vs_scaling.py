"""Why an arm of bench_search_vs_scaling.py does or does not beat hand scaling: the proxy, the space and sampler,
the compute, read from a finished run's stored states (nothing is trained).

Give it the run's own options (they find its states by the same key)::

    python benchmarks/why_search_vs_scaling.py --dataset fashion-mnist --dataset-limit 6000 --budget-seconds 1200 \
        --epochs 2 --short-epochs 1 --final-epochs 4 --proxy-size 48 --supernet-epochs 8 --final-top 4 --seed 0

It prints three tables:

- **The proxy.** Kendall's tau (with a bootstrap interval) between every retrained net's validation accuracy
  under the proxy (where its arm picked it) and its test accuracy after the longer retraining with a fresh
  seed, and per arm its front's mean change from one to the other. The longer training lifts every net; an
  arm whose front gains less than hand scaling's picked nets whose proxy scores were lucky (the optimism of the
  best of many on noisy validation). A proxy that ranks well and a gain no smaller than hand scaling's rule the
  proxy out as the cause.
- **The space and the sampler.** Every net a search arm trained under the full proxy, against hand scaling's
  staircase on validation: the best hand-scaled net at no more MAdds. How many lie above it, how many are better
  by the exact McNemar test at 5 % (the tool's own rule), how many would be by chance alone if none were
  (2.5 % of them: one side of a two-sided test), and the largest margin. When the nets better than the staircase
  are no more than chance gives, the space holds nothing this proxy can tell apart from the paper's family.
  Then the same nets against the family's front joined in log MAdds: their worth at equal MAdds.
- **The compute.** The validation hypervolume (above the trivial floor) that the arm's nets add to the
  family's: all of them, and a scratch arm's first nets in the compute the family leaves of the budget
  (what a search seeded with the family would have had). Per arm, CPU seconds spent, nets trained under the
  full proxy, and seconds a net.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import bench_search_vs_scaling as bench  # the sibling script: the run's options, states and fronts
import bench_strategies as strategies
import numpy as np
import pandas as pd

from mobilenet_search.arch.budget import Budget
from mobilenet_search.results.frame import pareto_mask
from mobilenet_search.results.records import trivial_accuracy
from mobilenet_search.results.report import hypervolume
from mobilenet_search.results.stats import compare, kendall_tau_interval
from mobilenet_search.search.study import make_data

ALPHA = 0.05  # the McNemar level of the tool's verdicts
RESAMPLES = 1000


def staircase_margins(nets: pd.DataFrame, family: pd.DataFrame) -> pd.DataFrame:
    """Each net of ``nets`` against the best net of ``family`` (by validation accuracy) at no more MAdds: its
    margin and McNemar verdict on validation. Nets cheaper than the whole family are left out (nothing to beat)."""
    family = family.sort_values("madds").reset_index(drop=True)
    best_so_far = family["accuracy"].cummax()
    rows = []
    for _, net in nets.iterrows():
        cheaper = family.index[family["madds"] <= net["madds"]]
        if len(cheaper) == 0:
            continue
        ref = family.loc[best_so_far[cheaper].idxmax()]
        verdict = compare(*bench.correct_matrix([net, ref], "val"), alpha=ALPHA)
        rows.append({"arch": net["arch"], "madds": float(net["madds"]), "accuracy": float(net["accuracy"]),
                     "reference": ref["name"], "reference_accuracy": float(ref["accuracy"]),
                     "margin": float(net["accuracy"] - ref["accuracy"]), "verdict": verdict.verdict,
                     "p_value": verdict.p_value})
    return pd.DataFrame(rows, columns=["arch", "madds", "accuracy", "reference", "reference_accuracy", "margin",
                                       "verdict", "p_value"])


def curve_margins(nets: pd.DataFrame, family: pd.DataFrame) -> np.ndarray:
    """Each net's validation accuracy minus the family's front at its MAdds, the front joined linearly in log MAdds:
    the architecture's worth at equal cost. Nets outside the front's MAdds range are left out."""
    front = family[pareto_mask(family)].sort_values("madds")
    inside = nets[(nets["madds"] >= front["madds"].min()) & (nets["madds"] <= front["madds"].max())]
    at = np.interp(np.log(inside["madds"].to_numpy(float)), np.log(front["madds"].to_numpy(float)),
                   front["accuracy"].to_numpy(float))
    return inside["accuracy"].to_numpy(float) - at


def space_row(margins: pd.DataFrame, trained: int, on_curve: np.ndarray) -> dict[str, Any]:
    best = margins.loc[margins["margin"].idxmax()] if len(margins) else None
    better = margins[margins["verdict"] == "better"]
    return {"trained": trained, "in_range": int(len(margins)), "above": int((margins["margin"] > 0).sum()),
            "better": int(len(better)),
            "better_madds": [float(better["madds"].min()), float(better["madds"].max())] if len(better) else None,
            "curve_nets": int(len(on_curve)), "curve_above": int((on_curve > 0).sum()),
            "curve_median": float(np.median(on_curve)) if len(on_curve) else None,
            "curve_largest": float(on_curve.max()) if len(on_curve) else None,
            "worse": int((margins["verdict"] == "worse").sum()),
            "by_chance": ALPHA / 2 * len(margins),
            "largest_margin": None if best is None else float(best["margin"]),
            "largest_at": None if best is None else float(best["madds"]),
            "largest_p": None if best is None else float(best["p_value"]),
            "largest_against": None if best is None else best["reference"]}


def diagnose(args: argparse.Namespace) -> dict[str, Any]:
    """The three tables as a JSON-ready dict: ``proxy``, ``space`` (per search arm) and ``compute`` (per arm)."""
    retrained = bench.finals(args)
    if not retrained:
        raise SystemExit(f"no finished run of these options under {args.results_dir} (key {bench.run_key(args)}): "
                         "run bench_search_vs_scaling.py with them first")
    # Each retrained net's validation accuracy under the proxy, where its arm picked it (the first arm that did).
    fronts = {arm: bench.arm_front(args, arm) for arm in bench.ARMS}
    proxy = {}
    for front in fronts.values():
        for arch, accuracy in zip(front["arch"], front["accuracy"], strict=True):
            proxy.setdefault(arch, float(accuracy))
    pooled = [(proxy[arch], e["test_accuracy"]) for arch, e in retrained.items() if arch in proxy]
    tau = kendall_tau_interval([v for v, _ in pooled], [t for _, t in pooled], seed=bench.REPORT_SEED,
                               resamples=RESAMPLES)
    gains = {}
    for arm, front in fronts.items():
        pairs = [(a, v) for a, v in zip(front["arch"], front["accuracy"], strict=True) if a in retrained]
        gains[arm] = float(np.mean([retrained[a]["test_accuracy"] - v for a, v in pairs])) if pairs else None
    nets = {arm: bench.arm_nets(args, arm) for arm in bench.ARMS}
    family = nets["scaling"].drop_duplicates("arch")
    labels = make_data(bench.search_config(args), args.results_dir)(args.proxy_size).val_labels.numpy()
    floor, reference = trivial_accuracy(labels), float(Budget.parse(args.budget).get("madds").bound)
    family_area = hypervolume(family, reference, floor)
    compute = {}
    for arm in bench.ARMS:
        spent = strategies.load_state(bench.arm_state_path(args, arm)).get("budget_spent")
        count = int(len(nets[arm]))
        compute[arm] = {"spent": spent, "trained": count,
                        "seconds_a_net": (spent / count) if spent is not None and count else None}
    left = max(0.0, args.budget_seconds - (compute["scaling"]["spent"] or args.budget_seconds))  # after the family
    space = {}
    for arm in bench.ARMS[1:]:
        searched = nets[arm].drop_duplicates("arch")
        space[arm] = space_row(staircase_margins(searched, family), int(len(nets[arm])),
                               curve_margins(searched, family))
        # What the arm's nets add to the family's front on validation, picked and scored there (optimistic): all of
        # them, and (a scratch arm) its first nets in the compute the family leaves (the family trained first).
        space[arm]["area_added"] = hypervolume(pd.concat([family, searched]), reference, floor) - family_area
        space[arm]["area_alone"] = hypervolume(searched, reference, floor) - family_area
        per_net = compute[arm]["seconds_a_net"]
        first = int(left // per_net) if per_net and arm != "supernet" else None
        space[arm]["first_nets"] = first
        space[arm]["area_added_first"] = (None if first is None else
                                          hypervolume(pd.concat([family, nets[arm].iloc[:first]]), reference, floor)
                                          - family_area)
    return {"key": bench.run_key(args), "proxy": {"nets": len(pooled), "tau": list(tau), "gain": gains},
            "family_area": family_area, "family_left": left, "space": space, "compute": compute}


def print_diagnosis(result: dict[str, Any]) -> None:
    value, low, high = result["proxy"]["tau"]
    print(f"== the proxy: validation under the proxy vs test after retraining, {result['proxy']['nets']} nets")
    print(f"Kendall's tau {value:+.2f} [{low:+.2f}, {high:+.2f}] (95% bootstrap over nets)")
    print("front's mean change from validation under the proxy to test after retraining: " + ", ".join(
        f"{bench.LABELS[arm]} {gain:+.3f}" for arm, gain in result["proxy"]["gain"].items() if gain is not None))
    print("\n== the space and the sampler: each searched net against the best hand-scaled net at no more MAdds "
          "(validation)")
    header = ["arm", "trained", "in range", "above", "better (McNemar 5%)", "by chance", "worse", "better at",
              "largest margin"]
    rows = []
    for arm, row in result["space"].items():
        largest = ("-" if row["largest_margin"] is None else
                   f"{row['largest_margin']:+.3f} at {row['largest_at'] / 1e6:.0f}M vs {row['largest_against']} "
                   f"(p = {row['largest_p']:.2g})")
        where = "-" if row["better_madds"] is None else "{:.0f}-{:.0f}M".format(*(m / 1e6 for m in row["better_madds"]))
        rows.append([bench.LABELS[arm], row["trained"], row["in_range"], row["above"], row["better"],
                     f"{row['by_chance']:.1f}", row["worse"], where, largest])
    print(pd.DataFrame(rows, columns=header).to_string(index=False))
    print("\nthe same nets against hand scaling's front joined in log MAdds (accuracy at equal MAdds):")
    rows = [[bench.LABELS[arm], row["curve_nets"], row["curve_above"],
             "-" if row["curve_median"] is None else f"{row['curve_median']:+.3f}",
             "-" if row["curve_largest"] is None else f"{row['curve_largest']:+.3f}"]
            for arm, row in result["space"].items()]
    print(pd.DataFrame(rows, columns=["arm", "in range", "above", "median margin", "largest margin"])
          .to_string(index=False))
    print(f"\nhypervolume above the floor on validation (hand scaling's family: {result['family_area']:.4f}), "
          "minus the family's:")
    rows = [[bench.LABELS[arm], f"{row['area_alone']:+.4f}", f"{row['area_added']:+.4f}",
             "-" if row["first_nets"] is None else f"{row['area_added_first']:+.4f} ({row['first_nets']} nets)"]
            for arm, row in result["space"].items()]
    print(pd.DataFrame(rows, columns=["arm", "the arm's nets alone", "the family and all the arm's nets",
                                      f"the family and the arm's first nets in {result['family_left']:.0f} CPU s"])
          .to_string(index=False))
    print("\n== the compute")
    rows = [[bench.LABELS[arm], "-" if c["spent"] is None else f"{c['spent']:.0f}", c["trained"],
             "-" if c["seconds_a_net"] is None else f"{c['seconds_a_net']:.0f}"]
            for arm, c in result["compute"].items()]
    print(pd.DataFrame(rows, columns=["arm", "CPU s", "nets trained", "CPU s a net"]).to_string(index=False))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench.parse_args(argv)
    result = diagnose(args)
    print_diagnosis(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

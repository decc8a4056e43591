"""Plotly figures of a study (figures.py), on hand-made trial frames: no storage, no Streamlit."""

import math

import pandas as pd
import plotly.graph_objects as go
import pytest
from synthetic import frame_of

from mobilenet_search.ui.figures import (
    CONFIRMATION_LINKS,
    CONFIRMED,
    FAILED,
    INDISTINGUISHABLE,
    OVER_BUDGET,
    SEED_REPEATS,
    WEBGL_ABOVE,
    frontier_figure,
    history_figure,
    importance_figure,
    training_curve_figure,
)

# Trials 0-4 trained: 0, 1, 3 on the front (cost up, accuracy up); 2 and 4 dominated.
STUDY_ROWS = (
    dict(madds=100e6, params=1e6, latency_ms=5.0, accuracy=0.70),
    dict(madds=200e6, params=2e6, latency_ms=9.0, accuracy=0.80),
    dict(madds=250e6, params=2.5e6, latency_ms=4.0, accuracy=0.75),
    dict(madds=280e6, params=3e6, latency_ms=12.0, accuracy=0.85),
    dict(madds=150e6, params=1.5e6, latency_ms=6.0, accuracy=0.65),
    dict(madds=400e6, params=5e6, feasible=False, outcome="over_budget", status_reason="over budget 300M-madds"),
    dict(madds=120e6, params=1e6, state="FAIL", outcome="failed", status_reason="TrainingDiverged: nan"),
    dict(madds=90e6, params=0.9e6, latency_ms=3.0, accuracy=0.69, reference=True,
         reference_name="mobilenet_v2_0.5_128"),
    dict(madds=210e6, params=2e6, latency_ms=8.0, accuracy=0.74, reference=True,
         reference_name="mobilenet_v2_1_160"),
)
STUDY = frame_of(*STUDY_ROWS)


def _trace(fig: go.Figure, name: str):
    matches = [trace for trace in fig.data if trace.name == name]
    assert len(matches) == 1, [trace.name for trace in fig.data]
    return matches[0]


def _x_title(fig: go.Figure) -> str:
    """The cost axis title: on the bottom row, the strip's axis when there is one."""
    layout = fig.layout.to_plotly_json()
    return layout.get("xaxis2", layout["xaxis"])["title"]["text"]


def _numbers(trace) -> list[int]:
    return [int(row[0]) for row in trace.customdata]


def test_frontier_highlights_the_pareto_set_joined_as_a_step_line():
    fig = frontier_figure(STUDY)
    front = _trace(fig, "Pareto front")
    assert _numbers(front) == [0, 1, 3]  # cheapest first
    assert list(front.x) == [100e6, 200e6, 280e6] and list(front.y) == [0.70, 0.80, 0.85]
    assert front.mode == "lines+markers" and front.line.shape == "hv"
    assert sorted(_numbers(_trace(fig, "trials"))) == [2, 4]
    assert _x_title(fig) == "MAdds" and fig.layout.yaxis.title.text == "accuracy"


def test_untrained_trials_are_drawn_apart_or_hidden_by_the_toggle():
    fig = frontier_figure(STUDY)
    assert _numbers(_trace(fig, OVER_BUDGET)) == [5] and list(_trace(fig, OVER_BUDGET).y) == [OVER_BUDGET]
    assert _numbers(_trace(fig, FAILED)) == [6]
    assert _trace(fig, FAILED).yaxis == "y2" and _trace(fig, "Pareto front").yaxis == "y"  # a strip of its own
    hidden = frontier_figure(STUDY, show_unfinished=False)
    assert {t.name for t in hidden.data} == {"trials", "Pareto front", "paper reference networks", "reference front"}
    assert "xaxis2" not in hidden.layout.to_plotly_json()


def test_budget_keeps_what_fits_and_recomputes_the_front():
    fig = frontier_figure(STUDY, budget=260e6)
    assert _numbers(_trace(fig, "Pareto front")) == [0, 1]
    assert sorted(_numbers(_trace(fig, "trials"))) == [2, 4]
    assert all(x <= 260e6 for trace in fig.data for x in trace.x)
    assert [shape.x0 for shape in fig.layout.shapes] == [260e6, 260e6]  # the budget line, on both rows
    assert any("budget 260.0M" in a.text for a in fig.layout.annotations)
    # A budget under the cheapest dominated trial's rival makes it optimal.
    assert _numbers(_trace(frontier_figure(STUDY, budget=160e6), "Pareto front")) == [0]


def test_the_other_costs_draw_the_same_frontier_against_latency_and_parameters():
    by_latency = frontier_figure(STUDY, cost="latency_ms", color="params")
    # Against latency, trial 2 (4 ms, 0.75) dominates 0 (5 ms, 0.70) and 4.
    assert _numbers(_trace(by_latency, "Pareto front")) == [2, 1, 3]
    assert _x_title(by_latency) == "latency (ms)"
    assert list(_trace(by_latency, "Pareto front").marker.color) == [2.5e6, 2e6, 3e6]
    assert by_latency.layout.coloraxis.colorbar.title.text == "parameters"
    by_params = frontier_figure(STUDY, cost="params")
    assert list(_trace(by_params, "Pareto front").x) == [1e6, 2e6, 3e6]
    with pytest.raises(ValueError, match="cost must be one of"):
        frontier_figure(STUDY, cost="flops")


def test_markers_are_coloured_by_latency_and_hover_every_metric():
    fig = frontier_figure(STUDY.assign(zc_synflow=1.5))
    trials = _trace(fig, "trials")
    assert list(trials.marker.color) == [4.0, 6.0] and trials.marker.coloraxis == "coloraxis"
    assert fig.layout.coloraxis.colorbar.title.text == "latency (ms)"
    template = trials.hovertemplate
    for metric in ("accuracy", "madds", "params", "latency_ms", "outcome", "zc_synflow"):
        assert f"{metric}: %{{customdata[" in template, metric
    assert trials.customdata[0][1] == "arch2"  # the architecture string, second after the number
    assert "status_reason" in _trace(fig, OVER_BUDGET).hovertemplate
    plain = frontier_figure(STUDY, color=None)
    assert _trace(plain, "Pareto front").marker.color == "#d62728"


def test_reference_networks_are_a_labelled_series_outside_the_search_front():
    fig = frontier_figure(STUDY)
    references = _trace(fig, "paper reference networks")
    assert _numbers(references) == [7, 8] and references.mode == "markers+text"
    assert list(references.text) == ["v2 0.5_128", "v2 1_160"]  # both on the references' own front
    assert 7 not in _numbers(_trace(fig, "Pareto front"))  # 7 would dominate trial 0 if it were searched
    assert not any(t.name == "paper reference networks" for t in frontier_figure(STUDY, show_references=False).data)


def test_the_selected_trial_is_ringed():
    fig = frontier_figure(STUDY, selected=3)
    ring = _trace(fig, "trial 3")
    assert list(ring.x) == [280e6] and list(ring.y) == [0.85]
    assert not any(t.name == "trial 5" for t in frontier_figure(STUDY, selected=5).data)  # never trained


def test_large_studies_are_drawn_with_webgl():
    many = pd.concat([STUDY] * (WEBGL_ABOVE // 5 + 1), ignore_index=True)  # 7 searched trials each
    fig = frontier_figure(many)
    assert isinstance(_trace(fig, "trials"), go.Scattergl)
    assert isinstance(_trace(fig, "Pareto front"), go.Scatter)  # small, and must stay on top
    assert isinstance(_trace(frontier_figure(STUDY), "trials"), go.Scatter)


def test_frontier_of_a_study_without_trained_trials_is_empty_not_an_error():
    fig = frontier_figure(STUDY[STUDY["outcome"] != "trained"])
    assert len(_trace(fig, "Pareto front").x) == 0 and _numbers(_trace(fig, OVER_BUDGET)) == [5]


def test_history_shows_each_trained_trial_and_the_best_so_far():
    fig = history_figure(STUDY)
    assert list(_trace(fig, "trained trial").x) == [0, 1, 2, 3, 4]
    assert list(_trace(fig, "best so far").y) == [0.70, 0.80, 0.80, 0.85, 0.85]


def test_importances_most_important_on_top_and_training_curve_by_epoch():
    bars = importance_figure({"width_mult": 0.6, "resolution": 0.3, "stage2.expansion": 0.1}).data[0]
    assert list(bars.y) == ["stage2.expansion", "resolution", "width_mult"]  # plotly draws the last on top
    curve = training_curve_figure([0.5, 0.6, 0.65]).data[0]
    assert list(curve.x) == [1, 2, 3] and list(curve.y) == [0.5, 0.6, 0.65]
    # Evaluated after the last epoch only: that accuracy sits at the last epoch, the loss at every one.
    accuracy, loss = training_curve_figure([0.7], [0.9, 0.6, 0.5]).data
    assert list(accuracy.x) == [3] and list(accuracy.y) == [0.7]
    assert list(loss.x) == [1, 2, 3] and list(loss.y) == [0.9, 0.6, 0.5] and loss.yaxis == "y2"


def test_training_curve_accuracy_axis_spans_the_data_within_0_and_1():
    # One point alone got plotly's default range (about -0.3 to 1.6): the axis is padded around the data instead.
    assert tuple(training_curve_figure([0.7], [0.9, 0.6]).layout.yaxis.range) == pytest.approx((0.65, 0.75))
    assert tuple(training_curve_figure([0.02, 0.99]).layout.yaxis.range) == pytest.approx((0.0, 1.0))


# -- intervals, noise repeats, supernet confirmations ---------------------------------------------------


def _with_intervals(frame: pd.DataFrame, numbers: list[int], half: float = 0.03) -> pd.DataFrame:
    """``frame`` where the trials ``numbers`` recorded intervals: accuracy -half/+half*2/3, balanced +-half/2."""
    frame = frame.copy()
    rows = frame["number"].isin(numbers)
    frame.loc[rows, "accuracy_low"] = frame.loc[rows, "accuracy"] - half
    frame.loc[rows, "accuracy_high"] = frame.loc[rows, "accuracy"] + half * 2 / 3
    frame.loc[rows, "balanced_accuracy"] = frame.loc[rows, "accuracy"] - 0.02
    frame.loc[rows, "balanced_accuracy_low"] = frame.loc[rows, "balanced_accuracy"] - half / 2
    frame.loc[rows, "balanced_accuracy_high"] = frame.loc[rows, "balanced_accuracy"] + half / 2
    return frame


def _bars(trace) -> tuple[list[float], list[float]]:
    """A trace's error bars (up, down), NaN as None: plotly draws no bar there."""
    def plain(values):
        return [None if v is None or math.isnan(v) else round(float(v), 9) for v in values]
    return plain(trace.error_y.array), plain(trace.error_y.arrayminus)


def test_every_trained_point_with_an_interval_carries_it_as_an_error_bar():
    fig = frontier_figure(_with_intervals(STUDY, [0, 1, 2, 4, 7, 8]))  # trial 3 from an older study: no interval
    front = _trace(fig, "Pareto front")
    assert front.error_y.type == "data" and front.error_y.symmetric is False
    assert _bars(front) == ([0.02, 0.02, None], [0.03, 0.03, None])  # trials 0, 1, 3
    assert _bars(_trace(fig, "trials")) == ([0.02, 0.02], [0.03, 0.03])
    assert _bars(_trace(fig, "paper reference networks")) == ([0.02, 0.02], [0.03, 0.03])
    plain = frontier_figure(STUDY)  # no trial recorded an interval: no bars at all
    assert all(trace.error_y.array is None for trace in plain.data)


def test_balanced_accuracy_as_the_quality_axis_uses_its_own_interval():
    frame = _with_intervals(STUDY, [0, 1, 2, 3, 4])
    fig = frontier_figure(frame, quality="balanced_accuracy")
    front = _trace(fig, "Pareto front")
    assert list(front.y) == pytest.approx([0.68, 0.78, 0.83])
    assert _bars(front) == ([0.015] * 3, [0.015] * 3)
    assert fig.layout.yaxis.title.text == "balanced accuracy"
    with pytest.raises(ValueError, match="quality must be one of"):
        frontier_figure(STUDY, quality="zc_synflow")


# STUDY and two noise repeats (9, 10) of reference 7, mobilenet_v2_0.5_128.
REPEATS = frame_of(*STUDY_ROWS, *(dict(madds=90e6, accuracy=accuracy, reference=True, noise_seed=seed,
                                       reference_name="mobilenet_v2_0.5_128")
                                  for seed, accuracy in ((1, 0.72), (2, 0.67))))


def test_noise_repeats_are_a_faint_series_of_their_own_on_no_front():
    fig = frontier_figure(REPEATS)
    repeats = _trace(fig, SEED_REPEATS)
    assert _numbers(repeats) == [9, 10] and repeats.opacity < 1
    assert _numbers(_trace(fig, "paper reference networks")) == [7, 8]
    # 9 (0.72 at 90M) would be on the reference front, and label it, if it counted as a reference.
    assert list(_trace(fig, "reference front").y) == [0.69, 0.74]
    assert not any(t.name == SEED_REPEATS for t in frontier_figure(REPEATS, show_references=False).data)


# A supernet study: 0-4 scored with inherited weights, 5 and 6 retrain 0 and 3 from scratch, 7 a reference.
SUPERNET = frame_of(
    dict(madds=100e6, accuracy=0.66, strategy="supernet"),
    dict(madds=200e6, accuracy=0.70, strategy="supernet"),
    dict(madds=250e6, accuracy=0.68, strategy="supernet"),
    dict(madds=280e6, accuracy=0.75, strategy="supernet"),
    dict(madds=150e6, accuracy=0.60, strategy="supernet"),
    dict(madds=100e6, accuracy=0.71, strategy="scratch", confirms=0, accuracy_low=0.67, accuracy_high=0.75),
    dict(madds=280e6, accuracy=0.80, strategy="scratch", confirms=3, accuracy_low=0.76, accuracy_high=0.84),
    dict(madds=210e6, accuracy=0.74, strategy="scratch", reference=True, reference_name="mobilenet_v2_1_160"),
)


def test_a_supernet_study_shows_inherited_and_confirmed_accuracy_apart_and_linked():
    fig = frontier_figure(SUPERNET, selected=6)
    assert _numbers(_trace(fig, "Pareto front (inherited weights)")) == [0, 1, 3]  # confirmations not among them
    assert sorted(_numbers(_trace(fig, "trials (inherited weights)"))) == [2, 4]
    confirmed = _trace(fig, CONFIRMED)
    assert _numbers(confirmed) == [5, 6] and list(confirmed.y) == [0.71, 0.80]
    assert _bars(confirmed) == ([0.04, 0.04], [0.04, 0.04])
    assert "confirms: %{customdata[" in confirmed.hovertemplate
    links = _trace(fig, CONFIRMATION_LINKS)  # inherited point -> its confirmation, one segment each
    assert list(links.x) == [100e6, 100e6, None, 280e6, 280e6, None]
    assert list(links.y) == [0.66, 0.71, None, 0.75, 0.80, None]
    assert list(_trace(fig, "confirmed front").y) == [0.71, 0.80]
    assert list(_trace(fig, "trial 6").y) == [0.80]  # a confirmation can be selected
    assert {t.name for t in frontier_figure(STUDY).data}.isdisjoint({CONFIRMED, CONFIRMATION_LINKS})


def test_trials_indistinguishable_from_the_front_get_a_halo_under_their_marker():
    fig = frontier_figure(STUDY, shaded=[2, 4, 5])  # 5 was never trained: no halo
    halo = _trace(fig, INDISTINGUISHABLE)
    assert _numbers(halo) == [2, 4] and list(halo.y) == [0.75, 0.65]
    assert fig.data[0].name == INDISTINGUISHABLE  # drawn first, under the markers
    assert not any(t.name == INDISTINGUISHABLE for t in frontier_figure(STUDY).data)
    assert halo.marker.opacity < 1 and halo.hoverinfo == "skip"


# -- the scaling view --------------------------------------------------------------------------------


def _scaling_analysis():
    """Two directions fitted on per-image records drawn around known curves: width reaches its knee inside the
    measured range, depth is still rising at its largest net; resolution has no fit."""
    import numpy as np

    from mobilenet_search.results.scaling_fit import Curve, Point, fit_direction

    rng = np.random.default_rng(0)
    base = 10e6
    fits = {}
    for direction, truth, madds in (("width", Curve(0.9, 0.2, 2.5, base), (10e6, 20e6, 40e6, 80e6)),
                                    ("depth", Curve(0.95, 0.35, 0.5, base), (10e6, 20e6, 40e6, 80e6))):
        points = [Point(m, rng.random((2, 2000)) < truth.predict(m)) for m in madds]
        fits[direction] = fit_direction(points, base, floor=0.5, noise=0.02, resamples=30)
    directions = {name: {"fit": fit, "reason": None} for name, fit in fits.items()}
    directions["resolution"] = {"fit": None, "reason": "too few points to fit"}
    return {"directions": directions, "trivial": 0.5}


def test_the_scaling_figure_draws_each_fitted_direction_s_curve_band_points_and_knee():
    from mobilenet_search.results.scaling_fit import predict
    from mobilenet_search.ui.figures import PAPER_FAMILY, RECOMMENDED, scaling_figure

    analysis = _scaling_analysis()
    width, depth = analysis["directions"]["width"]["fit"], analysis["directions"]["depth"]["fit"]
    assert width["knee_measured"] and not depth["knee_measured"]  # the two kinds of knee marker
    paper = [{"name": "mobilenet_v2_0.5_96", "madds": 20e6, "accuracy": 0.8}]
    answer = {"madds": 40e6, "accuracy": 0.87, "interval": [0.85, 0.89], "direction": "width"}
    fig = scaling_figure(analysis, paper=paper, recommendation=answer)
    traces = {trace.name: trace for trace in fig.data}
    assert not any(name.startswith("resolution") for name in traces)  # no fit, nothing drawn
    for name, fit in (("width", width), ("depth", depth)):
        band = traces[f"{name} 95 % band"]
        assert band.fill == "toself"
        assert list(band.x) == fit["band"]["madds"] + fit["band"]["madds"][::-1]
        assert list(band.y) == fit["band"]["high"] + fit["band"]["low"][::-1]
        assert all(lo <= mid <= hi for lo, mid, hi in zip(fit["band"]["low"], fit["band"]["accuracy"],
                                                          fit["band"]["high"], strict=True))
        assert list(traces[f"{name} fit"].y) == fit["band"]["accuracy"]
        assert list(traces[f"{name} measured"].x) == [p["madds"] for p in fit["points"]]
        assert list(traces[f"{name} measured"].y) == [p["accuracy"] for p in fit["points"]]
    knee = traces["width knee"]
    assert knee.x[0] == width["knee"] and knee.y[0] == pytest.approx(predict(width, width["knee"])[0])
    assert knee.marker.symbol == "x" and "width knee:" in knee.hovertext[0]
    beyond = traces["depth knee"]  # not reached: marked at the largest measured net
    assert beyond.x[0] == depth["measured_madds"][1] and beyond.marker.symbol == "triangle-right"
    assert "not reached" in beyond.hovertext[0]
    assert list(traces[PAPER_FAMILY].x) == [20e6] and "mobilenet_v2_0.5_96" in traces[PAPER_FAMILY].hovertext[0]
    star = traces[RECOMMENDED]
    assert star.x[0] == 40e6 and star.error_y.array[0] == pytest.approx(0.02)
    assert star.error_y.arrayminus[0] == pytest.approx(0.02)
    assert fig.layout.xaxis.type == "log" and fig.layout.shapes[0].y0 == 0.5  # the trivial classifier's line

"""Plotly figures of a study: the frontier, its history, importances, a training curve.

Pure functions of the frame that :func:`mobilenet_search.results.frame.trials_frame` (or the
dashboard's fast loader) gives; the dashboard lays them out, and they work as well in a
notebook (``frontier_figure(frame).show()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mobilenet_search.results.frame import pareto_mask, trained
from mobilenet_search.results.records import frame_is_reference

# The costs a frontier can be drawn against, with their axis labels.
COSTS = {"madds": "MAdds", "latency_ms": "latency (ms)", "params": "parameters"}
COLORS = {"latency_ms": "latency (ms)", "params": "parameters", "madds": "MAdds", "accuracy": "accuracy"}
# What a hover shows, in this order, when the trial recorded it; other numeric attributes follow.
HOVER = ("accuracy", "balanced_accuracy", "madds", "params", "latency_ms", "latency_device", "latency_batch",
         "proxy_resolution", "epochs", "train_seconds", "duration_s", "outcome", "status_reason", "reference_name")
_NOT_METRICS = {"number", "state", "feasible", "arch", "spec", "accuracy_history", "retry_of", "reference"}
_FORMATS = {"madds": ":,.0f", "params": ":,.0f", "accuracy": ":.4f", "balanced_accuracy": ":.4f",
            "latency_ms": ":.3f", "train_seconds": ":.1f", "duration_s": ":.1f"}
WEBGL_ABOVE = 2000  # more markers than this are drawn with WebGL: SVG gets slow in the browser
PARETO_COLOR = "#d62728"
OVER_BUDGET, FAILED = "over budget (not trained)", "failed / pruned"
REFERENCE_COLOR = "#444444"
GREY = "#8a8a8a"


def hover_columns(frame: pd.DataFrame) -> list[str]:
    """The metrics a hover lists: :data:`HOVER` first, then any other numeric attribute recorded."""
    present = [c for c in HOVER if c in frame and frame[c].notna().any()]
    others = [c for c in frame.columns if c not in _NOT_METRICS and c not in present
              and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]
    return present + others


def _hover(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, str]:
    """customdata (trial number first, then the architecture string, then ``columns``) and its template."""
    data = np.empty((len(frame), len(columns) + 2), dtype=object)
    data[:, 0] = frame["number"].to_numpy()
    data[:, 1] = frame["arch"].to_numpy() if "arch" in frame else None
    lines = ["<b>trial %{customdata[0]}</b>", "%{customdata[1]}"]
    for i, column in enumerate(columns, start=2):
        values = frame[column]
        data[:, i] = np.where(values.notna(), values.to_numpy(dtype=object), None)
        lines.append(f"{column}: %{{customdata[{i}]{_FORMATS.get(column, '')}}}")
    return data, "<br>".join(lines) + "<extra>%{fullData.name}</extra>"


def _scatter(webgl: bool, **kwargs) -> go.Scatter | go.Scattergl:
    return go.Scattergl(**kwargs) if webgl else go.Scatter(**kwargs)


def frontier_figure(frame: pd.DataFrame, *, cost: str = "madds", color: str | None = "latency_ms",
                    budget: float | None = None, show_unfinished: bool = True, show_references: bool = True,
                    selected: int | None = None, title: str | None = None, height: int = 600) -> go.Figure:
    """Accuracy against ``cost`` for every trial, the Pareto-optimal ones joined as a step line.

    Trained, feasible trials are coloured by ``color`` (a column, or None); the Pareto set is
    recomputed among those inside ``budget`` (a maximum of ``cost``), and everything above
    the budget is left out. Over-budget (never trained), failed and pruned trials have no
    accuracy to plot: unless ``show_unfinished`` is False they are drawn apart, as grey
    crosses on a strip under the frontier (same cost axis). The paper's reference networks
    (trials with ``reference=True``) are a labelled series of their own. Each marker's
    ``customdata`` starts with the trial number; its hover lists the architecture and every
    recorded metric.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, not {cost!r}")
    columns = hover_columns(frame)
    searched = frame[~frame_is_reference(frame)]
    if budget is not None:
        searched = searched[~(searched[cost] > budget)]
    good = trained(searched)
    good = good[good[cost].notna()]
    on_front = pareto_mask(good, cost)
    front, rest = good[on_front].sort_values(cost), good[~on_front]
    webgl = len(searched) > WEBGL_ABOVE
    coloring = color is not None and color in good and good[color].notna().any()

    others = searched[~searched.index.isin(good.index) & searched[cost].notna()]
    over = others[(others["state"] == "COMPLETE") & ~others["feasible"].astype(bool)]
    failed = others[~others.index.isin(over.index) & others["state"].isin(["FAIL", "PRUNED"])]
    strip = [(part, name, symbol) for part, name, symbol in ((over, OVER_BUDGET, "x-thin-open"), (failed, FAILED, "x"))
             if show_unfinished and not part.empty]
    if strip:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.84, 0.16], vertical_spacing=0.03)
    else:
        fig = make_subplots(rows=1, cols=1)
    top = dict(row=1, col=1)

    marker = dict(size=7, opacity=0.75)
    if coloring:
        marker.update(color=rest[color], coloraxis="coloraxis")
    data, template = _hover(rest, columns)
    fig.add_trace(_scatter(webgl, x=rest[cost], y=rest["accuracy"], mode="markers", name="trials",
                           marker=marker, customdata=data, hovertemplate=template), **top)

    for part, name, symbol in strip:
        data, template = _hover(part, columns)
        fig.add_trace(_scatter(webgl, x=part[cost], y=[name] * len(part), mode="markers", name=name,
                               marker=dict(symbol=symbol, size=7, color=GREY, line=dict(width=1.5, color=GREY)),
                               customdata=data, hovertemplate=template), row=2, col=1)

    references = trained(frame[frame_is_reference(frame)]) if show_references else frame.iloc[:0]
    references = references[references[cost].notna()]
    if budget is not None:
        references = references[~(references[cost] > budget)]
    if not references.empty:
        references = references.sort_values(cost)
        ref_front = pareto_mask(references, cost)
        data, template = _hover(references, columns)
        labels = references["reference_name"].fillna("").str.replace(r"^mobilenet_v(\d)_", r"v\1 ", regex=True)
        fig.add_trace(go.Scatter(
            x=references[cost], y=references["accuracy"], mode="markers+text", name="paper reference networks",
            marker=dict(symbol="diamond", size=9, color="white", line=dict(width=1.5, color=REFERENCE_COLOR)),
            text=labels.where(ref_front, ""), textposition="bottom right",
            textfont=dict(size=9, color=REFERENCE_COLOR), customdata=data, hovertemplate=template), **top)
        line = references[ref_front]
        fig.add_trace(go.Scatter(x=line[cost], y=line["accuracy"], mode="lines", name="reference front",
                                 line=dict(shape="hv", color=REFERENCE_COLOR, width=1.5, dash="dash"),
                                 hoverinfo="skip"), **top)

    front_marker = dict(size=11, line=dict(width=1.5, color="black"))
    if coloring:
        front_marker.update(color=front[color], coloraxis="coloraxis")
    else:
        front_marker.update(color=PARETO_COLOR)
    data, template = _hover(front, columns)
    # Never WebGL, and drawn last: the front is small and must stay on top of the other markers.
    fig.add_trace(go.Scatter(x=front[cost], y=front["accuracy"], mode="lines+markers", name="Pareto front",
                             line=dict(shape="hv", color=PARETO_COLOR, width=2.5), marker=front_marker,
                             customdata=data, hovertemplate=template), **top)

    if selected is not None:
        chosen = pd.concat([good, references])
        chosen = chosen[chosen["number"] == selected]
        if not chosen.empty:
            fig.add_trace(go.Scatter(
                x=chosen[cost], y=chosen["accuracy"], mode="markers", name=f"trial {selected}",
                marker=dict(symbol="circle-open", size=20, line=dict(width=3, color="#1f77b4")), hoverinfo="skip"),
                **top)

    if budget is not None:
        fig.add_vline(x=budget, line=dict(color="#555555", dash="dot", width=1.5), row="all", col=1)
        fig.add_annotation(x=budget, y=1, yref="y domain", text=f"budget {_short(budget, cost)}", showarrow=False,
                           xanchor="right", yanchor="top", font=dict(size=11, color="#555555"))
    fig.update_layout(
        title=title, template="plotly_white", height=height, hovermode="closest", clickmode="event+select",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        margin=dict(l=60, r=20, t=60 if title is None else 90, b=50),
    )
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_xaxes(title_text=COSTS[cost], row=2 if strip else 1, col=1)
    if strip:
        fig.update_yaxes(title_text="not trained", title_font=dict(size=11), row=2, col=1, type="category",
                         categoryorder="array", categoryarray=[FAILED, OVER_BUDGET], showticklabels=False)
    if coloring:
        fig.update_layout(coloraxis=dict(colorscale="Viridis",
                                         colorbar=dict(title=COLORS.get(color, color), len=0.8, y=0.58)))
    return fig


def _short(value: float, cost: str) -> str:
    if cost == "latency_ms":
        return f"{value:.2f} ms"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:g}"


def history_figure(frame: pd.DataFrame) -> go.Figure:
    """Optimisation history: each trained candidate's accuracy by trial number, and the best so far."""
    good = trained(frame[~frame_is_reference(frame)]).sort_values("number")
    fig = go.Figure()
    data, template = _hover(good, hover_columns(good))
    fig.add_trace(go.Scatter(x=good["number"], y=good["accuracy"], mode="markers", name="trained trial",
                             marker=dict(size=6, color="#1f77b4", opacity=0.6), customdata=data,
                             hovertemplate=template))
    fig.add_trace(go.Scatter(x=good["number"], y=good["accuracy"].cummax(), mode="lines", name="best so far",
                             line=dict(shape="hv", color=PARETO_COLOR, width=2)))
    fig.update_layout(xaxis_title="trial", yaxis_title="accuracy", template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), margin=dict(l=60, r=20, t=40, b=50))
    return fig


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """Parameter importances (as Optuna computes them) as horizontal bars, the most important on top."""
    items = sorted(importances.items(), key=lambda item: item[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color="#1f77b4", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(xaxis_title="importance for accuracy", template="plotly_white",
                      height=max(250, 24 * len(items) + 80), margin=dict(l=140, r=20, t=20, b=50))
    return fig


def training_curve_figure(history: Sequence[float], *, title: str | None = None) -> go.Figure:
    """A trial's validation accuracy after each proxy-training epoch."""
    epochs = list(range(1, len(history) + 1))
    fig = go.Figure(go.Scatter(x=epochs, y=list(history), mode="lines+markers", name="validation accuracy",
                               hovertemplate="epoch %{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="validation accuracy", template="plotly_white",
                      xaxis=dict(tickmode="linear", dtick=1), height=300, margin=dict(l=60, r=20, t=40, b=50))
    return fig

"""Plotly figures of a study: the frontier, its history, importances, a training curve.

Pure functions of the frame that :func:`mobilenet_search.results.frame.trials_frame` (or the
dashboard's fast loader) gives; the dashboard lays them out, and they work as well in a
notebook (``frontier_figure(frame).show()``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mobilenet_search.results.frame import pareto_mask, trained
from mobilenet_search.results.records import CONFIRMS_ATTR, Role, Strategy, frame_is_reference, frame_role

# The costs a frontier can be drawn against, with their axis labels.
COSTS = {"madds": "MAdds", "latency_ms": "latency (ms)", "latency_predicted_ms": "predicted latency (ms)",
         "params": "parameters"}
QUALITIES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}
COLORS = {"latency_ms": "latency (ms)", "params": "parameters", "madds": "MAdds", "accuracy": "accuracy"}
# What a hover shows, in this order, when the trial recorded it; other numeric attributes follow.
HOVER = ("accuracy", "accuracy_low", "accuracy_high", "balanced_accuracy", "balanced_accuracy_low",
         "balanced_accuracy_high", "strategy", "confirms", "noise_seed", "madds", "params", "latency_ms",
         "latency_device", "latency_batch", "proxy_resolution", "epochs", "train_seconds", "duration_s", "outcome",
         "status_reason", "reference_name", "learned_nothing")
_NOT_METRICS = {"number", "state", "feasible", "arch", "spec", "accuracy_history", "loss_history", "retry_of",
                "reference", "val_size"}
_FORMATS = {"madds": ":,.0f", "params": ":,.0f", "accuracy": ":.4f", "balanced_accuracy": ":.4f",
            **{f"{q}_{end}": ":.4f" for q in ("accuracy", "balanced_accuracy") for end in ("low", "high")},
            "latency_ms": ":.3f", "train_seconds": ":.1f", "duration_s": ":.1f"}
WEBGL_ABOVE = 2000  # more markers than this are drawn with WebGL: SVG gets slow in the browser
PARETO_COLOR = "#d62728"
OVER_BUDGET, FAILED = "over budget (not trained)", "failed / pruned"
LEARNED_NOTHING = "learned nothing (not above the trivial classifier)"
TRIVIAL_COLOR = "#b8860b"
REFERENCE_COLOR = "#444444"
GREY = "#8a8a8a"
TRIAL_COLOR = "#636efa"  # what plotly gave the first trace before the halo could come first
HALO_COLOR = "#ffa600"  # amber: apart from the trials' blue, the front's red and the Viridis markers
ERROR_COLOR = "rgba(90, 90, 90, 0.45)"  # the searched trials' error bars: many, so light
CONFIRMED_COLOR = "#ff7f0e"
INDISTINGUISHABLE = "indistinguishable from the front"
SEED_REPEATS = "seed repeats"
CONFIRMED, CONFIRMATION_LINKS = "confirmed (trained from scratch)", "confirms"


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


def _error_y(part: pd.DataFrame, quality: str, color: str | None = None) -> dict | None:
    """Asymmetric error bars from the ``quality`` interval columns (``accuracy_low``/``accuracy_high``, ...).

    None when no row of ``part`` recorded an interval (older studies); a row without one gets null,
    which plotly leaves without a bar.
    """
    low, high = f"{quality}_low", f"{quality}_high"
    if part.empty or low not in part or high not in part or part[low].isna().all():
        return None
    value = part[quality].to_numpy(float)
    bars = dict(type="data", symmetric=False, array=_plain(pd.to_numeric(part[high]).to_numpy(float) - value),
                arrayminus=_plain(value - pd.to_numeric(part[low]).to_numpy(float)), thickness=1, width=0)
    if color is not None:
        bars["color"] = color
    return bars


def _plain(values: np.ndarray) -> list[float | None]:
    """Error-bar lengths as a JSON list, a missing one as null, to 6 decimals.

    Not a numpy array: plotly would send it base64-encoded, and its serialiser re-encodes the whole
    figure (about 0.15 s on 10,000 trials) whenever the text "NaN" turns up anywhere, base64 included.
    """
    return [None if np.isnan(v) else round(v, 6) for v in values.tolist()]


def _confirmation_links(confirmed: pd.DataFrame, inherited: pd.DataFrame, cost: str, quality: str) -> tuple:
    """x and y of the segments from each inherited-weight point to its confirmation, separated by None."""
    by_number = inherited.set_index("number")
    xs, ys = [], []
    for _, row in confirmed.iterrows():
        source = int(row[CONFIRMS_ATTR])
        if source in by_number.index:
            xs += [by_number.at[source, cost], row[cost], None]
            ys += [by_number.at[source, quality], row[quality], None]
    return xs, ys


def frontier_figure(frame: pd.DataFrame, *, cost: str = "madds", quality: str = "accuracy",
                    color: str | None = "latency_ms", budget: float | None = None, show_unfinished: bool = True,
                    show_references: bool = True, selected: int | None = None, shaded: Collection[int] = (),
                    title: str | None = None, height: int = 600, trivial: float | None = None) -> go.Figure:
    """``quality`` (accuracy or balanced accuracy) against ``cost`` for every trial, the Pareto-optimal ones joined
    as a step line.

    Trained, feasible trials are coloured by ``color`` (a column, or None); the Pareto set is
    recomputed among those inside ``budget`` (a maximum of ``cost``), and everything above
    the budget is left out. Every trained point that recorded a 95 % interval of ``quality``
    (``accuracy_low``/``accuracy_high``, ...) carries it as an error bar. Over-budget (never trained),
    failed and pruned trials have no accuracy to plot: unless ``show_unfinished`` is False they
    are drawn apart, as grey crosses on a strip under the frontier (same cost axis). The paper's
    reference networks (``reference=True``) are a labelled series of their own, and their noise
    repeats (``noise_seed``: the same net retrained with other seeds) a faint one, on no front.
    In a supernet study, the searched points carry inherited-weight accuracy; the trials that
    retrained some of them from scratch (``confirms``) are a series of their own, each joined to
    the point it confirms, with the front of the confirmed accuracies. Trials in ``shaded`` (numbers,
    see :func:`mobilenet_search.ui.dashboard.indistinguishable_from_front`) get a halo. Each marker's
    ``customdata`` starts with the trial number; its hover lists the architecture and every
    recorded metric. ``trivial`` (the trivial classifier's score in ``quality``) is drawn as a
    horizontal line, where every gain starts, and trials that learned nothing (``learned_nothing``:
    not better than it by a one-sided binomial test) are crossed out.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, not {cost!r}")
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, not {quality!r}")
    parts = _FrontierParts.of(frame, cost, quality, budget, show_references)
    columns = hover_columns(frame)
    webgl = len(parts.searched) > WEBGL_ABOVE
    coloring = color is not None and color in parts.good and parts.good[color].notna().any()
    strip = _unfinished(parts, cost) if show_unfinished else []
    if strip:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.84, 0.16], vertical_spacing=0.03)
    else:
        fig = make_subplots(rows=1, cols=1)
    # Drawn in this order: later traces lie on top.
    _add_halo(fig, parts.good[parts.good["number"].isin(list(shaded))], cost, quality, webgl)
    _add_trials(fig, parts, columns, cost, quality, webgl, color if coloring else None)
    _add_unfinished(fig, strip, columns, cost, webgl)
    _add_references(fig, parts, columns, cost, quality)
    _add_confirmed(fig, parts, frame, columns, cost, quality)
    _add_front(fig, parts, columns, cost, quality, color if coloring else None)
    _add_marks(fig, parts, frame, cost, quality, selected)
    _lay_out(fig, cost=cost, quality=quality, budget=budget, trivial=trivial, title=title, height=height,
             strip=bool(strip), color=color if coloring else None)
    return fig


@dataclass(frozen=True)
class _FrontierParts:
    """The groups of trials a frontier draws, each inside the budget and with a ``cost``."""

    searched: pd.DataFrame  # the search's own trials, trained or not
    good: pd.DataFrame  # those trained, feasible, with a quality
    front: pd.DataFrame  # good's Pareto set, cheapest first
    rest: pd.DataFrame  # good off the front
    confirmed: pd.DataFrame  # trained confirmations (a supernet study's candidates retrained from scratch)
    everything: pd.DataFrame  # the trained reference nets and their noise repeats (empty when not shown)
    references: pd.DataFrame
    repeats: pd.DataFrame
    supernet: bool  # the searched points carry inherited-weight accuracy

    @classmethod
    def of(cls, frame: pd.DataFrame, cost: str, quality: str, budget: float | None,
           show_references: bool) -> _FrontierParts:
        def inside(part: pd.DataFrame) -> pd.DataFrame:
            part = part[part[cost].notna()]
            return part if budget is None else part[~(part[cost] > budget)]

        roles = frame_role(frame)
        searched = frame[roles == Role.SEARCHED]
        if budget is not None:
            searched = searched[~(searched[cost] > budget)]
        good = trained(searched, quality)
        good = good[good[cost].notna()]
        on_front = pareto_mask(good, cost, quality)
        confirmed = inside(trained(frame[roles == Role.CONFIRMATION], quality))
        shown = (roles == Role.REFERENCE) | (roles == Role.NOISE_REPEAT)
        everything = inside(trained(frame[shown], quality) if show_references else frame.iloc[:0])
        kinds = roles.loc[everything.index]
        supernet = bool((roles == Role.CONFIRMATION).any()) or (
            "strategy" in good and (good["strategy"] == Strategy.SUPERNET).any())
        return cls(searched, good, good[on_front].sort_values(cost), good[~on_front], confirmed, everything,
                   everything[kinds == Role.REFERENCE], everything[kinds == Role.NOISE_REPEAT], bool(supernet))

    @property
    def inherited(self) -> str:
        """What a series' name adds in a supernet study."""
        return " (inherited weights)" if self.supernet else ""


def _unfinished(parts: _FrontierParts, cost: str) -> list[tuple[pd.DataFrame, str, str]]:
    """The strip under the frontier: (trials, name, marker symbol) of over-budget and failed or pruned trials."""
    others = parts.searched[~parts.searched.index.isin(parts.good.index) & parts.searched[cost].notna()]
    over = others[(others["state"] == "COMPLETE") & ~others["feasible"].astype(bool)]
    failed = others[~others.index.isin(over.index) & others["state"].isin(["FAIL", "PRUNED"])]
    return [(part, name, symbol) for part, name, symbol in ((over, OVER_BUDGET, "x-thin-open"), (failed, FAILED, "x"))
            if not part.empty]


def _add_halo(fig: go.Figure, halo: pd.DataFrame, cost: str, quality: str, webgl: bool) -> None:
    """A soft disc behind each shaded trial (under everything else)."""
    if not halo.empty:
        fig.add_trace(_scatter(webgl, x=halo[cost], y=halo[quality], mode="markers", name=INDISTINGUISHABLE,
                               marker=dict(size=17, color=HALO_COLOR, opacity=0.35, line=dict(width=0)),
                               customdata=halo[["number"]].to_numpy(dtype=object), hoverinfo="skip"), row=1, col=1)


def _add_trials(fig: go.Figure, parts: _FrontierParts, columns: list[str], cost: str, quality: str, webgl: bool,
                color: str | None) -> None:
    """The trained trials off the front, coloured by ``color`` when given."""
    rest = parts.rest
    marker = dict(size=7, opacity=0.75, color=TRIAL_COLOR)
    if color is not None:
        marker.update(color=rest[color], coloraxis="coloraxis")
    data, template = _hover(rest, columns)
    fig.add_trace(_scatter(webgl, x=rest[cost], y=rest[quality], mode="markers", name=f"trials{parts.inherited}",
                           marker=marker, error_y=_error_y(rest, quality, ERROR_COLOR), customdata=data,
                           hovertemplate=template), row=1, col=1)


def _add_unfinished(fig: go.Figure, strip: list[tuple[pd.DataFrame, str, str]], columns: list[str], cost: str,
                    webgl: bool) -> None:
    """Over-budget, failed and pruned trials as grey crosses on the strip (row 2)."""
    for part, name, symbol in strip:
        data, template = _hover(part, columns)
        fig.add_trace(_scatter(webgl, x=part[cost], y=[name] * len(part), mode="markers", name=name,
                               marker=dict(symbol=symbol, size=7, color=GREY, line=dict(width=1.5, color=GREY)),
                               customdata=data, hovertemplate=template), row=2, col=1)


def _add_references(fig: go.Figure, parts: _FrontierParts, columns: list[str], cost: str, quality: str) -> None:
    """The paper's reference networks, labelled, with their front; their noise repeats faint, on no front."""
    repeats, references = parts.repeats, parts.references
    if not repeats.empty:
        data, template = _hover(repeats, columns)
        fig.add_trace(go.Scatter(
            x=repeats[cost], y=repeats[quality], mode="markers", name=SEED_REPEATS, opacity=0.45,
            marker=dict(symbol="diamond-open", size=8, color=REFERENCE_COLOR),
            error_y=_error_y(repeats, quality, REFERENCE_COLOR), customdata=data, hovertemplate=template),
            row=1, col=1)
    if references.empty:
        return
    references = references.sort_values(cost)
    ref_front = pareto_mask(references, cost, quality)
    data, template = _hover(references, columns)
    labels = references["reference_name"].fillna("").str.replace(r"^mobilenet_v(\d)_", r"v\1 ", regex=True)
    fig.add_trace(go.Scatter(
        x=references[cost], y=references[quality], mode="markers+text", name="paper reference networks",
        marker=dict(symbol="diamond", size=9, color="white", line=dict(width=1.5, color=REFERENCE_COLOR)),
        error_y=_error_y(references, quality, REFERENCE_COLOR),
        text=labels.where(ref_front, ""), textposition="bottom right",
        textfont=dict(size=9, color=REFERENCE_COLOR), customdata=data, hovertemplate=template), row=1, col=1)
    line = references[ref_front]
    fig.add_trace(go.Scatter(x=line[cost], y=line[quality], mode="lines", name="reference front",
                             line=dict(shape="hv", color=REFERENCE_COLOR, width=1.5, dash="dash"),
                             hoverinfo="skip"), row=1, col=1)


def _add_confirmed(fig: go.Figure, parts: _FrontierParts, frame: pd.DataFrame, columns: list[str], cost: str,
                   quality: str) -> None:
    """A supernet study's confirmations, each joined to the point it confirms, with their own front."""
    confirmed = parts.confirmed
    if confirmed.empty:
        return
    xs, ys = _confirmation_links(confirmed, trained(frame, quality), cost, quality)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=CONFIRMATION_LINKS, hoverinfo="skip",
                             line=dict(color=CONFIRMED_COLOR, width=1, dash="dot")), row=1, col=1)
    confirmed = confirmed.sort_values(cost)
    line = confirmed[pareto_mask(confirmed, cost, quality)]
    fig.add_trace(go.Scatter(x=line[cost], y=line[quality], mode="lines", name="confirmed front",
                             line=dict(shape="hv", color=CONFIRMED_COLOR, width=2), hoverinfo="skip"), row=1, col=1)
    data, template = _hover(confirmed, columns)
    fig.add_trace(go.Scatter(
        x=confirmed[cost], y=confirmed[quality], mode="markers", name=CONFIRMED,
        marker=dict(symbol="star", size=12, color=CONFIRMED_COLOR, line=dict(width=1, color="black")),
        error_y=_error_y(confirmed, quality, CONFIRMED_COLOR), customdata=data, hovertemplate=template),
        row=1, col=1)


def _add_front(fig: go.Figure, parts: _FrontierParts, columns: list[str], cost: str, quality: str,
               color: str | None) -> None:
    """The Pareto front of the searched trials: never WebGL, drawn on top of the other markers (it is small)."""
    front = parts.front
    front_marker = dict(size=11, line=dict(width=1.5, color="black"))
    if color is not None:
        front_marker.update(color=front[color], coloraxis="coloraxis")
    else:
        front_marker.update(color=PARETO_COLOR)
    data, template = _hover(front, columns)
    fig.add_trace(go.Scatter(x=front[cost], y=front[quality], mode="lines+markers",
                             name=f"Pareto front{parts.inherited}",
                             line=dict(shape="hv", color=PARETO_COLOR, width=2.5), marker=front_marker,
                             error_y=_error_y(front, quality, PARETO_COLOR), customdata=data,
                             hovertemplate=template), row=1, col=1)


def _add_marks(fig: go.Figure, parts: _FrontierParts, frame: pd.DataFrame, cost: str, quality: str,
               selected: int | None) -> None:
    """Crosses over the trials that learned nothing, and a ring around the ``selected`` trial."""
    drawn = pd.concat([parts.good, parts.everything, parts.confirmed])
    if "learned_nothing" in frame:
        nothing = drawn[drawn["learned_nothing"].fillna(False).astype(bool)]
        if not nothing.empty:
            cross = dict(symbol="x-thin-open", size=12, line=dict(width=2, color=TRIVIAL_COLOR))
            fig.add_trace(go.Scatter(x=nothing[cost], y=nothing[quality], mode="markers", name=LEARNED_NOTHING,
                                     marker=cross, hoverinfo="skip"), row=1, col=1)
    if selected is not None:
        chosen = drawn[drawn["number"] == selected]
        if not chosen.empty:
            fig.add_trace(go.Scatter(
                x=chosen[cost], y=chosen[quality], mode="markers", name=f"trial {selected}",
                marker=dict(symbol="circle-open", size=20, line=dict(width=3, color="#1f77b4")), hoverinfo="skip"),
                row=1, col=1)


def _lay_out(fig: go.Figure, *, cost: str, quality: str, budget: float | None, trivial: float | None,
             title: str | None, height: int, strip: bool, color: str | None) -> None:
    """The budget and trivial-classifier lines, the axes, the legend and the colour bar."""
    if budget is not None:
        fig.add_vline(x=budget, line=dict(color="#555555", dash="dot", width=1.5), row="all", col=1)
        fig.add_annotation(x=budget, y=1, yref="y domain", text=f"budget {_short(budget, cost)}", showarrow=False,
                           xanchor="right", yanchor="top", font=dict(size=11, color="#555555"))
    if trivial is not None:
        fig.add_hline(y=trivial, line=dict(color=TRIVIAL_COLOR, dash="dash", width=1.5), row=1, col=1)
        fig.add_annotation(x=0, xref="x domain", y=trivial, yref="y", text=f"trivial classifier {trivial:.3f}",
                           showarrow=False, xanchor="left", yanchor="bottom", font=dict(size=11, color=TRIVIAL_COLOR))
    fig.update_layout(
        title=title, template="plotly_white", height=height, hovermode="closest", clickmode="event+select",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        margin=dict(l=60, r=20, t=60 if title is None else 90, b=50),
    )
    fig.update_yaxes(title_text=QUALITIES[quality], row=1, col=1)
    fig.update_xaxes(title_text=COSTS[cost], row=2 if strip else 1, col=1)
    if strip:
        fig.update_yaxes(title_text="not trained", title_font=dict(size=11), row=2, col=1, type="category",
                         categoryorder="array", categoryarray=[FAILED, OVER_BUDGET], showticklabels=False)
    if color is not None:
        fig.update_layout(coloraxis=dict(colorscale="Viridis",
                                         colorbar=dict(title=COLORS.get(color, color), len=0.8, y=0.58)))


def _short(value: float, cost: str) -> str:
    if cost in ("latency_ms", "latency_predicted_ms"):
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


def training_curve_figure(history: Sequence[float], losses: Sequence[float] = (), *,
                          title: str | None = None) -> go.Figure:
    """A trial's proxy training by epoch: validation accuracy where evaluated, training loss on a second axis.

    A study evaluates every epoch only under ``--objective accuracy``; otherwise ``history`` holds
    the last epoch's accuracy alone, and the loss shows how training went.
    """
    n = max(len(history), len(losses))
    fig = go.Figure(go.Scatter(x=list(range(n - len(history) + 1, n + 1)), y=list(history), mode="lines+markers",
                               name="validation accuracy", hovertemplate="epoch %{x}: %{y:.4f}<extra></extra>"))
    if losses:
        fig.add_trace(go.Scatter(x=list(range(1, len(losses) + 1)), y=list(losses), mode="lines+markers",
                                 name="training loss", yaxis="y2", line=dict(dash="dot"),
                                 hovertemplate="epoch %{x}: loss %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="validation accuracy", template="plotly_white",
                      xaxis=dict(tickmode="linear", dtick=1), height=300, margin=dict(l=60, r=60, t=40, b=50),
                      yaxis2=dict(title="training loss", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=-0.3))
    if history:  # one point (the last epoch's accuracy alone) would get plotly's default range of about -0.3 to 1.6
        low, high = min(history), max(history)
        fig.update_yaxes(range=[max(0.0, low - 0.05), min(1.0, high + 0.05)])
    return fig


#: Each scaling direction's colour in :func:`scaling_figure`.
DIRECTION_COLORS = {"width": "#1f77b4", "resolution": "#2ca02c", "depth": "#9467bd", "compound": "#d62728"}
PAPER_FAMILY = "paper's width x resolution family"
RECOMMENDED = "recommended"


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def scaling_figure(analysis: Mapping, *, paper: Sequence[Mapping] = (),
                   recommendation: Mapping | None = None) -> go.Figure:
    """Accuracy against MAdds along each scaling direction of a scaling study's analysis
    (:func:`mobilenet_search.search.scaling.analyse`): per direction the fitted curve (``DIRECTION fit``), its 95 %
    bootstrap band (``DIRECTION 95 % band``, filled), the measured networks (``DIRECTION measured``, mean over seeds)
    and the knee (``DIRECTION knee``: a cross on the curve, or, where the knee lies beyond the largest measured net,
    a triangle at that net saying so). ``paper``: the paper's networks the study trained (name, MAdds, accuracy),
    drawn as diamonds; ``recommendation``: :func:`~mobilenet_search.search.scaling.recommend`'s answer, a star with its
    interval. The trivial classifier's accuracy is a dotted line. MAdds on a log axis."""
    from mobilenet_search.results.scaling_fit import predict

    fig = go.Figure()
    for direction, entry in analysis["directions"].items():
        fit = entry["fit"]
        if fit is None:
            continue
        color, band = DIRECTION_COLORS.get(direction, GREY), fit["band"]
        fig.add_trace(go.Scatter(x=[*band["madds"], *band["madds"][::-1]], y=[*band["high"], *band["low"][::-1]],
                                 fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0), mode="lines",
                                 name=f"{direction} 95 % band", legendgroup=direction, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=band["madds"], y=band["accuracy"], mode="lines", line=dict(color=color, width=2),
                                 name=f"{direction} fit", legendgroup=direction,
                                 hovertemplate=f"{direction}: %{{x:.3s}} MAdds, predicted %{{y:.3f}}<extra></extra>"))
        points = fit["points"]
        fig.add_trace(go.Scatter(x=[p["madds"] for p in points], y=[p["accuracy"] for p in points], mode="markers",
                                 marker=dict(color=color, size=9, line=dict(color="white", width=1)),
                                 name=f"{direction} measured", legendgroup=direction, showlegend=False,
                                 customdata=[p["seeds"] for p in points],
                                 hovertemplate=f"{direction}: %{{x:.3s}} MAdds, accuracy %{{y:.3f}} "
                                               "(%{customdata} seed(s))<extra></extra>"))
        knee, low_high = fit["knee"], fit["knee_interval"]
        span = "" if low_high is None else f" [{_short(low_high[0], 'madds')}, {_short(low_high[1], 'madds')}]"
        if fit["knee_measured"]:
            at, symbol, text = knee, "x", f"{direction} knee: {_short(knee, 'madds')}{span} MAdds"
        else:  # beyond the data: marked at the largest measured net, where the curve is still rising
            at, symbol = fit["measured_madds"][1], "triangle-right"
            text = (f"{direction} knee not reached: beyond {_short(at, 'madds')} MAdds "
                    f"(fit: {_short(knee, 'madds')}{span})")
        fig.add_trace(go.Scatter(x=[at], y=[predict(fit, at)[0]], mode="markers", name=f"{direction} knee",
                                 legendgroup=direction, showlegend=False, hovertext=[text], hoverinfo="text",
                                 marker=dict(symbol=symbol, size=14, color=color, line=dict(color="black", width=1))))
    if paper:
        fig.add_trace(go.Scatter(x=[p["madds"] for p in paper], y=[p["accuracy"] for p in paper], mode="markers",
                                 name=PAPER_FAMILY, hovertext=[f"{p['name']}: accuracy {p['accuracy']:.3f}, "
                                                               f"{_short(p['madds'], 'madds')} MAdds" for p in paper],
                                 hoverinfo="text", marker=dict(symbol="diamond-open", size=13, color=REFERENCE_COLOR,
                                                               line=dict(width=2))))
    if recommendation is not None:
        interval = recommendation.get("interval")
        error = None if interval is None else dict(
            type="data", symmetric=False, array=[interval[1] - recommendation["accuracy"]],
            arrayminus=[recommendation["accuracy"] - interval[0]], color=HALO_COLOR, thickness=2)
        fig.add_trace(go.Scatter(x=[recommendation["madds"]], y=[recommendation["accuracy"]], mode="markers",
                                 name=RECOMMENDED, error_y=error,
                                 marker=dict(symbol="star", size=18, color=HALO_COLOR,
                                             line=dict(color="black", width=1)),
                                 hovertext=[f"recommended ({recommendation['direction']}): "
                                            f"{_short(recommendation['madds'], 'madds')} MAdds, predicted "
                                            f"{recommendation['accuracy']:.3f}"], hoverinfo="text"))
    fig.add_hline(y=analysis["trivial"], line=dict(color=TRIVIAL_COLOR, dash="dot"),
                  annotation_text="trivial classifier", annotation_position="bottom right")
    fig.update_layout(xaxis=dict(type="log", title="MAdds"), yaxis_title="validation accuracy (proxy)",
                      template="plotly_white", legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      margin=dict(l=60, r=20, t=40, b=50), height=520)
    return fig

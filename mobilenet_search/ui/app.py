"""The mobilenet-search dashboard: ``streamlit run app.py [-- --storage URL --results-dir DIR]``.

Layout only: loading, the Pareto set and the figures come from ``mobilenet_search.ui.dashboard``
and ``mobilenet_search.ui.figures``. ``mobilenet-search dashboard`` starts this same app.
"""

from __future__ import annotations

import sys
import time

import optuna
import pandas as pd
import streamlit as st

from mobilenet_search.arch.cost import format_count
from mobilenet_search.errors import UserError
from mobilenet_search.results.frame import pareto_mask
from mobilenet_search.search.storage import redact
from mobilenet_search.ui import dashboard as board
from mobilenet_search.ui.figures import (
    COLORS,
    COSTS,
    QUALITIES,
    frontier_figure,
    history_figure,
    importance_figure,
    scaling_figure,
    training_curve_figure,
)

RESAMPLES = 200  # the scaling view's bootstrap replicates, as `mobilenet-search scaling` (its --resamples)
IMPORTANCE_AUTO_LIMIT = 2000  # above this many trials, importances (a full Optuna load) wait for a click
SCALE = {"madds": (1e6, "M MAdds"), "params": (1e6, "M parameters"), "latency_ms": (1.0, "ms"),
         "latency_predicted_ms": (1.0, "ms")}
TABLE_COLUMNS = ["number", "state", "outcome", "strategy", "accuracy", "confirmed_accuracy", "confirms",
                 "accuracy_low", "accuracy_high", "balanced_accuracy", "madds", "params", "latency_ms",
                 "proxy_resolution", "epochs", "train_seconds", "reference_name", "noise_seed", "status_reason", "arch"]

optuna.logging.set_verbosity(optuna.logging.WARNING)
st.set_page_config(page_title="mobilenet-search", layout="wide")
options = board.app_options(sys.argv[1:])


@st.cache_data(show_spinner="Loading the study...", max_entries=8)
def load(url: str, study: str, version: str | None) -> board.StudyData:
    return board.load_study_data(url, study)


@st.cache_data(show_spinner="Computing parameter importances (Optuna)...", max_entries=8)
def importances(url: str, study: str, version: str | None) -> dict[str, float]:
    return board.param_importances(url, study)


@st.cache_data(show_spinner="Loading per-image validation records...", max_entries=4)
def correct_vectors(url: str, study: str, version: str | None, numbers: tuple[int, ...]) -> dict[int, object]:
    return board.load_correct(url, study, numbers)


@st.cache_data(show_spinner="Testing trials against the front (paired McNemar tests)...", max_entries=16)
def indistinguishable(url: str, study: str, version: str | None, cost: str, budget: float | None) -> list[int]:
    frame = load(url, study, version).frame
    candidates = board.front_candidates(frame, cost, budget=budget)
    correct = correct_vectors(url, study, version, tuple(int(n) for n in candidates["number"]))
    return board.indistinguishable_from_front(frame, correct, cost=cost, budget=budget, seed_sd=board.seed_sd(frame))


@st.cache_data(show_spinner=False, max_entries=16)
def is_scaling_study(url: str, study: str, version: str | None) -> bool:
    return board.scaling_plan(url, study) is not None  # made by `mobilenet-search scaling`


@st.cache_data(show_spinner="Fitting the scaling curves (a bootstrap over images and seeds)...", max_entries=4)
def scaling(url: str, study: str, version: str | None, resamples: int) -> board.ScalingView:
    return board.scaling_view(url, study, resamples=resamples)


@st.cache_data(show_spinner="Finding the recommended scaled net...", max_entries=32)
def recommendation(url: str, study: str, version: str | None, resamples: int, budget: str) -> dict:
    return board.scaling_recommendation(scaling(url, study, version, resamples), budget)


@st.cache_data(show_spinner="Computing the search gain and the noise floor (Optuna)...", max_entries=8)
def gain(url: str, study: str, version: str | None) -> dict:
    return board.study_gain(url, study)


def select_from_chart() -> None:
    points = st.session_state["frontier"].selection.points
    numbers = [p["customdata"][0] for p in points if p.get("customdata")]
    if numbers:
        st.session_state["trial"] = int(numbers[0])


def select_from_table() -> None:
    rows = st.session_state["table"].selection.rows
    if rows:
        st.session_state["trial"] = int(st.session_state["table_numbers"][rows[0]])


# -- sidebar: where the study is ------------------------------------------------------------------
st.sidebar.title("mobilenet-search")
found = board.find_storages(options["results_dir"])
choices = ([options["storage"]] if options["storage"] else []) + [u for u in found if u != options["storage"]]
other = st.sidebar.text_input("Another storage URL", key="storage_url", type="password",
                              help="Any Optuna storage: sqlite:///path.db, postgresql://user:pass@host/db, or "
                                   "journal:FILE. Hidden, since storage URLs may hold passwords.")
if other.strip():
    choices = [other.strip(), *[c for c in choices if c != other.strip()]]
if not choices:
    st.title("mobilenet-search dashboard")
    st.info(f"No study found under `{options['results_dir']}/`. Run a search first "
            "(`mobilenet-search --budget 300M-madds`), or enter a storage URL in the sidebar.")
    st.stop()
url = st.sidebar.selectbox("Storage", choices, key="storage", format_func=redact)
try:
    studies = board.list_studies(url)
except UserError as exc:
    st.error(str(exc))
    st.stop()
if not studies:
    st.title("mobilenet-search dashboard")
    st.info(f"The storage {redact(url)} holds no study yet.")
    st.stop()
names = [s.name for s in studies]
counts_by_name = {s.name: s.n_trials for s in studies}
study_name = st.sidebar.selectbox("Study", names, key="study",
                                  format_func=lambda n: f"{n} ({counts_by_name[n]} trials)")
if st.sidebar.button("Refresh", help="Reload the study (new trials of a running search appear)"):
    st.cache_data.clear()

version = board.study_version(url, study_name)
token = version if version is not None else str(int(time.time() // 10))  # what the cached views are keyed on
try:
    data = load(url, study_name, token)
except UserError as exc:
    st.error(str(exc))
    st.stop()
frame = data.frame
counts = board.outcome_counts(frame)

# -- header -----------------------------------------------------------------------------------------
st.title(f"Study {study_name}")
config = data.config
settings = "" if config is None else ", ".join(
    f"{k} {getattr(config, k)}" for k in ("budget", "space", "dataset", "epochs", "objective", "sampler"))
st.caption(f"{redact(url)} · {settings or 'no mobilenet-search settings stored'} · "
           f"objectives: {', '.join(data.directions)}")
columns = st.columns(6)
for column, key in zip(columns, ("trained", "over budget", "pruned", "failed", "running", "total"), strict=True):
    column.metric(key, counts[key])
if counts["running"]:
    st.info(f"{counts['running']} trial(s) still running: press Refresh in the sidebar to see new results.")

good = board.front_candidates(frame)
if good.empty:
    st.info("No trained trial yet: the frontier appears once a candidate inside the budget has been trained."
            + (" The study is still running." if counts["running"] else ""))

# -- sidebar: how to draw the frontier ------------------------------------------------------------
st.sidebar.header("Frontier")
# Predicted latency is offered only when the study recorded it (a latency table was present).
costs = [c for c in COSTS if c != "latency_predicted_ms" or (c in frame and frame[c].notna().any())]
cost = st.sidebar.radio("Cost axis", costs, format_func=COSTS.get, key="cost", horizontal=True)
qualities = [q for q in QUALITIES if q in frame and frame[q].notna().any()] or ["accuracy"]
quality = st.sidebar.radio("Quality axis", qualities, format_func=QUALITIES.get, key="quality", horizontal=True,
                           help="Each point's error bar is the 95 % interval of this quality, where the trial "
                                "recorded one (Wilson for accuracy, a bootstrap over images for balanced accuracy).")
color_options = [c for c in ("latency_ms", "params", "madds") if c != cost and c in frame and frame[c].notna().any()]
color = st.sidebar.selectbox("Colour by", color_options or [None], key="color",
                             format_func=lambda c: "nothing" if c is None else COLORS[c])
show_unfinished = st.sidebar.toggle("Show over-budget and failed trials", value=True, key="show_unfinished")
show_references = st.sidebar.toggle("Show the paper's reference networks", value=True, key="show_references")
paired = "val_size" in frame and frame["val_size"].notna().any()
shade = st.sidebar.checkbox(
    "Shade trials indistinguishable from the front", value=False, key="indistinguishable",
    disabled=not paired or quality != "accuracy",
    help="A paired McNemar test of each dominated trial against the Pareto-optimal trial at no more cost, on the "
         "same validation images (and beyond seed noise when the study has noise repeats). Needs the per-image "
         "records that trials store since intervals exist; tests accuracy, not balanced accuracy."
         if paired else "This study's trials recorded no per-image validation results: nothing to test.")
budget = None
costs = good[cost].dropna()
if len(costs) >= 2 and costs.min() < costs.max():
    scale, unit = SCALE[cost]
    low, high = float(costs.min()) / scale, float(costs.max()) / scale
    chosen = st.sidebar.slider(f"Budget ({unit})", min_value=low, max_value=high, value=high, key=f"budget_{cost}",
                               help="Keep only the trials that fit this budget; the Pareto set is recomputed.")
    budget = None if chosen >= high else chosen * scale

# Trial numbers repeat across studies: a newly chosen study starts at its own best trial.
if st.session_state.get("trial_of") != (url, study_name) or st.session_state.get("trial") not in set(frame["number"]):
    st.session_state["trial"] = board.default_trial(frame)
    st.session_state["trial_of"] = (url, study_name)

# -- main: frontier, table, health ------------------------------------------------------------------
scaling_study = is_scaling_study(url, study_name, token)
frontier_tab, table_tab, health_tab, *scaling_tab = st.tabs(["Frontier", "Trials", "Study health"]
                                                            + (["Scaling"] if scaling_study else []))
with frontier_tab:
    if not good.empty:
        shading = shade and paired and quality == "accuracy"
        shaded = indistinguishable(url, study_name, token, cost, budget) if shading else []
        figure = frontier_figure(frame, cost=cost, quality=quality, color=color, budget=budget,
                                 show_unfinished=show_unfinished, show_references=show_references,
                                 selected=st.session_state["trial"], shaded=shaded,
                                 trivial=data.trivial.get(quality))
        st.plotly_chart(figure, key="frontier", on_select=select_from_chart, selection_mode="points")
        inside = board.front_candidates(frame, cost, quality, budget)
        st.caption(f"{int(pareto_mask(inside, cost, quality).sum())} Pareto-optimal of {len(inside)} trained trials"
                   + ("" if budget is None else f" within {format_count(budget)} {COSTS[cost]}")
                   + ". Bars: 95 % intervals on the validation images. Click a marker to inspect it.")
        if shading:
            sd = board.seed_sd(frame)
            st.caption(f"Shaded: {len(shaded)} dominated trial(s) statistically indistinguishable from the "
                       "Pareto-optimal trial at no more cost (paired McNemar test, alpha 0.05"
                       + (")." if sd is None else f", and within seed noise, sd {sd:.4f}).")
                       + " Their accuracy could be the front's: choose among them on other grounds.")

with table_tab:
    shown = board.trial_table(frame, TABLE_COLUMNS)
    st.session_state["table_numbers"] = shown["number"].tolist()
    st.dataframe(shown, key="table", on_select=select_from_table, selection_mode="single-row", hide_index=True,
                 column_config={"madds": st.column_config.NumberColumn("MAdds", format="localized"),
                                "params": st.column_config.NumberColumn("params", format="localized")})
    st.download_button("Download the trial table (CSV)", frame.to_csv(index=False), key="download",
                       file_name=f"{study_name}-trials.csv", mime="text/csv")

with health_tab:
    left, right = st.columns(2)
    with left:
        st.subheader("Optimisation history")
        if good.empty:
            st.info("No trained trial yet.")
        else:
            st.plotly_chart(history_figure(frame), key="history")
    with right:
        st.subheader("Parameter importances")
        if len(frame) <= IMPORTANCE_AUTO_LIMIT or st.button("Compute importances", key="importances"):
            try:
                values = importances(url, study_name, version)
            except Exception as exc:  # Optuna refuses some studies (e.g. one value per parameter): say so
                values = {}
                st.warning(f"Optuna could not compute importances: {exc}")
            if values:
                st.plotly_chart(importance_figure(values), key="importance")
            else:
                st.info("Importances need at least two trained trials with searched parameters.")
        else:
            st.caption(f"{len(frame):,} trials: computing importances loads the whole study through Optuna.")
    st.subheader("Noise floor")
    noise = board.noise_summary(frame)
    if noise["seed_sd"] is None and noise["floor"] is None:
        st.caption("Not recorded: this study's trials stored no per-image validation results and no noise repeats "
                   "(`--noise-repeats N` retrains a reference net with N other seeds).")
    else:
        cells = st.columns(3)
        cells[0].metric("seed-to-seed sd", "not measured" if noise["seed_sd"] is None else f"{noise['seed_sd']:.4f}",
                        help="From the noise repeats: a reference net retrained with other seeds "
                             "(`--noise-repeats N`).")
        cells[1].metric("validation 95 % half-width",
                        "-" if noise["validation_half_width"] is None else f"{noise['validation_half_width']:.4f}",
                        help="Wilson interval half-width at the reference nets' mean accuracy"
                             + ("" if noise["val_size"] is None else f", on {noise['val_size']} images") + ".")
        cells[2].metric("noise floor", "-" if noise["floor"] is None else f"{noise['floor']:.4f}",
                        help="The larger of the seed sd and the validation standard error: accuracy differences "
                             "well inside it are noise.")
        if st.toggle("Search gain: is the front beyond noise?", key="gain",
                     help="The paired tests and bootstrap intervals of `mobilenet-search report`: loads the whole "
                          "study through Optuna."):
            st.caption(gain(url, study_name, token).get("verdict") or "Nothing to compare yet.")
    st.subheader("Proxy fidelity")
    fidelity = board.fidelity_frame(data.fidelity)
    if fidelity.empty:
        st.caption(f"Not measured yet: `mobilenet-search fidelity --study {study_name}` retrains candidates longer "
                   "and measures how well the proxy ranks them.")
    else:
        st.caption(f"{len(data.fidelity['trials'])} trials retrained for {data.fidelity['epochs']} epochs "
                   f"(proxy: {data.fidelity['proxy_epochs']}): rank correlation with the longer training.")
        st.dataframe(fidelity, hide_index=True, key="fidelity")
    st.subheader("Outcomes")
    st.dataframe({"outcome": list(counts), "trials": list(counts.values())}, hide_index=True, key="outcomes")
    reasons = board.failure_reasons(frame)
    st.subheader("Why trials did not train")
    if reasons.empty:
        st.caption("Every trial trained.")
    else:
        st.dataframe(reasons, hide_index=True, key="reasons")

# -- a scaling study: the curves, the knees, the recommended net for a budget -------------------------------
for tab in scaling_tab:
    with tab:
        st.subheader("Accuracy against MAdds: width, resolution, depth and compound scaling")
        st.session_state.setdefault("scaling_resamples", RESAMPLES)
        resamples = int(st.number_input("Bootstrap replicates", min_value=20, max_value=1000, step=20,
                                        key="scaling_resamples",
                                        help="Each replicate resamples the validation images and each network's "
                                             "seeds and refits: the bands and intervals. More is steadier, slower."))
        try:
            view = scaling(url, study_name, token, resamples)
        except UserError as exc:  # too few trained points yet
            st.info(str(exc))
            continue
        analysis = view.analysis
        low, high = (madds / 1e6 for madds in board.scaling_budget_range(analysis))
        chosen = st.number_input("Budget (M MAdds)", min_value=low, max_value=high, value=high, format="%.3f",
                                 key="scaling_budget", help="The recommended scaled net for this budget: the "
                                 "direction whose fit predicts the most accuracy, up to the study's budget.")
        budget_text = board.scaling_budget_text(chosen * 1e6)
        try:
            answer = recommendation(url, study_name, token, resamples, budget_text)
        except UserError as exc:
            answer = None
            st.warning(str(exc))
        st.plotly_chart(scaling_figure(analysis, paper=view.paper, recommendation=answer), key="scaling")
        noise = analysis["noise"]
        st.caption(f"Lines: the fit acc = a - b (MAdds / base)^-c per direction; shaded: its 95 % bootstrap band "
                   f"({resamples} replicates over validation images and seeds); dots: the networks measured (mean "
                   f"over seeds); crosses: the knee, the cheapest MAdds within the noise floor "
                   f"({noise['floor']:.4f}) of the plateau (a triangle where it lies beyond the largest measured net); "
                   f"diamonds: the paper's width x resolution networks this study trained ({len(view.paper)}); "
                   "dotted: the trivial classifier. Proxy accuracy on the validation split.")
        if answer is not None:
            multipliers = answer["multipliers"]
            interval = answer["interval"]
            cells = st.columns(4)
            cells[0].metric("recommended direction", answer["direction"])
            cells[1].metric("MAdds", format_count(answer["madds"]))
            cells[2].metric("predicted accuracy", f"{answer['accuracy']:.3f}",
                            help=None if interval is None else f"95 % interval [{interval[0]:.3f}, {interval[1]:.3f}]")
            cells[3].metric("95 % interval", "-" if interval is None else f"{interval[0]:.3f} - {interval[1]:.3f}")
            st.caption(f"Multipliers of the base: width x{multipliers['width']:.3f}, resolution "
                       f"x{multipliers['resolution']:.3f}, depth x{multipliers['depth']:.3f} (total blocks).")
            st.code(answer["arch"], language=None)
            if answer["reach"] is not None:
                st.info(f"The space reaches no further than {format_count(answer['reach'])} MAdds along the fitted "
                        "directions: this is the best net of the measured range.")
            if answer["plateau"] is not None:
                cheapest = answer["plateau"]["cheapest"]
                st.info(f"Beyond {format_count(answer['plateau']['knee'])} MAdds nothing measurable is gained; the "
                        f"cheapest net at the plateau is {cheapest['arch']} ({cheapest['direction']}, "
                        f"{format_count(cheapest['madds'])} MAdds, predicted {cheapest['accuracy']:.3f}).")
            st.markdown("**Export the recommended net to the model library**")
            st.code(board.scaled_export_command(study_name, url, budget_text), language="bash")
        st.dataframe(board.scaling_summary(analysis), hide_index=True, key="scaling_summary")
        coefficients = analysis["coefficients"]
        if coefficients["fitted"] is not None:
            alpha, beta, gamma = coefficients["fitted"]
            st.caption(f"Compound coefficients on this data: alpha {alpha:.2f}, beta {beta:.2f}, gamma {gamma:.2f} "
                       "(EfficientNet on ImageNet: 1.20 / 1.10 / 1.15).")

# -- the selected trial -------------------------------------------------------------------------------
st.header("Selected trial")
if st.session_state["trial"] is None:
    st.info("No trained trial to show yet.")
    st.stop()
rows = frame.set_index("number", drop=False)
number = st.selectbox("Trial", rows.index.tolist(), key="trial", format_func=lambda n: board.trial_label(rows.loc[n]))
row = rows.loc[number]
spec = board.trial_spec(row)
details, curve = st.columns([3, 2])
with details:
    if spec is None:
        st.info("This trial recorded no architecture.")
    else:
        st.code(spec.to_string(), language=None)
        stages = board.stage_frame(spec)
        stages[["t", "c", "n"]] = stages[["t", "c", "n"]].astype("string").fillna("")  # stem, head: no t, c, n
        st.dataframe(stages, hide_index=True, key="stages",
                     column_config={"madds": st.column_config.NumberColumn("MAdds", format="localized"),
                                    "params": st.column_config.NumberColumn("params", format="localized")})
        latency = f", {row['latency_ms']:.2f} ms on {row['latency_device']}" if pd.notna(row["latency_ms"]) else ""
        st.caption(f"{format_count(row['madds'])} MAdds, {format_count(row['params'])} parameters{latency}")
with curve:
    history = board.epoch_history(row)
    if history:
        st.plotly_chart(training_curve_figure(history, board.epoch_history(row, "loss_history"),
                                              title="training curve"), key="curve")
    else:
        st.info(row.get("status_reason") or "No training curve recorded.")
    st.markdown("**Export to the model library**")
    st.code(board.export_command(study_name, url, int(number)), language="bash")

"""The dashboard: its data side (dashboard.py) and the Streamlit app (app.py) through AppTest.

Studies are hand-made (``synthetic.synthetic_trials``): trials carry the user attributes a search
records, nothing is trained.
"""

import base64
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
import plotly.io
import pytest
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest
from synthetic import VAL_SIZE, create_synthetic_study, frame_of, synthetic_labels, synthetic_trials

from mobilenet_search import ArchSpec, count_madds, count_params
from mobilenet_search.errors import UserError
from mobilenet_search.results.frame import FRAME_COLUMNS, trials_frame
from mobilenet_search.results.records import trial_correct
from mobilenet_search.results.report import search_gain
from mobilenet_search.results.stats import balanced_accuracy, seed_noise
from mobilenet_search.ui import dashboard as board
from mobilenet_search.ui.cli_dashboard import add_dashboard_command
from mobilenet_search.ui.figures import CONFIRMATION_LINKS, CONFIRMED, INDISTINGUISHABLE, SEED_REPEATS

APP = str(board.APP_PATH)  # the app as shipped inside the package


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """results/demo.db: "demo" (40 trials + references + 3 noise repeats + one running), "other" (8, recorded before
    intervals existed), "starting" (none trained), "super" (a supernet study: 30 inherited-weight trials, 3
    confirmed from scratch)."""
    root = tmp_path_factory.mktemp("results")
    url = f"sqlite:///{root / 'demo.db'}"
    demo = create_synthetic_study(url, "demo", 40, seed=2, noise_repeats=3)
    demo.ask()  # a trial still running
    # One trial with constraints in Optuna's old form (a list), as older studies hold them.
    demo.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=[0.0, 5e8], user_attrs={"madds": 5e8, "outcome": "over_budget"},
        system_attrs={"constraints": [-1.0, 2.0]}))
    create_synthetic_study(url, "other", 8, seed=5, references=False, records=0)
    create_synthetic_study(url, "super", 30, seed=7, supernet=True, confirm=3)
    starting = optuna.create_study(storage=url, study_name="starting", directions=["maximize", "minimize"])
    starting.ask()
    starting.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
        "outcome": "failed", "status_reason": "OutOfMemoryError: CUDA out of memory", "madds": 1e8}))
    return root


@pytest.fixture(scope="module")
def url(results) -> str:
    return f"sqlite:///{results / 'demo.db'}"


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as plain values: numbers as floats (None as NaN), ``reference`` as a bool."""
    out = frame.copy()
    out["reference"] = out["reference"].fillna(False).astype(bool)
    for column in out.columns:
        try:
            out[column] = pd.to_numeric(out[column]).astype(float)
        except (ValueError, TypeError):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out.reset_index(drop=True)


# -- the data side ------------------------------------------------------------------------------


def test_fast_sql_loader_matches_trials_frame(url):
    data = board.load_study_data(url, "demo")
    assert data.source == "sql"
    study = optuna.load_study(study_name="demo", storage=url)
    reference = trials_frame(study)
    assert list(data.frame.columns[:len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    pd.testing.assert_frame_equal(_comparable(data.frame[list(FRAME_COLUMNS)]), _comparable(reference))
    assert data.directions == ("maximize", "minimize") and data.config.budget == "300M-madds"
    # The old-form constraint list [-1, 2] is infeasible, as Optuna reads it.
    assert not data.frame["feasible"].iat[-1] and not study.trials[-1].constraints["1"] <= 0


def test_optuna_api_fallback_and_journal_files_give_the_same_frame(url, tmp_path):
    fast = board.load_study_data(url, "demo")
    slow = board.load_study_data(url, "demo", fast=False)
    assert slow.source == "optuna"
    pd.testing.assert_frame_equal(_comparable(fast.frame), _comparable(slow.frame))
    journal = tmp_path / "copy.journal"
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    optuna.copy_study(from_study_name="demo", from_storage=url, to_storage=optuna.storages.JournalStorage(backend))
    copied = board.load_study_data(f"journal:{journal}", "demo")
    assert copied.source == "optuna"
    pd.testing.assert_frame_equal(_comparable(copied.frame), _comparable(fast.frame))


def test_studies_are_found_under_the_results_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "cache").mkdir()
    for name in ("a.db", "sub/b.sqlite", "cache/c.db", "notes.txt", "d.journal"):
        (tmp_path / name).write_text("")
    assert board.find_storages(tmp_path) == [f"sqlite:///{tmp_path / 'a.db'}", f"journal:{tmp_path / 'd.journal'}",
                                             f"sqlite:///{tmp_path / 'sub' / 'b.sqlite'}"]
    assert board.find_storages(tmp_path / "missing") == []


def test_storages_are_opened_without_creating_anything(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        board.open_storage(f"sqlite:///{tmp_path / 'nothing.db'}")
    assert not (tmp_path / "nothing.db").exists()
    with pytest.raises(UserError, match="does not exist"):
        board.open_storage(f"journal:{tmp_path / 'none.journal'}")
    with pytest.raises(UserError, match="invalid storage URL 'results/none'"):
        board.open_storage("results/none")
    with pytest.raises(UserError, match="empty storage URL"):
        board.open_storage("  ")
    with pytest.raises(UserError, match=r"cannot open storage postgresql://user:\*\*\*@127.0.0.1:1/db"):
        board.open_storage("postgresql://user:pw@127.0.0.1:1/db")


def test_studies_of_a_storage_are_listed_with_their_trial_counts(url, tmp_path):
    demo = len(synthetic_trials(40, seed=2, noise_repeats=3)) + 2  # the fixture's, the running one, the old-form one
    super_ = len(synthetic_trials(30, seed=7, supernet=True, confirm=3))
    assert board.list_studies(url) == [board.StudyInfo("demo", demo), board.StudyInfo("other", 8),
                                       board.StudyInfo("starting", 2), board.StudyInfo("super", super_)]
    sqlite3.connect(tmp_path / "blank.db").close()  # a file without Optuna's tables
    assert board.list_studies(f"sqlite:///{tmp_path / 'blank.db'}") == []
    with pytest.raises(UserError, match="study 'nope' does not exist"):
        board.load_study_data(url, "nope")
    with pytest.raises(UserError, match="study 'nope' does not exist"):
        board.load_study_data(url, "nope", fast=False)


def test_study_version_changes_when_a_trial_is_added(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    study = create_synthetic_study(url, "v", 2, references=False)
    before = board.study_version(url, "v")
    assert before == board.study_version(url, "v")
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.5, 1e8]))
    assert board.study_version(url, "v") != before
    assert board.study_version(f"journal:{tmp_path / 'x.journal'}", "v") is None


def test_outcome_counts_and_failure_reasons(url):
    frame = board.load_study_data(url, "demo").frame
    trials = optuna.load_study(study_name="demo", storage=url).trials
    searched = [t for t in trials if not t.user_attrs.get("reference")]
    counts = board.outcome_counts(frame)
    assert counts["trained"] == sum(t.user_attrs.get("outcome") == "trained" for t in searched)
    assert counts["over budget"] == sum(t.user_attrs.get("outcome") == "over_budget" for t in searched)
    assert counts["failed"] == sum(t.state == TrialState.FAIL for t in searched) > 0
    assert counts["pruned"] == sum(t.state == TrialState.PRUNED for t in searched)
    assert counts["running"] == 1 and counts["references"] == len(trials) - len(searched) > 0
    assert counts["total"] == len(trials)
    reasons = board.failure_reasons(frame)
    over = reasons[reasons["outcome"] == "over_budget"]
    assert list(over["reason"]) == ["over budget 300M-madds"]  # grouped: each candidate's own count dropped
    assert over["trials"].iat[0] == sum(t.user_attrs.get("outcome") == "over_budget" and "status_reason"
                                        in t.user_attrs for t in searched)
    assert reasons["trials"].is_monotonic_decreasing


def test_stage_frame_shows_each_stage_and_sums_to_the_totals():
    spec = ArchSpec.mobilenet_v2(width_mult=0.75, resolution=160)
    table = board.stage_frame(spec)
    assert table["madds"].sum() == count_madds(spec) and table["params"].sum() == count_params(spec)
    stage2 = table[table["layer"] == "stage2"].iloc[0]
    # The README's `describe v2 --width 0.75 --resolution 160` row: t6 c24 n2 s2, 24 channels, 28,032,000 MAdds.
    assert (stage2["t"], stage2["c"], stage2["n"], stage2["s"]) == (6, 24, 2, 2)
    assert (stage2["c_out"], stage2["out"], stage2["madds"]) == (24, "40²", 28_032_000)


def test_trial_helpers(url):
    frame = board.load_study_data(url, "demo").frame
    best = board.default_trial(frame)
    row = frame[frame["number"] == best].iloc[0]
    assert row["accuracy"] == board.searched(frame)["accuracy"].max()
    assert board.trial_spec(row).to_string() == row["arch"]
    assert board.trial_spec({"arch": row["arch"]}) == board.trial_spec(row)
    assert board.epoch_history(row)[-1] == row["accuracy"] and board.epoch_history({}) == []
    assert board.trial_label(row).startswith(f"trial {best} · accuracy")


def test_export_command_never_shows_a_password():
    command = board.export_command("s 1", "postgresql://me:secret@db/optuna", 7)
    assert command == ("mobilenet-search export --study 's 1' --storage 'postgresql://me:***@db/optuna' "
                       "--trial 7 --name 's 1-trial7'")


def test_dashboard_command_starts_streamlit_with_the_options(monkeypatch, url):
    import argparse

    parser = argparse.ArgumentParser()
    add_dashboard_command(parser.add_subparsers(dest="command"))
    calls = []

    real_popen = board.subprocess.Popen

    def fake_popen(command, env):  # a child that exits at once
        calls.append((command, env))
        return real_popen([board.sys.executable, "-c", "pass"])

    monkeypatch.setattr(board, "subprocess", SimpleNamespace(Popen=fake_popen))
    args = parser.parse_args(["dashboard", "--storage", url, "--port", "8600", "--results-dir", "res"])
    assert args.run(args) == 0
    command, env = calls[0]
    assert command[command.index("--server.address") + 1] == "127.0.0.1"  # this machine only, by default
    assert command[1:5] == ["-m", "streamlit", "run", str(board.APP_PATH)]
    assert command[command.index("--server.port") + 1] == "8600" and command[-2:] == ["--results-dir", "res"]
    assert env[board.STORAGE_ENV] == url and url not in command  # URLs may hold passwords: not in `ps`
    assert board.app_options(command[command.index("--") + 1:])["results_dir"] == "res"
    with pytest.raises(UserError, match="invalid --port 0"):
        board.run_dashboard(port=0)
    with pytest.raises(UserError, match="does not exist"):
        board.run_dashboard(storage="sqlite:///no/such.db")


def test_synthetic_trials_are_seeded_and_consistent():
    first, again = synthetic_trials(30, seed=4, noise_repeats=2), synthetic_trials(30, seed=4, noise_repeats=2)
    assert [t.user_attrs for t in first] == [t.user_attrs for t in again]
    labels = synthetic_labels(4)
    for trial in first:
        spec = ArchSpec.from_json(trial.user_attrs["spec"])
        assert trial.user_attrs["madds"] == count_madds(spec)
        over = trial.user_attrs["outcome"] == "over_budget"
        assert over == (trial.constraints["madds_over_budget"] > 0) == (count_madds(spec) > 300e6)
        assert ("accuracy" in trial.user_attrs) == (trial.user_attrs["outcome"] == "trained")
        correct = trial_correct(trial)
        if correct is not None:  # recorded as a search records it: the numbers are those of the vector
            attrs = trial.user_attrs
            assert attrs["accuracy"] == round(correct.mean(), 4) and len(correct) == VAL_SIZE
            assert attrs["balanced_accuracy"] == round(balanced_accuracy(correct, labels), 4)
            assert attrs["accuracy_low"] < attrs["accuracy"] < attrs["accuracy_high"]
            assert attrs["balanced_accuracy_low"] < attrs["balanced_accuracy"] < attrs["balanced_accuracy_high"]
            assert attrs["strategy"] == "scratch"
    trained = [t for t in first if t.user_attrs.get("outcome") == "trained"]
    assert 0 < sum(trial_correct(t) is None for t in trained) < len(trained) / 2  # some look like older studies
    assert any(t.user_attrs.get("reference") for t in first)
    assert [t.user_attrs["noise_seed"] for t in first if t.user_attrs.get("noise_seed")] == [1, 2]
    assert not any("constraints" in key for t in first for key in t.user_attrs)


def test_synthetic_supernet_studies_confirm_inherited_pareto_trials():
    trials = synthetic_trials(40, seed=1, supernet=True, confirm=2)
    confirmations = [t for t in trials if t.user_attrs.get("confirms") is not None]
    assert len(confirmations) == 2
    for confirmation in confirmations:
        source = trials[confirmation.user_attrs["confirms"]]  # numbers are positions, as in the study
        assert source.user_attrs["strategy"] == "supernet" and confirmation.user_attrs["strategy"] == "scratch"
        assert confirmation.params == source.params and confirmation.user_attrs["arch"] == source.user_attrs["arch"]
        assert "accuracy_history" in confirmation.user_attrs and "accuracy_history" not in source.user_attrs
    references = [t for t in trials if t.user_attrs.get("reference")]
    assert references and all(t.user_attrs["strategy"] == "scratch" for t in references)


def test_per_image_records_stay_out_of_the_frame_and_load_for_the_trials_asked(url, monkeypatch):
    assert "val_correct" not in board.load_study_data(url, "demo").frame
    study = optuna.load_study(study_name="demo", storage=url)
    expected = {t.number: v for t in study.trials if (v := trial_correct(t)) is not None}
    assert len(expected) > 20
    for fast in (True, False):  # Optuna's tables read directly, and the Optuna API
        monkeypatch.setattr(board, "_is_sql", lambda url, fast=fast: fast)
        loaded = board.load_correct(url, "demo")
        assert loaded.keys() == expected.keys() and all((loaded[n] == v).all() for n, v in expected.items())
        some = sorted(expected)[:3]
        assert sorted(board.load_correct(url, "demo", [*some, 10_000])) == some
        with pytest.raises(UserError, match="study 'nope' does not exist"):
            board.load_correct(url, "nope")


def test_dominated_trials_are_tested_against_the_pareto_trial_at_no_more_cost():
    base = np.random.default_rng(0).random(525)
    front_a, front_b = base < 0.80, base < 0.90
    near_a = front_a.copy()
    near_a[np.flatnonzero(front_a)[:4]] = False  # 4 images fewer than A: McNemar p = 0.125
    below_b = front_b.copy()
    below_b[np.flatnonzero(front_b)[:30]] = False  # 30 fewer than B: p < 1e-8, but within 2.77 seed sd of 0.03
    frame = frame_of(
        dict(madds=100e6, accuracy=front_a.mean(), val_size=525),  # 0: on the front
        dict(madds=150e6, accuracy=near_a.mean(), val_size=525),  # 1: A's, within validation noise
        dict(madds=200e6, accuracy=(base < 0.6).mean(), val_size=525),  # 2: worse than B, the front at 180M
        dict(madds=180e6, accuracy=front_b.mean(), val_size=525),  # 3: on the front
        dict(madds=250e6, accuracy=0.5),  # 4: recorded no per-image results
        dict(madds=190e6, accuracy=below_b.mean(), val_size=525),  # 5: B's, within seed noise only
        dict(madds=50e6, accuracy=0.95, reference=True, reference_name="r", val_size=525),  # 6: not searched
    )
    correct = {0: front_a, 1: near_a, 2: base < 0.6, 3: front_b, 5: below_b, 6: base < 0.95}
    assert board.indistinguishable_from_front(frame, correct) == [1]
    assert board.indistinguishable_from_front(frame, correct, seed_sd=0.03) == [1, 5]
    assert board.indistinguishable_from_front(frame, correct, budget=160e6) == [1]
    assert board.indistinguishable_from_front(frame, {}) == []
    # Against latency the same trials, another front: 3 is now cheapest and A's vectors no longer anchor 1.
    by_latency = frame.assign(latency_ms=[5.0, 6.0, 9.0, 1.0, 9.5, 8.0, 1.0])
    assert board.indistinguishable_from_front(by_latency, correct, cost="latency_ms") == []


def test_seed_noise_comes_from_the_noise_repeats_and_the_net_they_repeat(url):
    frame = board.load_study_data(url, "demo").frame
    repeats = frame[frame["noise_seed"].notna()]
    (name,) = repeats["reference_name"].unique()
    runs = frame[(frame["reference_name"] == name) & (frame["outcome"] == "trained")]["accuracy"]
    assert len(runs) == 4 and board.seed_sd(frame) == pytest.approx(seed_noise(list(runs)))
    assert board.seed_sd(board.load_study_data(url, "other").frame) is None


def test_the_noise_floor_from_the_frame_is_the_search_gain_report_s(url):
    for name in ("demo", "super"):
        study = optuna.load_study(study_name=name, storage=url)
        reported = search_gain(study)["noise"]
        shown = board.noise_summary(board.load_study_data(url, name).frame)
        assert shown == pytest.approx({key: reported[key] for key in shown}), name
    assert board.noise_summary(board.load_study_data(url, "demo").frame)["seed_sd"] > 0  # 3 noise repeats
    old = board.noise_summary(board.load_study_data(url, "other").frame)
    assert old["seed_sd"] is None and old["floor"] is None


def test_the_trial_table_puts_confirmed_accuracy_beside_the_inherited_one(url):
    frame = board.load_study_data(url, "super").frame
    table = board.trial_table(frame, ["number", "strategy", "accuracy", "confirmed_accuracy", "confirms", "nothing"])
    assert list(table.columns) == ["number", "strategy", "accuracy", "confirmed_accuracy", "confirms"]
    confirmations = frame[frame["confirms"].notna()]
    assert len(confirmations) == 3
    rows = table.set_index("number")
    for _, confirmation in confirmations.iterrows():
        source = rows.loc[int(confirmation["confirms"])]
        assert source["strategy"] == "supernet" and source["confirmed_accuracy"] == confirmation["accuracy"]
    assert rows["confirmed_accuracy"].notna().sum() == 3
    assert "confirmed_accuracy" not in board.trial_table(board.load_study_data(url, "demo").frame, ["number",
                                                                                                   "confirmed_accuracy"])


# -- the app, through Streamlit's AppTest ------------------------------------------------------------


def _app(monkeypatch, results_dir, storage: str | None = None) -> AppTest:
    monkeypatch.setenv(board.RESULTS_DIR_ENV, str(results_dir))
    if storage is None:
        monkeypatch.delenv(board.STORAGE_ENV, raising=False)
    else:
        monkeypatch.setenv(board.STORAGE_ENV, storage)
    return AppTest.from_file(APP, default_timeout=60).run()


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The one table shown with ``column`` (plain tables carry no key in AppTest)."""
    (table,) = [el.value for el in at.dataframe if column in el.value.columns]
    return table


def _array(values) -> np.ndarray:
    """A trace's data as sent to the browser: plotly encodes numeric arrays as base64 ``bdata``."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def _figure(at: AppTest, key: str) -> go.Figure:
    return plotly.io.from_json(at.get_by_key(key).proto.spec)


def test_app_shows_the_frontier_health_and_the_best_trial(monkeypatch, results, url):
    at = _app(monkeypatch, results)
    assert not at.exception
    assert at.main.title[0].value == "Study demo"
    counts = board.outcome_counts(board.load_study_data(url, "demo").frame)
    header = ("trained", "over budget", "pruned", "failed", "running", "total")
    assert {m.label: int(m.value) for m in at.metric if m.label in header} == {k: counts[k] for k in header}
    assert any("still running" in info.value for info in at.info)
    names = [trace.name for trace in _figure(at, "frontier").data]
    assert {"trials", "Pareto front", "paper reference networks", "over budget (not trained)"} <= set(names)
    for key in ("history", "importance", "curve"):
        assert _figure(at, key).data, key
    best = board.default_trial(board.load_study_data(url, "demo").frame)
    assert at.selectbox(key="trial").value == best
    assert f"--trial {best}" in at.code[-1].value and "mobilenet-search export --study demo" in at.code[-1].value
    assert len(at.get("download_button")) == 1

    budget = float(board.searched(board.load_study_data(url, "demo").frame)["madds"].median()) / 1e6
    at.slider(key="budget_madds").set_value(budget).run()
    figure = _figure(at, "frontier")
    assert not at.exception and figure.layout.shapes[0].x0 == pytest.approx(budget * 1e6)
    assert all(x <= budget * 1e6 for trace in figure.data for x in _array(trace.x))


def test_app_selects_a_study_a_trial_and_a_cost_axis(monkeypatch, results):
    at = _app(monkeypatch, results)
    at.selectbox(key="study").select("other").run()
    assert not at.exception and at.main.title[0].value == "Study other"
    frame = board.load_study_data(f"sqlite:///{results / 'demo.db'}", "other").frame
    assert at.selectbox(key="trial").value == board.default_trial(frame)  # not demo's number carried over
    number = int(frame[frame["outcome"] == "trained"]["number"].iloc[-1])
    at.selectbox(key="trial").select(number).run()
    assert not at.exception
    spec = ArchSpec.from_string(frame[frame["number"] == number]["arch"].iat[0])
    assert at.code[0].value == spec.to_string()
    assert list(_table(at, "layer")["madds"]) == list(board.stage_frame(spec)["madds"])
    assert f"--trial {number}" in at.code[-1].value
    ring = [t for t in _figure(at, "frontier").data if t.name == f"trial {number}"]
    assert len(ring) == 1
    at.radio(key="cost").set_value("latency_ms").run()
    assert not at.exception
    layout = _figure(at, "frontier").layout.to_plotly_json()
    assert layout.get("xaxis2", layout["xaxis"])["title"]["text"] == "latency (ms)"


def test_app_explains_empty_cases_instead_of_failing(monkeypatch, results, tmp_path):
    at = _app(monkeypatch, tmp_path / "nothing-here")
    assert not at.exception and "No study found" in at.info[0].value
    empty = tmp_path / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{empty}")  # Optuna's tables, no study
    at = _app(monkeypatch, tmp_path / "nothing-here", storage=f"sqlite:///{empty}")
    assert not at.exception and "holds no study yet" in at.info[0].value
    at = _app(monkeypatch, tmp_path / "nothing-here", storage=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not at.exception and "does not exist" in at.error[0].value
    at = _app(monkeypatch, results)
    at.selectbox(key="study").select("starting").run()
    assert not at.exception
    messages = " ".join(info.value for info in at.info)
    assert "No trained trial yet" in messages and "still running" in messages
    assert _table(at, "reason")["reason"].tolist() == ["OutOfMemoryError: CUDA out of memory"]


def test_stored_proxy_fidelity_reaches_the_dashboard(tmp_path):
    from mobilenet_search.search.fidelity import FIDELITY_ATTR

    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = create_synthetic_study(url, "f", 10, seed=3)
    summary = {"epochs": 20, "proxy_epochs": 4, "trials": [1, 2, 3],
               "correlations": {"accuracy": {"kendall_tau": 0.5, "spearman_rho": 0.6, "kendall_tau_within_bins": 0.4},
                                "madds": {"kendall_tau": 0.3, "spearman_rho": 0.4, "kendall_tau_within_bins": None}}}
    assert board.load_study_data(url, "f").fidelity is None
    assert board.fidelity_frame(None).empty
    study.set_user_attr(FIDELITY_ATTR, summary)
    for fast in (True, False):
        assert board.load_study_data(url, "f", fast=fast).fidelity == summary
    table = board.fidelity_frame(summary)
    assert list(table["score"]) == ["proxy accuracy", "MAdds alone (baseline)"]
    assert table.iloc[0]["Kendall tau within MAdds bins"] == 0.4


def _bars(trace) -> tuple[np.ndarray, np.ndarray]:
    """A trace's error bars (up, down) as float arrays, a missing bar (null) as NaN."""
    return np.asarray(trace.error_y.array, dtype=float), np.asarray(trace.error_y.arrayminus, dtype=float)


def test_app_draws_interval_error_bars_seed_repeats_and_the_noise_floor(monkeypatch, results, url):
    at = _app(monkeypatch, results)
    frame = board.load_study_data(url, "demo").frame.set_index("number", drop=False)
    figure = _figure(at, "frontier")
    for name in ("Pareto front", "trials", "paper reference networks", SEED_REPEATS):
        (trace,) = [t for t in figure.data if t.name == name]
        rows = frame.loc[[int(row[0]) for row in trace.customdata]]
        up, down = _bars(trace)
        np.testing.assert_allclose(up, rows["accuracy_high"] - rows["accuracy"], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(down, rows["accuracy"] - rows["accuracy_low"], atol=1e-6, err_msg=name)
    (trials,) = [t for t in figure.data if t.name == "trials"]
    assert np.isnan(_bars(trials)[0]).any() and not np.isnan(_bars(trials)[0]).all()  # older trials: no bar
    (repeats,) = [t for t in figure.data if t.name == SEED_REPEATS]
    assert {int(row[0]) for row in repeats.customdata} == set(frame.index[frame["noise_seed"].notna()])
    (references,) = [t for t in figure.data if t.name == "paper reference networks"]
    assert not {int(row[0]) for row in references.customdata} & set(frame.index[frame["noise_seed"].notna()])

    gain = search_gain(optuna.load_study(study_name="demo", storage=url))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["seed-to-seed sd"] == f"{gain['noise']['seed_sd']:.4f}"
    assert metrics["validation 95 % half-width"] == f"{gain['noise']['validation_half_width']:.4f}"
    assert metrics["noise floor"] == f"{gain['noise']['floor']:.4f}"
    assert not any(caption.value == gain["verdict"] for caption in at.caption)  # the full report waits for a click
    at.toggle(key="gain").set_value(True).run()
    assert any(caption.value == gain["verdict"] for caption in at.caption)

    at.radio(key="quality").set_value("balanced_accuracy").run()
    assert not at.exception
    figure = _figure(at, "frontier")
    (front,) = [t for t in figure.data if t.name == "Pareto front"]
    rows = frame.loc[[int(row[0]) for row in front.customdata]]
    np.testing.assert_allclose(_array(front.y), rows["balanced_accuracy"])
    np.testing.assert_allclose(_bars(front)[1], rows["balanced_accuracy"] - rows["balanced_accuracy_low"], atol=1e-6)
    assert figure.layout.yaxis.title.text == "balanced accuracy"
    assert at.checkbox(key="indistinguishable").disabled  # the paired test is of accuracy

    at.selectbox(key="study").select("other").run()  # recorded before intervals existed
    assert not at.exception
    assert all(trace.error_y.array is None for trace in _figure(at, "frontier").data)
    assert at.checkbox(key="indistinguishable").disabled
    assert any("Not recorded" in caption.value for caption in at.caption)


def test_app_shades_the_trials_indistinguishable_from_the_front(monkeypatch, results, url):
    at = _app(monkeypatch, results)
    assert not at.checkbox(key="indistinguishable").value  # off by default: the page loads no per-image record
    assert INDISTINGUISHABLE not in {t.name for t in _figure(at, "frontier").data}
    at.checkbox(key="indistinguishable").check().run()
    assert not at.exception
    frame = board.load_study_data(url, "demo").frame
    expected = board.indistinguishable_from_front(frame, board.load_correct(url, "demo"), seed_sd=board.seed_sd(frame))
    assert expected
    (halo,) = [t for t in _figure(at, "frontier").data if t.name == INDISTINGUISHABLE]
    assert sorted(int(row[0]) for row in halo.customdata) == sorted(expected)
    assert any(caption.value.startswith(f"Shaded: {len(expected)} dominated") for caption in at.caption)


def test_app_shows_a_supernet_study_inherited_and_confirmed(monkeypatch, results, url):
    at = _app(monkeypatch, results)
    at.selectbox(key="study").select("super").run()
    assert not at.exception
    frame = board.load_study_data(url, "super").frame.set_index("number", drop=False)
    figure = _figure(at, "frontier")
    names = {t.name for t in figure.data}
    assert {"trials (inherited weights)", "Pareto front (inherited weights)", CONFIRMED, CONFIRMATION_LINKS,
            "confirmed front", "paper reference networks"} <= names
    (confirmed,) = [t for t in figure.data if t.name == CONFIRMED]
    numbers = [int(row[0]) for row in confirmed.customdata]
    assert sorted(numbers) == sorted(frame.index[frame["confirms"].notna()])
    (links,) = [t for t in figure.data if t.name == CONFIRMATION_LINKS]
    sources = frame.loc[frame.loc[numbers, "confirms"].astype(int)]
    assert sorted(y for y in links.y if y is not None) == sorted([*frame.loc[numbers, "accuracy"],
                                                                 *sources["accuracy"]])
    table = _table(at, "confirmed_accuracy")
    assert (table.loc[table["confirmed_accuracy"].notna(), "strategy"] == "supernet").all()
    assert set(table["strategy"].dropna()) == {"supernet", "scratch"}


# -- the Scaling view of a scaling study -------------------------------------------------------------------

SCALING_RESAMPLES = 20  # bootstrap replicates in these tests: enough to test with, fast


@pytest.fixture(scope="module")
def scaling_results(tmp_path_factory) -> Path:
    """results/scaled.db: a scaling study of MobileNetV2 0.35/96 as `mobilenet-search scaling` records it, its
    accuracies drawn around known curves (``synthetic.create_synthetic_scaling_study``); nothing trained."""
    from synthetic import create_synthetic_scaling_study

    root = tmp_path_factory.mktemp("scaling-results")
    create_synthetic_scaling_study(f"sqlite:///{root / 'scaled.db'}", "scaled")
    return root


def test_only_a_scaling_study_has_a_scaling_plan(scaling_results, url):
    scaled = f"sqlite:///{scaling_results / 'scaled.db'}"
    plan = board.scaling_plan(scaled, "scaled")
    assert plan is not None and plan["base"].startswith("mnv2_w0.35_r96_")
    assert board.scaling_plan(url, "demo") is None and board.scaling_plan(scaled, "nope") is None


def test_the_scaling_view_fits_every_direction_and_finds_the_paper_s_networks_it_trained(scaling_results):
    from synthetic import SCALING_CURVES

    scaled = f"sqlite:///{scaling_results / 'scaled.db'}"
    view = board.scaling_view(scaled, "scaled", resamples=SCALING_RESAMPLES)
    fits = {name: entry["fit"] for name, entry in view.analysis["directions"].items()}
    assert set(fits) == set(SCALING_CURVES) and all(fit is not None for fit in fits.values())
    # The widths 0.5, 0.75 and 1.0 at 96 px and the resolutions 128, 160 and 224 at width 0.35, and the base.
    assert [p["name"] for p in view.paper] == ["mobilenet_v2_0.35_96", "mobilenet_v2_0.5_96", "mobilenet_v2_0.35_128",
                                               "mobilenet_v2_0.35_160", "mobilenet_v2_0.75_96",
                                               "mobilenet_v2_1.0_96", "mobilenet_v2_0.35_224"]
    study = optuna.load_study(study_name="scaled", storage=scaled)
    runs = [t.user_attrs["accuracy"] for t in study.trials if t.user_attrs["arch"] == view.paper[1]["arch"]]
    assert len(runs) == 2 and view.paper[1]["accuracy"] == pytest.approx(np.mean(runs))

    answer = board.scaling_recommendation(view, "30M-madds")
    assert answer["madds"] < 30e6 and answer["interval"][0] <= answer["accuracy"] <= answer["interval"][1]
    assert answer == board.scaling_recommendation(view, board.scaling_budget_text(30e6))
    with pytest.raises(UserError, match="invalid budget 500.0M MAdds: above the study's --budget"):
        board.scaling_recommendation(view, "500M-madds")
    summary = board.scaling_summary(view.analysis)
    assert list(summary["direction"]) == list(SCALING_CURVES)
    assert summary["plateau"].tolist() == [fits[name]["plateau"] for name in SCALING_CURVES]
    assert "--scaled 30M-madds" in board.scaled_export_command("scaled", scaled, "30M-madds")


def test_app_shows_the_scaling_view_and_the_recommended_net_for_a_budget(monkeypatch, scaling_results):
    monkeypatch.setenv(board.RESULTS_DIR_ENV, str(scaling_results))
    monkeypatch.delenv(board.STORAGE_ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["scaling_resamples"] = SCALING_RESAMPLES
    at.run()
    assert not at.exception
    assert [tab.label for tab in at.tabs] == ["Frontier", "Trials", "Study health", "Scaling"]
    view = board.scaling_view(f"sqlite:///{scaling_results / 'scaled.db'}", "scaled", resamples=SCALING_RESAMPLES)
    names = {trace.name for trace in _figure(at, "scaling").data}
    for direction in ("width", "resolution", "depth", "compound"):
        assert {f"{direction} fit", f"{direction} 95 % band", f"{direction} measured", f"{direction} knee"} <= names
    assert {"paper's width x resolution family", "recommended"} <= names
    metrics = {m.label: m.value for m in at.metric}
    top = max(entry["fit"]["measured_madds"][1] for entry in view.analysis["directions"].values())
    low, high = board.scaling_budget_range(view.analysis)
    assert low == view.analysis["base"]["madds"] and high == 100e6 > top  # the study's --budget: 100M-madds
    answer = board.scaling_recommendation(view, board.scaling_budget_text(high))  # the input starts at the budget
    assert metrics["recommended direction"] == answer["direction"]
    assert metrics["predicted accuracy"] == f"{answer['accuracy']:.3f}"
    assert answer["reach"] == top >= answer["madds"]  # past the largest net the space reaches: the measured range
    assert any("reaches no further than" in info.value for info in at.info)

    at.number_input(key="scaling_budget").set_value(20.0).run()
    assert not at.exception
    answer = board.scaling_recommendation(view, "20M-madds")
    assert {m.label: m.value for m in at.metric}["MAdds"] == board.format_count(answer["madds"])
    assert answer["madds"] < 20e6
    codes = [code.value for code in at.code]
    assert answer["arch"] in codes and any("--scaled 20M-madds" in code for code in codes)
    (star,) = [t for t in _figure(at, "scaling").data if t.name == "recommended"]
    assert star.x[0] == answer["madds"]


def test_the_scaling_tab_appears_only_for_a_scaling_study(monkeypatch, results):
    at = _app(monkeypatch, results)
    assert not at.exception and [tab.label for tab in at.tabs] == ["Frontier", "Trials", "Study health"]

"""The dashboard's data side: find studies, load one fast, describe a trial; no Streamlit here.

``app.py`` only lays out what these functions return, so everything the dashboard shows is
testable without a browser. Loading is the part that matters at scale: building Optuna's
trial objects costs seconds for a 10,000-trial study, so for SQL storages (SQLite,
PostgreSQL, MySQL) :func:`load_study_data` reads Optuna's tables directly with one query per
table, and falls back to the Optuna API for anything else (journal files), for a schema
version other than the one that reader was written for (:data:`FAST_SQL_SCHEMAS`), or when
the tables do not look as expected. Both paths give the frame of
:func:`mobilenet_search.results.frame.trials_frame` (numeric attributes as floats, a missing value as
NaN); a test checks them against each other.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from mobilenet_search.arch.cost import format_count, stage_table
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.results.frame import (
    FRAME_COLUMNS,
    TRIAL_ATTRS,
    fill_learned_nothing,
    pareto_mask,
    trained,
    trials_frame,
)
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    CONFIRMS_ATTR,
    CORRECT_ATTR,
    FIDELITY_ATTR,
    VAL_LABELS_ATTR,
    VAL_SIZE_ATTR,
    StudySettings,
    TrialRecord,
    frame_is_confirmation,
    frame_is_noise_repeat,
    frame_is_reference,
    is_feasible,
    is_reference,
    study_val_labels,
    trial_correct,
    trivial_quality,
    unpack_labels,
)
from mobilenet_search.results.stats import compare, seed_noise, validation_noise
from mobilenet_search.search.storage import make_storage, redact

STORAGE_SUFFIXES = (".db", ".sqlite", ".sqlite3")  # SQLite files
JOURNAL_SUFFIXES = (".journal",)  # Optuna journal files, listed as journal:PATH
STORAGE_ENV, RESULTS_DIR_ENV = "MOBILENET_SEARCH_STORAGE", "MOBILENET_SEARCH_RESULTS_DIR"
APP_PATH = Path(__file__).resolve().parent / "app.py"  # shipped inside the package
DEFAULT_ADDRESS = "127.0.0.1"  # this machine only: a study's storage URL and results are not for the whole network
STOP_TIMEOUT = 10.0  # seconds Streamlit gets to stop after SIGTERM before it is killed
# The Optuna RDB schemas _load_sql was written for: (alembic revision, version_info.schema_version).
# The tables it reads (studies, study_directions, trials, study/trial user and system attributes)
# are unchanged since revision v2.4.0.a; v3.2.0.a is the head from Optuna 3.2 to 5.0 at least.
FAST_SQL_SCHEMAS = frozenset({("v3.2.0.a", 12)})


@dataclass(frozen=True)
class StudyData:
    """One study as the dashboard shows it."""

    name: str
    frame: pd.DataFrame  # trials_frame's columns, one row per trial, by number
    directions: tuple[str, ...]  # "maximize"/"minimize" per objective
    config: StudySettings | None = None  # the settings the study was created with (None: not by mobilenet-search)
    fidelity: dict[str, Any] | None = None  # what `mobilenet-search fidelity` stored, once measured
    source: str = "sql"  # "sql" (Optuna's tables read directly) or "optuna" (the Optuna API)
    trivial: dict[str, float] = field(default_factory=dict)  # the trivial classifier's score per quality


def trivial_scores(labels: np.ndarray | None) -> dict[str, float]:
    """The trivial classifier's accuracy and balanced accuracy on the validation labels ({} without them)."""
    if labels is None or len(labels) == 0:
        return {}
    return {quality: trivial_quality(quality, labels) for quality in ("accuracy", "balanced_accuracy")}


# -- storages and studies ---------------------------------------------------------------------


def find_storages(results_dir: str | Path = "results") -> list[str]:
    """Storage URLs of the study files under ``results_dir`` (SQLite ``.db`` files, journals), sorted.

    A missing folder gives an empty list; the dataset cache is skipped.
    """
    root = Path(results_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "cache" in path.relative_to(root).parts[:-1]:
            continue
        if path.suffix in STORAGE_SUFFIXES:
            found.append(f"sqlite:///{path}")
        elif path.suffix in JOURNAL_SUFFIXES:
            found.append(f"journal:{path}")
    return found


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage behind ``url`` (see :mod:`mobilenet_search.search.storage`), which must already exist.

    A SQLite or journal file that does not exist is a :class:`UserError` (Optuna would silently
    create an empty one), and so is an unreachable server.
    """
    url = url.strip()
    if not url:
        raise UserError("empty storage URL: expected e.g. sqlite:///results/STUDY.db or postgresql://...")
    return make_storage(url, heartbeat=None, must_exist=True)


def _is_sql(url: str) -> bool:
    return not url.startswith("journal:")


def _engine(url: str):
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


@dataclass(frozen=True)
class StudyInfo:
    """A study in a storage: its name and how many trials it holds."""

    name: str
    n_trials: int


def list_studies(url: str) -> list[StudyInfo]:
    """The studies in a storage, by name. An unreachable or malformed storage is a :class:`UserError`."""
    storage = open_storage(url)
    if _is_sql(url):
        try:
            with _engine(url).connect() as conn:
                rows = pd.read_sql(_sql("""
                    SELECT s.study_name AS name, COUNT(t.trial_id) AS n_trials FROM studies s
                    LEFT JOIN trials t ON t.study_id = s.study_id GROUP BY s.study_name ORDER BY s.study_name"""), conn)
            return [StudyInfo(str(r.name), int(r.n_trials)) for r in rows.itertuples()]
        except Exception as exc:  # an empty SQLite file, another schema: let Optuna say what is wrong
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return []
    try:
        summaries = optuna.study.get_all_study_summaries(storage, include_best_trial=False)
    except Exception as exc:
        raise UserError(f"cannot read storage {redact(url)}: {' '.join(str(exc).split())[:300]}") from None
    return sorted((StudyInfo(s.study_name, s.n_trials) for s in summaries), key=lambda s: s.name)


def _sql(text: str):
    import sqlalchemy

    return sqlalchemy.text(" ".join(text.split()))


def study_version(url: str, study_name: str) -> str | None:
    """A cheap token that changes whenever a trial is added or finishes (None: not an SQL storage).

    The dashboard caches a loaded study under this token, so a running study is reloaded
    exactly when it has something new to show.
    """
    if not _is_sql(url):
        return None
    try:
        with _engine(url).connect() as conn:
            row = conn.execute(_sql("""
                SELECT COUNT(t.trial_id), COUNT(t.datetime_complete), MAX(t.datetime_complete), MAX(t.trial_id)
                FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = :name"""),
                {"name": study_name}).one()
    except Exception:
        return None
    return "|".join(str(v) for v in row)


# -- loading a study --------------------------------------------------------------------------


def load_study_data(url: str, study_name: str, *, fast: bool = True) -> StudyData:
    """Load a study's trials as the dashboard's frame; a missing study is a :class:`UserError`.

    ``fast`` reads Optuna's SQL tables directly when the storage is an RDB URL (50x faster on
    10,000 trials); otherwise, or if that read fails, the Optuna API is used.
    """
    storage = open_storage(url)
    if fast and _is_sql(url):
        try:
            return _load_sql(url, study_name)
        except UserError:
            raise
        except Exception:  # a schema this reader does not know: Optuna's API still does
            pass
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(url)}") from None
    except Exception as exc:
        raise UserError(f"cannot open storage {redact(url)}: {' '.join(str(exc).split())[:300]}") from None
    return study_data_from_study(study)


def study_data_from_study(study: optuna.Study) -> StudyData:
    """The dashboard's view of an already-open study, through the Optuna API."""
    frame = trials_frame(study)
    for key in TRIAL_ATTRS:
        frame[key] = _typed(frame[key])
    frame["reference"] = frame_is_reference(frame)
    return StudyData(name=study.study_name, frame=frame,
                     directions=tuple(d.name.lower() for d in study.directions),
                     config=StudySettings.from_study(study), source="optuna",
                     fidelity=study.user_attrs.get(FIDELITY_ATTR), trivial=trivial_scores(study_val_labels(study)))


class _UnknownSchema(Exception):
    """Optuna's tables are of a version the fast reader was not written for: read through the Optuna API."""


@contextmanager
def _sql_study(url: str, study_name: str) -> Iterator[Callable[[str], list[tuple]]]:
    """A ``read(query)`` over one study's rows (``:sid`` in a query stands for its id), for the fast reader.

    Checks the schema first (:class:`_UnknownSchema` when it is not one of :data:`FAST_SQL_SCHEMAS`);
    a missing study is a :class:`UserError`. One connection for every read; closed on exit.
    """
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            schema = (conn.execute(_sql("SELECT version_num FROM alembic_version")).scalar(),
                      conn.execute(_sql("SELECT schema_version FROM version_info")).scalar())
            if schema not in FAST_SQL_SCHEMAS:
                raise _UnknownSchema(f"Optuna schema {schema} in {redact(url)}")
            found = conn.execute(_sql("SELECT study_id FROM studies WHERE study_name = :name"),
                                 {"name": study_name}).first()
        if found is None:
            raise UserError(f"study {study_name!r} does not exist in {redact(url)}")
        sid = int(found[0])  # an integer from the database: safe to inline, so no driver-specific paramstyle
        # The DB-API cursor directly: SQLAlchemy's row objects cost more than the query on 200,000 attributes.
        raw = engine.raw_connection()
        try:
            def read(query: str) -> list[tuple]:
                cursor = raw.cursor()
                cursor.execute(" ".join(query.split()).replace(":sid", str(sid)))
                rows = cursor.fetchall()
                cursor.close()
                return rows

            yield read
        finally:
            raw.close()
    finally:
        engine.dispose()


def _load_sql(url: str, study_name: str) -> StudyData:
    with _sql_study(url, study_name) as read:
        directions = read("SELECT direction FROM study_directions WHERE study_id = :sid ORDER BY objective")
        study_attrs = read("SELECT key, value_json FROM study_user_attributes WHERE study_id = :sid")
        trials = pd.DataFrame(read("SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                                   "WHERE study_id = :sid ORDER BY number"),
                              columns=["trial_id", "number", "state", "datetime_start", "datetime_complete"])
        # Every attribute: filtering keys in SQL (to leave out the per-image records) makes SQLite's plan slower.
        attrs = read("SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                     "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid")
        constraints = read("SELECT a.trial_id, a.value_json FROM trial_system_attributes a "
                           "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid "
                           "AND a.key LIKE 'constraints%'")

    position = {trial_id: i for i, trial_id in enumerate(trials["trial_id"].tolist())}
    frame = pd.DataFrame({"number": trials["number"].to_numpy(int), "state": trials["state"].astype(str).to_numpy()})
    # New form: one "constraints:<name>" attribute per constraint; old form: one "constraints" list.
    worst = np.full(len(frame), -np.inf)
    for (trial_id, _), value in zip(constraints, _decode([text for _, text in constraints]), strict=True):
        value = max(value, default=-np.inf) if isinstance(value, list) else value
        worst[position[trial_id]] = max(worst[position[trial_id]], value)
    frame["feasible"] = ~(worst > 0)

    texts: dict[str, list[str | None]] = {key: [None] * len(frame) for key in TRIAL_ATTRS}
    for trial_id, key, text in attrs:
        column = texts.get(key)
        if column is not None:
            column[position[trial_id]] = text
    for key in TRIAL_ATTRS:
        frame[key] = _attribute_column(texts[key])
    frame["reference"] = frame_is_reference(frame)
    start = pd.to_datetime(trials["datetime_start"]).to_numpy()
    complete = pd.to_datetime(trials["datetime_complete"]).to_numpy()
    frame["duration_s"] = (complete - start) / pd.Timedelta(seconds=1)
    frame = frame[list(FRAME_COLUMNS)]
    config = StudySettings.from_study({key: json.loads(text) for key, text in study_attrs if key == CONFIG_ATTR})
    fidelity = next((json.loads(text) for key, text in study_attrs if key == FIDELITY_ATTR), None)
    labels = next((unpack_labels(json.loads(text)) for key, text in study_attrs if key == VAL_LABELS_ATTR), None)
    frame = fill_learned_nothing(frame, labels)
    return StudyData(name=study_name, frame=frame, config=config, source="sql", fidelity=fidelity,
                     trivial=trivial_scores(labels),
                     directions=tuple(str(d).lower() for (d,) in directions))


def _decode(texts: Sequence[str | None]) -> list[Any]:
    """JSON-decode JSON texts (None stays None) in one parser call: 10x faster than one call per cell."""
    return json.loads("[" + ",".join("null" if t is None else t for t in texts) + "]")


def _attribute_column(texts: list[str | None]) -> pd.Series:
    """A stored attribute column decoded: numbers as floats, lists as their JSON text (as trials_frame keeps
    them; Optuna stored exactly that text), anything else as the Python value."""
    values = _decode(texts)
    present = [v for v in values if v is not None]
    if any(isinstance(v, list) for v in present):
        return pd.Series(texts, dtype=object)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype=float)
    return pd.Series(values, dtype=object)


def _typed(column: pd.Series) -> pd.Series:
    """An attribute column as the dashboard uses it: numbers as floats, lists as JSON text (as trials_frame)."""
    values = column.dropna()
    if values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all() and not values.empty:
        return pd.to_numeric(column)
    return column.map(lambda v: json.dumps(v) if isinstance(v, list) else v)


# -- what the dashboard shows about a study and a trial -----------------------------------------


def outcome_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Trials by what happened to them: trained, over budget (infeasible), pruned, failed, running, ...

    The paper's reference networks are counted apart (``references``); ``total`` counts every trial.
    """
    proposed = searched(frame)
    state, feasible = proposed["state"], proposed["feasible"].astype(bool)
    interrupted = proposed["outcome"] == "interrupted"
    return {
        "trained": len(trained(proposed)),
        "over budget": int(((state == "COMPLETE") & ~feasible).sum()),
        "pruned": int((state == "PRUNED").sum()),
        "failed": int(((state == "FAIL") & ~interrupted).sum()),
        "interrupted": int(((state == "FAIL") & interrupted).sum()),
        "running": int(state.isin(["RUNNING", "WAITING"]).sum()),
        "references": len(frame) - len(proposed),
        "total": len(frame),
    }


def fidelity_frame(fidelity: dict[str, Any] | None) -> pd.DataFrame:
    """The stored proxy-fidelity correlations as a table (empty until measured)."""
    names = {"accuracy": "proxy accuracy", "madds": "MAdds alone (baseline)"}
    rows = [{"score": names.get(score, score), "Kendall tau": row["kendall_tau"], "Spearman rho": row["spearman_rho"],
             "Kendall tau within MAdds bins": row["kendall_tau_within_bins"]}
            for score, row in (fidelity or {}).get("correlations", {}).items()]
    return pd.DataFrame(rows, columns=["score", "Kendall tau", "Spearman rho", "Kendall tau within MAdds bins"])


def failure_reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """Why trials did not train: one row per distinct reason with its count, most frequent first.

    Over-budget reasons name each candidate's cost, so they are grouped by their budget part.
    """
    failed = frame[frame["status_reason"].notna() & (frame["outcome"] != "trained")]
    reasons = failed["status_reason"].astype(str).str.split(":").str[0].where(
        failed["outcome"] == "over_budget", failed["status_reason"].astype(str))
    table = pd.DataFrame({"outcome": failed["outcome"].fillna(failed["state"].str.lower()), "reason": reasons})
    counts = table.value_counts().rename("trials").reset_index()
    return counts.sort_values(["trials", "reason"], ascending=[False, True], ignore_index=True)


def load_correct(url: str, study_name: str, numbers: Collection[int] | None = None) -> dict[int, np.ndarray]:
    """The per-image validation correctness of the trials ``numbers`` (all if None) that recorded it, by number.

    The dashboard's frame leaves these packed vectors out (a big study's page loads without them); a
    view that tests trials against each other loads them here, with one query on SQL storages.
    Decoded by :func:`mobilenet_search.results.records.trial_correct`, the one reader of the record.
    """
    wanted = None if numbers is None else {int(n) for n in numbers}
    if _is_sql(url):
        try:
            with _sql_study(url, study_name) as read:
                rows = read("SELECT t.number, a.key, a.value_json FROM trial_user_attributes a "
                            "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid "
                            f"AND a.key IN ('{CORRECT_ATTR}', '{VAL_SIZE_ATTR}')")
            attrs: dict[int, dict[str, Any]] = {}
            for number, key, text in rows:
                if wanted is None or number in wanted:
                    attrs.setdefault(int(number), {})[key] = json.loads(text)
            # trial_correct reads only a trial's user attributes: these are the stored ones.
            vectors = {n: trial_correct(SimpleNamespace(user_attrs=a)) for n, a in attrs.items()}
            return {n: v for n, v in vectors.items() if v is not None}
        except UserError:
            raise
        except Exception:  # a schema the fast reader does not know: Optuna's API still does
            pass
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(url)}") from None
    vectors = {t.number: trial_correct(t) for t in study.get_trials(deepcopy=False)
               if wanted is None or t.number in wanted}
    return {n: v for n, v in vectors.items() if v is not None}


def seed_sd(frame: pd.DataFrame) -> float | None:
    """The seed-to-seed sd of accuracy from the noise repeats and the reference nets they repeat (None without)."""
    good = trained(frame)
    names = good.loc[frame_is_noise_repeat(good), "reference_name"].dropna().unique()
    runs = good[frame_is_reference(good) & good["reference_name"].isin(names)]
    return seed_noise({name: runs.loc[runs["reference_name"] == name, "accuracy"].tolist() for name in names})


def noise_summary(frame: pd.DataFrame, confidence: float = 0.95) -> dict[str, Any]:
    """The study's noise floor from its frame alone: what ``search_gain(study)["noise"]`` reports, without loading
    the study through Optuna (so the page shows it at once).

    ``seed_sd``: from the noise repeats (:func:`seed_sd`; None without). ``val_size``: validation images
    (None when trials recorded none, or not all the same number). ``at_accuracy``: the reference nets'
    mean accuracy (else the searched front's), where ``validation_se`` and the Wilson interval's
    ``validation_half_width`` are taken. ``floor``: the larger of seed sd and validation se.
    """
    good = trained(frame)
    is_ref = frame_is_reference(good)
    references = good[is_ref & ~frame_is_noise_repeat(good)]
    sizes = good["val_size"].dropna().unique() if "val_size" in good else []
    size = int(sizes[0]) if len(sizes) == 1 else None
    sd = seed_sd(frame)
    noise = {"seed_sd": sd, "val_size": size, "at_accuracy": None, "validation_se": None,
             "validation_half_width": None, "floor": None}
    candidates = front_candidates(frame)
    typical = references if not references.empty else candidates[pareto_mask(candidates)]
    if size and not typical.empty:
        noise.update(validation_noise(float(typical["accuracy"].mean()), size, sd, confidence))
    return noise


def front_candidates(frame: pd.DataFrame, cost: str = "madds", quality: str = "accuracy",
                     budget: float | None = None) -> pd.DataFrame:
    """The trials the frontier's Pareto set is drawn from: trained searched trials with a ``cost``, within
    ``budget``; neither the reference nets nor a supernet study's confirmations (scored another way)."""
    proposed = frame[~frame_is_reference(frame) & ~frame_is_confirmation(frame)]
    if budget is not None:
        proposed = proposed[~(proposed[cost] > budget)]
    good = trained(proposed, quality)
    return good[good[cost].notna()]


def indistinguishable_from_front(frame: pd.DataFrame, correct: Mapping[int, np.ndarray], *, cost: str = "madds",
                                 budget: float | None = None, seed_sd: float | None = None,
                                 alpha: float = 0.05) -> list[int]:
    """The dominated trials whose accuracy is statistically indistinguishable from the front's at no more cost.

    Each trained trial off the accuracy-vs-``cost`` Pareto front (of :func:`front_candidates`) is
    compared, on the same validation images, with the Pareto-optimal trial at the most cost not above
    its own (the most accurate net it could be swapped for without paying more) by
    :func:`mobilenet_search.results.stats.compare`: paired McNemar test at ``alpha``, and beyond seed
    noise when ``seed_sd`` is known. Trials where either side has no vector in ``correct`` are left
    out. Their numbers, by cost.
    """
    good = front_candidates(frame, cost, budget=budget)
    on_front = pareto_mask(good, cost)
    front, rest = good[on_front].sort_values(cost), good[~on_front].sort_values(cost)
    front_costs, front_numbers = front[cost].to_numpy(float), front["number"].to_numpy(int)
    anchors = np.searchsorted(front_costs, rest[cost].to_numpy(float), side="right") - 1
    found = []
    # compare's verdict depends on the two vectors only through their discordant counts (and n): a study of
    # thousands of trials has a few hundred distinct pairs of counts, so each is tested once (10x faster).
    verdicts: dict[tuple[int, int, int], str] = {}
    for number, anchor in zip(rest["number"].to_numpy(int), anchors, strict=True):
        mine, theirs = correct.get(int(number)), correct.get(int(front_numbers[anchor])) if anchor >= 0 else None
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        key = (len(mine), int(np.count_nonzero(~mine & theirs)), int(np.count_nonzero(mine & ~theirs)))
        if key not in verdicts:
            verdicts[key] = compare(mine, theirs, seed_sd=seed_sd, alpha=alpha).verdict
        if verdicts[key] == "indistinguishable":
            found.append(int(number))
    return found


def trial_table(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The trial table: ``columns`` that the frame has, by number, with ``confirmed_accuracy`` beside a supernet
    study's inherited accuracy (the from-scratch accuracy of the trial that confirms it; NaN when none does)."""
    table = frame.copy()
    if frame_is_confirmation(frame).any():
        confirmations = trained(frame[frame_is_confirmation(frame)])
        confirmed = pd.Series(confirmations["accuracy"].to_numpy(float),
                              index=confirmations[CONFIRMS_ATTR].astype(int).to_numpy())
        table["confirmed_accuracy"] = table["number"].map(confirmed[~confirmed.index.duplicated(keep="last")])
    return table[[c for c in columns if c in table]].sort_values("number")


def study_gain(url: str, study_name: str) -> dict[str, Any]:
    """:func:`mobilenet_search.results.report.search_gain` of the study: verdicts, intervals, noise floor.

    Loads the whole study through Optuna (per-image records included): seconds on a big study.
    """
    from mobilenet_search.results.report import search_gain

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(url)}") from None
    return search_gain(study)


def searched(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials the search proposed: all but the paper's reference networks."""
    return frame[~frame_is_reference(frame)]


def default_trial(frame: pd.DataFrame) -> int | None:
    """The trial to show first: the most accurate trained one the search found (None if none)."""
    good = trained(searched(frame))
    return None if good.empty else int(good.loc[good["accuracy"].idxmax(), "number"])


def trial_label(row: pd.Series | dict[str, Any]) -> str:
    """A one-line label for a trial: number, outcome, accuracy and MAdds."""
    parts = [f"trial {int(row['number'])}"]
    if row.get("reference_name"):
        parts.append(str(row["reference_name"]))
    if pd.notna(row.get("accuracy")):
        parts.append(f"accuracy {row['accuracy']:.3f}")
    if pd.notna(row.get("madds")):
        parts.append(f"{format_count(row['madds'])} MAdds")
    parts.append(str(row.get("outcome") or str(row.get("state", "")).lower()))
    return " · ".join(parts)


def param_importances(url: str, study_name: str) -> dict[str, float]:
    """Optuna's parameter importances for accuracy, over the trained (feasible) trials the search proposed.

    Over-budget candidates are left out: their objective is a placeholder 0, and would make
    every cost-related parameter look important. Empty with fewer than two such trials.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(url)}") from None
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if TrialRecord.from_trial(t).accuracy is not None and t.params and not is_reference(t)
              and is_feasible(t)]
    if len(trials) < 2:
        return {}
    scratch = optuna.create_study(directions=study.directions)  # in memory: only the trials that count
    scratch.add_trials(trials)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*importances of params to achieve low `target`")
        # Optuna's default (PED-ANOVA) asks what makes the target low: negate accuracy to ask what makes it high.
        return optuna.importance.get_param_importances(scratch,
                                                       target=lambda t: -TrialRecord.from_trial(t).accuracy)


def stage_frame(spec: ArchSpec) -> pd.DataFrame:
    """The architecture stage by stage: t, c, n, s, channels after rounding, resolutions, MAdds, params."""
    stages = dict(enumerate(spec.stages, start=1))
    rows = []
    for row in stage_table(spec):
        stage = stages.get(int(row.name[5:])) if row.name.startswith("stage") else None
        rows.append({
            "layer": row.name, "t": row.expansion, "c": stage.channels if stage else None, "n": row.repeats,
            "s": row.stride, "in": f"{row.in_resolution}²", "out": f"{row.out_resolution}²",
            "c_in": row.in_channels, "c_out": row.out_channels, "madds": row.madds, "params": row.params,
        })
    frame = pd.DataFrame(rows)
    for name in ("t", "c", "n"):
        frame[name] = frame[name].astype("Int64")
    return frame


def trial_spec(row: pd.Series | dict[str, Any]) -> ArchSpec | None:
    """The trial's architecture from its stored ``spec`` JSON (or ``arch`` string); None if neither."""
    if isinstance(row.get("spec"), str):
        return ArchSpec.from_json(row["spec"])
    if isinstance(row.get("arch"), str):
        return ArchSpec.from_string(row["arch"])
    return None


def epoch_history(row: pd.Series | dict[str, Any], key: str = "accuracy_history") -> list[float]:
    """The trial's validation accuracy by evaluated epoch, or with ``key="loss_history"`` its training loss by
    epoch (empty if it recorded none)."""
    history = row.get(key)
    if isinstance(history, str):
        history = json.loads(history)
    return [float(v) for v in history] if isinstance(history, list) else []


def export_command(study_name: str, storage: str, trial: int, name: str | None = None) -> str:
    """The command line that exports a trial to the model library; any password is redacted."""
    name = name or f"{study_name}-trial{trial}"
    parts = ["mobilenet-search", "export", "--study", study_name, "--storage", redact(storage),
             "--trial", str(trial), "--name", name]
    return " ".join(shlex.quote(p) for p in parts)


# -- launching the app --------------------------------------------------------------------------


def streamlit_command(*, port: int | None = None, results_dir: str | Path | None = None, address: str | None = None,
                      headless: bool = False) -> list[str]:
    """The ``python -m streamlit run app.py ...`` command line; the app's own options follow ``--``."""
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--browser.gatherUsageStats", "false"]
    if port is not None:
        command += ["--server.port", str(port)]
    if address is not None:
        command += ["--server.address", address]
    if headless:
        command += ["--server.headless", "true"]
    return command + (["--", "--results-dir", str(results_dir)] if results_dir is not None else [])


def app_options(argv: Sequence[str]) -> dict[str, str | None]:
    """The app's own options: ``--results-dir`` and ``--storage`` after ``--``, or their environment variables.

    ``MOBILENET_SEARCH_STORAGE`` is how :func:`run_dashboard` passes a storage URL: unlike an
    argument, it does not show in the process list, and URLs may hold passwords.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="app.py", add_help=False)
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or None)
    parser.add_argument("--results-dir", default=os.environ.get(RESULTS_DIR_ENV) or "results")
    args, _ = parser.parse_known_args(list(argv))
    return {"storage": args.storage, "results_dir": args.results_dir}


def run_dashboard(*, storage: str | None = None, port: int | None = None, results_dir: str | Path | None = None,
                  address: str | None = None, popen: Callable[..., subprocess.Popen] | None = None,
                  stop_timeout: float = STOP_TIMEOUT) -> int:
    """Run the Streamlit app in the foreground (what ``mobilenet-search dashboard`` does); its exit code.

    The app serves on ``address`` (default :data:`DEFAULT_ADDRESS`, this machine only). A SIGTERM or SIGINT stops
    Streamlit (SIGTERM, then SIGKILL after ``stop_timeout`` seconds or at a second signal) and
    returns 128 + the signal's number, so no server outlives the command. ``popen`` starts the
    child (default ``subprocess.Popen``, or a function with its signature: tests pass a fake).
    """
    if port is not None and not 1 <= port <= 65535:
        raise UserError(f"invalid --port {port}: expected an integer in 1..65535")
    address = DEFAULT_ADDRESS if address is None else address
    if not address.strip():
        raise UserError("invalid --address '': expected an IP address or host name, e.g. 127.0.0.1 or 0.0.0.0")
    if not APP_PATH.is_file():
        raise UserError(f"the dashboard app {APP_PATH} is missing: reinstall mobilenet-search")
    env = dict(os.environ)
    if storage is not None:
        open_storage(storage)  # fail on the command line, not in the browser
        env[STORAGE_ENV] = storage
    command = streamlit_command(port=port, results_dir=results_dir, address=address)
    return run_foreground((popen or subprocess.Popen)(command, env=env), stop_timeout=stop_timeout)


def run_foreground(child: subprocess.Popen, *, stop_timeout: float = STOP_TIMEOUT) -> int:
    """Wait for ``child``, stopping it when this process gets SIGTERM or SIGINT; its exit code or 128 + signal.

    The first signal sends the child SIGTERM and gives it ``stop_timeout`` seconds; a second
    signal, or the end of that time, kills it. Signal handlers are set only from the main
    thread (Python's rule), and the previous ones are restored on return.
    """
    received: list[int] = []
    killer = threading.Timer(stop_timeout, child.kill)
    killer.daemon = True

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            child.terminate()
            killer.start()
        else:
            child.kill()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stop)
    try:
        code = child.wait()
    except KeyboardInterrupt:  # not the main thread's handlers: Python's own Ctrl-C
        stop(signal.SIGINT, None)
        code = child.wait()
    finally:
        killer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:  # an unexpected error above: never leave the server behind
            child.kill()
            child.wait()
    return 128 + received[0] if received else code



# -- the scaling view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingView:
    """A scaling study as the dashboard's Scaling view shows it: the analysis of ``mobilenet-search scaling``
    (:func:`mobilenet_search.search.scaling.analyse`), the paper's width x resolution networks the study
    trained (``paper``: name, arch, MAdds, mean accuracy, runs), and the space its networks are members of."""

    analysis: dict[str, Any]
    paper: list[dict[str, Any]]
    space: Any  # the study's SearchSpace: the recommendation snaps to its members


def scaling_plan(url: str, study_name: str) -> dict[str, Any] | None:
    """The plan a scaling study recorded (None for any other study, or a missing one): one read of the study's
    attributes, nothing else loaded."""
    from mobilenet_search.search.scaling import SCALING_ATTR

    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id).get(SCALING_ATTR)


def scaling_view(url: str, study_name: str, *, resamples: int | None = None) -> ScalingView:
    """Fit a scaling study as ``mobilenet-search scaling --study`` does (``resamples`` bootstrap replicates,
    default the command's) and find the paper's networks among its trained points. Loads the whole study
    through Optuna; a study that is not a scaling study, or has too few points to fit, is a :class:`UserError`."""
    from mobilenet_search.arch.cost import count_madds
    from mobilenet_search.arch.references import paper_family
    from mobilenet_search.results.scaling_fit import RESAMPLES
    from mobilenet_search.search.scaling import analyse, point_runs
    from mobilenet_search.search.study import open_study, study_space

    study, config = open_study(url, study_name, None, load_only=True)
    analysis = analyse(study, resamples=RESAMPLES if resamples is None else resamples)
    space = study_space(study, config)
    base = ArchSpec.from_string(analysis["base"]["arch"])
    family = {spec.to_string(): name for name, spec in
              paper_family(space.family, num_classes=base.num_classes, in_channels=base.in_channels).items()}
    runs: dict[str, list[float]] = {}
    for _, record in point_runs(study):
        if record.arch in family and record.accuracy is not None:
            runs.setdefault(record.arch, []).append(float(record.accuracy))
    paper = [{"name": family[arch], "arch": arch, "madds": count_madds(ArchSpec.from_string(arch)),
              "accuracy": float(np.mean(values)), "runs": len(values)} for arch, values in runs.items()]
    return ScalingView(analysis, sorted(paper, key=lambda p: p["madds"]), space)


def scaling_recommendation(view: ScalingView, budget: str) -> dict[str, Any]:
    """The recommended scaled net for ``budget`` (``150M-madds``), as ``scaling --at`` and ``export --scaled``
    give it; a budget above the study's budget is a :class:`UserError` saying so."""
    from mobilenet_search.search.scaling import recommend_at

    return recommend_at(view.analysis, budget, view.space, option="budget")


def scaling_budget_range(analysis: dict[str, Any]) -> tuple[float, float]:
    """The MAdds a recommendation can be asked for: from the base network up to the study's own budget (or its
    largest measured network, where that is larger)."""
    from mobilenet_search.search.scaling import budget_range

    return budget_range(analysis)


def scaling_summary(analysis: dict[str, Any]) -> pd.DataFrame:
    """One row per direction: the plateau, the gain per doubling (at the base and on average), the knee, each with
    its 95 % interval, or why the direction has no fit."""
    rows = []
    for direction, entry in analysis["directions"].items():
        fit = entry["fit"]
        if fit is None:
            rows.append({"direction": direction, "note": entry["reason"]})
            continue
        rows.append({"direction": direction, "points": len(fit["points"]), "plateau": fit["plateau"],
                     "plateau 95 %": _span(fit["plateau_interval"]),
                     "gain / doubling at base": fit["gain_first_doubling"],
                     "gain 95 %": _span(fit["gain_first_doubling_interval"]),
                     "mean gain / doubling": fit["gain_per_doubling"], "knee (MAdds)": format_count(fit["knee"]),
                     "knee 95 %": _span(fit["knee_interval"], format_count),
                     "note": "" if fit["knee_measured"] else "knee beyond the largest measured net: not reached"})
    return pd.DataFrame(rows)


def _span(interval: Sequence[float] | None, fmt: Callable[[float], str] = "{:.3f}".format) -> str:
    return "" if interval is None else f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def scaled_export_command(study_name: str, storage: str, budget: str) -> str:
    """The command line that exports the recommended scaled net for ``budget`` to the model library; any password
    is redacted."""
    parts = ["mobilenet-search", "export", "--study", study_name, "--storage", redact(storage), "--scaled", budget,
             "--name", f"{study_name}-{budget}"]
    return " ".join(shlex.quote(p) for p in parts)


def scaling_budget_text(madds: float) -> str:
    """A MAdds figure as the budget text the recommendation takes (``40.5M-madds``), never above ``madds``."""
    return f"{math.floor(madds / 1e3) / 1e3:g}M-madds"

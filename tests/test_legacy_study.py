"""Studies written by a previous version (tests/data/legacy, made by commit 8ea93ac) open through today's records:
the frame, the report, every trial's TrialRecord, the settings and each trial's role."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest

from mobilenet_search.results.frame import FRAME_COLUMNS, trials_frame
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    TRIAL_FIELDS,
    Role,
    StudySettings,
    TrialRecord,
    frame_role,
    role,
)
from mobilenet_search.results.report import search_gain

LEGACY = Path(__file__).parent / "data" / "legacy"
# What each study holds, by role (see tests/data/legacy/README.md for the commands that made them).
ROLES = {"scratch": {Role.REFERENCE: 2, Role.NOISE_REPEAT: 1, Role.SEARCHED: 2},
         "supernet": {Role.SEARCHED: 4, Role.CONFIRMATION: 1}}  # 3 scored, 1 over budget


@pytest.fixture(params=sorted(ROLES))
def legacy(request, tmp_path) -> tuple[str, optuna.Study]:
    name = request.param
    shutil.copy(LEGACY / f"{name}.db", tmp_path / f"{name}.db")  # opening may write: never the committed file
    return name, optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / f'{name}.db'}")


def test_every_trial_reads_as_a_trial_record_that_keeps_every_attribute(legacy):
    _, study = legacy
    for trial in study.trials:
        assert set(trial.user_attrs) <= set(TRIAL_FIELDS), trial.number  # that version wrote nothing unknown
        assert TrialRecord.from_trial(trial).to_attrs() == trial.user_attrs


def test_the_roles_are_those_the_study_was_made_with(legacy):
    name, study = legacy
    roles = [role(trial) for trial in study.trials]
    assert Counter(roles) == ROLES[name]
    assert [TrialRecord.from_trial(trial).role for trial in study.trials] == roles
    assert list(frame_role(trials_frame(study))) == [r.value for r in roles]
    for trial, kind in zip(study.trials, roles, strict=True):
        if kind == Role.NOISE_REPEAT:  # the cheapest reference again, with another seed
            assert trial.user_attrs["noise_seed"] == 1 and trial.user_attrs["reference_name"] == "mobilenet_v2_0.35_96"
        if kind == Role.CONFIRMATION:
            assert study.trials[trial.user_attrs["confirms"]].user_attrs["strategy"] == "supernet"


def test_the_settings_read_back_as_stored(legacy):
    name, study = legacy
    settings = StudySettings.from_study(study)
    assert settings.to_dict() == study.user_attrs[CONFIG_ATTR]
    assert settings.supernet == (name == "supernet") and settings.quality == "accuracy"


def test_the_frame_is_the_one_that_version_wrote(legacy):
    name, study = legacy
    frame = trials_frame(study)
    written = pd.read_csv(LEGACY / name / "trials.csv")
    # Every column that version wrote, in its order; columns added since come after them, empty for its trials.
    assert list(frame.columns) == list(FRAME_COLUMNS)
    old = [column for column in frame.columns if column in set(written.columns)]
    assert old == list(written.columns)
    added = [column for column in frame.columns if column not in set(written.columns)]
    assert frame[added].isna().all().all()
    # Through CSV, as that version wrote it: the same text, cell by cell.
    again = pd.read_csv(pd.io.common.StringIO(frame[old].to_csv(index=False)))
    pd.testing.assert_frame_equal(again.drop(columns="duration_s"), written.drop(columns="duration_s"))


def test_the_report_is_the_one_that_version_wrote(legacy):
    name, study = legacy
    written = json.loads((LEGACY / name / "report.json").read_text())
    assert written.pop("fidelity") is None
    assert json.loads(json.dumps(search_gain(study))) == written

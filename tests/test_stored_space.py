"""A study stores its space's content: an edited space file cannot drift under it (search/study.py, search/space.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from mobilenet_search.errors import UserError
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.space import SPACES_DIR, changed_fields, load_space, space_from_dict, space_to_dict
from mobilenet_search.search.study import run_search, run_worker
from mobilenet_search.ui.cli import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _config(space: Path) -> SearchConfig:
    return SearchConfig(budget="2M-madds", space=str(space), dataset="synthetic:64", epochs=1, proxy_size=32,
                        references="none", noise_repeats=0)


@pytest.fixture
def copied(tmp_path) -> tuple[Path, str]:
    """tiny.yaml copied to tmp_path/spaces/my.yaml, and a study of one trial run on that copy."""
    space = tmp_path / "spaces" / "my.yaml"
    space.parent.mkdir()
    shutil.copy(SPACES_DIR / "tiny.yaml", space)
    storage = f"sqlite:///{tmp_path / 'results' / 's.db'}"
    run_search(_config(space), storage=storage, study_name="s", trials=1, results_dir=tmp_path / "results")
    return space, storage


def test_space_content_round_trips_through_json():
    import json

    for name in ("tiny", "mobilenetv2", "mobilenetv1"):
        space = load_space(name)
        assert space_from_dict(json.loads(json.dumps(space_to_dict(space)))) == space


def test_changed_fields_names_each_parameter_whose_choices_differ():
    tiny = load_space("tiny")
    data = space_to_dict(tiny)
    data["choices"] = [[n, [*v, 0.75]] if n == "width_mult" else [n, v] for n, v in data["choices"]]
    assert changed_fields(tiny, space_from_dict(data)) == ["width_mult"]
    assert changed_fields(tiny, tiny) == []
    assert changed_fields(tiny, load_space("mobilenetv1"))[0] == "family"


def test_an_edited_space_file_is_one_line_naming_the_change_and_adds_nothing(copied, tmp_path, capsys):
    space, storage = copied
    space.write_text(space.read_text().replace("width_mult: [", "width_mult: [0.3, "))
    before = _snapshot(tmp_path)
    code = main(["--budget", "2M-madds", "--space", str(space), "--dataset", "synthetic:64", "--epochs", "1",
                 "--proxy-size", "32", "--references", "none", "--noise-repeats", "0", "--trials", "2", "--study", "s",
                 "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "study 's' was created with another content of space" in err and "width_mult changed" in err
    assert _snapshot(tmp_path) == before
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1


def test_the_same_space_file_under_another_path_resumes(copied, tmp_path):
    space, storage = copied
    moved = tmp_path / "elsewhere" / "my.yaml"
    moved.parent.mkdir()
    shutil.move(space, moved)
    study = run_search(_config(moved), storage=storage, study_name="s", trials=2, results_dir=tmp_path / "results")
    assert len([t for t in study.trials if t.user_attrs.get("outcome") == "trained"]) == 2


def test_a_worker_samples_the_stored_space_whatever_became_of_the_file(copied, tmp_path):
    space, storage = copied
    space.write_text("not: a space")  # a worker on another machine may not even have the file
    study = run_worker(storage=storage, study_name="s", trials=3, results_dir=tmp_path / "results")
    widths = {t.params["width_mult"] for t in study.trials if "width_mult" in t.params}
    assert widths <= set(load_space("tiny").parameters["width_mult"]) and len(study.trials) >= 3


def test_resuming_with_an_unknown_setting_still_names_it(copied, tmp_path):
    space, storage = copied
    with pytest.raises(UserError, match=r"already exists with other settings \(epochs: epochs=1\)"):
        run_search(SearchConfig(**{**_config(space).to_dict(), "epochs": 2}), storage=storage, study_name="s",
                   trials=2, results_dir=tmp_path / "results")

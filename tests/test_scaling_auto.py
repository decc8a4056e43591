"""``scaling --strategy auto`` (the default): scored with a supernet whose finished checkpoint this study would use,
else trained from scratch; a study that exists keeps its strategy; --seeds above 1 trains (search/scaling.py's
resolve_strategy, search/strategies.py's find_supernet, ui/cli_scaling.py).

The checkpoint is trained once (1 epoch of the ``tiny`` space on synthetic data) and copied where a test needs it:
its tag hashes the space, data and training settings, not its folder.
"""

import json
import shutil
from pathlib import Path

import optuna
import pytest

from mobilenet_search.results.records import SUPERNET_ATTR, StudySettings
from mobilenet_search.search.scaling import SCALING_ATTR, planned_trials, resolve_strategy, scaling_config
from mobilenet_search.search.space import load_space
from mobilenet_search.search.strategies import find_supernet
from mobilenet_search.search.study import make_data, open_study, stored_attrs
from mobilenet_search.ui.cli import main

SPACE = load_space("tiny")
# What `scaling --budget 600K-madds` with FAST below makes of its options (the split fractions at their defaults).
SETTINGS = dict(budget="600K-madds", space="tiny", dataset="synthetic:96", dataset_limit=None, epochs=1,
                batch_size=16, proxy_size=32, lr=0.01, seed=0, val_fraction=0.2, test_fraction=0.2, confirm=0)
FAST = ["--budget", "600K-madds", "--space", "tiny", "--dataset", "synthetic:96", "--epochs", "1", "--lr", "0.01",
        "--proxy-size", "32", "--batch-size", "16", "--confirm", "0", "--quiet", "--resamples", "20"]
SCRATCH_STUDY = "scaling-tiny-600K-madds-synthetic-96"  # the default study names: the strategy's is in them
SUPERNET_STUDY = f"{SCRATCH_STUDY}-supernet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder holding one finished supernet checkpoint of SETTINGS (1 epoch), under supernets/."""
    from mobilenet_search.search.strategies import prepare_supernet

    folder = tmp_path_factory.mktemp("trained")
    config = scaling_config(1, **SETTINGS, strategy="supernet", supernet_epochs=1)
    steps = []
    prepare_supernet(config, SPACE, make_data(config, folder), results_dir=folder, on_step=lambda *s: steps.append(s))
    assert steps  # it trained
    return folder


def _with_checkpoint(trained, folder):
    """``folder`` with a copy of the trained checkpoint where a study there looks for it; its path."""
    (checkpoint,) = (trained / "supernets").glob("*.pt")
    (folder / "supernets").mkdir(parents=True)
    return Path(shutil.copy2(checkpoint, folder / "supernets" / checkpoint.name))


def _cli(capsys, *argv):
    code = main(["scaling", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _load(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / f'{name}.db'}")


def test_auto_scores_with_a_finished_checkpoint_of_its_settings_without_training_it_again(trained, tmp_path, capsys):
    checkpoint = _with_checkpoint(trained, tmp_path)
    before = checkpoint.stat().st_mtime_ns, checkpoint.read_bytes()
    code, _, err = _cli(capsys, *FAST, "--results-dir", str(tmp_path))
    assert code == 0, err
    assert (f"strategy auto: scoring with the supernet checkpoint {checkpoint} (1 epoch(s)) found for this space and "
            "data; --strategy scratch trains every point instead") in err
    study = _load(tmp_path, SUPERNET_STUDY)
    settings = StudySettings.from_study(study)
    assert settings.strategy == "supernet" and settings.supernet_epochs == 1  # the checkpoint's epochs, recorded
    assert len(study.trials) == planned_trials(study.user_attrs[SCALING_ATTR])
    assert all(t.user_attrs["strategy"] == "supernet" for t in study.trials)
    # Scored with that checkpoint, loaded: no training seconds recorded, the file untouched, no other written.
    stored = study.user_attrs[SUPERNET_ATTR]
    assert stored["checkpoint"] == str(checkpoint.resolve()) and "train_seconds" not in stored
    assert (checkpoint.stat().st_mtime_ns, checkpoint.read_bytes()) == before
    assert list((tmp_path / "supernets").iterdir()) == [checkpoint]
    assert json.loads((tmp_path / SUPERNET_STUDY / "scaling.json").read_text())["strategy"] == "supernet"
    assert not (tmp_path / f"{SCRATCH_STUDY}.db").exists()


def test_auto_without_a_checkpoint_trains_every_point_and_its_study_stays_scratch_when_one_appears(trained, tmp_path,
                                                                                                    capsys):
    code, _, err = _cli(capsys, *FAST, "--results-dir", str(tmp_path))
    assert code == 0, err
    assert ("strategy auto: training every point from scratch: no finished supernet checkpoint of this space, data "
            f"and proxy under {tmp_path / 'supernets'}") in err
    study = _load(tmp_path, SCRATCH_STUDY)
    assert StudySettings.from_study(study).strategy == "scratch"
    trials = len(study.trials)
    assert trials == planned_trials(study.user_attrs[SCALING_ATTR])
    assert all(t.user_attrs["strategy"] == "scratch" for t in study.trials)

    # A checkpoint of the same settings appears: the same command resumes the scratch study, trains nothing more.
    checkpoint = _with_checkpoint(trained, tmp_path)
    before = checkpoint.stat().st_mtime_ns
    code, _, err = _cli(capsys, *FAST, "--results-dir", str(tmp_path))
    assert code == 0, err
    assert "strategy auto: this study exists and keeps the strategy it was made with, scratch" in err
    assert f"scaling study {SCRATCH_STUDY!r}" in err and len(_load(tmp_path, SCRATCH_STUDY).trials) == trials
    assert not (tmp_path / f"{SUPERNET_STUDY}.db").exists() and checkpoint.stat().st_mtime_ns == before


def test_resolution_rules_seeds_epochs_and_an_existing_supernet_study(trained, tmp_path):
    (checkpoint,) = (trained / "supernets").glob("*.pt")

    def resolve(seeds, folder, stored=lambda config: None, **changes):
        return resolve_strategy(seeds, {**SETTINGS, **changes}, SPACE, results_dir=folder, stored=stored)

    config, line = resolve(1, trained)
    assert (config.strategy, config.supernet_epochs) == ("supernet", 1) and str(checkpoint) in line
    # --seeds 2 asks for repeats, which inherited weights do not give: scratch, saying why.
    config, line = resolve(2, trained)
    assert config.strategy == "scratch" and config.supernet_epochs == StudySettings.supernet_epochs
    assert "--seeds 2 asks for repeats" in line and str(checkpoint) in line
    # --supernet-epochs given: only a checkpoint of that many epochs counts.
    config, line = resolve(1, trained, supernet_epochs=2)
    assert (config.strategy, config.supernet_epochs) == ("scratch", 2)
    assert "no finished supernet checkpoint of 2 epoch(s)" in line
    assert find_supernet(config, SPACE, results_dir=trained, epochs=1) == (checkpoint, 1)
    assert find_supernet(config, SPACE, results_dir=tmp_path) is None
    # Other data (another image count): the checkpoint is not this study's.
    assert resolve(1, trained, dataset="synthetic:64")[0].strategy == "scratch"

    # A supernet study that exists keeps its strategy and epochs, though no checkpoint lies beside it.
    storage = f"sqlite:///{tmp_path / 'kept.db'}"
    open_study(storage, "kept", scaling_config(1, **SETTINGS, strategy="supernet", supernet_epochs=3))
    config, line = resolve(1, tmp_path, stored=lambda config: stored_attrs(storage, "kept"))
    assert (config.strategy, config.supernet_epochs) == ("supernet", 3)
    assert "keeps the strategy it was made with, supernet" in line


def test_an_unknown_strategy_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's refusal
        main(["scaling", *FAST, "--strategy", "bogus", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'bogus'" in err, err
    assert not any(tmp_path.iterdir())

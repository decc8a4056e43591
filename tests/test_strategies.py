"""Strategy supernet end to end (strategies.py, through study.py and the CLI): records, confirmations, resume,
reuse, workers, interruption, bad input.

One small supernet study (tiny space, synthetic stripes, 2 supernet epochs, 6 candidates, 2
confirmations) is run once per session by :func:`supernet_study`; tests that change a study
work on a copy of its folder. Latency is faked (a constant): it is not what these tests check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from mobilenet_search.measure.latency import Latency
from mobilenet_search.results.frame import trials_frame
from mobilenet_search.results.records import CONFIRMS_ATTR, SUPERNET_ATTR, WEIGHTS_ATTR, is_confirmation, outcome
from mobilenet_search.results.report import search_gain
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.fidelity import run_fidelity
from mobilenet_search.search.study import run_search, run_worker
from mobilenet_search.ui.cli import main

SETTINGS = dict(budget="2M-madds", space="tiny", dataset="synthetic:96", epochs=2, lr=0.01, proxy_size=32,
                batch_size=16, references="none", strategy="supernet", supernet_epochs=4, confirm=2, seed=0)
CONFIG = SearchConfig(**SETTINGS)
TRIALS = 6
STUDY = "sn"
# The same settings as command-line flags (the CLI's defaults for everything else).
FLAGS = ["--budget", "2M-madds", "--space", "tiny", "--dataset", "synthetic:96", "--epochs", "2", "--lr", "0.01",
         "--proxy-size", "32", "--batch-size", "16", "--references", "none", "--strategy", "supernet",
         "--supernet-epochs", "4", "--confirm", "2"]


def fake_latency(model, shape, device="cpu") -> Latency:
    return Latency(ms=1.0, q1_ms=1.0, q3_ms=1.0, device="cpu: fake", batch_size=shape[0], repeats=1)


def storage_of(folder: Path, name: str = STUDY) -> str:
    return f"sqlite:///{folder / f'{name}.db'}"


def search(folder: Path, *, name: str = STUDY, trials: int = TRIALS, config: SearchConfig = CONFIG,
           on_step=None, supernet: Path | None = None) -> optuna.Study:
    return run_search(config, storage=storage_of(folder, name), study_name=name, trials=trials, results_dir=folder,
                      latency=fake_latency, on_supernet_step=on_step, supernet=supernet)


@dataclasses.dataclass(frozen=True)
class SupernetStudy:
    """A finished supernet study, read-only: copy ``folder`` (:meth:`copy`) to change it."""

    folder: Path
    checkpoint: Path
    tag: str

    @property
    def storage(self) -> str:
        return storage_of(self.folder)

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=STUDY, storage=self.storage)

    def copy(self, target: Path) -> Path:
        shutil.copytree(self.folder, target)
        return target


_RUN: list[SupernetStudy] = []


def run_supernet_study(tmp_path_factory) -> SupernetStudy:
    """The study of :data:`SETTINGS` with :data:`TRIALS` candidates, run once a session (about 15 s on 2 busy
    cores) for every test file that asks (test_export.py too)."""
    if not _RUN:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        folder = tmp_path_factory.mktemp("supernet-study")
        attr = search(folder).user_attrs[SUPERNET_ATTR]
        _RUN.append(SupernetStudy(folder, Path(attr["checkpoint"]), attr["tag"]))
    return _RUN[0]


@pytest.fixture(scope="session")
def supernet_study(tmp_path_factory) -> SupernetStudy:
    return run_supernet_study(tmp_path_factory)


def digest(path: Path) -> str | None:
    """The file's SHA-256, or None when it does not exist: byte-identical before and after, or never created."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def checkpoint_model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def step_recorder(calls: list, interrupt_in_epoch: int | None = None):
    """An ``on_supernet_step`` that records (epoch, step) and raises KeyboardInterrupt (Ctrl-C) at the first step
    of ``interrupt_in_epoch`` (counted from 0)."""
    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        if epoch == interrupt_in_epoch:
            raise KeyboardInterrupt
        calls.append((epoch, step))

    return on_step


# -- what a supernet study records ---------------------------------------------------------------------------

def test_a_supernet_study_records_strategy_time_score_the_checkpoint_and_confirmations(supernet_study):
    study = supernet_study.load()
    trials = study.get_trials(deepcopy=False)
    searched = [t for t in trials if not is_confirmation(t)]
    confirmations = [t for t in trials if is_confirmation(t)]
    assert len(searched) == TRIALS and all(outcome(t) == "trained" for t in trials)
    for trial in searched:  # scored in seconds with inherited weights
        assert trial.user_attrs["strategy"] == "supernet" and trial.user_attrs["time_score"] > 0
        assert WEIGHTS_ATTR not in trial.user_attrs
    # Up to --confirm Pareto candidates retrained from scratch, each saving its weights.
    assert 1 <= len(confirmations) <= CONFIG.confirm
    confirmed = {t.user_attrs[CONFIRMS_ATTR] for t in confirmations}
    assert len(confirmed) == len(confirmations) and confirmed <= {t.number for t in searched}
    by_number = {t.number: t for t in trials}
    for trial in confirmations:
        assert trial.user_attrs["strategy"] == "scratch" and "accuracy_history" in trial.user_attrs
        assert trial.params == by_number[trial.user_attrs[CONFIRMS_ATTR]].params
        assert Path(trial.user_attrs[WEIGHTS_ATTR]) == supernet_study.folder / STUDY / "weights" / \
            f"trial-{trial.number}.safetensors"
        assert Path(trial.user_attrs[WEIGHTS_ATTR]).is_file()
    attr = study.user_attrs[SUPERNET_ATTR]
    assert attr["checkpoint"] == str(supernet_study.folder / "supernets" / f"{attr['tag']}.pt")
    assert Path(attr["checkpoint"]).is_file() and attr["train_seconds"] > 0


def test_the_search_gain_compares_the_confirmed_trials(supernet_study):
    study = supernet_study.load()
    gain = search_gain(study)
    confirmations = sum(is_confirmation(t) for t in study.trials)
    assert gain["trained"]["inherited"] == TRIALS and gain["trained"]["searched"] == confirmations
    assert gain["compared"] == "confirmed (retrained from scratch)"


# -- resume, reuse, workers ----------------------------------------------------------------------------------

def test_a_resumed_study_and_another_study_of_the_same_settings_reuse_the_checkpoint(supernet_study, tmp_path):
    folder = supernet_study.copy(tmp_path / "results")
    checkpoint = folder / "supernets" / f"{supernet_study.tag}.pt"
    before = digest(checkpoint)
    calls: list = []
    study = search(folder, trials=TRIALS + 1, on_step=step_recorder(calls))
    assert calls == []  # loaded, not trained again
    assert sum(not is_confirmation(t) for t in study.trials) == TRIALS + 1  # the study went on
    assert study.user_attrs[SUPERNET_ATTR]["checkpoint"] == str(checkpoint)
    # Another study, the same supernet settings (--confirm is not one of them): the same tag, the same file.
    other = search(folder, name="other", trials=0, config=dataclasses.replace(CONFIG, confirm=0),
                   on_step=step_recorder(calls))
    assert calls == []
    assert other.user_attrs[SUPERNET_ATTR] | {"train_seconds": None} == {
        "checkpoint": str(checkpoint), "tag": supernet_study.tag, "train_seconds": None}
    assert digest(checkpoint) == before


def test_a_worker_scores_with_the_recorded_checkpoint_and_never_trains(supernet_study, tmp_path):
    folder = supernet_study.copy(tmp_path / "results")
    before = digest(supernet_study.checkpoint)
    study = optuna.load_study(study_name=STUDY, storage=storage_of(folder))
    first = next(t for t in study.trials if not is_confirmation(t))
    study.enqueue_trial(first.params)  # the same candidate again: the same checkpoint must give the same score
    done = run_worker(storage=storage_of(folder), study_name=STUDY, trials=TRIALS + 1, results_dir=folder,
                      heartbeat=None)
    again = done.trials[-1]
    assert again.params == first.params and again.user_attrs["strategy"] == "supernet"
    assert again.user_attrs["accuracy"] == first.user_attrs["accuracy"]
    assert again.user_attrs["val_correct"] == first.user_attrs["val_correct"]
    assert digest(supernet_study.checkpoint) == before


def test_a_worker_refuses_a_missing_checkpoint_instead_of_training_one(supernet_study, tmp_path):
    folder = supernet_study.copy(tmp_path / "results")
    with pytest.raises(Exception, match="does not exist: run the search"):
        run_worker(storage=storage_of(folder), study_name=STUDY, trials=TRIALS + 1, results_dir=folder,
                   heartbeat=None, supernet=tmp_path / "nowhere.pt")
    assert not (tmp_path / "nowhere.pt").exists()


# -- interruption ----------------------------------------------------------------------------------------------

def test_interrupted_supernet_training_loses_at_most_the_current_epoch(supernet_study, tmp_path):
    calls: list = []
    last = CONFIG.supernet_epochs - 1  # interrupted in the last epoch
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, trials=0, on_step=step_recorder(calls, interrupt_in_epoch=last))
    checkpoint = tmp_path / "supernets" / f"{supernet_study.tag}.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == last  # every epoch before it kept
    steps = len([call for call in calls if call[0] == 0])  # steps per epoch
    calls.clear()
    search(tmp_path, trials=0, on_step=step_recorder(calls))
    assert [epoch for epoch, _ in calls] == [last] * steps and calls[0] == (last, 0)  # resumed at its first step
    # ... and ends with the weights of the uninterrupted run.
    resumed, uninterrupted = checkpoint_model(checkpoint), checkpoint_model(supernet_study.checkpoint)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=0, msg=key)


# -- bad input, through the command line --------------------------------------------------------------------

# Cases that need the study checked before it is created, and the CLI's header printed only once it runs:
# the study.py / cli.py change described in issue 15's report (run_search checks the checkpoint before opening
# the study; the CLI prints "study ... in ..." after the checks). Strict: remove the mark once it is in.

def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("mobilenet-search: error: ") and message in err, err


def truncated(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[:1000])
    return target


def corrupt(source: Path, target: Path) -> Path:
    content = bytearray(source.read_bytes())
    content[len(content) // 2:len(content) // 2 + 64] = b"\xff" * 64
    target.write_bytes(bytes(content))
    return target


@pytest.mark.parametrize(("argv", "message"), [
    (["--objective", "accuracy"], "--strategy supernet scores with inherited weights; it takes --objective multi"),
    (["--strategy", "supernett"], "invalid --strategy 'supernett': expected one of scratch, supernet"),
    pytest.param(["--budget", "300M-madds", "--space", "mobilenetv2_ablations"],
                 "space 'mobilenetv2_ablations' cannot share weights in a supernet: head_channels varies"),
])
def test_bad_settings_exit_2_with_one_line_and_create_nothing(tmp_path, capsys, argv, message):
    code, err = run_cli(capsys, *FLAGS, "--trials", "2", "--results-dir", str(tmp_path), "--study", "bad", *argv)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "bad.db").exists() and not (tmp_path / "supernets").exists()


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda source, tmp: shutil.copy(source, tmp / "other.pt") and tmp / "other.pt",
                 "was trained for another space/data/settings", id="other-settings"),
    pytest.param(lambda source, tmp: truncated(source, tmp / "truncated.pt"), "cannot be read", id="truncated"),
    pytest.param(lambda source, tmp: corrupt(source, tmp / "corrupt.pt"), "cannot be read", id="corrupt"),
])
def test_a_bad_checkpoint_exits_2_with_one_line_and_changes_nothing(supernet_study, tmp_path, capsys, make,
                                                                    message):
    """A checkpoint of other settings (here: 3 supernet epochs asked, 2 trained), truncated or corrupt: refused
    before the study is created, and left as it was."""
    checkpoint = make(supernet_study.checkpoint, tmp_path)
    before = digest(checkpoint)
    epochs = "3" if "other" in checkpoint.name else "2"
    code, err = run_cli(capsys, *FLAGS, "--supernet-epochs", epochs, "--trials", "2", "--results-dir",
                        str(tmp_path / "results"), "--study", "bad", "--supernet", str(checkpoint))
    assert_one_line_error(code, err, message)
    assert digest(checkpoint) == before
    assert not (tmp_path / "results" / "bad.db").exists()


@pytest.mark.parametrize("kind", ["truncated", "corrupt"])
def test_resuming_a_study_with_a_bad_checkpoint_exits_2_and_changes_nothing(supernet_study, tmp_path, capsys, kind):
    folder = supernet_study.copy(tmp_path / "results")
    checkpoint = (truncated if kind == "truncated" else corrupt)(supernet_study.checkpoint, tmp_path / "bad.pt")
    database, before = folder / f"{STUDY}.db", (digest(folder / f"{STUDY}.db"), digest(checkpoint))
    code, err = run_cli(capsys, *FLAGS, "--trials", str(TRIALS + 1), "--results-dir", str(folder), "--study", STUDY,
                        "--supernet", str(checkpoint))
    assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "mobilenet-search: error: checkpoint") and "cannot be read" in err
    assert (digest(database), digest(checkpoint)) == before


def test_check_supernet_refuses_what_prepare_would_without_writing(supernet_study, tmp_path):
    from mobilenet_search.errors import UserError
    from mobilenet_search.search.space import load_space
    from mobilenet_search.search.strategies import check_supernet
    space = load_space("tiny")  # no data: it runs before the data are read
    assert check_supernet(CONFIG, space, results_dir=supernet_study.folder) == supernet_study.checkpoint
    assert check_supernet(CONFIG, space, results_dir=tmp_path, train=True) == \
        tmp_path / "supernets" / f"{supernet_study.tag}.pt"  # absent: to be trained
    cases = [(dict(checkpoint=corrupt(supernet_study.checkpoint, tmp_path / "c.pt")), "cannot be read"),
             (dict(checkpoint=truncated(supernet_study.checkpoint, tmp_path / "t.pt")), "cannot be read"),
             (dict(checkpoint=tmp_path / "none.pt", train=False), "does not exist"),
             (dict(config=dataclasses.replace(CONFIG, supernet_epochs=3), checkpoint=supernet_study.checkpoint),
              "trained for another space/data/settings"),
             (dict(space=load_space("mobilenetv2_ablations")), "cannot share weights")]
    for change, message in cases:
        arguments = dict(config=CONFIG, space=space, checkpoint=None) | change
        with pytest.raises(UserError, match=message):
            check_supernet(arguments.pop("config"), arguments.pop("space"), results_dir=tmp_path, **arguments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "t.pt"]


# -- fidelity ----------------------------------------------------------------------------------------------

def test_fidelity_of_a_supernet_study_ranks_the_inherited_accuracy(supernet_study, tmp_path):
    folder = supernet_study.copy(tmp_path / "results")
    study = optuna.load_study(study_name=STUDY, storage=storage_of(folder))
    summary = run_fidelity(study, top=TRIALS, epochs=2, results_dir=folder)
    frame = trials_frame(study).set_index("number")
    assert len(summary["trials"]) == TRIALS
    assert set(frame.loc[summary["trials"], "strategy"]) == {"supernet"}  # inherited accuracies, not confirmations
    assert summary["correlations"]["accuracy"]["kendall_tau"] is not None

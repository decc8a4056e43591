"""Export from a study into the model library, ONNX, and the export/library commands (export.py, cli_library.py)."""

import argparse
import json
import re
import shutil
import sqlite3

import numpy as np
import onnx
import optuna
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from optuna.trial import TrialState, create_trial
from PIL import Image
from test_strategies import SETTINGS, STUDY, fake_latency, run_supernet_study

from mobilenet_search import ArchSpec, UserError, build_model, count_madds, count_params, library
from mobilenet_search.measure.data import preprocessing
from mobilenet_search.measure.train import evaluate, input_transform
from mobilenet_search.results.records import CONFIG_ATTR, CONFIRMS_ATTR, PREPROCESSING_ATTR, pack_correct
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.export import ONNX_OPSET, choose_trial, entry_metadata, export, write_onnx
from mobilenet_search.search.study import make_data, run_search
from mobilenet_search.ui import cli
from mobilenet_search.ui.cli_library import add_library_commands

STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))
NUM_CLASSES = 2


def small(width: float, resolution: int) -> ArchSpec:
    return ArchSpec.mobilenet_v2(width, resolution, num_classes=NUM_CLASSES, stages=STAGES)


# Trial number -> (spec, accuracy, outcome, feasible). Trial 3 ties trial 1's accuracy at more MAdds.
TRIALS = {
    0: (small(0.35, 64), 0.70, "trained", True),
    1: (small(0.75, 96), 0.90, "trained", True),
    2: (small(1.4, 160), None, "over_budget", False),
    3: (small(1.0, 128), 0.90, "trained", True),
    4: (small(0.5, 64), 0.80, "trained", True),
}


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    """A finished two-objective study as `mobilenet-search search` leaves one, in a sqlite file."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = tmp_path_factory.mktemp("study") / "s.db"
    storage = f"sqlite:///{path}"
    created = optuna.create_study(storage=storage, study_name="demo", directions=["maximize", "minimize"])
    created.set_user_attr(CONFIG_ATTR, SearchConfig(budget="300M-madds", epochs=3, proxy_size=48).to_dict())
    for spec, accuracy, outcome, feasible in TRIALS.values():
        madds = count_madds(spec)
        attrs = {"arch": spec.to_string(), "spec": spec.to_json(), "madds": madds, "params": count_params(spec),
                 "epochs": 3, "outcome": outcome}
        if outcome == "trained":
            attrs |= {"latency_ms": 1.25, "latency_device": "cpu", "latency_batch": 1, "accuracy": accuracy,
                      "proxy_resolution": 32}
        else:
            attrs["status_reason"] = "madds over budget"
        created.add_trial(create_trial(values=[accuracy or 0.0, madds], user_attrs=attrs,
                                       constraints={"madds_over_budget": -0.5 if feasible else 0.2}))
    created.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"outcome": "failed"}))  # trial 5, no spec
    return path


@pytest.fixture
def study(study_file, tmp_path):
    """The storage URL of a private copy of the study (creating one costs half a second; copying, nothing)."""
    shutil.copy(study_file, tmp_path / "s.db")
    return f"sqlite:///{tmp_path}/s.db"


def test_best_is_the_most_accurate_pareto_trial_and_ties_go_to_fewer_madds(study):
    choice = choose_trial(optuna.load_study(study_name="demo", storage=study), best=True)
    assert choice.trial.number == 1
    assert "the most accurate (accuracy 0.9000" in choice.reason and "tie with trial(s) 3" in choice.reason
    assert "of the 3 Pareto-optimal of 4 trained feasible trials" in choice.reason


def test_best_under_a_budget_picks_among_the_trials_inside_it(study):
    # Trial 1 (0.75/96) is above 15M MAdds, trials 0 and 4 below: the best inside is trial 4.
    assert count_madds(TRIALS[4][0]) < 15_000_000 < count_madds(TRIALS[1][0])
    choice = choose_trial(optuna.load_study(study_name="demo", storage=study), best=True, under="14M-madds")
    assert choice.trial.number == 4 and "under 14M-madds" in choice.reason
    with pytest.raises(UserError, match="no trained feasible trial in study 'demo' under 1K-madds"):
        choose_trial(optuna.load_study(study_name="demo", storage=study), best=True, under="1K-madds")
    # Every trained trial measured 1.25 ms: 1ms-latency admits it (< 2 ms, the precision rule), 0.5ms (< 0.6) does not.
    assert choose_trial(optuna.load_study(study_name="demo", storage=study), best=True,
                        under="1ms-latency").trial.number == 1
    with pytest.raises(UserError, match="no trained feasible trial in study 'demo' under 0.5ms-latency"):
        choose_trial(optuna.load_study(study_name="demo", storage=study), best=True, under="0.5ms-latency")


def test_export_a_trial_then_load_build_and_run_it(study, tmp_path):
    done = export("demo", storage=study, name="demo-t4", trial=4, library=tmp_path / "lib")
    assert done.path == tmp_path / "lib" / "demo-t4.json" and done.choice.reason == "trial 4, as asked"
    spec = library.load("demo-t4", library=tmp_path / "lib")
    assert spec == TRIALS[4][0]
    meta = library.get("demo-t4", library=tmp_path / "lib").metadata
    assert meta["source"] == {"storage": study, "study": "demo", "trial": 4, "picked": "trial 4, as asked"}
    assert meta["metrics"] == {"madds": count_madds(spec), "params": count_params(spec), "latency_ms": 1.25,
                               "latency_device": "cpu", "latency_batch": 1, "accuracy": 0.8,
                               "proxy_resolution": 32, "epochs": 3, "outcome": "trained", "feasible": True}
    assert meta["study_config"]["proxy_size"] == 48 and meta["study_config"]["budget"] == "300M-madds"
    for num_classes, expected in ((None, NUM_CLASSES), (10, 10)):
        model = library.build("demo-t4", num_classes=num_classes, library=tmp_path / "lib").eval()
        with torch.no_grad():
            assert model(torch.zeros(3, 3, spec.resolution, spec.resolution)).shape == (3, expected)


def test_an_infeasible_trial_can_be_exported_by_number_and_says_so(study, tmp_path):
    done = export("demo", storage=study, name="big", trial=2, library=tmp_path)
    assert "outcome over_budget, infeasible: madds over budget; no proxy accuracy" in done.choice.reason
    assert library.get("big", library=tmp_path).metadata["metrics"]["feasible"] is False


def test_the_source_storage_is_absolute_and_never_holds_a_password(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export("demo", storage="sqlite:///s.db", name="rel", trial=0, library="lib")
    assert library.get("rel", library=tmp_path / "lib").metadata["source"]["storage"] == study
    loaded = optuna.load_study(study_name="demo", storage=study)
    choice = choose_trial(loaded, trial=0)
    meta = entry_metadata(loaded, choice, "postgresql://searcher:s3cret@db.example/optuna", SearchConfig("1M-madds"))
    assert meta["source"]["storage"] == "postgresql://searcher:***@db.example/optuna"


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(trial=99), "study 'demo' has no trial 99 \\(trials 0-5\\)"),
    (dict(trial=-1), "has no trial -1"),
    (dict(trial=5), "trial 5 of study 'demo' has no recorded architecture"),
    (dict(trial=1, best=True), "exactly one of --trial N and --best"),
    (dict(), "exactly one of --trial N and --best"),
    (dict(trial=1, under="300M-madds"), "--under applies to --best only"),
    (dict(best=True, under="300X-madds"), "unknown suffix"),
])
def test_bad_choices_are_user_errors_and_write_nothing(study, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        export("demo", storage=study, name="x", library=tmp_path / "lib", **kwargs)
    assert not (tmp_path / "lib").exists()


def test_a_missing_study_or_storage_is_a_user_error_and_creates_no_file(study, tmp_path):
    with pytest.raises(UserError, match="study 'nope' does not exist"):
        export("nope", storage=study, name="x", best=True, library=tmp_path / "lib")
    for storage in (f"sqlite:///{tmp_path}/missing.db", f"journal:{tmp_path}/missing.log"):
        with pytest.raises(UserError, match="does not exist"):
            export("demo", storage=storage, name="x", best=True, library=tmp_path / "lib")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


# -- ONNX --------------------------------------------------------------------------------------

def test_onnx_export_passes_the_checker_and_computes_what_torch_computes(tmp_path):
    spec = small(0.35, 64)
    torch.manual_seed(0)
    path = write_onnx(spec, tmp_path / "out" / "net.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")] == [ONNX_OPSET]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 64, 64]
    torch.manual_seed(0)  # the same fresh weights as the exported network
    reference = build_model(spec).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    (logits,) = ReferenceEvaluator(model).run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, reference(x).numpy(), rtol=1e-4, atol=1e-5)
    assert [p.name for p in path.parent.iterdir()] == ["net.onnx"]  # no temporary file left behind


def test_export_with_onnx_records_it_and_without_the_package_writes_nothing(study, tmp_path, monkeypatch):
    done = export("demo", storage=study, name="with-onnx", trial=0, library=tmp_path, onnx=tmp_path / "n.onnx")
    assert done.onnx == tmp_path / "n.onnx"
    onnx.checker.check_model(onnx.load(done.onnx))
    assert library.get("with-onnx", library=tmp_path).metadata["onnx"] == {
        "path": str(tmp_path / "n.onnx"), "opset": ONNX_OPSET, "input": ["batch", 3, 64, 64], "weights": "fresh"}

    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(UserError, match="--onnx needs the onnx package"):
        export("demo", storage=study, name="no-onnx", trial=0, library=tmp_path, onnx=tmp_path / "m.onnx")
    assert not (tmp_path / "no-onnx.json").exists() and not (tmp_path / "m.onnx").exists()


# -- the command line ---------------------------------------------------------------------------

@pytest.fixture
def run(monkeypatch, capsys):
    """``mobilenet-search ARGS`` through cli.main, with the library commands added if cli.py has not yet."""
    original = cli.build_parser

    def with_library() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "export" not in sub.choices:
            add_library_commands(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_library)

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_cli_export_best_then_list_and_show(study, tmp_path, run):
    lib = str(tmp_path / "lib")
    code, out, _ = run("export", "--study", "demo", "--storage", study, "--best", "--name", "demo-best",
                       "--library", lib)
    assert code == 0
    assert out.startswith("picked trial 1: the most accurate") and "saved library entry 'demo-best'" in out
    assert "proxy accuracy 0.9000 at 32 px, 3 epochs" in out
    code, out, _ = run("library", "list", "--library", lib)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}
    assert rows["mobilenet_v2_1.0_224"][:2] == ["300.8M", "3.50M"]
    assert rows["demo-best"][2:5] == ["0.9000", "study", "'demo'"]
    code, out, _ = run("library", "show", "demo-best", "--library", lib)
    assert code == 0
    assert f"{count_madds(TRIALS[1][0]):,}" in out and "stage3" in out and "picked: trial 1" in out
    assert "torchvision.models.MobileNetV2(num_classes=2, width_mult=0.75, inverted_residual_setting=" in out
    assert "proxy setting: dataset embedded, proxy size 48 px" in out


def test_cli_show_a_builtin(run):
    code, out, _ = run("library", "show", "mobilenet_v1_1.0_224")
    assert code == 0 and "568,740,352" in out and "torchvision: no equivalent" in out


def test_cli_refuses_to_overwrite_without_force(study, tmp_path, run):
    args = ["export", "--study", "demo", "--storage", study, "--name", "net", "--library", str(tmp_path)]
    assert run(*args, "--trial", "0")[0] == 0
    before = (tmp_path / "net.json").read_text()
    code, out, err = run(*args, "--trial", "1")
    assert code == 2 and out == "" and "library entry 'net' already exists" in err and err.count("\n") == 1
    assert (tmp_path / "net.json").read_text() == before
    assert run(*args, "--trial", "1", "--force")[0] == 0
    assert json.loads((tmp_path / "net.json").read_text())["metadata"]["source"]["trial"] == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--study", "demo", "--trial", "42", "--name", "x"], "has no trial 42"),
    (["--study", "gone", "--best", "--name", "x"], "study 'gone' does not exist"),
    (["--study", "demo", "--best", "--name", "../x"], "invalid entry name '../x'"),
    (["--study", "demo", "--best", "--name", "mobilenet_v2_1.0_224", "--force"], "is a built-in"),
    (["--study", "demo", "--best", "--under", "1K-madds", "--name", "x"], "no trained feasible trial"),
])
def test_cli_user_mistakes_exit_2_with_one_line(study, tmp_path, run, argv, message):
    code, _, err = run("export", "--storage", study, "--library", str(tmp_path / "lib"), *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "lib").exists()


def test_cli_export_help_states_the_onnx_opset(run, capsys):
    with pytest.raises(SystemExit):
        run("export", "--help")
    assert f"(opset {ONNX_OPSET}," in " ".join(capsys.readouterr().out.split())


def test_cli_needs_trial_or_best(study, run):
    with pytest.raises(SystemExit) as info:
        run("export", "--study", "demo", "--storage", study, "--name", "x")
    assert info.value.code == 2


def test_cli_show_of_a_missing_entry_exits_2(tmp_path, run):
    code, _, err = run("library", "show", "nothing-here", "--library", str(tmp_path))
    assert code == 2 and "no library entry 'nothing-here'" in err


# -- trained weights (a supernet study's confirmed or inherited weights) --------------------------------------

@pytest.fixture(scope="session")
def supernet_study(tmp_path_factory):
    """test_strategies.py's small supernet study (run once a session, whichever file asks first)."""
    return run_supernet_study(tmp_path_factory)


def reproduce(name, lib, trial, config, results_dir):
    """Build entry ``name`` with its weights and score it on the study's validation split at the trial's proxy
    resolution, as the study scored ``trial``."""
    model = library.build(name, library=lib, weights="trained")
    data = make_data(config, results_dir)(trial.user_attrs["proxy_resolution"])
    return evaluate(model, data, input_transform(data)), data


def test_an_inherited_weights_export_reproduces_the_trials_accuracy(supernet_study, tmp_path):
    study = supernet_study.load()
    confirmed = {t.user_attrs[CONFIRMS_ATTR] for t in study.trials if t.user_attrs.get(CONFIRMS_ATTR) is not None}
    trial = next(t for t in study.trials if t.user_attrs.get("strategy") == "supernet" and t.number not in confirmed)
    done = export(STUDY, storage=supernet_study.storage, name="inherited", trial=trial.number, library=tmp_path,
                  results_dir=supernet_study.folder)
    assert done.weights.source == "inherited" and (tmp_path / "inherited.safetensors").is_file()
    entry = library.get("inherited", library=tmp_path)
    assert entry.has_weights and entry.metadata["weights_source"] == "inherited"
    assert entry.metadata["weights"]["trial"] == trial.number
    assert entry.metadata["weights"]["accuracy"] == trial.user_attrs["accuracy"]
    assert entry.metadata["weights"]["input"]["resolution"] == trial.user_attrs["proxy_resolution"]
    config = SearchConfig.from_dict(study.user_attrs[CONFIG_ATTR])
    evaluation, data = reproduce("inherited", tmp_path, trial, config, supernet_study.folder)
    assert evaluation.accuracy == trial.user_attrs["accuracy"]
    assert pack_correct((evaluation.predictions == data.val_labels).numpy()) == trial.user_attrs["val_correct"]


@pytest.mark.parametrize("confirmation_better", [True, False])
def test_a_confirmed_trials_export_takes_the_more_accurate_of_its_confirmation_and_its_inherited_weights(
        supernet_study, tmp_path, confirmation_better):
    study = supernet_study.load()
    config = SearchConfig.from_dict(study.user_attrs[CONFIG_ATTR])
    confirmation = next(t for t in study.trials if t.user_attrs.get(CONFIRMS_ATTR) is not None)
    searched = study.trials[confirmation.user_attrs[CONFIRMS_ATTR]]
    # The recorded accuracies decide: a copy of the study records the confirmation's just above or below.
    shutil.copy(supernet_study.folder / f"{STUDY}.db", tmp_path / "copy.db")
    recorded = searched.user_attrs["accuracy"] + (0.01 if confirmation_better else -0.01)
    with sqlite3.connect(tmp_path / "copy.db") as db:
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'accuracy' AND trial_id = "
                   "(SELECT trial_id FROM trials WHERE number = ?)", (json.dumps(recorded), confirmation.number))
    storage = f"sqlite:///{tmp_path / 'copy.db'}"
    lib = tmp_path / "lib"
    for name, number in (("searched", searched.number), ("confirmation", confirmation.number)):
        export(STUDY, storage=storage, name=name, trial=number, library=lib, results_dir=supernet_study.folder)
    searched_meta = library.get("searched", library=lib).metadata
    # The confirmation's own export always carries its own weights.
    assert library.get("confirmation", library=lib).metadata["weights_source"] == "confirmed"
    if confirmation_better:
        assert searched_meta["weights_source"] == "confirmed"
        assert searched_meta["weights"]["trial"] == confirmation.number
        assert (lib / "searched.safetensors").read_bytes() == (lib / "confirmation.safetensors").read_bytes()
    else:
        assert searched_meta["weights_source"] == "inherited" and searched_meta["weights"]["trial"] == searched.number
    for name, scored in (("searched", confirmation if confirmation_better else searched),
                         ("confirmation", confirmation)):
        evaluation, _ = reproduce(name, lib, scored, config, supernet_study.folder)
        assert evaluation.accuracy == scored.user_attrs["accuracy"]  # the real figure, not the copy's


def test_export_without_weights_and_a_missing_weights_file(supernet_study, tmp_path):
    study = supernet_study.load()
    confirmation = next(t for t in study.trials if t.user_attrs.get(CONFIRMS_ATTR) is not None)
    done = export(STUDY, storage=supernet_study.storage, name="arch", trial=confirmation.number, library=tmp_path,
                  weights=False)
    assert done.weights is None and not library.get("arch", library=tmp_path).has_weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json"]
    with pytest.raises(UserError, match="library entry 'arch' has no trained weights"):
        library.build("arch", library=tmp_path, weights="trained")

    # The study's record of the confirmation's weights points at a file that is gone (a results folder moved).
    shutil.copy(supernet_study.folder / f"{STUDY}.db", tmp_path / "copy.db")
    with sqlite3.connect(tmp_path / "copy.db") as db:
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'weights' AND value_json = ?",
                   (json.dumps(str(tmp_path / "gone.safetensors")), json.dumps(confirmation.user_attrs["weights"])))
    with pytest.raises(UserError, match="weights .*gone.safetensors' are missing .*--no-weights"):
        export(STUDY, storage=f"sqlite:///{tmp_path / 'copy.db'}", name="x", trial=confirmation.number,
               library=tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


def test_an_architecture_only_export_stays_so(study, tmp_path):
    export("demo", storage=study, name="plain", trial=1, library=tmp_path / "lib")
    entry = library.get("plain", library=tmp_path / "lib")
    assert not entry.has_weights and "weights_source" not in entry.metadata
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["plain.json"]


def test_cli_export_and_show_say_whether_an_entry_has_weights(supernet_study, study, tmp_path, run):
    lib = str(tmp_path / "lib")
    code, out, _ = run("export", "--study", STUDY, "--storage", supernet_study.storage, "--results-dir",
                       str(supernet_study.folder), "--best", "--name", "best", "--library", lib)
    # The weights are the confirmation's or the inherited ones, whichever the study recorded as more accurate.
    trials = supernet_study.load().trials
    best = trials[int(re.search(r"picked trial (\d+)", out).group(1))]
    confirmation = next(t for t in trials if t.user_attrs.get(CONFIRMS_ATTR) == best.number)
    confirmed = confirmation.user_attrs["accuracy"] >= best.user_attrs["accuracy"]
    how = (f"confirmed (retrained from scratch by confirmation trial {confirmation.number}" if confirmed
           else f"inherited (inherited from the study's supernet by trial {best.number}")
    assert code == 0 and f"  weights: {how}" in out
    assert "library.build('best', weights='trained'" in out
    code, out, _ = run("library", "show", "best", "--library", lib)
    assert code == 0 and f"weights: {how}" in out and "best.safetensors" in out
    assert run("export", "--study", "demo", "--storage", study, "--trial", "0", "--name", "plain", "--library",
               lib)[0] == 0
    code, out, _ = run("library", "show", "plain", "--library", lib)
    assert code == 0 and "weights: none (architecture only" in out


# -- the input preprocessing: recorded by the study, carried by the entry, applied by transforms() ---------------

FOLDER_STUDY = "folder"


def write_stripes(root, per_class=40, seed=0):
    """Real image files in class folders: horizontal or vertical stripes, tinted, noisy, of assorted non-square
    sizes, as PNG and JPEG, some grey (mode L) among colour ones (so the folder is read as RGB)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("horizontal", "vertical")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(36, 73, size=2))
            along = np.arange(h if label == 0 else w)
            wave = np.sin(2 * np.pi * along / rng.uniform(5, 12) + rng.uniform(0, 2 * np.pi))
            wave = wave[:, None] if label == 0 else wave[None, :]
            grey = 127.5 + 80 * np.broadcast_to(wave, (h, w)) + rng.normal(0, 25, (h, w))
            pixels = np.clip(grey[..., None] * rng.uniform(0.6, 1.0, 3), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "RGB")
            if i % 5 == 0:
                image = image.convert("L")
            image.save(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}", quality=90)
    return root


@pytest.fixture(scope="module")
def folder_study(tmp_path_factory):
    """test_strategies.py's small supernet study on an image folder of real files: (folder, results, storage)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base = tmp_path_factory.mktemp("folder-study")
    root = write_stripes(base / "stripes")
    results = base / "results"
    storage = f"sqlite:///{base / 'folder.db'}"
    run_search(SearchConfig(**{**SETTINGS, "dataset": f"imagefolder:{root}"}), storage=storage,
               study_name=FOLDER_STUDY, trials=4, results_dir=results, latency=fake_latency)
    return root, results, storage


def confirmed_trial(storage):
    study = optuna.load_study(study_name=FOLDER_STUDY, storage=storage)
    return study, next(t for t in study.trials if t.user_attrs.get(CONFIRMS_ATTR) is not None)


def test_the_study_records_its_preprocessing_and_the_entrys_transforms_reproduce_the_trial_from_image_files(
        folder_study, tmp_path):
    root, results, storage = folder_study
    study, trial = confirmed_trial(storage)
    config = SearchConfig.from_dict(study.user_attrs[CONFIG_ATTR])
    size = trial.user_attrs["proxy_resolution"]
    data = make_data(config, results)(size)
    recorded = study.user_attrs[f"{PREPROCESSING_ATTR}.{size}"]
    assert recorded == preprocessing(data).to_dict()
    assert recorded["channels"] == 3 and recorded["size"] == size and recorded["interpolation"] == "bilinear"

    # The dataset and its decoded cache are gone: export needs neither.
    shutil.copytree(root, tmp_path / "kept")
    shutil.rmtree(root)
    shutil.rmtree(results / "cache")
    try:
        done = export(FOLDER_STUDY, storage=storage, name="stripes", trial=trial.number, library=tmp_path / "lib",
                      results_dir=results)
    finally:
        shutil.copytree(tmp_path / "kept", root)
    assert done.weights.source == "confirmed"
    entry = library.get("stripes", library=tmp_path / "lib")
    assert entry.metadata["preprocessing"] == recorded and entry.preprocessing.to_dict() == recorded

    # The entry's own transforms() on every raw file; the validation split's files are those whose inputs are,
    # bit for bit, the inputs the study scored (the split is the study's: seeded, stratified).
    prepare = entry.transforms()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    inputs = torch.stack([prepare(Image.open(path)) for path in files])
    assert inputs.shape == (len(files), 3, size, size) and inputs.dtype == torch.float32
    scored = input_transform(data)(data.val_images)
    matches = [[i for i in range(len(files)) if torch.equal(inputs[i], x)] for x in scored]
    assert all(len(m) == 1 for m in matches), "every validation image is exactly one file's transformed input"
    val_files = [files[m[0]] for m in matches]
    labels = torch.tensor([data.classes.index(path.parent.name) for path in val_files])
    assert torch.equal(labels, data.val_labels)

    model = library.build("stripes", library=tmp_path / "lib", weights="trained")
    with torch.no_grad():
        predictions = model(torch.stack([prepare(Image.open(path)) for path in val_files])).argmax(1)
    correct = (predictions == labels).numpy()
    assert correct.mean() == trial.user_attrs["accuracy"]
    assert pack_correct(correct) == trial.user_attrs["val_correct"]
    assert len(set(predictions.tolist())) > 1  # a network that tells the classes apart, not a constant answer


def test_an_older_study_without_a_recorded_preprocessing_decodes_its_dataset_or_says_it_is_unknown(
        folder_study, tmp_path):
    root, results, storage = folder_study
    study, trial = confirmed_trial(storage)
    shutil.copy(storage.removeprefix("sqlite:///"), tmp_path / "old.db")
    with sqlite3.connect(tmp_path / "old.db") as db:  # as a study made before studies recorded it
        db.execute("DELETE FROM study_user_attributes WHERE key LIKE ?", (f"{PREPROCESSING_ATTR}.%",))
    old = f"sqlite:///{tmp_path / 'old.db'}"
    size = trial.user_attrs["proxy_resolution"]
    expected = study.user_attrs[f"{PREPROCESSING_ATTR}.{size}"]
    export(FOLDER_STUDY, storage=old, name="decoded", trial=trial.number, library=tmp_path, results_dir=results)
    assert library.get("decoded", library=tmp_path).metadata["preprocessing"] == expected

    # Neither recorded nor readable: the weights are kept, the entry says the input is unknown.
    shutil.move(root, tmp_path / "away")
    try:
        export(FOLDER_STUDY, storage=old, name="unknown", trial=trial.number, library=tmp_path,
               results_dir=tmp_path / "empty-results", force=True)
    finally:
        shutil.move(tmp_path / "away", root)
    entry = library.get("unknown", library=tmp_path)
    assert "preprocessing" not in entry.metadata and entry.has_weights
    assert entry.metadata["weights"]["input"]["normalise"].startswith("unknown (the study recorded none and its "
                                                                      "dataset could not be read: image folder")
    with pytest.raises(UserError, match="library entry 'unknown' records no input preprocessing"):
        entry.transforms()
    library.build("unknown", library=tmp_path, weights="trained")


def test_an_entry_from_before_entries_recorded_the_preprocessing_still_builds_and_transforms(folder_study, tmp_path):
    root, results, storage = folder_study
    _, trial = confirmed_trial(storage)
    export(FOLDER_STUDY, storage=storage, name="new", trial=trial.number, library=tmp_path, results_dir=results)
    document = json.loads((tmp_path / "new.json").read_text())
    recorded = document["metadata"].pop("preprocessing")
    # The form earlier versions wrote: the statistics beside the weights.
    document["metadata"]["weights"]["input"] = {"resolution": recorded["size"], "mean": recorded["mean"],
                                                "std": recorded["std"],
                                                "normalise": "(x - mean) / std on uint8 pixel values x"}
    document["name"] = "old"
    shutil.copy(tmp_path / "new.safetensors", tmp_path / "old.safetensors")
    document["weights"]["file"] = "old.safetensors"
    (tmp_path / "old.json").write_text(json.dumps(document))
    old, new = (library.build(name, library=tmp_path, weights="trained") for name in ("old", "new"))
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))
    image = Image.open(next(root.rglob("*.jpg")))
    old_input, new_input = (library.get(name, library=tmp_path).transforms()(image) for name in ("old", "new"))
    assert torch.equal(old_input, new_input)
    # An entry that records no statistics at all (architecture only) builds, and has no transforms().
    del document["metadata"]["weights"], document["weights"]
    (tmp_path / "arch.json").write_text(json.dumps(document | {"name": "arch"}))
    library.build("arch", library=tmp_path)
    with pytest.raises(UserError, match="records no input preprocessing"):
        library.get("arch", library=tmp_path).transforms()

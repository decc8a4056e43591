"""Issue 12: nothing lost, nothing half-done, every bad input refused with one line.

Covers atomic writes (files.py), storage folders (search/storage.py), unreadable images
(measure/data.py), the dashboard's child process and schema check (ui/dashboard.py) and the
command line's --version, misspelled options and start-up time (ui/cli.py). Where a command
line is involved a test checks the exit code and that stderr is one line without a traceback;
where files existed before, that they are byte-identical after.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from PIL import Image
from synthetic import create_synthetic_study

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_path, atomic_write_text, save_weights
from mobilenet_search.measure.data import load_dataset
from mobilenet_search.results import library
from mobilenet_search.search.storage import check_storage_writable, make_storage
from mobilenet_search.ui import dashboard as board
from mobilenet_search.ui.cli import main

TREE = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(TREE)}
AS_ROOT = os.geteuid() == 0  # root writes into read-only folders: those tests need another user
SMALL = ArchSpec.mobilenet_v2(0.5, 64, num_classes=3, stages=((1, 16, 1, 1), (6, 24, 2, 2)))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: compare before and after to see nothing changed or was left."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def _disk_full() -> Iterator[None]:
    """Writes that grow any file fail with EFBIG ("File too large"), as on a full disk (RLIMIT_FSIZE = 0).

    SIGXFSZ is ignored meanwhile, so the write fails instead of killing the process. Nothing may
    be printed inside the block: pytest's captured output is a file too.
    """
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _one_line(stderr: str) -> None:
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "Traceback" not in stderr


# -- atomic writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give_under_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "result.json", "{}")
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"onnx")
        save_weights(build_model(ArchSpec.mobilenet_v1(0.25, 32, num_classes=2)), tmp_path / "net.safetensors")
        with open(tmp_path / "plain.txt", "w") as f:  # what the two should match
            f.write("x")
    finally:
        os.umask(old)
    for name in ("result.json", "model.onnx", "net.safetensors", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_a_write_under_a_path_component_that_is_a_file_is_one_user_error(tmp_path):
    (tmp_path / "results").write_text("a file where a folder should be")
    before = _snapshot(tmp_path)
    target = tmp_path / "results" / "study" / "trials.csv"
    with pytest.raises(UserError, match=f"^cannot write {target}: Not a directory") as caught:
        atomic_write_text(target, "number\n")
    assert "\n" not in str(caught.value)
    assert _snapshot(tmp_path) == before


def test_a_write_on_a_full_disk_is_one_user_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text('{"old": true}')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match=f"^cannot write {target}: File too large"), _disk_full():
        atomic_write_text(target, '{"new": true}' * 1000)
    assert _snapshot(tmp_path) == before  # old content, and no temporary file


@pytest.mark.skipif(AS_ROOT, reason="root may write into a read-only folder")
def test_a_write_into_a_read_only_folder_is_one_user_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "entry.json").write_text("{}")
    before = _snapshot(tmp_path)
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write .*entry.json: Permission denied"):
            atomic_write_text(folder / "entry.json", '{"new": 1}')
    finally:
        folder.chmod(0o755)
    assert _snapshot(tmp_path) == before


def test_an_interrupted_write_removes_its_temporary_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "pareto.json"
    target.write_text("[]")
    before = _snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("[1, 2")
        raise KeyboardInterrupt
    assert _snapshot(tmp_path) == before


# -- storages -----------------------------------------------------------------------------------


def test_search_with_a_journal_in_a_missing_folder_is_one_line(tmp_path, capsys):
    code = main(["--budget", "300M-madds", "--trials", "0", "--results-dir", str(tmp_path / "results"),
                 "--storage", "journal:/nonexistent/dir/j.log"])
    captured = capsys.readouterr()
    assert code == 2
    _one_line(captured.err)
    assert "journal:/nonexistent/dir/j.log" in captured.err and "folder /nonexistent/dir does not exist" in captured.err
    assert not Path("/nonexistent").exists()


def test_a_sqlite_url_whose_folder_is_missing_or_a_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match=f"folder {tmp_path / 'missing'} does not exist"):
        make_storage(f"sqlite:///{tmp_path / 'missing' / 'study.db'}")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UserError, match=f"{tmp_path / 'plain'} is not a folder"):
        make_storage(f"sqlite:///{tmp_path / 'plain' / 'study.db'}")
    assert _snapshot(tmp_path) == {"plain": b"x"}


def test_a_new_sqlite_study_on_a_full_disk_leaves_no_empty_database(tmp_path):
    (tmp_path / "other.db").write_bytes(b"untouched")
    before = _snapshot(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(UserError, match=f"^cannot open storage {url}: .*(full|disk|large)"), _disk_full():
        make_storage(url, heartbeat=None)
    assert _snapshot(tmp_path) == before


def test_a_failed_open_keeps_an_existing_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=url, study_name="kept")
    before = _snapshot(tmp_path)
    with sqlite3.connect(tmp_path / "study.db") as conn:  # a schema from a future Optuna: refused, not removed
        conn.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    changed = _snapshot(tmp_path)
    assert changed != before
    with pytest.raises(UserError, match="cannot open storage"):
        make_storage(url, heartbeat=None)
    assert _snapshot(tmp_path) == changed


def test_check_storage_writable_refuses_missing_and_non_folders_and_accepts_good_ones(tmp_path):
    (tmp_path / "plain").write_text("x")
    for url, message in [(f"journal:{tmp_path / 'nowhere' / 'j.log'}", "does not exist"),
                         (f"sqlite:///{tmp_path / 'plain' / 's.db'}", "is not a folder"),
                         (f"sqlite:///{tmp_path}", "is a folder")]:
        with pytest.raises(UserError, match=f"^cannot write storage .*{message}"):
            check_storage_writable(url)
    check_storage_writable(f"sqlite:///{tmp_path / 'new.db'}")
    check_storage_writable("postgresql://user:pw@db.invalid/optuna")  # servers: opening them tells
    check_storage_writable("sqlite:///:memory:")
    assert _snapshot(tmp_path) == {"plain": b"x"}  # the probe leaves nothing


@pytest.mark.skipif(AS_ROOT, reason="root may write into a read-only folder")
def test_check_storage_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="does not accept new files"):
            check_storage_writable(f"sqlite:///{folder / 'study.db'}")
    finally:
        folder.chmod(0o755)


# -- unreadable images --------------------------------------------------------------------------


def _image_folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def test_unreadable_images_are_skipped_with_one_warning_naming_them(tmp_path, caplog):
    root = _image_folder(tmp_path / "cells", {"bad": 6, "good": 6})
    _truncate(root / "bad" / "0.jpg")
    (root / "good" / "4.jpg").write_text("not a JPEG at all")
    before = _snapshot(root)
    with caplog.at_level(logging.WARNING, logger="mobilenet_search"):
        data = load_dataset(f"imagefolder:{root}", 16, cache_dir=tmp_path / "cache")
    assert len(data.train_labels) + len(data.val_labels) == 10
    assert sorted(np.bincount(np.concatenate([data.train_labels, data.val_labels])).tolist()) == [5, 5]
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "skipped 2 unreadable images" in message
    assert "bad/0.jpg" in message and "good/4.jpg (not an image" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mobilenet_search"):  # from the cache: said again
        again = load_dataset(f"imagefolder:{root}", 16, cache_dir=tmp_path / "cache")
    assert len(caplog.records) == 1 and caplog.records[0].getMessage() == message
    assert again.train_images.equal(data.train_images)
    assert _snapshot(root) == before


def test_the_warning_names_the_first_few_files_and_counts_the_rest(tmp_path, caplog):
    root = _image_folder(tmp_path / "many", {"a": 8, "b": 8})
    for i in range(5):
        _truncate(root / "a" / f"{i}.{'png' if i % 2 else 'jpg'}")
    with caplog.at_level(logging.WARNING, logger="mobilenet_search"):
        load_dataset(f"imagefolder:{root}", 16, cache_dir=None)
    [record] = caplog.records
    assert "skipped 5 unreadable images: a/0.jpg (" in record.getMessage()
    assert record.getMessage().endswith("and 2 more")


def test_a_class_left_without_readable_images_is_refused(tmp_path):
    root = _image_folder(tmp_path / "folder", {"cats": 2, "dogs": 3})
    for path in (root / "cats").iterdir():
        _truncate(path)
    _truncate(next((root / "dogs").iterdir()))  # an unreadable file of the class that keeps images
    with pytest.raises(UserError, match="class 'cats' has no readable image left") as error:
        load_dataset(f"imagefolder:{root}", 16, cache_dir=tmp_path / "cache")
    assert "cats/" in str(error.value) and "dogs/" not in str(error.value)  # only the emptied class's files
    assert not (tmp_path / "cache").exists()


def test_a_folder_without_any_readable_image_is_refused(tmp_path):
    root = tmp_path / "junk"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "x.jpg").write_text("no image")
    with pytest.raises(UserError, match="has no readable image: a/x.jpg"):
        load_dataset(f"imagefolder:{root}", 16, cache_dir=None)


def test_an_unreadable_image_warning_is_one_line_on_the_command_line(capsys):
    from mobilenet_search.ui.cli import _OneLineWarnings

    logging.getLogger("mobilenet_search.measure.data").addHandler(handler := _OneLineWarnings(logging.WARNING))
    try:
        logging.getLogger("mobilenet_search.measure.data").warning("dataset 'x': skipped 1 unreadable image: a.jpg")
    finally:
        logging.getLogger("mobilenet_search.measure.data").removeHandler(handler)
    assert capsys.readouterr().err == "mobilenet-search: warning: dataset 'x': skipped 1 unreadable image: a.jpg\n"


# -- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_binds_to_this_machine_unless_told_otherwise(tmp_path):
    commands = []

    def fake_popen(command, env):  # a child that exits at once
        commands.append(command)
        return subprocess.Popen([sys.executable, "-c", "pass"])

    assert board.run_dashboard(results_dir=tmp_path, popen=fake_popen) == 0
    assert board.run_dashboard(results_dir=tmp_path, address="0.0.0.0", popen=fake_popen) == 0
    assert [c[c.index("--server.address") + 1] for c in commands] == ["127.0.0.1", "0.0.0.0"]


def _signal_once_handled(signum: int) -> None:
    """Send this process ``signum`` as soon as a handler other than the present one is set (run_foreground's).

    Sent earlier, Python's default would act instead: end pytest (SIGTERM) or raise KeyboardInterrupt.
    """
    before = signal.getsignal(signum)

    def send() -> None:
        deadline = time.monotonic() + 60
        while signal.getsignal(signum) is before:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()


def test_sigterm_to_the_dashboard_stops_its_child(tmp_path):
    children = []

    def fake_popen(command, env):  # a child that would run for a minute
        children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return children[-1]

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    _signal_once_handled(signal.SIGTERM)
    start = time.monotonic()
    assert board.run_dashboard(results_dir=tmp_path, popen=fake_popen) == 128 + signal.SIGTERM
    assert time.monotonic() - start < 10
    assert children[0].returncode == -signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    children = []

    def stubborn_popen(command, env):
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
        children.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))
        children[-1].stdout.readline()  # its handler is set
        return children[-1]

    _signal_once_handled(signal.SIGINT)
    code = board.run_dashboard(results_dir=tmp_path, popen=stubborn_popen, stop_timeout=1.0)
    children[0].stdout.close()
    assert code == 128 + signal.SIGINT and children[0].returncode == -signal.SIGKILL


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the child through /proc")
def test_sigterm_to_the_dashboard_command_stops_streamlit(tmp_path):
    port = _free_port()
    parent = subprocess.Popen([sys.executable, "-m", "mobilenet_search.ui.cli", "dashboard", "--port", str(port),
                               "--results-dir", str(tmp_path)], env={**ENV, "STREAMLIT_SERVER_HEADLESS": "true"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120  # Streamlit starts in seconds, slower on busy shared cores
        while not _listening(port):
            assert parent.poll() is None, parent.stderr.read()
            assert time.monotonic() < deadline, "Streamlit did not start"
            time.sleep(0.2)
        [child] = _children_of(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 128 + signal.SIGTERM
        assert "Traceback" not in parent.stderr.read()
        assert not Path(f"/proc/{child}").exists() and not _listening(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stderr.close()


def test_the_fast_reader_falls_back_to_optuna_for_a_schema_it_does_not_know(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    create_synthetic_study(url, "demo", 12, seed=1)
    fast = board.load_study_data(url, "demo")
    assert fast.source == "sql"
    with sqlite3.connect(tmp_path / "demo.db") as conn:  # Optuna opens it; the fast reader must not trust it
        conn.execute("UPDATE version_info SET schema_version = 13")
    before = _snapshot(tmp_path)
    slow = board.load_study_data(url, "demo")
    assert slow.source == "optuna"
    columns = ["number", "state", "feasible", "accuracy", "madds", "params", "latency_ms"]  # the same trials read
    pd.testing.assert_frame_equal(fast.frame[columns].reset_index(drop=True),
                                  slow.frame[columns].reset_index(drop=True), check_dtype=False)
    assert _snapshot(tmp_path) == before


# -- the command line ---------------------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == "mobilenet-search 0.2.0\n"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--budjet", "300M-madds"], "search: error: unrecognized option --budjet; did you mean --budget?"),
    (["search", "--budget", "300M-madds", "--trails", "3"], "did you mean --trials?"),
    (["library", "list", "--libary", "x"], "mobilenet-search library list: error: unrecognized option --libary; "
                                           "did you mean --library?"),
    (["dashboard", "--adress", "0.0.0.0"], "did you mean --address?"),
])
def test_a_misspelled_option_gets_one_line_suggesting_the_right_one(argv, expected):
    result = subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], capture_output=True, text=True,
                            env=ENV, cwd=TREE)
    assert result.returncode == 2 and result.stdout == ""
    _one_line(result.stderr)
    assert expected in result.stderr


def test_help_imports_neither_torch_nor_optuna():
    code = ("import sys, contextlib, io\nfrom mobilenet_search.ui.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'optuna', 'pandas', 'streamlit') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert result.stdout.strip() == "[]"


def test_the_build_hint_names_the_library_it_was_saved_in(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    library.save("net", SMALL, library="lib")
    assert main(["library", "show", "net", "--library", "lib"]) == 0
    [hint] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("build: ")]
    assert hint.endswith("library.build('net', num_classes=..., library='lib')")
    namespace: dict = {}
    exec(hint.removeprefix("build: ").replace("num_classes=...", "num_classes=5"), namespace)  # works as printed
    assert namespace["model"].classifier[-1].out_features == 5

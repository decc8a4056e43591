"""The standing malformed-input sweep: every subcommand and option given bad values (issue 24).

Cases are generated from the parser itself: every bounded number gets values just outside its bounds,
NaN, infinities, huge, non-ASCII digits, words and the empty string; every other option and argument
gets the empty string and, where the table below has them, values of its own kind (paths that are
files, folders, FIFOs or missing; malformed storage URLs, budgets, datasets, names). Each case must exit
2 with one line on stderr, no traceback, and leave the directory tree byte-identical. A test also checks
that every option of every subcommand is covered, so the next flag added cannot be forgotten.

Most cases run the command in-process (``main(argv)``) for speed; a handful run as real processes.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenet_search.search.space import SPACES_DIR
from mobilenet_search.ui.cli import build_parser, main

TREE = Path(__file__).resolve().parent.parent
STUDY = "made"  # a study that exists in the world (created once, with --trials 0)
STORAGE = f"sqlite:///results/{STUDY}.db"
SEARCH = ["search", "--budget", "2M-madds", "--space", "tiny", "--dataset", "synthetic:64", "--epochs", "1",
          "--proxy-size", "32", "--references", "none", "--noise-repeats", "0", "--trials", "0", "--device", "cpu",
          "--results-dir", "results"]
# A valid command line of each subcommand: one option at a time is replaced by a bad value. Where the valid line
# itself would do work it is kept cheap; none of them starts a server.
BASES: dict[str, list[str]] = {
    "search": SEARCH + ["--study", "fresh"],
    "worker": ["worker", "--storage", STORAGE, "--study", STUDY, "--trials", "0", "--device", "cpu", "--quiet",
               "--results-dir", "results"],
    "report": ["report", "--study", STUDY, "--results-dir", "results"],
    "fidelity": ["fidelity", "--study", STUDY, "--results-dir", "results", "--top", "3", "--device", "cpu"],
    "describe": ["describe", "v2"],
    "space": ["space", "tiny"],
    "references": ["references"],
    "export": ["export", "--study", STUDY, "--results-dir", "results", "--best", "--name", "entry"],
    "library list": ["library", "list"],
    "library show": ["library", "show", "mobilenet_v2_1.0_224"],
    "dashboard": ["dashboard", "--results-dir", "results"],
    "latency-table build": ["latency-table", "build", "--space", "tiny", "--device", "cpu", "--results-dir", "results",
                            "--quiet", "--repeats", "1", "--warmup", "0", "--passes", "1", "--fit-samples", "1",
                            "--rounds", "1"],
    "latency-table check": ["latency-table", "check", "--space", "tiny", "--device", "cpu", "--results-dir", "results",
                            "--quiet"],
    "latency-table show": ["latency-table", "show", "--device", "cpu", "--results-dir", "results"],
    "scaling": ["scaling", "--budget", "2M-madds", "--dataset", "synthetic:64", "--epochs", "1", "--proxy-size", "32",
                "--seeds", "1", "--device", "cpu", "--results-dir", "results", "--study", "fresh", "--quiet"],
    "supernet train": ["supernet", "train", *SEARCH[1:], "--strategy", "supernet", "--supernet-epochs", "1",
                       "--study", "fresh"],
}
PATHS = ["a_file.txt", "a_folder", "a_fifo", "missing/deeper"]
STORAGES = ["foo", "sqlite://", "sqlite:///:memory:", "journal:", "mysql://u:secret@127.0.0.1/db",
            "nosuchdriver://u:p@h/db", "sqlite:///text.db", "sqlite:///a_folder", "sqlite:///missing/x.db",
            "sqlite:///a_file.txt/x.db", "postgresql://u:secret@127.0.0.1:1/db"]
# Values of their own kind for options that take text, by (subcommand or "*", option).
TEXT_CASES: dict[tuple[str, str], list[str]] = {
    ("search", "--budget"): ["0M-madds", "-5M-madds", "1K-madds", "300X-madds", "300M-flops", "٣٠٠M-madds",
                             "３００M-madds", "9" * 10_000 + "M-madds", "nanM-madds", "infM-madds", "300M",
                             "300M-madds,300M-madds", "5-latency", "1e308M-madds", "300M-madds,", "99999999999G-madds"],
    ("search", "--space"): ["nonexistent", "not_utf8.yaml", "hello.yaml", *PATHS],
    ("search", "--dataset"): ["foo", "synthetic:٣٠٠", "synthetic:99999999999999", "synthetic:-5", "synthetic:abc",
                              "synthetic:4", "imagefolder:missing", "imagefolder:a_file.txt", "imagefolder:",
                              "cifar10:a_folder", "embedded:x", "mnist:x"],
    ("search", "--objective"): ["foo", "zero-cost:nope", "zero-cost:", "accuracy:x"],
    ("search", "--strategy"): ["foo", "Scratch"],
    ("search", "--study"): ["../up", "a/b", "x" * 200, ".hidden", "a b", "é"],
    ("search", "--supernet"): PATHS,
    ("search", "--device"): ["foo", "cuda:99", "gpu", "cpu:0"],
    ("search", "--results-dir"): ["a_file.txt", "a_file.txt/below"],
    ("*", "--storage"): STORAGES,
    ("worker", "--study"): ["nope", "../up"],
    ("worker", "--results-dir"): ["a_file.txt"],
    ("worker", "--device"): ["foo"],
    ("worker", "--supernet"): PATHS,
    ("report", "--study"): ["nope", "../up"],
    ("fidelity", "--study"): ["nope"],
    ("fidelity", "--device"): ["foo"],
    ("describe", "arch"): ["v3", "garbage", "{", '{"family": "x"}', "mnv2_w1.0"],
    ("space", "space"): ["nonexistent", "not_utf8.yaml", "hello.yaml", *PATHS],
    ("export", "--study"): ["nope"],
    ("export", "--name"): ["MOBILENET_V2_1.0_224", "Mobilenet_V2_0.35_96", "mobilenet_v1_1.0_224", "x.json",
                           "x.safetensors", "../up", "a/b"],
    ("export", "--under"): ["foo", "0M-madds", "٣٠٠M-madds"],
    ("export", "--library"): ["a_file.txt"],
    ("export", "--onnx"): ["a_folder"],
    ("scaling", "--strategy"): ["foo", "Scratch"],
    ("library show", "name"): ["nope", "../up", "mobilenet_v2_9.9_224"],
    ("library show", "--library"): ["a_file.txt"],
    ("library list", "--library"): ["a_file.txt"],
    ("dashboard", "--address"): ["not a host!", "300.300.300.300", "a..b"],
    ("dashboard", "--storage"): ["foo", "sqlite://", "journal:", "mysql://u:secret@127.0.0.1/db"],
    ("latency-table build", "--space"): ["nonexistent", "a_folder", "a_fifo"],
    ("latency-table build", "--results-dir"): ["a_file.txt"],
    ("latency-table build", "--device"): ["foo"],
    ("latency-table check", "--space"): ["nonexistent"],
    ("latency-table check", "--table"): PATHS,
    ("latency-table show", "--arch"): ["garbage"],
    ("latency-table show", "--table"): PATHS,
}
FLAG_CASES = ["=1", "=yes"]  # a store_true flag given a value
# Options whose every value the rest of the line already makes fail, or that have no malformed value of their own:
# they are covered by the empty value and the bad-flag cases only.


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its name as in BASES ("library show", "latency-table build")."""
    found = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and prefix:
            found[prefix] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, f"{prefix} {name}".strip())

    walk(build_parser(), "")
    return found


def _bad_numbers(kind) -> list[str]:
    low, high, whole = kind.low, kind.high, kind.bounds.startswith("an integer")
    values = ["nan", "inf", "-inf", "", "abc", "٣", "３", "1_0", "0x10", "99999999999999999999999999", "1e400"]
    if low is not None:
        values.append(str(low - 1) if whole else "-1e-300" if low == 0 else f"{low - 1:g}")
    if high is not None:
        values.append(str(high + 1) if whole else f"{high * 2:g}")
    if whole:
        values.append("1.5")
    return values


def _replace(base: list[str], action: argparse.Action, value: str) -> list[str]:
    """``base`` with ``action``'s value replaced (or added) by ``value``."""
    argv = list(base)
    if not action.option_strings:  # a positional: the last item of the base that is not an option's value
        index = max(i for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or not argv[i - 1].startswith(
            "--") or argv[i - 1] in ("--best", "--quiet", "--list")))
        argv[index] = value
        return argv
    flag = action.option_strings[-1]
    if flag in argv:
        at = argv.index(flag)
        del argv[at:at + (1 if action.nargs == 0 else 2)]
    if action.nargs == 0:
        return [*argv, f"{flag}{value}"]
    return [*argv, f"{flag}={value}"]  # = keeps values that start with '-' with their flag


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for command, parser in _commands().items():
        base = BASES[command]
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.dest == "help":
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            if action.nargs == 0:
                values = FLAG_CASES
            elif hasattr(action.type, "low"):
                values = _bad_numbers(action.type)
            elif action.choices is not None:
                values = ["", "nope"]
            else:
                values = ["", *TEXT_CASES.get((command, name), TEXT_CASES.get(("*", name), []))]
            cases += [(f"{command} {name}={value[:30]!r}", _replace(base, action, value)) for value in values]
        cases.append((f"{command} --no-such-option", [*base, "--no-such-option"]))
        cases.append((f"{command} extra argument", [*base, "extra"]))
    cases.append(("space --list extra", ["space", "--list", "extra"]))
    cases.append(("search resumed with another dataset", [*SEARCH, "--study", STUDY, "--dataset", "synthetic:96"]))
    cases.append(("search resumed with another space file", [*SEARCH, "--study", STUDY, "--space", "edited.yaml"]))
    cases.append(("bare form with a malformed budget", ["--budget", "-1M-madds"]))
    # export --scaled excludes --best (argparse refuses both): its own line, on a study that is no scaling study.
    scaled = ["export", "--study", STUDY, "--results-dir", "results", "--name", "entry", "--scaled"]
    cases += [(f"export --scaled {value!r}", [*scaled, value])
              for value in ["2M-madds", "foo", "0M-madds", "5ms-latency", "2M", "٣M-madds", ""]]
    # Inside a huge budget, but every member a million blocks deep: over a TiB to train, refused before anything.
    cases.append(("search on a space no member of which fits in memory",
                  [*SEARCH, "--budget", "900G-madds", "--space", "deep.yaml", "--study", "fresh"]))
    cases += [(f"search supernet checkpoint {path}", [*SEARCH, "--strategy", "supernet", "--supernet", path])
              for path in ["a_file.txt", "a_folder", "a_fifo", "text.db"]]  # a missing one is trained into
    return cases


CASES = _cases()


def _tree(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: its type, mode and, for files, its bytes."""
    tree = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        tree[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), content)
    return tree


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with the things malformed values point at, and one study (``made``) to resume or join."""
    root = tmp_path_factory.mktemp("world")
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "a_folder").mkdir()
    os.mkfifo(root / "a_fifo")
    (root / "not_utf8.yaml").write_bytes(b"\xff\xfe")
    (root / "hello.yaml").write_text("hello\n")
    (root / "text.db").write_text("not a database\n")
    tiny = (SPACES_DIR / "tiny.yaml").read_text()
    (root / "edited.yaml").write_text(tiny.replace("width_mult: [", "width_mult: [0.3, "))
    (root / "deep.yaml").write_text(tiny.replace("repeats: [1, 2]", "repeats: 1000000"))
    here = os.getcwd()
    os.chdir(root)
    try:
        assert main([*SEARCH, "--study", STUDY]) == 0
    finally:
        os.chdir(here)
    return root


def test_the_sweep_has_at_least_300_cases_over_every_subcommand():
    assert len(CASES) >= 300
    assert set(_commands()) == set(BASES)


def test_every_option_of_every_subcommand_is_covered():
    covered = {case.split(" ")[0] for case, _ in CASES}
    for command, parser in _commands().items():
        names = {case[len(command) + 1:].split("=")[0] for case, _ in CASES if case.startswith(f"{command} ")}
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert name in names, f"{command} {name} has no malformed case"
    assert covered


@pytest.mark.parametrize(("case", "argv"), CASES, ids=[case for case, _ in CASES])
def test_a_malformed_value_is_one_line_exit_2_and_writes_nothing(world, case, argv, capsys, monkeypatch):
    monkeypatch.chdir(world)
    monkeypatch.delenv("MOBILENET_SEARCH_LIBRARY", raising=False)
    before = _tree(world)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{captured.err}"
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), f"{case}: {captured.err!r}"
    assert "Traceback" not in captured.err and "secret" not in captured.err
    assert captured.out == "", f"{case}: printed {captured.out!r} before refusing"
    assert _tree(world) == before, f"{case}: the directory tree changed"


@pytest.mark.parametrize("argv", [
    ["--budget", "300M-madds", "--workers", "99999"],
    ["--budget", "300M-madds", "--seed", "99999999999999999999999"],
    ["describe", "v2", "--width", "1e308"],
    ["space", "not_utf8.yaml"],
    ["worker", "--storage", "foo", "--study", "x"],
], ids=lambda argv: " ".join(argv)[:40])
def test_as_a_real_process_too(world, argv):
    before = _tree(world)
    result = subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], cwd=world, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(TREE)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert _tree(world) == before

"""Is mobilenet-search a real package? Build a wheel, install it in a fresh venv, use it from outside the checkout.

Run from the repository root (``tests/test_wheel.py`` runs it in CI)::

    python benchmarks/check_wheel.py            # prints each step, its command and how long it took
    python benchmarks/check_wheel.py --keep     # keep the temporary folder to look at afterwards

Steps, each of which must succeed:

1. build a wheel from a copy of the checkout (``python -m build --wheel --no-isolation``);
2. check the wheel's listing: only ``mobilenet_search/`` and its ``.dist-info``, with every module of
   the checkout's package, every ``search_spaces/*.yaml`` of the checkout as ``mobilenet_search/spaces/``,
   and ``ui/app.py``;
3. create a fresh venv in a temporary folder and ``pip install --no-deps`` the wheel into it;
4. make the venv see the current environment's dependencies (torch & co.) without copying them:
   a ``.pth`` file in its site-packages that appends the current site-packages *as a plain path*,
   so the ``.pth`` files there (the editable install's finder, which maps ``mobilenet_search`` to
   the checkout) are never run; then check ``mobilenet_search`` resolves inside the venv;
5. from a working directory outside the checkout, with no ``PYTHONPATH``: ``mobilenet-search --help``,
   ``mobilenet-search space mobilenetv2``, a one-trial search on synthetic data, and the dashboard's
   :func:`mobilenet_search.ui.dashboard.load_study_data` on the study just made, plus the check
   that the Streamlit app (``ui/app.py``) is inside the installed package.

Nothing is downloaded: the build uses the current environment's setuptools (``--no-isolation``) and
pip installs the one wheel with ``--no-index --no-deps``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mobilenet_search"
# Not part of the source: environments, results, caches, and earlier builds. A stale build/lib
# would otherwise end up in the wheel (setuptools copies into it and never deletes from it).
SKIP_AT_ROOT = {".git", ".venv", "results", "build", "dist", ".pytest_cache", ".ruff_cache", "test-artifacts"}
SKIP_ANYWHERE = ("*.egg-info", "__pycache__")

STUDY = "wheel-check"
# Both of the dashboard's ways to read a study (Optuna's tables directly, the Optuna API), and the
# app file the `dashboard` subcommand starts, found as it finds it.
LOAD_STUDY = """
import sys
from pathlib import Path
import mobilenet_search
from mobilenet_search.ui.dashboard import APP_PATH, load_study_data
package = Path(mobilenet_search.__file__).resolve().parent
assert APP_PATH.is_file() and APP_PATH.is_relative_to(package), f"{APP_PATH} is not in the installed package"
for fast in (True, False):
    data = load_study_data(sys.argv[1], sys.argv[2], fast=fast)
    assert len(data.frame) == 1 and data.frame['state'].iat[0] == 'COMPLETE', data.frame
    print(f"load_study_data(fast={fast}): {data.name}, {len(data.frame)} trial, source {data.source}")
print(f"app: {APP_PATH}")
"""


class CheckFailed(Exception):
    """A step of the check did not give what it should."""


def run_step(name: str, command: list[str], *, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> str:
    """Run one step, print its command and duration; its stdout, or :class:`CheckFailed` with its output."""
    shown = [f"<{name} script>" if "\n" in part else part for part in command]
    print(f"$ {shlex.join(shown)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    print(f"  {name}: {elapsed:.1f} s, exit code {result.returncode}", flush=True)
    if result.returncode != 0:
        raise CheckFailed(f"{name} failed (exit code {result.returncode}):\n{result.stdout[-3000:]}"
                          f"\n{result.stderr[-3000:]}")
    return result.stdout


def copy_source(destination: Path) -> Path:
    """A copy of the checkout without environments, results and build outputs: the build never writes into it."""
    anywhere = shutil.ignore_patterns(*SKIP_ANYWHERE)

    def ignore(folder: str, names: list[str]) -> set[str]:
        # Top-level names only: mobilenet_search/results is source, results/ is a study's output.
        return set(anywhere(folder, names)) | (SKIP_AT_ROOT & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, destination, ignore=ignore)
    return destination


def check_listing(wheel: Path) -> list[str]:
    """The wheel's file names, after checking the package data is there and nothing else is."""
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    stray = {t for t in top if t != PACKAGE and not t.endswith(".dist-info")}
    if stray:
        raise CheckFailed(f"the wheel holds more than the package: {sorted(stray)}")
    # The checkout's search_spaces/*.yaml become mobilenet_search/spaces/ (pyproject.toml's package-dir).
    spaces = {f"{PACKAGE}/spaces/{p.name}" for p in (ROOT / "search_spaces").glob("*.yaml")}
    wanted = spaces | {f"{PACKAGE}/ui/app.py"}
    missing = wanted - set(names)
    if not spaces or missing:
        raise CheckFailed(f"the wheel lacks {sorted(missing) or 'the search spaces'}")
    # pyproject.toml lists the packages by hand: a module of the checkout missing here is a package left out.
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts}
    if modules - set(names):
        raise CheckFailed(f"the wheel lacks modules of the checkout (a package missing from pyproject.toml's "
                          f"packages?): {sorted(modules - set(names))}")
    shown = ", ".join(sorted(n.removeprefix(f"{PACKAGE}/") for n in spaces | {f"{PACKAGE}/ui/app.py"}))
    print(f"  wheel listing: {len(names)} files, all {len(modules)} modules of the checkout; has {shown}")
    return names


def parent_paths() -> list[str]:
    """The current environment's site-packages folders (pure and platform), where the dependencies are."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def check(work: Path) -> None:
    """Every step in ``work`` (an empty folder outside the checkout); raises :class:`CheckFailed`."""
    source = copy_source(work / "source")
    dist = work / "dist"
    run_step("build wheel", [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
                             str(source)], cwd=work)
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel in {dist}, found {wheels}")
    wheel = wheels[0]
    print(f"  built {wheel.name} ({wheel.stat().st_size / 1024:.0f} KiB)")
    check_listing(wheel)

    venv = work / "venv"
    run_step("create venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    # The current pip installs into the new venv (--python): no ensurepip, and pip sees only the bare venv,
    # since the .pth that shows it the current environment is written afterwards.
    run_step("install wheel", [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                               "--no-deps", "--no-input", "--disable-pip-version-check", str(wheel)], cwd=work)
    site = run_step("find site-packages",
                    [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).strip()
    # Plain path lines: appended to sys.path after the venv's own site-packages, their .pth files not run.
    (Path(site) / "_parent_environment.pth").write_text("".join(f"{p}\n" for p in parent_paths()))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    outside = work / "elsewhere"
    outside.mkdir()
    where = run_step("import from the venv",
                     [str(python), "-c", "import mobilenet_search; print(mobilenet_search.__file__)"],
                     cwd=outside, env=env).strip()
    if not Path(where).resolve().is_relative_to(venv.resolve()):
        raise CheckFailed(f"mobilenet_search was imported from {where}, not from the fresh venv {venv}")
    print(f"  mobilenet_search imported from {where}")

    cli = str(venv / "bin" / "mobilenet-search")
    out = run_step("--help", [cli, "--help"], cwd=outside, env=env)
    if "search" not in out or "--budget" not in out:
        raise CheckFailed(f"unexpected --help output:\n{out}")
    out = run_step("space", [cli, "space", "mobilenetv2"], cwd=outside, env=env)
    if "members" not in out:
        raise CheckFailed(f"unexpected `space mobilenetv2` output:\n{out}")
    results = work / "results"
    run_step("one-trial search", [cli, "--budget", "300M-madds", "--trials", "1", "--references", "none",
                                  "--dataset", "synthetic:64", "--epochs", "1", "--study", STUDY,
                                  "--results-dir", str(results), "--device", "cpu"], cwd=outside, env=env)
    for name in ("trials.csv", "pareto.json"):
        if not (results / STUDY / name).is_file():
            raise CheckFailed(f"the search did not write {results / STUDY / name}")
    out = run_step("dashboard data", [str(python), "-c", LOAD_STUDY, f"sqlite:///{results / f'{STUDY}.db'}", STUDY],
                   cwd=outside, env=env)
    print("\n".join(f"  {line}" for line in out.strip().splitlines()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mobilenet-search-wheel-")).resolve()
    if work.is_relative_to(ROOT):  # TMPDIR inside the checkout: the checkout would be on sys.path as cwd
        parser.error(f"the temporary folder {work} is inside the checkout {ROOT}: set TMPDIR elsewhere")
    print(f"working in {work}")
    start = time.perf_counter()
    try:
        check(work)
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wheel check passed in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``mobilenet-search`` command: argument parsing and printing only.

Every subcommand is a thin client of the library; a :class:`UserError` becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mobilenet_search.arch.cost import count_madds, count_params, format_count, format_stage_table
from mobilenet_search.arch.references import paper_family
from mobilenet_search.arch.spec import ArchSpec, parse_arch
from mobilenet_search.bounds import (
    INT_BOUNDS,
    MAX_CLASSES,
    MAX_HEARTBEAT,
    MAX_LR,
    MAX_RESOLUTION,
    MAX_SECONDS,
    MAX_TOP,
    MAX_TRIALS,
    MAX_WIDTH,
)
from mobilenet_search.errors import UserError
from mobilenet_search.search.space import available_spaces, load_space
from mobilenet_search.search.storage import DEFAULT_HEARTBEAT
from mobilenet_search.ui.cli_dashboard import add_dashboard_command
from mobilenet_search.ui.cli_latency import add_latency_commands
from mobilenet_search.ui.cli_library import add_library_commands
from mobilenet_search.ui.cli_scaling import add_scaling_command
from mobilenet_search.ui.cli_supernet import add_supernet_commands
from mobilenet_search.ui.cli_types import document_bounds, integer, number

PROG = "mobilenet-search"
DEFAULT_TRIALS = 4


def _describe(args: argparse.Namespace) -> int:
    shorthand = {"v2": ArchSpec.mobilenet_v2, "v1": ArchSpec.mobilenet_v1}
    if args.arch in shorthand:
        spec = shorthand[args.arch](args.width, args.resolution, args.classes)
    else:
        if (args.width, args.resolution, args.classes) != (1.0, 224, 1000):
            raise UserError("--width/--resolution/--classes apply to the shorthands v1 and v2 only; "
                            "edit the architecture string instead")
        spec = parse_arch(args.arch)
    print(spec.to_string())
    print(f"{spec.family}  width {spec.width_mult:g}  resolution {spec.resolution} "
          f"(rho = {spec.resolution_mult:.3f})  {spec.num_classes} classes\n")
    print(format_stage_table(spec))
    print(f"\n{format_count(count_madds(spec))} MAdds, {format_count(count_params(spec))} parameters")
    return 0


def _space(args: argparse.Namespace) -> int:
    if args.list and args.space is not None:
        raise UserError(f"space --list takes no space (got {args.space!r}): use `space --list` or `space NAME`")
    if args.list:
        for name in available_spaces():
            space = load_space(name)
            print(f"{name:24s} {space.family}, {space.size:,} members")
        return 0
    space = load_space(args.space or "mobilenetv2")
    print(f"{space.name}: {space.family}, {space.size:,} members, {len(space.searched)} searched parameters")
    if space.description:
        print(space.description)
    print()
    for name, values in space.choices:
        print(f"  {name:20s} {' | '.join('null' if v is None else str(v) for v in values)}")
    for label, largest in (("cheapest", False), ("most expensive", True)):
        spec = space.extreme(largest=largest)
        print(f"\n{label} by MAdds: {format_count(count_madds(spec))} MAdds, "
              f"{format_count(count_params(spec))} params\n  {spec.to_string()}")
    return 0


def _references(args: argparse.Namespace) -> int:
    print(f"{'network':24s} {'MAdds':>8s} {'params':>8s}   (1000 classes, the papers' convention)")
    for family in ("mobilenet_v2", "mobilenet_v1"):
        for name, spec in paper_family(family).items():
            print(f"{name:24s} {format_count(count_madds(spec)):>8s} {format_count(count_params(spec)):>8s}")
    return 0


BUDGET_HELP = (
    "hard limits, e.g. 300M-madds, 1.2G-madds, 3.4M-params, 5ms-latency, or several joined by commas "
    "(300M-madds,4M-params). A budget compares at the precision it is written: 300M-madds admits every "
    "candidate whose count rounds down to 300M (below 301,000,000, so MobileNetV2 1.0/224 at 300.8M fits); "
    "300.5M-madds admits below 300.6M; 5ms-latency below 6 ms"
)


def _summary(study, budget: str, results_dir: Path, storage: str) -> None:
    """The end of a run: trial counts, the Pareto-optimal candidates, the search gain, where results are."""
    from mobilenet_search.results.frame import study_quality, trials_frame
    from mobilenet_search.results.records import frame_is_reference
    from mobilenet_search.results.report import format_gain, search_gain
    from mobilenet_search.search.storage import redact
    from mobilenet_search.ui.tables import front_table

    frame = trials_frame(study)
    outcomes = frame["outcome"].fillna("killed or running").value_counts()
    refs = int(frame_is_reference(frame).sum())
    print(f"\n{len(frame)} trials: " + ", ".join(
        f"{count} {outcome.replace('_', ' ')}" for outcome, count in outcomes.items())
        + (f" ({refs} of them the paper's reference nets)" if refs else ""))
    quality = study_quality(study)
    print(front_table(study, frame, quality, budget))
    if quality == "accuracy":
        print("\n" + format_gain(search_gain(study)))
    print(f"\nresults: {results_dir / study.study_name}/trials.csv (full architecture strings), pareto.json, "
          f"report.json; study: {redact(storage)} ({study.study_name})")


# Code a stop must not interrupt: an exception raised inside a database driver or Optuna's storage can leave a
# transaction or a lock half taken, and the clean-up that records the interrupted trial then hangs on it.
_STORAGE_MODULES = ("sqlalchemy", "sqlite3", "psycopg", "optuna.storages")
_STOP_RETRY = 0.05  # seconds between tries to deliver a stop that arrived inside storage code
_CAN_RETRY = hasattr(signal, "setitimer")  # not on Windows: a stop is raised where it lands


def _in_storage(frame: Any) -> bool:
    """Whether ``frame`` or any frame below it runs code of :data:`_STORAGE_MODULES`."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(_STORAGE_MODULES):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _stop_signals() -> Iterator[Callable[[], None]]:
    """SIGTERM (what a scheduler or ``docker stop`` sends) stops a run the way Ctrl-C does: the running
    trial is recorded as interrupted and queued again when the study resumes.

    A stop becomes a ``KeyboardInterrupt`` where it is safe to raise one. Inside storage code it waits
    (retried every :data:`_STOP_RETRY` seconds by SIGALRM) until that code has returned. And it can be
    lost: raised while Python runs a ``__del__`` or a garbage-collector callback, it is printed as
    "Exception ignored" and the run goes on. So the stop is also remembered, and the check this yields
    raises it again; the run calls it after every epoch, trial and supernet training step.
    """
    stopped: list[int] = []

    def raise_when_safe(frame: Any) -> None:
        if _CAN_RETRY and _in_storage(frame):
            signal.setitimer(signal.ITIMER_REAL, _STOP_RETRY)
            return
        raise KeyboardInterrupt

    def interrupt(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not break the clean-up
        stopped.append(signum)
        raise_when_safe(frame)

    def check() -> None:
        if stopped:
            raise KeyboardInterrupt

    handlers = {signal.SIGINT: interrupt, signal.SIGTERM: interrupt}
    if _CAN_RETRY:
        handlers[signal.SIGALRM] = lambda signum, frame: raise_when_safe(frame)
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield check
    finally:
        if _CAN_RETRY:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_with_progress(run: Callable[..., Any], study_name: str, storage: str, trials: int, quiet: bool,
                       header: str | None = None, **kwargs: Any):
    """Run a study (``run_search`` or ``run_worker``) with the CLI's progress: a bar, a line per trial.

    ``header`` and the bar appear once the run has passed its checks (bad input prints its one line
    alone); a supernet study's bar after its training, which has a bar of its own.
    """
    from mobilenet_search.results.records import StudySettings
    from mobilenet_search.ui.progress import SearchProgress

    state: dict[str, Any] = {}

    def on_start(study) -> None:
        if header is not None:
            print(header, file=sys.stderr)
        # The bar from the start, so a newcomer sees the run at work; a supernet study's after its training (which
        # has its own bar), from the first scored trial.
        settings = StudySettings.from_study(study)
        if not quiet and not (settings is not None and settings.supernet):
            state["progress"] = SearchProgress(study, trials)

    def after_trial(study, trial) -> None:
        stop_requested()
        if "progress" not in state:
            state["progress"] = SearchProgress(study, trials, enabled=not quiet)
        state["progress"].after_trial(study, trial)

    def on_epoch(epoch: int, epochs: int) -> None:
        stop_requested()
        if "progress" in state:
            state["progress"].on_epoch(epoch, epochs)

    supernet_step = kwargs.pop("on_supernet_step", None)
    if supernet_step is not None:  # a supernet's training steps are checked too: it may train for hours
        def on_supernet_step(*step: Any) -> None:
            stop_requested()
            supernet_step(*step)

        kwargs["on_supernet_step"] = on_supernet_step

    with _stop_signals() as stop_requested:
        try:
            return run(storage=storage, study_name=study_name, trials=trials, callbacks=[after_trial],
                       on_epoch=on_epoch, on_start=on_start, **kwargs)
        finally:
            if "progress" in state:
                state["progress"].close()


@contextlib.contextmanager
def _supernet_progress(epochs: int, enabled: bool) -> Iterator[Callable[[int, int, int, float], None]]:
    """A progress bar over the supernet's training steps: epoch, loss and an ETA (steps take equal time)."""
    from tqdm.auto import tqdm

    bar = None

    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=epochs * steps, initial=epoch * steps + step, desc="supernet", unit="step",
                       disable=not enabled, dynamic_ncols=True)
        bar.n = epoch * steps + step + 1
        bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}, loss {loss:.3f}", refresh=True)
        if bar.n >= bar.total:
            bar.close()  # trained: the search's own bar follows

    try:
        yield on_step
    finally:
        if bar is not None:
            bar.close()


def _search(args: argparse.Namespace) -> int:
    import optuna

    from mobilenet_search.measure.latency import resolve_device
    from mobilenet_search.search.config import (
        SearchConfig,
        check_results_dir,
        check_study_name,
        default_storage,
        default_study_name,
    )
    from mobilenet_search.search.storage import check_storage_url, check_storage_writable, redact
    from mobilenet_search.search.study import run_search
    from mobilenet_search.ui.cli_workers import check_workers

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress bar and summary say it all
    check_workers(args.workers)
    config = SearchConfig(
        budget=args.budget, space=args.space, dataset=args.dataset, dataset_limit=args.dataset_limit,
        epochs=args.epochs, batch_size=args.batch_size, proxy_size=args.proxy_size, lr=args.lr,
        objective=args.objective, sampler=args.sampler, seed=args.seed, latency_batch=args.latency_batch,
        references=args.references, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        metric=args.metric, noise_repeats=args.noise_repeats, strategy=args.strategy,
        supernet_epochs=args.supernet_epochs, confirm=args.confirm,
    )
    if args.supernet is not None and not config.supernet:
        raise UserError(f"--supernet {args.supernet!r} applies to --strategy supernet only (this study's strategy is "
                        f"{config.strategy})")
    device = resolve_device(args.device)
    study_name = check_study_name(default_study_name(config) if args.study is None else args.study)
    results_dir = check_results_dir(args.results_dir)  # created once every check that needs no data has passed
    storage = default_storage(results_dir, study_name) if args.storage is None else args.storage
    check_storage_url(storage)
    if args.storage is not None or results_dir.is_dir():
        check_storage_writable(storage)  # before decoding any data: a bad folder is refused at once
    several = args.workers > 1 and args.trials > 0
    header = None if several else (
        f"study {study_name!r} in {redact(storage)}: budget {config.budget}, space {config.space}, "
        f"dataset {config.dataset}, {config.epochs} epochs at proxy size {config.proxy_size}, device {device}")
    supernet = Path(args.supernet) if args.supernet else None
    with _supernet_progress(config.supernet_epochs, enabled=config.supernet) as on_step:
        study = _run_with_progress(
            lambda **kw: run_search(config, **kw), study_name, storage, 0 if several else args.trials,
            quiet=several, header=header, timeout=args.timeout, device=device, results_dir=results_dir,
            heartbeat=args.heartbeat, supernet=supernet, on_supernet_step=on_step)
    if several:
        study = _launch_workers(args, storage, study_name, device)
    if args.trials == 0:
        print(f"study {study_name!r} created with its settings; start workers with: {PROG} worker --storage "
              f"'{storage if '@' not in storage else '<URL>'}' --study {study_name} --trials N")
        return 0
    _summary(study, config.budget, results_dir, storage)
    return 0


def _launch_workers(args: argparse.Namespace, storage: str, study_name: str, device: str):
    """Run up to ``--workers`` worker processes on the study (one per trial left) and show their joint progress."""
    import torch
    from tqdm.auto import tqdm

    from mobilenet_search.search.coordination import evaluated_count
    from mobilenet_search.search.study import open_study
    from mobilenet_search.ui.cli_workers import run_workers, workers_for

    study, _ = open_study(storage, study_name, None, load_only=True)
    left = args.trials - evaluated_count(study)
    count = workers_for(args.workers, left)
    if count < args.workers:
        print(f"{PROG}: note: starting {count} of --workers {args.workers}: the study has {max(left, 0)} trial"
              f"{'' if left == 1 else 's'} left", file=sys.stderr)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    commands = []
    for index in range(count):
        worker_device = f"cuda:{index % gpus}" if gpus > 1 else device  # one worker per GPU, round robin
        command = [sys.executable, "-m", "mobilenet_search.ui.cli", "worker", "--storage", storage, "--study",
                   study_name, "--trials", str(args.trials), "--device", worker_device, "--results-dir",
                   args.results_dir, "--heartbeat", str(args.heartbeat), "--quiet"]
        if args.timeout is not None:
            command += ["--timeout", str(args.timeout)]
        commands.append(command)
    env = dict(os.environ)
    if gpus == 0 and "OMP_NUM_THREADS" not in env and count:
        # Share the CPU cores: more compute threads than cores makes PyTorch's threads spin-wait on each other.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
    with tqdm(total=args.trials, desc=f"{study_name} ({count} workers)", unit="trial") as bar:
        def tick() -> None:
            bar.n = min(evaluated_count(study), args.trials)
            bar.refresh()

        codes = run_workers(commands, env, tick)
    failed = [code for code in codes if code != 0]
    if failed:
        raise UserError(f"{len(failed)} of {count} workers failed (exit codes {failed}); see their messages above")
    return study


def _worker(args: argparse.Namespace) -> int:
    import optuna

    from mobilenet_search.measure.latency import resolve_device
    from mobilenet_search.search.config import check_results_dir
    from mobilenet_search.search.coordination import evaluated_count
    from mobilenet_search.search.storage import check_storage_url, check_storage_writable
    from mobilenet_search.search.study import run_worker
    from mobilenet_search.ui.cli_workers import exit_with_parent

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    exit_with_parent()  # started by `search --workers N`: go when that process goes
    check_storage_url(args.storage)
    check_storage_writable(args.storage)  # a read-only study would fail at its first trial, after result files
    study = _run_with_progress(run_worker, args.study, args.storage, args.trials, quiet=args.quiet,
                               timeout=args.timeout, device=resolve_device(args.device),
                               results_dir=check_results_dir(args.results_dir), heartbeat=args.heartbeat,
                               supernet=Path(args.supernet) if args.supernet else None)
    if not args.quiet:
        print(f"worker done: study {args.study!r} holds {evaluated_count(study)} of {args.trials} trials")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mobilenet_search.results.report import format_gain, write_report
    from mobilenet_search.search.config import default_storage
    from mobilenet_search.search.fidelity import format_fidelity
    from mobilenet_search.search.study import open_study

    storage = args.storage or default_storage(Path(args.results_dir), args.study)
    study, _ = open_study(storage, args.study, None, load_only=True)
    report = write_report(study, Path(args.results_dir) / args.study)
    print(format_gain(report))
    if report.get("fidelity"):
        print("\n" + format_fidelity(report["fidelity"]))
    print(f"\nwritten to {Path(args.results_dir) / args.study / 'report.json'}")
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in --help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (what went wrong, and where help is)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked (it scans sys.path)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version(PROG)
        except PackageNotFoundError:  # run from a source tree that is not installed
            from mobilenet_search import __version__ as number
        print(f"{PROG} {number}")
        parser.exit(0)


def _unknown_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """One line for the first ``--option`` no (sub)command in ``argv`` knows, with the closest known one; else None.

    Checked before argparse, which would first complain about a missing required option (``--budjet 300M-madds``
    reads as no ``--budget``). Prefixes of known options are left to argparse, which accepts them.
    """
    known = {option for action in parser._actions for option in action.option_strings}
    current = parser
    for arg in argv:
        if arg == "--":
            break
        commands = next((a.choices for a in current._actions if isinstance(a, argparse._SubParsersAction)), {})
        if arg in commands:
            current = commands[arg]
            known |= {option for action in current._actions for option in action.option_strings}
            continue
        option = arg.split("=", 1)[0]
        if not option.startswith("--") or option == "--" or any(k.startswith(option) for k in known):
            continue
        near = difflib.get_close_matches(option, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        return f"{current.prog}: error: unrecognized option {option}{hint} (see {current.prog} --help)"
    return None


class _OneLineWarnings(logging.Handler):
    """The package's logged warnings (e.g. skipped unreadable images) as one line on stderr, like its errors."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{PROG}: warning: {' '.join(record.getMessage().split())}", file=sys.stderr)


def _fidelity(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from mobilenet_search.measure.latency import resolve_device
    from mobilenet_search.results.report import write_report
    from mobilenet_search.search.config import default_storage
    from mobilenet_search.search.fidelity import format_fidelity, run_fidelity
    from mobilenet_search.search.study import open_study

    device = resolve_device(args.device)  # every check before the bar
    storage = args.storage or default_storage(Path(args.results_dir), args.study)
    study, _ = open_study(storage, args.study, None, load_only=True)
    bars = []  # the bar appears with the first retraining, once run_fidelity has passed its checks

    def step(index: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="retraining", unit="trial"))
        bars[0].total, bars[0].n = total, index
        bars[0].refresh()

    try:
        summary = run_fidelity(study, top=args.top, epochs=args.epochs, device=device,
                               results_dir=Path(args.results_dir), on_trial=step)
    finally:
        for bar in bars:
            bar.n = bar.total
            bar.close()
    print(format_fidelity(summary))
    write_report(study, Path(args.results_dir) / args.study)
    print(f"\nstored in the study and in {Path(args.results_dir) / args.study / 'report.json'}")
    return 0


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every process that runs trials takes: time limit, device, heartbeat."""
    parser.add_argument("--timeout", type=number(0, MAX_SECONDS, open_low=True), default=None,
                        help="stop starting new trials after this many seconds")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (training and latency)")
    parser.add_argument("--heartbeat", type=number(0, MAX_HEARTBEAT, open_low=True), default=DEFAULT_HEARTBEAT,
                        help="seconds between a running trial's heartbeats; a trial silent for twice that is "
                             "marked failed and retried once (SQLite and PostgreSQL storages)")


def _add_study_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///RESULTS_DIR/STUDY.db)")
    parser.add_argument("--results-dir", default="results", help="where the study's folder is (default results)")


def _add_search_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``search`` command (the default); returns its parser, which ``supernet train`` copies options from."""
    search = sub.add_parser(
        "search", help="search the space under a budget (the default: `mobilenet-search --budget ...`)",
        description="Run (or resume) an Optuna study of candidate networks under a budget: each trial is "
                    "counted, rejected before training if over budget, timed, and trained briefly on real "
                    "images; the Pareto-optimal candidates (accuracy vs MAdds) are printed at the end.",
        epilog=f"Example: {PROG} --budget 300M-madds --trials 20 --epochs 4",
        formatter_class=_Formatter,
    )
    search.add_argument("--budget", required=True, help=BUDGET_HELP)
    search.add_argument("--space", default="mobilenetv2",
                        help="a search space: a name shipped with the tool (see `space --list`) or a .yaml path")
    search.add_argument("--trials", type=integer(0, MAX_TRIALS), default=DEFAULT_TRIALS,
                        help="stop once the study holds this many trained candidates (over-budget rejections, "
                             "which take milliseconds, do not count); counted across runs, so a resumed study "
                             "continues up to it")
    search.add_argument("--dataset", default="embedded",
                        help="embedded (elpv solar cells), elpv, mnist, fashion-mnist (Debian's dataset-fashion-mnist)"
                             ", fashion-mnist:DIR (its four idx files in DIR), cifar10:ROOT, imagefolder:ROOT, "
                             "or synthetic[:N] (generated, for tests)")
    search.add_argument("--dataset-limit", type=integer(*INT_BOUNDS['dataset_limit']), default=None,
                        help="use a seeded stratified subset of this many images (quick runs); for fashion-mnist, "
                             "of the 60,000 training images (validation and test keep 5,000 each)")
    search.add_argument("--epochs", type=integer(*INT_BOUNDS['epochs']), default=8,
                        help="proxy training epochs per candidate")
    search.add_argument("--batch-size", type=integer(*INT_BOUNDS['batch_size']), default=64,
                        help="proxy training batch size")
    search.add_argument("--proxy-size", type=integer(*INT_BOUNDS['proxy_size']), default=64,
                        help="proxy training image size for a 224 px candidate; scaled by resolution/224, "
                             "rounded to a multiple of 8, at least 32")
    search.add_argument("--lr", type=number(0, MAX_LR, open_low=True), default=2e-3,
                        help="AdamW learning rate (cosine schedule)")
    search.add_argument("--objective", default="multi",
                        help="multi: maximise accuracy and minimise MAdds; accuracy: accuracy alone under the "
                             "budget (with median pruning); zero-cost:NAME (synflow, jacob_cov, snip, grad_norm): "
                             "that score at initialisation instead of accuracy, no training (pre-screening)")
    search.add_argument("--sampler", choices=["tpe", "nsga2", "random", "grid"], default="tpe",
                        help="Optuna sampler (grid only for small spaces)")
    search.add_argument("--seed", type=integer(*INT_BOUNDS['seed']), default=0,
                        help="seed of the sampler, data split and training")
    search.add_argument("--storage", default=None,
                        help="Optuna storage URL: sqlite:///FILE, postgresql://USER:PASS@HOST/DB or journal:FILE "
                             "(default: sqlite:///RESULTS_DIR/STUDY.db)")
    search.add_argument("--study", default=None,
                        help="study name (default: SPACE-BUDGET[-DATASET]); an existing name resumes that study")
    search.add_argument("--latency-batch", type=integer(*INT_BOUNDS['latency_batch']), default=1,
                        help="batch size of the latency measurement")
    search.add_argument("--references", choices=["default", "all", "none"], default="default",
                        help="also train the paper's width x resolution networks that fit the budget, under the "
                             "same proxy: default the cheapest and the largest (2), all, or none")
    search.add_argument("--val-fraction", type=number(0, 1, open_low=True, open_high=True), default=0.2,
                        help="share of the images held out (stratified, seeded) to rank candidates on; a larger "
                             "split narrows every accuracy's interval")
    search.add_argument("--test-fraction", type=number(0, 1, open_high=True), default=0.2,
                        help="share held out for the test split, which never ranks a candidate and reports the "
                             "final figures (the front, the search gain); 0 reports on the validation split. "
                             "fashion-mnist splits its official test set in halves instead of both fractions")
    search.add_argument("--metric", default="accuracy",
                        help="accuracy, or balanced: rank candidates by balanced accuracy (mean per-class recall), "
                             "for imbalanced data where always answering the most frequent class scores high")
    search.add_argument("--noise-repeats", type=integer(*INT_BOUNDS['noise_repeats']), default=1,
                        help="retrain the cheapest reference net with this many other seeds, so the report can "
                             "tell seed noise from a real gain")
    search.add_argument("--strategy", default="scratch",
                        help="how candidates get their accuracy. scratch: each is trained briefly from its own "
                             "initial weights (17-81 s a candidate on 2 CPU cores; a few dozen per study). supernet: "
                             "one elastic network covering the space is trained once (sandwich rule), then "
                             "every candidate is scored in seconds with the weights it "
                             "inherits, and the Pareto candidates are retrained from scratch at the end (--confirm) "
                             "to compare with the paper's nets: pick it for hundreds of candidates")
    search.add_argument("--supernet-epochs", type=integer(*INT_BOUNDS['supernet_epochs']), default=24,
                        help="supernet training epochs (--strategy supernet)")
    search.add_argument("--confirm", type=integer(*INT_BOUNDS['confirm']), default=3,
                        help="Pareto candidates retrained from scratch when a supernet study ends (0: none)")
    search.add_argument("--supernet", default=None, metavar="PATH",
                        help="the supernet checkpoint to train into or score with (default: "
                             "RESULTS_DIR/supernets/TAG.pt, TAG a hash of space, data and settings, so studies with "
                             "the same settings share it); a checkpoint of other settings is refused")
    search.add_argument("--results-dir", default="results", help="where studies, CSV/JSON results and caches go")
    search.add_argument("--workers", type=integer(None, None), default=1,
                        help="worker processes on this machine, all on the same study (SQLite is fine for a few; "
                             "use PostgreSQL for more, or for several machines: see `worker`); at most one per CPU "
                             "core, and one per trial left (more are not started); Ctrl-C or SIGTERM stops them all, "
                             "and they stop when this process dies")
    _add_run_options(search)
    search.set_defaults(run=_search)
    return search


def _add_worker_command(sub: argparse._SubParsersAction) -> None:
    """The ``worker`` command: join an existing study."""
    worker = sub.add_parser(
        "worker", help="join an existing study (on PostgreSQL, from any machine) and run its trials",
        description="Run trials of an existing study with the settings stored in it (budget, space, data, "
                    "training). --trials is the study-wide target counted across all workers: every worker stops "
                    "once the study holds that many trials. A worker killed mid-trial leaves a trial that is "
                    "marked failed after the heartbeat grace period and retried once by another worker.",
        epilog=f"Example: {PROG} worker --storage postgresql://USER:PASS@HOST/DB --study nas300 --trials 200",
        formatter_class=_Formatter,
    )
    worker.add_argument("--storage", required=True, help="the study's Optuna storage URL")
    worker.add_argument("--study", required=True, help="the study's name")
    worker.add_argument("--trials", type=integer(0, MAX_TRIALS), default=DEFAULT_TRIALS,
                        help="study-wide target of trained candidates, counted across all workers")
    worker.add_argument("--results-dir", default="results", help="where this worker writes CSV/JSON results and caches")
    worker.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    worker.add_argument("--supernet", default=None, metavar="PATH",
                        help="a supernet study's trained checkpoint (a shared copy; default: the one the study "
                             "recorded)")
    _add_run_options(worker)
    worker.set_defaults(run=_worker)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    """The ``report`` command: a study's search gain."""
    report = sub.add_parser(
        "report", help="search gain of a study over the papers' hand-scaled networks",
        description="Compare a study's searched Pareto front with its reference networks (hypervolume, and for "
                    "each reference the best searched candidate at no more MAdds); writes report.json.",
        epilog=f"Example: {PROG} report --study mobilenetv2-300M-madds",
    )
    _add_study_options(report)
    report.set_defaults(run=_report)


def _add_fidelity_command(sub: argparse._SubParsersAction) -> None:
    """The ``fidelity`` command: how well the proxy ranks a study's candidates."""
    fidelity = sub.add_parser(
        "fidelity", help="retrain a study's candidates longer and measure how well the proxy ranks them",
        description="Retrain K trained candidates (the Pareto set, then others spread over MAdds) with a longer "
                    "schedule; report Kendall tau and Spearman rho between proxy accuracy (and MAdds, and each "
                    "zero-cost proxy) and the longer training's accuracy, overall and within MAdds bins. "
                    "Results are stored in the study as they come, so an interrupted run resumes.",
        epilog=f"Example: {PROG} fidelity --study mobilenetv2-300M-madds --top 12",
        formatter_class=_Formatter,
    )
    _add_study_options(fidelity)
    fidelity.add_argument("--top", type=integer(1, MAX_TOP), default=12, help="how many trials to retrain")
    fidelity.add_argument("--epochs", type=integer(*INT_BOUNDS['epochs']), default=None,
                          help="longer schedule (default: 5x the study's epochs)")
    fidelity.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    fidelity.set_defaults(run=_fidelity)


def _add_describe_command(sub: argparse._SubParsersAction) -> None:
    """The ``describe`` command: one architecture's stage table and totals."""
    describe = sub.add_parser(
        "describe", help="print an architecture's stage table, MAdds and parameters",
        description="Print an architecture's stage table (shapes, channels after rounding, MAdds and "
                    "parameters per layer group) and its totals.",
        epilog=f"Examples: {PROG} describe v2 --width 0.75 --resolution 160;  "
               f"{PROG} describe 'mnv1_w0.5_r160_...' (an architecture string or JSON)",
    )
    describe.add_argument("arch", help="v2 or v1 (the papers' networks), or an architecture string or JSON")
    describe.add_argument("--width", type=number(0, MAX_WIDTH, open_low=True), default=1.0,
                          help="width multiplier for v1/v2 (default 1.0)")
    describe.add_argument("--resolution", type=integer(1, MAX_RESOLUTION), default=224,
                          help="input resolution for v1/v2 (default 224)")
    describe.add_argument("--classes", type=integer(1, MAX_CLASSES), default=1000,
                          help="number of classes for v1/v2 (default 1000)")
    describe.set_defaults(run=_describe)


def _add_space_commands(sub: argparse._SubParsersAction) -> None:
    """The ``space`` and ``references`` commands: a search space, and the papers' networks."""
    space = sub.add_parser(
        "space", help="describe a search space: its choices, size, cheapest and most expensive member",
        epilog=f"Examples: {PROG} space mobilenetv2;  {PROG} space my_space.yaml;  {PROG} space --list",
    )
    space.add_argument("space", nargs="?", default=None,
                       help="a space shipped with the tool (see --list) or a .yaml path (default mobilenetv2)")
    space.add_argument("--list", action="store_true", help="list the search spaces shipped with the tool")
    space.set_defaults(run=_space)

    references = sub.add_parser("references", help="cost table of the papers' width x resolution networks")
    references.set_defaults(run=_references)


def build_parser() -> argparse.ArgumentParser:
    """The command line: every subcommand, its options and their bounds."""
    parser = _Parser(
        prog=PROG,
        description="Architecture search and scaling exploration for MobileNetV1/V2. "
                    f"`{PROG} --budget ...` is short for `{PROG} search --budget ...`.",
        epilog=f"Examples: {PROG} --budget 300M-madds;  {PROG} describe v2 --width 0.75 --resolution 160",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    search = _add_search_command(sub)
    _add_worker_command(sub)
    _add_report_command(sub)
    _add_fidelity_command(sub)
    _add_describe_command(sub)
    _add_space_commands(sub)
    add_library_commands(sub)
    add_dashboard_command(sub)
    add_latency_commands(sub)
    add_scaling_command(sub)
    document_bounds(parser)
    add_supernet_commands(sub, search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        argv.insert(0, "search")  # the bare form: mobilenet-search --budget 300M-madds
    # `--budget -5M-madds` would read as an option to argparse: keep the value with its flag.
    if "--budget" in argv[:-1] and argv[argv.index("--budget") + 1].startswith("-"):
        at = argv.index("--budget")
        argv[at:at + 2] = [f"--budget={argv[at + 1]}"]
    unknown = _unknown_option(parser, argv)
    if unknown:
        print(unknown, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    warnings_handler = _OneLineWarnings(logging.WARNING)
    logging.getLogger("mobilenet_search").addHandler(warnings_handler)
    try:
        return args.run(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("mobilenet_search").removeHandler(warnings_handler)


if __name__ == "__main__":
    sys.exit(main())

"""The ``latency-table`` subcommand (``build``, ``check``, ``show``): argument parsing and printing only.

``cli.py`` wires it in with ``add_latency_commands(sub)``; the work is done by
:mod:`mobilenet_search.search.latency_plan` and :mod:`mobilenet_search.measure.latency_table`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mobilenet_search.errors import UserError
from mobilenet_search.ui.cli_types import integer

PROG = "mobilenet-search"


def _build(args: argparse.Namespace) -> int:
    from mobilenet_search.search.config import check_results_dir
    from mobilenet_search.search.latency_plan import build_space_table, distinct_entries
    from mobilenet_search.search.space import load_space

    check_results_dir(args.results_dir)  # a file given as the folder is refused before any timing
    space = load_space(args.space)
    entries = distinct_entries(space, num_classes=args.classes, in_channels=args.in_channels)
    if not args.quiet:
        print(f"space {space.name}: {len(entries):,} distinct entries (stem, blocks, head, classifier)")
    start = time.perf_counter()
    table, path = build_space_table(
        space, device=args.device, batch=args.batch, threads=args.threads, results_dir=args.results_dir,
        statistic=args.statistic, clock=args.clock, warmup=args.warmup, repeats=args.repeats, passes=args.passes,
        rounds=args.rounds, fit_per_resolution=args.fit_samples, num_classes=args.classes,
        in_channels=args.in_channels, progress=not args.quiet,
        entries=entries)
    print(f"latency table for {table.device}, batch {table.batch}: {len(table.times):,} entries "
          f"({table.passes} passes of {table.repeats} runs, {table.statistic}, {table.clock} clock), overhead fitted "
          f"on {len(table.fit)} networks, built in {time.perf_counter() - start:.0f} s")
    print(f"saved {path}")
    print(f"next: {PROG} latency-table check --space {space.name} --samples 100")
    return 0


def _load(args: argparse.Namespace):
    from mobilenet_search.measure.latency_table import LatencyTable, device_identity, load_table_for, table_path

    identity = device_identity(args.device, args.threads, args.batch)
    if args.table is not None:
        table = LatencyTable.load(args.table)
        table.require_device(identity, where=f"latency table {args.table!r}")
        return table, Path(args.table), identity
    table = load_table_for(args.device, args.batch, args.results_dir, threads=args.threads)
    path = table_path(args.results_dir, identity.key)
    if table is None:
        raise UserError(f"no latency table for {identity.name}, batch {identity.batch} at {str(path)!r}: build it "
                        f"with `{PROG} latency-table build --device {args.device} --batch {args.batch}"
                        + (f" --threads {args.threads}" if identity.threads else "") + "`")
    return table, path, identity


def _check(args: argparse.Namespace) -> int:
    from mobilenet_search.measure.latency_table import format_check
    from mobilenet_search.search.latency_plan import check_space_table
    from mobilenet_search.search.space import load_space

    table, path, identity = _load(args)
    space = load_space(args.space)
    figures = check_space_table(space, table, device=identity.device, samples=args.samples, rounds=args.rounds,
                                seed=args.seed, progress=not args.quiet)
    table.check = figures
    table.save(path)
    print(f"{space.name} on {table.device}, batch {table.batch}: {format_check(figures)}")
    print(f"stored with the table: {path}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from mobilenet_search.arch.spec import parse_arch
    from mobilenet_search.measure.latency_table import format_check, overhead_ms, predict_latency_ms

    table, path, _ = _load(args)
    print(f"{path}\n  device {table.device}, batch {table.batch}, {table.dtype}")
    print(f"  {len(table.times):,} entries, each the {table.statistic} of {table.passes} passes of "
          f"{table.warmup} warm-up and {table.repeats} timed runs ({table.clock} clock)")
    if table.overhead:
        terms = ", ".join(f"{name} {value:+.2f}" for name, value in table.overhead.items())
        print(f"  overhead (ms), fitted on {len(table.fit)} networks: {terms}")
    if table.check:
        print(f"  last check ({table.check.get('space')}, {table.check.get('when')}): {format_check(table.check)}")
    for text in args.arch:
        spec = parse_arch(text)
        print(f"\n{spec.to_string()}\n  predicted {predict_latency_ms(spec, table):.2f} ms "
              f"(overhead {overhead_ms(spec, table):+.2f} ms)")
    return 0


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="where to time: auto (a CUDA GPU when there is one, else the CPU; the default), cpu, "
                             "cuda or cuda:N")
    parser.add_argument("--batch", type=integer(1, 1024), default=1,
                        help="batch size of every timed forward pass, e.g. 1 (the default) or 32")
    parser.add_argument("--threads", type=integer(1, 1024), default=1,
                        help="CPU intra-op threads while timing (1: single-core latency, as the MobileNet papers "
                             "report; the default); part of the table's identity")
    parser.add_argument("--results-dir", default="results",
                        help="results folder (default results); tables live in RESULTS_DIR/latency/DEVICE-KEY.json")


def add_latency_commands(subparsers: Any) -> None:
    """Add ``latency-table`` (``build``, ``check``, ``show``) to the command's subparsers."""
    parser = subparsers.add_parser(
        "latency-table", help="a latency lookup table of this device: predict latency without timing networks",
        description="Time every distinct layer group of a search space once on this device (stem, each "
                    "inverted-residual block by resolution, channels, expansion and stride, the last 1x1 conv, "
                    "pooling and classifier), then predict a network's latency as the sum of its entries plus a "
                    "fitted per-network overhead. One table per device (CPU model and threads, or GPU, driver "
                    "and dtype) and batch size, reused by every study there.",
        epilog=f"Examples: {PROG} latency-table build --space mobilenetv2 --device cpu --threads 1;  "
               f"{PROG} latency-table check --device cpu --samples 100;  {PROG} latency-table show --device cpu "
               "--arch mnv2_w1.0_r224_...",
    )
    commands = parser.add_subparsers(dest="latency_command", metavar="ACTION", required=True)

    build = commands.add_parser(
        "build", help="measure the table of a space on this device (resumable)",
        description="Time each distinct entry of the space (several passes in shuffled order), then time a few "
                    "random members per resolution to fit the per-network overhead. The file is saved every few "
                    "entries: after Ctrl-C, run the same command again to go on. Building for a second space adds "
                    "its missing entries to the same table.",
        epilog=f"Examples: {PROG} latency-table build;  {PROG} latency-table build --space mobilenetv1 --device cpu "
               f"--threads 4;  {PROG} latency-table build --device cuda:0 --batch 32 --passes 1",
    )
    build.add_argument("--space", default="mobilenetv2",
                       help="a search space name (mobilenetv2, the default; mobilenetv1, tiny, ...) or a path to a "
                            ".yaml file")
    _add_device_options(build)
    build.add_argument("--repeats", type=integer(1, 10_000), default=10,
                       help="timed runs per entry and pass (new tables only; default 10), e.g. 30 on a noisy machine")
    build.add_argument("--warmup", type=integer(0, 1000), default=2,
                       help="untimed runs before the timed ones (new tables only; default 2)")
    build.add_argument("--passes", type=integer(1, 100), default=3,
                       help="times each entry is measured, at different moments (new tables only; default 3); "
                            "the table keeps their --statistic")
    build.add_argument("--statistic", choices=["min", "median"], default="min",
                       help="min: the fastest run of all passes, the least moved by other load on a shared machine; "
                            "median: the median of the passes' medians (new tables only; default min)")
    build.add_argument("--clock", choices=["auto", "wall", "thread"], default="auto",
                       help="wall: elapsed time; thread: CPU time of the timing thread, which leaves out the time "
                            "other processes hold the core (CPU, 1 thread only); auto: thread on 1 CPU thread, else "
                            "wall (new tables only; default auto)")
    build.add_argument("--fit-samples", type=integer(1, 1000), default=4,
                       help="random members per input resolution timed whole to fit the overhead (default 4)")
    build.add_argument("--rounds", type=integer(1, 100), default=3,
                       help="interleaved timings of each whole network, combined by the table's statistic (default 3)")
    build.add_argument("--classes", type=integer(1, 100_000), default=1000,
                       help="classes of the classifier entries: the dataset's (default 1000, ImageNet); run build "
                            "again with another count to add its entries")
    build.add_argument("--in-channels", type=integer(1, 64), default=3,
                       help="input channels of the stem entries: 1 for grey data such as the embedded dataset "
                            "(default 3)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(run=_build)

    check = commands.add_parser(
        "check",
        help="time random members for real and report how well the table predicts them",
        description="Time N random members of the space (not those the overhead was fitted on), each in several "
                    "interleaved rounds as the table's entries were timed, and print the share predicted within "
                    "±10 % and ±5 %, the mean absolute percentage error and Kendall's tau of predicted vs "
                    "measured latency, beside MAdds' tau as the baseline. The figures are stored with the table.",
        epilog=f"Examples: {PROG} latency-table check --samples 100;  {PROG} latency-table check --device cpu "
               "--threads 1 --space mobilenetv1 --samples 30",
    )
    check.add_argument("--space", default="mobilenetv2", help="the space whose members to draw (default mobilenetv2)")
    check.add_argument("--samples", type=integer(2, 100_000), default=100,
                       help="how many random members to time (default 100)")
    check.add_argument("--rounds", type=integer(1, 100), default=3,
                       help="interleaved timings of each network (default 3)")
    check.add_argument("--seed", type=integer(0, 2**32 - 1), default=1000,
                       help="seed of the random members (default 1000)")
    check.add_argument("--table", default=None, metavar="PATH",
                       help="a table file to check instead of this device's under --results-dir (it must have been "
                            "measured on this device)")
    _add_device_options(check)
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=_check)

    show = commands.add_parser(
        "show", help="this device's table: settings, overhead, last check; predict --arch",
        description="Print the table's device, timing settings, fitted overhead and last check figures; with "
                    "--arch, the predicted latency of architectures (their one-line string or JSON).",
        epilog=f"Examples: {PROG} latency-table show --device cpu;  {PROG} latency-table show --device cpu --arch "
               f"\"$({PROG} describe v2 --width 0.75 --resolution 160 | head -1)\"",
    )
    show.add_argument("--arch", action="append", default=[], metavar="ARCH",
                      help="an architecture string or JSON to predict (repeatable)")
    show.add_argument("--table", default=None, metavar="PATH", help="a table file instead of this device's")
    _add_device_options(show)
    show.set_defaults(run=_show)

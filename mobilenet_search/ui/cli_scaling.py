"""The ``mobilenet-search scaling`` subcommand: scale a base net four ways, fit each, recommend a net for a budget.

``cli.py`` wires it in with ``add_scaling_command(sub)``; the work is
:mod:`mobilenet_search.search.scaling` (the experiment, the analysis, the recommendation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mobilenet_search.errors import UserError
from mobilenet_search.results.records import STRATEGIES, Strategy, StudySettings

PROG = "mobilenet-search"
AUTO = "auto"  # scaling --strategy auto: resolved to scratch or supernet before the study opens (resolve_strategy)


def _span(interval: list[float] | None, fmt: str = "{:.3f}") -> str:
    return "" if interval is None else f" [{fmt.format(interval[0])}, {fmt.format(interval[1])}]"


def _m(madds: float) -> str:
    from mobilenet_search.arch.cost import format_count

    return format_count(madds)


def format_analysis(analysis: dict[str, Any]) -> str:
    """The fit per direction, the compound coefficients and the plateau, as text."""
    noise = analysis["noise"]
    seed = "not measured (--seeds 1)" if noise["seed_sd"] is None else f"{noise['seed_sd']:.4f}"
    lines = [f"scaling of {analysis['base']['arch']} ({_m(analysis['base']['madds'])} MAdds) up to "
             f"{analysis['budget']}, {analysis['seeds']} seed(s); validation accuracy, 95 % bootstrap intervals "
             f"over images and seeds",
             f"  trivial classifier {analysis['trivial']:.3f}; noise floor {noise['floor']:.4f} (seed sd {seed}, "
             f"split se {noise['validation_se']:.4f} on {noise['val_size']} images)"]
    for direction, entry in analysis["directions"].items():
        fit = entry["fit"]
        if fit is None:
            lines.append(f"  {direction:10s} {entry['reason']}")
            continue
        points = ", ".join(f"{p['accuracy']:.3f}@{_m(p['madds'])}" for p in fit["points"])
        low, high = fit["knee_interval"] or (fit["knee"], fit["knee"])
        knee = f"knee {_m(fit['knee'])} [{_m(low)}, {_m(high)}]"
        if not fit["knee_measured"]:
            knee += " (beyond the largest measured net: not reached)"
        lines.append(f"  {direction:10s} plateau {fit['plateau']:.3f}{_span(fit['plateau_interval'])}; gain per "
                     f"doubling {fit['gain_first_doubling']:+.3f}{_span(fit['gain_first_doubling_interval'])} at "
                     f"the base, {fit['gain_per_doubling']:+.3f} on average; {knee}")
        lines.append(f"  {'':10s} measured: {points}")
    coefficients = analysis["coefficients"]
    if coefficients["fitted"] is not None:
        alpha, beta, gamma = coefficients["fitted"]
        fit = coefficients["fit"] or {}
        tied = f"; {len(fit['tied'])} of {fit['tried']} tried are within the noise floor of it" if fit else ""
        lines.append(f"  compound coefficients on this data: alpha {alpha:.2f}, beta {beta:.2f}, gamma {gamma:.2f} "
                     f"(EfficientNet on ImageNet: 1.20 / 1.10 / 1.15){tied}")
    if analysis.get("strategy") == Strategy.SUPERNET.value:
        lines.append(_confirmations(analysis.get("confirmations", [])))
    plateau = analysis["plateau"]
    if plateau is not None:
        where = "" if plateau["knee_measured"] else " (extrapolated beyond the measured nets)"
        lines.append(f"  plateau {plateau['plateau']:.3f} ({', '.join(plateau['directions'])}); its cheapest knee: "
                     f"{plateau['cheapest_direction']} at {_m(plateau['knee'])} MAdds{where}")
    return "\n".join(lines)


def _confirmations(confirmed: list[dict[str, Any]]) -> str:
    """One line: the supernet-scored points retrained from scratch, inherited against scratch accuracy."""
    if not confirmed:
        return "  scored with the supernet's inherited weights; none confirmed from scratch yet"
    pairs = ", ".join(f"{c['inherited']:.3f} -> {c['scratch']:.3f}@{_m(c['madds'])}" for c in confirmed)
    return f"  scored with the supernet's inherited weights; confirmed from scratch (inherited -> scratch): {pairs}"


def format_recommendation(answer: dict[str, Any]) -> str:
    """The recommended net for a budget, and the plateau sentence when the budget lies past the knee."""
    m = answer["multipliers"]
    lines = [f"recommended for {_m(answer['at_madds'])} MAdds: scale by {answer['direction']} -> "
             f"{_m(answer['madds'])} MAdds, predicted accuracy {answer['accuracy']:.3f}{_span(answer['interval'])}",
             f"  multipliers: width x{m['width']:.3f}, resolution x{m['resolution']:.3f}, depth x{m['depth']:.3f}",
             f"  {answer['arch']}"]
    if answer["reach"] is not None:
        lines.append(f"  the space reaches no further than {_m(answer['reach'])} MAdds along the fitted directions: "
                     "this is the best net of the measured range")
    if answer["plateau"] is not None:
        cheapest = answer["plateau"]["cheapest"]
        which = ("the cheapest net at the plateau is" if cheapest["past_knee"] else
                 "the space has no net between the knee and this budget; the nearest below it is")
        lines.append(f"beyond {_m(answer['plateau']['knee'])} MAdds nothing measurable is gained; {which} "
                     f"{cheapest['arch']} ({cheapest['direction']}, {_m(cheapest['madds'])} MAdds, "
                     f"predicted {cheapest['accuracy']:.3f}{_span(cheapest['interval'])})")
    return "\n".join(lines)


def _scaling(args: argparse.Namespace) -> int:
    import optuna

    from mobilenet_search.files import atomic_write_text
    from mobilenet_search.results.records import StudySettings
    from mobilenet_search.search.config import check_results_dir, check_study_name, default_storage
    from mobilenet_search.search.scaling import analyse, madds_limit, nominal_madds, recommend_at
    from mobilenet_search.search.space import load_space
    from mobilenet_search.search.study import open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.seeds < 1:
        raise UserError(f"invalid --seeds {args.seeds}: expected an integer >= 1")
    if args.resamples < 10:
        raise UserError(f"invalid --resamples {args.resamples}: expected an integer >= 10")
    at = madds_limit(args.at, "--at") if args.at else None
    if at is not None and args.budget is not None and nominal_madds(at) > nominal_madds(madds_limit(args.budget,
                                                                                                 "--budget")):
        raise UserError(f"invalid --at {args.at}: above --budget {args.budget}, the largest net the experiment "
                        "trains; the fits do not extrapolate")
    if args.budget is None and args.study is None:
        raise UserError("scaling needs --budget (run the experiment) or --study NAME (analyse a scaling study)")
    results_dir = Path(args.results_dir)
    if args.budget is not None:
        study, storage = _experiment(args)
    else:
        storage = args.storage or default_storage(results_dir, check_study_name(args.study))
        study, _ = open_study(storage, args.study, None, load_only=True)
    settings = StudySettings.from_study(study)  # open_study and run_search refuse a study without them
    analysis = analyse(study, resamples=args.resamples)
    answer = None
    if at is not None:
        answer = recommend_at(analysis, args.at, load_space(settings.space))
    folder = check_results_dir(results_dir) / study.study_name
    atomic_write_text(folder / "scaling.json", json.dumps({**analysis, "recommendation": answer}, indent=2))
    print(format_analysis(analysis))
    if answer is not None:
        print("\n" + format_recommendation(answer))
    print(f"\nwritten to {folder / 'scaling.json'}", file=sys.stderr)
    return 0


def _experiment(args: argparse.Namespace):
    """Create or resume the scaling study named by the options and train its grid (two phases)."""
    from mobilenet_search.measure.latency import resolve_device
    from mobilenet_search.search.config import (
        SearchConfig,
        check_results_dir,
        check_study_name,
        default_storage,
        default_study_name,
    )
    from mobilenet_search.search.scaling import (
        Grid,
        madds_limit,
        resolve_base,
        resolve_strategy,
        run_scaling,
        scaling_config,
    )
    from mobilenet_search.search.space import load_space
    from mobilenet_search.search.storage import check_storage_writable, redact
    from mobilenet_search.search.study import make_data, run_search, stored_attrs
    from mobilenet_search.ui.cli import _run_with_progress, _supernet_progress  # the search's progress bars

    budget = madds_limit(args.budget, "--budget")
    results_dir = check_results_dir(Path(args.results_dir))

    def where(config: SearchConfig) -> tuple[str, str]:
        """The study's name and storage: the default name says the strategy (``-supernet``)."""
        name = default_study_name(config)
        study_name = check_study_name(args.study or (name if "scaling" in name else f"scaling-{name}"))
        return study_name, args.storage or default_storage(results_dir, study_name)

    settings = dict(budget=args.budget, space=args.space, dataset=args.dataset, dataset_limit=args.dataset_limit,
                    epochs=args.epochs, batch_size=args.batch_size, proxy_size=args.proxy_size, lr=args.lr,
                    seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                    **strategy_settings(args))
    strategy = settings.pop("strategy")
    # Bad settings are refused before the space is read; auto's are checked as scratch's.
    config = scaling_config(args.seeds, strategy=Strategy.SCRATCH.value if strategy == AUTO else strategy, **settings)
    space = load_space(config.space)
    chosen = None
    if strategy == AUTO:

        def stored(config: SearchConfig) -> dict[str, Any] | None:
            study_name, storage = where(config)
            return stored_attrs(storage, study_name)

        config, chosen = resolve_strategy(args.seeds, settings, space, results_dir=results_dir, stored=stored)
    # Membership does not depend on the classes: a base outside the space is refused before any data is read.
    resolve_base(args.base, space, num_classes=1000, in_channels=3)
    device = resolve_device(args.device)
    study_name, storage = where(config)
    data = make_data(config, results_dir)
    base = resolve_base(args.base, space, num_classes=data.num_classes, in_channels=data.in_channels)
    grid = Grid(base, space, budget, args.seeds)
    check_storage_writable(storage)
    header = (f"scaling study {study_name!r} in {redact(storage)}: base {base.to_string()}, budget {config.budget}, "
              f"{args.seeds} seed(s), dataset {config.dataset}, {config.epochs} epochs at proxy size "
              f"{config.proxy_size}, device {device}")
    if chosen is not None:  # printed with the header, once every check has passed: bad input stays one line
        header += "\n" + chosen

    printed: list[bool] = []

    def run(config: SearchConfig, *, storage: str, study_name: str, trials: int, on_start=None, on_create=None,
            **options: Any):
        """One phase of :func:`run_scaling` under the search's progress bar: the plan's check, then the bar."""
        def search(**kw: Any):
            show = kw.pop("on_start")

            def started(study) -> None:
                if on_start is not None:
                    on_start(study)
                show(study)

            return run_search(config, on_create=on_create, on_start=started, space=space, data=data, **kw)

        shown = header if not printed else None  # once, not once per phase
        printed.append(True)
        return _run_with_progress(search, study_name, storage, trials, quiet=args.quiet, header=shown, **options)

    supernet = config.supernet
    with _supernet_progress(config.supernet_epochs, enabled=supernet and not args.quiet) as on_step:
        study = run_scaling(config, grid, storage=storage, study_name=study_name, run=run, timeout=args.timeout,
                            device=device, results_dir=results_dir, heartbeat=args.heartbeat,
                            **({"on_supernet_step": on_step} if supernet else {}))
    return study, storage


def add_strategy_arguments(parser: argparse.ArgumentParser, *, auto: bool = False) -> None:
    """``--strategy``, ``--supernet-epochs`` and ``--confirm`` of a scaling study, as ``scaling`` takes them (and
    ``benchmarks/bench_scaling.py``); :func:`strategy_settings` reads them back.

    ``auto`` (``scaling``'s): ``--strategy auto`` is the default, and ``--supernet-epochs`` defaults to None (not
    given), resolved by :func:`~mobilenet_search.search.scaling.resolve_strategy`. Without it (the benchmark's)
    the strategy is explicit, ``scratch`` by default, and ``--supernet-epochs`` defaults to the study settings'."""
    from mobilenet_search.bounds import INT_BOUNDS
    from mobilenet_search.ui.cli_types import integer

    epochs = StudySettings.supernet_epochs
    explicit = ("scratch: each network trained under the proxy (--seeds times). supernet: one elastic network over "
                "--space trained once (--supernet-epochs), or one finished before reused, every point scored in "
                "seconds with the weights it inherits, and after each phase up to --confirm of the Pareto points "
                "retrained from scratch")
    if auto:
        parser.add_argument("--strategy", default=AUTO, choices=[AUTO, *STRATEGIES],
                            help="how the points get their accuracy. auto (the default): supernet where a finished "
                                 "supernet checkpoint of this space, data and proxy lies under RESULTS_DIR/supernets/ "
                                 "(and --seeds is 1), else scratch; a study that exists keeps the strategy it was "
                                 "made with. " + explicit)
        parser.add_argument("--supernet-epochs", type=integer(*INT_BOUNDS["supernet_epochs"]), default=None,
                            help=f"supernet training epochs (--strategy supernet; default {epochs}; with auto, "
                                 "those of the finished checkpoint with the most epochs)")
    else:
        parser.add_argument("--strategy", default=Strategy.SCRATCH.value, choices=STRATEGIES,
                            help="how the points get their accuracy. " + explicit)
        parser.add_argument("--supernet-epochs", type=integer(*INT_BOUNDS["supernet_epochs"]), default=epochs,
                            help="supernet training epochs (--strategy supernet)")
    parser.add_argument("--confirm", type=integer(*INT_BOUNDS["confirm"]), default=3,
                        help="points retrained from scratch after each phase (--strategy supernet; 0: none)")


def strategy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The study settings :func:`add_strategy_arguments`' options give (keywords of ``scaling_config``):
    ``supernet_epochs`` only where given (``scaling`` without ``--supernet-epochs``: the settings' default, or
    the epochs of the checkpoint ``--strategy auto`` found)."""
    settings = {"strategy": args.strategy, "confirm": args.confirm}
    if args.supernet_epochs is not None:
        settings["supernet_epochs"] = args.supernet_epochs
    return settings


def add_scaling_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scaling --budget B [--base NAME|ARCH] ... | --study NAME [--at M]`` to the subparsers."""
    from mobilenet_search.search.storage import DEFAULT_HEARTBEAT

    parser = subparsers.add_parser(
        "scaling", help="scale a base net by width, resolution, depth and compound on your data; fit where it stops",
        description="EfficientNet's Table 3 on your data: the base network scaled by width only, resolution only, "
                    "depth only (every stage's n x d, rounded up) and compound, to MAdds targets x2, x4, x8, ... up "
                    "to the budget, each network an ordinary fixed trial of an ordinary study (resumable; workers, "
                    "dashboard and export work on it). Then per direction a saturating fit acc = a - b MAdds^-c with "
                    "bootstrap intervals: the gain per doubling, the plateau and the knee. --study NAME alone "
                    "analyses an existing scaling study; --at M recommends the net for a budget of M MAdds.",
        epilog=f"Examples: {PROG} scaling --budget 300M-madds --dataset fashion-mnist --dataset-limit 6000;  "
               f"{PROG} scaling --study mobilenetv2_scaling-300M-madds-fashion-mnist --at 150M-madds",
    )
    parser.add_argument("--budget", default=None,
                        help="the largest MAdds to scale to, e.g. 300M-madds (optionally ,4M-params); without it, "
                             "--study is analysed as it stands")
    parser.add_argument("--base", default=None,
                        help="the base network: a paper network's name (mobilenet_v2_0.35_96) or an architecture "
                             "string or JSON, a member of --space (default: the cheapest paper network the space "
                             "holds)")
    parser.add_argument("--at", default=None, metavar="MADDS",
                        help="recommend the scaled net for this budget, e.g. 150M-madds (up to the study's --budget)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every network with this many seeds (2 or more measure the seed noise)")
    parser.add_argument("--space", default="mobilenetv2_scaling",
                        help="the space the scaled networks are members of (a shipped name or a .yaml path); the "
                             "default holds MobileNetV2 scaled by width 0.35-2.0, resolution 96-320 and depth x1-4")
    add_strategy_arguments(parser, auto=True)
    parser.add_argument("--dataset", default="embedded", help="as for search (embedded, fashion-mnist, ...)")
    parser.add_argument("--dataset-limit", type=int, default=None, help="as for search")
    parser.add_argument("--epochs", type=int, default=8, help="proxy training epochs per network")
    parser.add_argument("--batch-size", type=int, default=64, help="proxy training batch size")
    parser.add_argument("--proxy-size", type=int, default=64, help="proxy training image size (as for search)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split and the first training run")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="as for search")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="as for search")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap replicates of each fit")
    parser.add_argument("--study", default=None,
                        help="study name (default SPACE-BUDGET[-DATASET], prefixed scaling- unless the space's name "
                             "says it); an existing one resumes")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///RESULTS_DIR/STUDY.db)")
    parser.add_argument("--results-dir", default="results", help="where studies and results go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting new trials after this many seconds")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help="as for search")
    parser.set_defaults(run=_scaling)


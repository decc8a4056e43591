"""The ``export`` and ``library`` subcommands: argument parsing and printing only.

``add_library_commands(subparsers)`` adds them to the ``mobilenet-search`` parser; the
work is done by :mod:`mobilenet_search.search.export` and :mod:`mobilenet_search.results.library`.
"""

from __future__ import annotations

import argparse
from typing import Any

from mobilenet_search.arch.cost import count_madds, count_params, format_count, format_stage_table
from mobilenet_search.errors import UserError
from mobilenet_search.results import library
from mobilenet_search.ui.cli_types import integer

PROG = "mobilenet-search"
LIBRARY_HELP = (f"the model library directory (default: ${library.ENV_VAR} if set, else model_library/ in the "
                "current directory)")


def _export(args: argparse.Namespace) -> int:
    import optuna

    from mobilenet_search.search.config import default_storage
    from mobilenet_search.search.export import ONNX_OPSET, export

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = args.storage or default_storage(args.results_dir, args.study)
    if args.scaled is not None:
        return _export_scaled(args, storage)
    done = export(args.study, storage=storage, name=args.name, trial=args.trial, best=args.best, under=args.under,
                  force=args.force, library=args.library, onnx=args.onnx, weights=args.weights,
                  results_dir=args.results_dir, supernet=args.supernet)
    entry = library.get(done.name, library=args.library)
    print(f"picked {done.choice.reason}")
    print(f"saved library entry {done.name!r}: {done.path}")
    print(f"  {done.spec.to_string()}")
    print(f"  {_costs(done.spec, entry.metadata.get('metrics', {}))}")
    print(f"  {_weights(entry)}")
    if done.onnx is not None:
        what = "freshly initialised weights" if done.weights is None else f"{done.weights.source} weights"
        print(f"onnx: {done.onnx} (opset {ONNX_OPSET}, input batch x {done.spec.in_channels} x {done.spec.resolution} "
              f"x {done.spec.resolution}, {what})")
    print(f"build it: {_build_hint(entry, args.library)}")
    return 0


def _export_scaled(args: argparse.Namespace, storage: str) -> int:
    """``export --scaled M``: the scaling study's recommended net for budget M into the library."""
    from mobilenet_search.search.export import ONNX_OPSET, export_scaled
    from mobilenet_search.ui.cli_scaling import format_recommendation

    if args.under is not None:
        raise UserError("--under applies to --best only; --scaled names its budget itself")
    done = export_scaled(args.study, storage=storage, name=args.name, at=args.scaled, force=args.force,
                         library=args.library, onnx=args.onnx, weights=args.weights, results_dir=args.results_dir,
                         supernet=args.supernet)
    entry = library.get(done.name, library=args.library)
    print(format_recommendation(done.recommendation))
    print(f"saved library entry {done.name!r}: {done.path}")
    print(f"  {_costs(done.spec, entry.metadata.get('metrics', {}))}")
    for line in _scaled(entry):
        print(f"  {line}")
    if done.onnx is not None:
        what = "freshly initialised weights" if done.weights is None else f"{done.weights.source} weights"
        print(f"onnx: {done.onnx} (opset {ONNX_OPSET}, {what})")
    print(f"build it: {_build_hint(entry, args.library)}")
    return 0


def _scaled(entry: library.Entry) -> list[str]:
    """What an entry exported with ``--scaled`` says of itself: the recommendation, what measured it, its weights
    (no lines for other entries)."""
    scaled = entry.metadata.get("scaled")
    if not scaled:
        return []
    interval = scaled.get("interval")
    span = "" if interval is None else f" [{interval[0]:.4f}, {interval[1]:.4f}]"
    m = scaled["multipliers"]
    lines = [f"scaled for {scaled['budget']}: {scaled['direction']} (width x{m['width']:.3f}, resolution "
             f"x{m['resolution']:.3f}, depth x{m['depth']:.3f}), predicted accuracy {scaled['predicted_accuracy']:.4f}"
             f"{span} ({round(100 * scaled.get('confidence', 0.95))} % bootstrap interval of the fit; proxy training)"]
    measured = scaled.get("measured")
    if measured:
        runs = ", ".join(f"{a:.4f}" for a in measured["accuracies"])
        lines.append(f"measured in the study: trial(s) {', '.join(map(str, measured['trials']))}, accuracy {runs}")
    else:
        lines.append("measured in the study: no (the accuracy is the fit's prediction)")
    lines.append(f"weights {scaled['weights']}")
    return lines


def _build_hint(entry: library.Entry, library_arg: str | None) -> str:
    """The Python line that builds ``entry`` (with its weights when it has some); it names the library folder
    when --library chose one."""
    where = "" if library_arg is None else f", library={str(library_arg)!r}"
    if entry.has_weights:
        return f"from mobilenet_search import library; model = library.build({entry.name!r}, weights='trained'{where})"
    return f"from mobilenet_search import library; model = library.build({entry.name!r}, num_classes=...{where})"


def _weights(entry: library.Entry) -> str:
    """One line: whether the entry has trained weights, where they come from and what they scored."""
    if not entry.has_weights:
        return "weights: none (architecture only; library.build gives freshly initialised weights)"
    if not entry.weights_path.is_file():
        return (f"weights: missing: the entry records {entry.weights_path}, which does not exist (moved or deleted? "
                "restore it, or export the entry again)")
    about = entry.metadata.get("weights", {})
    source = entry.metadata.get("weights_source", "trained")
    how = {"confirmed": f"retrained from scratch by confirmation trial {about.get('trial')}",
           "inherited": f"inherited from the study's supernet by trial {about.get('trial')}, BatchNorm recalibrated",
           "trained": f"trained by trial {about.get('trial')}"}.get(source, source)
    scored = "" if about.get("accuracy") is None else \
        f", accuracy {about['accuracy']:.4f} at {about.get('input', {}).get('resolution', '?')} px"
    return f"weights: {source} ({how}{scored}) in {entry.weights_path}"


def _costs(spec, metrics: dict[str, Any]) -> str:
    """One line: MAdds, params, and what the trial measured (latency, proxy accuracy) when it did."""
    parts = [f"{format_count(count_madds(spec))} MAdds", f"{format_count(count_params(spec))} params"]
    if metrics.get("latency_ms") is not None:
        parts.append(f"latency {metrics['latency_ms']:.2f} ms on {metrics.get('latency_device', '?')} "
                     f"(batch {metrics.get('latency_batch', '?')})")
    if metrics.get("accuracy") is not None:
        parts.append(f"proxy accuracy {metrics['accuracy']:.4f} at {metrics.get('proxy_resolution', '?')} px, "
                     f"{metrics.get('epochs', '?')} epochs")
    return ", ".join(parts)


def _list(args: argparse.Namespace) -> int:
    names = library.list(library=args.library)
    print(f"{'name':28s} {'MAdds':>8s} {'params':>8s} {'accuracy':>8s}  source")
    for name in names:
        try:
            entry = library.get(name, library=args.library)
        except UserError as exc:  # one broken file must not hide the others
            print(f"{name:28s} {'':>8s} {'':>8s} {'':>8s}  unreadable: {exc}")
            continue
        accuracy = entry.metadata.get("metrics", {}).get("accuracy")
        print(f"{name:28s} {format_count(count_madds(entry.spec)):>8s} {format_count(count_params(entry.spec)):>8s} "
              f"{'' if accuracy is None else f'{accuracy:.4f}':>8s}  {_source(entry)}")
    print(f"\n{len(names)} entries ({len(library.builtin_names())} built-in); user entries in "
          f"{library.library_dir(args.library)}")
    return 0


def _source(entry: library.Entry) -> str:
    source = entry.metadata.get("source", {})
    if entry.builtin:
        return f"built-in: {source.get('builtin', '')}"
    scaled = entry.metadata.get("scaled")
    if scaled and "study" in source:
        which = "not trained in it" if source.get("trial") is None else f"trial {source['trial']}"
        return f"study {source['study']!r} scaled for {scaled['budget']}, {which} ({source.get('storage')})"
    if "study" in source:
        return f"study {source['study']!r} trial {source.get('trial')} ({source.get('storage')})"
    return "saved by hand"


def _show(args: argparse.Namespace) -> int:
    entry = library.get(args.name, library=args.library)
    spec = entry.spec
    print(f"{entry.name}: {_source(entry)}" + ("" if entry.path is None else f"\n  file {entry.path}"))
    print(spec.to_string())
    print(f"{spec.family}  width {spec.width_mult:g}  resolution {spec.resolution} (rho = {spec.resolution_mult:.3f})"
          f"  {spec.num_classes} classes\n")
    print(format_stage_table(spec))
    metrics = entry.metadata.get("metrics", {})
    print(f"\n{_costs(spec, metrics)}")
    source = entry.metadata.get("source", {})
    if "picked" in source:
        print(f"picked: {source['picked']}")
    config = entry.study_settings
    if config is not None:
        print(f"proxy setting: dataset {config.dataset}, proxy size {config.proxy_size} px for 224 px, "
              f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr}, "
              f"seed {config.seed}; search budget {config.budget}, space {config.space}")
    kwargs = entry.torchvision
    if kwargs is None:
        print("torchvision: no equivalent (torchvision.models.MobileNetV2 builds only MobileNetV2 with 3 input "
              "channels, a 32-channel stem, a 1280-channel head, ReLU6, linear bottlenecks and a linear classifier)")
    else:
        print("torchvision: torchvision.models.MobileNetV2("
              + ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) + ")")
    for line in _scaled(entry):
        print(line)
    print(_weights(entry))
    print(f"build: {_build_hint(entry, None if entry.builtin else args.library)}")
    return 0


def add_library_commands(subparsers: Any) -> None:
    """Add ``export`` and ``library`` (``list``, ``show``) to the parser's subcommands."""
    export = subparsers.add_parser(
        "export", help="put a network chosen from a study into the model library",
        description="Take one trial of a study into the model library, from which "
                    "`mobilenet_search.library.build(NAME)` builds it. --best picks, among the Pareto-optimal "
                    "feasible trials (accuracy vs MAdds; under --under when given), the most accurate, ties "
                    "broken by fewer MAdds. The entry holds the architecture, its source (storage, study, "
                    "trial), the trial's measurements, the study's proxy settings and, for MobileNetV2 "
                    "entries torchvision can build, torchvision.models.MobileNetV2 keyword arguments. Where the "
                    "study kept trained weights (a supernet study: the confirmation's or the inherited ones, "
                    "whichever scored higher), they go into NAME.safetensors beside it: "
                    "library.build(NAME, weights='trained').",
        epilog=f"Examples: {PROG} export --study mobilenetv2-300M-madds --best --name mnv2-300M;  "
               f"{PROG} export --study mobilenetv2-300M-madds --best --under 200M-madds --name mnv2-200M "
               f"--onnx mnv2-200M.onnx;  {PROG} export --study s --storage sqlite:///s.db --trial 7 --name t7 --force",
    )
    export.add_argument("--study", required=True, help="the study's name")
    export.add_argument("--storage", default=None,
                        help="Optuna storage URL of the study (default: sqlite:///RESULTS_DIR/STUDY.db, as search)")
    export.add_argument("--results-dir", default="results",
                        help="where search put the default storage and the data cache (default results)")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=integer(0, None), default=None, metavar="N", help="export trial number N")
    which.add_argument("--best", action="store_true",
                       help="export the most accurate Pareto-optimal feasible trial (ties: fewer MAdds)")
    which.add_argument("--scaled", default=None, metavar="MADDS",
                       help="a scaling study's recommended net for this budget, e.g. 150M-madds (as `scaling --study "
                            "NAME --at` prints it), with its predicted accuracy and interval; its weights only where "
                            "the study trained exactly that net and kept them")
    export.add_argument("--under", default=None, metavar="BUDGET",
                        help="with --best: only trials inside this budget, e.g. 200M-madds or 3M-params,5ms-latency")
    export.add_argument("--name", required=True, help="entry name: letters, digits and . _ - (no '..')")
    export.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    export.add_argument("--onnx", default=None, metavar="PATH",
                        help="also write the network as ONNX (opset 17, deployment resolution, dynamic batch; the "
                             "entry's trained weights if it has some, else fresh ones); needs the onnx package")
    export.add_argument("--no-weights", dest="weights", action="store_false",
                        help="store the architecture only, even where the study kept trained weights (by default "
                             "a confirmed trial's scratch-trained weights, else a supernet study's inherited ones, "
                             "go into NAME.safetensors beside the entry)")
    export.add_argument("--supernet", default=None, metavar="PATH",
                        help="a supernet study's checkpoint, for inherited weights (default: the one the study "
                             "recorded)")
    export.add_argument("--library", default=None, metavar="DIR", help=LIBRARY_HELP)
    export.set_defaults(run=_export)

    lib = subparsers.add_parser(
        "library", help="list the model library or show one entry",
        description="The model library: the papers' reference networks (built in) and the networks exported "
                    "from studies. In Python: mobilenet_search.library.build(NAME, num_classes=...).",
        epilog=f"Examples: {PROG} library list;  {PROG} library show mobilenet_v2_1.0_224",
    )
    commands = lib.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="every entry with its MAdds, params, proxy accuracy and source")
    listing.add_argument("--library", default=None, metavar="DIR", help=LIBRARY_HELP)
    listing.set_defaults(run=_list)
    show = commands.add_parser("show", help="one entry: stage table, costs, source, metrics, weights, torchvision "
                                           "equivalent")
    show.add_argument("name", help="the entry's name (see `library list`)")
    show.add_argument("--library", default=None, metavar="DIR", help=LIBRARY_HELP)
    show.set_defaults(run=_show)

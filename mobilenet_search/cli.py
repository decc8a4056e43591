"""The ``mobilenet-search`` command: argument parsing and printing only.

Every subcommand is a thin client of the library; a :class:`UserError` becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mobilenet_search.cost import count_madds, count_params, format_count, format_stage_table
from mobilenet_search.errors import UserError
from mobilenet_search.references import paper_family
from mobilenet_search.space import available_spaces, load_space
from mobilenet_search.spec import ArchSpec, parse_arch

PROG = "mobilenet-search"


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
    if args.list:
        for name in available_spaces():
            space = load_space(name)
            print(f"{name:24s} {space.family}, {space.size:,} members")
        return 0
    space = load_space(args.space)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Architecture search and scaling exploration for MobileNetV1/V2.",
        epilog=f"Example: {PROG} describe v2 --width 0.75 --resolution 160",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    describe = sub.add_parser(
        "describe", help="print an architecture's stage table, MAdds and parameters",
        description="Print an architecture's stage table (shapes, channels after rounding, MAdds and "
                    "parameters per layer group) and its totals.",
        epilog=f"Examples: {PROG} describe v2 --width 0.75 --resolution 160;  "
               f"{PROG} describe 'mnv1_w0.5_r160_...' (an architecture string or JSON)",
    )
    describe.add_argument("arch", help="v2 or v1 (the papers' networks), or an architecture string or JSON")
    describe.add_argument("--width", type=float, default=1.0, help="width multiplier for v1/v2 (default 1.0)")
    describe.add_argument("--resolution", type=int, default=224, help="input resolution for v1/v2 (default 224)")
    describe.add_argument("--classes", type=int, default=1000, help="number of classes for v1/v2 (default 1000)")
    describe.set_defaults(run=_describe)

    space = sub.add_parser(
        "space", help="describe a search space: its choices, size, cheapest and most expensive member",
        epilog=f"Examples: {PROG} space mobilenetv2;  {PROG} space my_space.yaml;  {PROG} space --list",
    )
    space.add_argument("space", nargs="?", default="mobilenetv2",
                       help="a name from search_spaces/ or a path to a .yaml file (default mobilenetv2)")
    space.add_argument("--list", action="store_true", help="list the search spaces shipped with the tool")
    space.set_defaults(run=_space)

    references = sub.add_parser("references", help="cost table of the papers' width x resolution networks")
    references.set_defaults(run=_references)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

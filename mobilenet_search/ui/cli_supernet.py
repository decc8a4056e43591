"""The ``supernet train`` subcommand: a study's supernet trained alone, by one process or by ``torchrun``'s ranks.

``cli.py`` wires it in with ``add_supernet_commands(sub, search)``; the training is
:func:`mobilenet_search.search.strategies.prepare_supernet`, data-parallel through
:mod:`mobilenet_search.measure.distributed`::

    torchrun --nproc-per-node 4 -m mobilenet_search supernet train --space mobilenetv2 --dataset cifar10:DATA

It takes the search's own settings flags (the same defaults), so the checkpoint it writes is the
one a search with those flags finds and scores with, or ``--study NAME``: the settings stored in
an existing study, which then records the checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

from mobilenet_search.errors import UserError

PROG = "mobilenet-search"
# A supernet's checkpoint does not depend on the budget (see strategies.checkpoint_tag); a study needs one.
_ANY_BUDGET = "1G-madds"
# The search's options that are not a study's settings (SearchConfig's fields); every other one is copied.
_RUN_OPTIONS = {"help", "trials", "workers", "timeout", "heartbeat", "study", "storage", "supernet", "results_dir",
                "device"}


def _settings(args: argparse.Namespace):
    """The study's settings: stored in ``--study``, or from the search's flags."""
    from mobilenet_search.results.records import Strategy
    from mobilenet_search.search.config import SearchConfig, default_storage
    from mobilenet_search.search.study import open_study

    fields = [f.name for f in dataclasses.fields(SearchConfig)]
    if args.strategy != Strategy.SUPERNET:
        raise UserError(f"invalid --strategy {args.strategy}: supernet train trains a --strategy supernet supernet")
    if args.study is None:
        given = {name: getattr(args, name) for name in fields if hasattr(args, name)}
        return None, SearchConfig(**(given | {"budget": args.budget or _ANY_BUDGET}))
    flags = [f"--{name.replace('_', '-')}" for name in fields
             if getattr(args, name, None) not in (None, Strategy.SUPERNET, _default(name))]
    if flags:
        raise UserError(f"--study takes the settings stored in the study: drop {', '.join(flags)}")
    storage = args.storage or default_storage(Path(args.results_dir), args.study)
    study, config = open_study(storage, args.study, None, load_only=True)
    if not config.supernet:
        raise UserError(f"study {args.study!r} has --strategy {config.strategy}: it scores with no supernet")
    return study, config


def _default(name: str):
    from mobilenet_search.search.config import SearchConfig

    return getattr(SearchConfig(budget=_ANY_BUDGET), name)


def _train(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from mobilenet_search.measure.distributed import DistributedSettings, Launch, process_group
    from mobilenet_search.measure.latency import resolve_device
    from mobilenet_search.search.config import check_results_dir
    from mobilenet_search.search.space import load_space
    from mobilenet_search.search.strategies import prepare_supernet, record_supernet
    from mobilenet_search.search.study import make_data
    from mobilenet_search.ui.cli import _supernet_progress

    launch = Launch.from_environment() or Launch(rank=0, world_size=1, local_rank=0)
    settings = DistributedSettings(sync_batchnorm=not args.no_sync_batchnorm, gradients=args.gradients,
                                   timeout=args.rank_timeout)
    device = resolve_device(args.device)
    if launch.world_size > 1:
        device = launch.device(device, torch.cuda.device_count())
    results_dir = check_results_dir(Path(args.results_dir))
    study, config = _settings(args)
    space, data = load_space(config.space), make_data(config, results_dir)
    first = launch.rank == 0
    if first and not args.quiet:
        print(f"supernet of {config.space} on {config.dataset} at proxy size {config.proxy_size}: "
              f"{config.supernet_epochs} epochs, batch {config.batch_size} over {launch.world_size} rank(s), "
              f"device {device}" + (", SyncBatchNorm" if settings.sync_batchnorm and launch.world_size > 1 else ""),
              file=sys.stderr)
    start = time.perf_counter()
    with process_group(launch, device, settings) as ranks, \
            _supernet_progress(config.supernet_epochs, enabled=first and not args.quiet) as on_step:
        try:
            _, path, tag = prepare_supernet(config, space, data, results_dir=results_dir, device=device,
                                            checkpoint=Path(args.supernet) if args.supernet else None,
                                            on_step=on_step, ranks=ranks)
        except dist.DistError as exc:  # a rank died or stopped answering: torchrun restarts the job, if allowed
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"rank {launch.rank} of {launch.world_size} lost the other ranks ({first_line[:200]}); "
                            "the checkpoint keeps every finished epoch: run the same command again") from None
    if first:
        if study is not None:
            record_supernet(study, path, tag, time.perf_counter() - start)
        print(f"supernet trained: {path} (tag {tag}, {config.supernet_epochs} epochs, "
              f"{time.perf_counter() - start:.0f} s on {launch.world_size} rank(s)); a --strategy supernet search "
              f"with these settings scores with it, or pass --supernet {path}")
    return 0


def add_supernet_commands(sub: argparse._SubParsersAction, search: argparse.ArgumentParser) -> None:
    """``supernet train``, taking ``search``'s settings flags (the same objects: the same names and defaults).

    Imports nothing heavy: ``--help`` loads neither torch nor optuna.
    """
    from mobilenet_search.results.records import Strategy

    supernet = sub.add_parser("supernet", help="train a --strategy supernet study's supernet, on one process or "
                                               "many (torchrun)")
    commands = supernet.add_subparsers(dest="supernet_command", metavar="COMMAND", required=True)
    train = commands.add_parser(
        "train", help="train (or resume) the supernet of these settings into its checkpoint",
        description="Train the weight-sharing supernet of a --strategy supernet search, alone: under torchrun, "
                    "data-parallel over its ranks (gloo on the CPU, nccl on CUDA, one GPU per rank). The "
                    "checkpoint is the one a search with the same settings finds (or --supernet PATH); it is "
                    "written after every epoch by rank 0 and resumes at any number of ranks.",
        epilog=f"Examples: torchrun --nproc-per-node 4 -m mobilenet_search supernet train --space mobilenetv2 "
               f"--dataset cifar10:DATA --device cuda;  {PROG} supernet train --study NAME",
    )
    for action in search._actions:
        if action.dest not in _RUN_OPTIONS:  # so that a search's settings can be pasted
            action = copy.copy(action)
            action.required = False  # --budget: the supernet does not depend on it
            action.default = {"budget": None, "strategy": Strategy.SUPERNET.value}.get(action.dest, action.default)
            train._add_action(action)
    train.add_argument("--study", default=None,
                       help="an existing --strategy supernet study: its stored settings (instead of the flags above); "
                            "it records the checkpoint")
    train.add_argument("--storage", default=None, help="the study's storage (default sqlite:///RESULTS_DIR/STUDY.db)")
    train.add_argument("--supernet", default=None, metavar="PATH",
                       help="the checkpoint (default RESULTS_DIR/supernets/TAG.pt, the one the search looks for)")
    train.add_argument("--results-dir", default="results", help="where the checkpoint and the data cache go")
    train.add_argument("--device", default="auto",
                       help="auto, cpu or cuda; under torchrun each rank takes cuda:LOCAL_RANK")
    train.add_argument("--no-sync-batchnorm", action="store_true",
                       help="each rank normalises with its own share of the batch (faster; the result then depends "
                            "on the number of ranks)")
    train.add_argument("--gradients", default="allreduce",
                       help="how the ranks average gradients after each sandwich step: allreduce (one all-reduce by "
                            "hand) or ddp (DistributedDataParallel, find_unused_parameters)")
    train.add_argument("--rank-timeout", type=float, default=300.0,
                       help="seconds a rank waits for the others to join and in every collective before failing")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

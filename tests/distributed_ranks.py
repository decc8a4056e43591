"""The two-rank scenarios of test_distributed.py, run by each rank: ``python distributed_ranks.py FOLDER`` with
torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Each rank records what it
ended with in ``FOLDER/rank{RANK}.pt``.

A plain script started twice, not ``torch.multiprocessing.spawn``: spawn re-runs the parent's ``__main__`` in
each child, and inside the test suite that can be another test's script (the dashboard's).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_supernet_train import ENVELOPE, FAST, SMALLEST, proxy_size, sample, stripes  # noqa: E402

from mobilenet_search.arch.supernet import Supernet  # noqa: E402
from mobilenet_search.errors import UserError  # noqa: E402
from mobilenet_search.measure.distributed import DistributedSettings, Launch, Ranks, process_group  # noqa: E402
from mobilenet_search.measure.supernet_train import SupernetConfig, train_supernet  # noqa: E402

# One step (a batch of 128 of the ~200 training images), so that both trainings start from the same weights.
ONE_STEP = SupernetConfig(epochs=1, batch_size=128, lr=5e-3, warmup_epochs=0)
RESUMED = dataclasses.replace(FAST, batch_size=32)  # 2 epochs of 6 steps
VARIANTS = {"sync": DistributedSettings(), "ddp": DistributedSettings(gradients="ddp"),
            "local": DistributedSettings(sync_batchnorm=False)}


def train(config, checkpoint, ranks=None, tag="t", on_step=None):
    net = Supernet(ENVELOPE, seed=0)
    result = train_supernet(net, stripes, sample, SMALLEST, ENVELOPE, proxy_size, config, checkpoint, tag,
                            on_step=on_step, ranks=ranks)
    return net, result


def record(net, result):
    return {"state": {k: v.clone() for k, v in net.state_dict().items()}, "losses": result.losses,
            "grads": {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}}


def main(folder: Path) -> None:
    """Every scenario the tests read: the three variants' step, a tag mismatch, a corrupt checkpoint, a resume."""
    torch.set_num_threads(1)
    launch = Launch.from_environment()
    out: dict = {}
    with process_group(launch, "cpu", DistributedSettings(timeout=60)) as group:
        for name, settings in VARIANTS.items():
            ranks = Ranks(group.rank, group.world_size, settings)
            out[name] = record(*train(ONE_STEP, folder / f"{name}.pt", ranks))
        for case, kwargs in (("mismatch", dict(tag=f"tag-of-rank-{launch.rank}")),
                             ("corrupt", dict(checkpoint=folder / "garbage.pt"))):
            try:
                train(ONE_STEP, kwargs.get("checkpoint", folder / f"{case}.pt"), group, kwargs.get("tag", "t"))
            except UserError as exc:
                out[case] = str(exc)
        out["resumed"] = record(*train(RESUMED, folder / "resume.pt", group))
    torch.save(out, folder / f"rank{launch.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

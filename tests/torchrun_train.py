"""Started by torchrun in test_distributed.py: two gloo ranks train test_supernet_train's supernet into a checkpoint.

``python torchrun_train.py CHECKPOINT EPOCHS KILL``: with KILL=1, rank 1 kills itself (SIGKILL, as ``kill -9``)
in the second epoch of the job's first attempt; torchrun (``--max-restarts``) then starts every rank again.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_supernet_train import ENVELOPE, FAST, SMALLEST, proxy_size, sample, stripes  # noqa: E402

from mobilenet_search.arch.supernet import Supernet  # noqa: E402
from mobilenet_search.measure.distributed import DistributedSettings, Launch, process_group  # noqa: E402
from mobilenet_search.measure.supernet_train import train_supernet  # noqa: E402


def main(checkpoint: str, epochs: str, kill: str) -> None:
    torch.set_num_threads(1)
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    launch = Launch.from_environment()

    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        if kill == "1" and first_attempt and launch.rank == 1 and epoch == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    config = dataclasses.replace(FAST, batch_size=32, epochs=int(epochs))
    with process_group(launch, "cpu", DistributedSettings(timeout=60)) as ranks:
        result = train_supernet(Supernet(ENVELOPE, seed=0), stripes, sample, SMALLEST, ENVELOPE, proxy_size, config,
                                Path(checkpoint), "t", on_step=on_step, ranks=ranks)
    if launch.rank == 0:
        print(f"resumed_epochs={result.resumed_epochs} attempt={os.environ.get('TORCHELASTIC_RESTART_COUNT')}")


if __name__ == "__main__":
    main(*sys.argv[1:])

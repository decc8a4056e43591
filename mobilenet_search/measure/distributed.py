"""Data-parallel supernet training with ``torch.distributed``: the ranks a ``torchrun`` launch starts.

:func:`~mobilenet_search.measure.supernet_train.train_supernet` takes a :class:`Ranks`; the default
(one rank) is the single-process training, bit for bit. With N ranks (gloo on the CPU, nccl on CUDA):

- every rank holds the whole supernet and draws the same members at every step (the sandwich's
  random members come from the seeded generator every rank restores alike), so all ranks train the
  same member at the same time;
- every global batch (``batch_size`` images, the same seeded order as one process) is split into N
  equal, disjoint shares, one per rank (:meth:`Ranks.shard`): DistributedSampler's rule (each rank a
  disjoint 1/N of every batch, the same seeded permutation on every rank) applied to the permutation
  the single-process training already draws, so that one rank is that training unchanged and the ranks'
  shares put together are its batch. Augmentation is drawn for the whole global batch, then sharded;
- the gradients are averaged over the ranks once per step, after the whole sandwich: by hand (one
  all-reduce of every gradient, flattened; ``gradients="allreduce"``, the default) or by DDP with
  ``find_unused_parameters`` and ``no_sync`` for all members but the last (``gradients="ddp"``):
  as fast on 2 CPU ranks (``benchmarks/bench_distributed.py``; docs/scaling-out.md), with one
  collective a step and no DDP warning;
- BatchNorm normalises with the statistics of the whole global batch (``sync_batchnorm``, the
  default): the training then does not depend on N (2 ranks with half the batch each end with the
  weights of one process, to float tolerance: the tests check it), a checkpoint resumes at another N
  as the same optimisation, and a rank's share may be small (64 images over 8 GPUs is 8 per rank,
  and the last layers' maps are 2x2 or 1x1). Without it each rank normalises its own share. Its
  cost: one small all-gather per BatchNorm call, forward and backward (on 2 gloo ranks at 32 px,
  +80-90 % CPU time an epoch).
- Only rank 0 reads and writes the checkpoint; what it reads (or the error it raises) reaches every
  rank, so a bad checkpoint is one line on every rank and not a hang.
- Collectives and the start-up wait for the other ranks have a timeout (``timeout``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mobilenet_search.arch.supernet import Supernet, batch_norm, batch_norm_momentum
from mobilenet_search.errors import UserError

# What torchrun sets in every process it starts; all or none of them.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
GRADIENT_SYNCS = ("allreduce", "ddp")
T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """Where torchrun put this process: its global rank, the number of ranks and its rank on this machine."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int = 1  # ranks on this machine

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Launch | None:
        """The launch torchrun's variables describe; None when none is set (a plain process).

        Some set and others not (a launch script that forgot one) is a :class:`UserError` naming them. So is
        ``--max-restarts`` with the rendezvous store shared with the ranks (torchrun's default): a restarted
        rank would read its peers' addresses of the failed attempt and fail to connect (pytorch/pytorch#135712;
        measured here with gloo), so every restart would fail.
        """
        present = [name for name in TORCHRUN_VARIABLES if environ.get(name)]
        if not present:
            return None
        missing = [name for name in TORCHRUN_VARIABLES if name not in present]
        if missing:
            raise UserError(f"torchrun's environment is half set: {', '.join(present)} set but {', '.join(missing)} "
                            "not; launch with torchrun, or unset them to run one process")
        try:
            rank, world, local = (int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise UserError(f"torchrun's environment is malformed: RANK={environ['RANK']!r}, "
                            f"WORLD_SIZE={environ['WORLD_SIZE']!r}, LOCAL_RANK={environ['LOCAL_RANK']!r}: "
                            "expected integers") from None
        if not (world >= 1 and 0 <= rank < world and local >= 0):
            raise UserError(f"torchrun's environment is inconsistent: RANK={rank}, WORLD_SIZE={world}, "
                            f"LOCAL_RANK={local}")
        restarts = environ.get("TORCHELASTIC_MAX_RESTARTS", "0") != "0"
        if restarts and environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            raise UserError("torchrun --max-restarts needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's "
                            "environment: with the rendezvous store shared, restarted ranks cannot connect "
                            "(pytorch/pytorch#135712)")
        return cls(rank, world, local, int(environ.get("LOCAL_WORLD_SIZE", local + 1)))

    def device(self, requested: str, cuda_devices: int) -> str:
        """This rank's device: ``cuda:LOCAL_RANK`` when ``requested`` is CUDA (one GPU per rank), else the CPU.

        More ranks on a machine than ``cuda_devices`` is a :class:`UserError` on every rank (nccl cannot share a
        GPU).
        """
        if not requested.startswith("cuda"):
            return "cpu"
        if max(self.local_rank + 1, self.local_world_size) > cuda_devices:
            raise UserError(f"{max(self.local_rank + 1, self.local_world_size)} ranks on this machine but "
                            f"{cuda_devices} CUDA device(s): start at most {cuda_devices} processes per node "
                            "(--nproc-per-node) with nccl, one per GPU")
        return f"cuda:{self.local_rank}"


@dataclass(frozen=True)
class DistributedSettings:
    """How the ranks train together (see the module's docstring for the defaults' reasons)."""

    sync_batchnorm: bool = True
    gradients: str = "allreduce"  # "allreduce" (one flattened all-reduce after the sandwich) or "ddp"
    timeout: float = 300.0  # seconds a rank waits for the others, at start-up and in every collective

    def __post_init__(self) -> None:
        if self.gradients not in GRADIENT_SYNCS:
            raise UserError(f"invalid gradient synchronisation {self.gradients!r}: expected one of "
                            f"{', '.join(GRADIENT_SYNCS)}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise UserError(f"invalid distributed timeout {self.timeout!r}: expected a number of seconds > 0")


class Ranks:
    """This process's part in a data-parallel training: rank ``rank`` of ``world_size``.

    ``Ranks()`` is one process alone: every method is then the identity or does nothing, so the
    training is the single-process one. Otherwise a default process group must be initialised
    (:func:`process_group` does it).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, settings: DistributedSettings = DistributedSettings(),
                 device: torch.device | str = "cpu") -> None:
        self.rank, self.world_size, self.settings = rank, world_size, settings
        self.device = torch.device(device)

    @property
    def alone(self) -> bool:
        return self.world_size == 1

    @property
    def writer(self) -> bool:
        """Whether this rank writes the checkpoint (rank 0)."""
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's share of a global batch of ``batch_size``: equal, disjoint, in rank order."""
        share, rest = divmod(batch_size, self.world_size)
        if rest or share < 2:
            raise UserError(f"the supernet's batch of {batch_size} does not split into {self.world_size} equal "
                            "shares of at least 2 images: choose a --batch-size that is a multiple of the number of "
                            "ranks (at least twice it)")
        return slice(self.rank * share, (self.rank + 1) * share)

    def agree(self, what: str, fingerprint: str) -> None:
        """Every rank checks its ``fingerprint`` (the checkpoint's tag, the distributed settings) against rank 0's.

        A difference is a :class:`UserError` on every rank (so none waits for the others in vain).
        """
        if self.alone:
            return
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, fingerprint)
        differ = [rank for rank, theirs in enumerate(everyone) if theirs != everyone[0]]
        if differ:
            raise UserError(f"the ranks were started with different settings: rank {differ[0]}'s {what} is "
                            f"{everyone[differ[0]]}, rank 0's {everyone[0]}; start every rank with the same command")

    def from_first(self, read: Callable[[], T]) -> T:
        """``read()`` on rank 0, its result (or the :class:`UserError` it raised) on every rank."""
        if self.alone:
            return read()
        box: list[Any] = [None]
        if self.rank == 0:
            try:
                box[0] = ("ok", read())
            except UserError as exc:
                box[0] = ("error", str(exc))
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        kind, value = box[0]
        if kind == "error":
            raise UserError(value)
        return value

    def prepare(self, supernet: Supernet) -> nn.Module:
        """The module a training step calls: the supernet, or DDP around it; BatchNorm synchronised if asked.

        Every rank starts from rank 0's weights and buffers. :meth:`release` undoes the BatchNorm change.
        """
        if self.alone:
            return supernet
        self.agree("distributed settings", repr(self.settings))
        if self.settings.sync_batchnorm:
            supernet.batch_norm = functools.partial(synced_batch_norm, world_size=self.world_size)
        if self.settings.gradients == "ddp":  # DDP broadcasts rank 0's state itself
            return nn.parallel.DistributedDataParallel(
                supernet, device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=True, forward_sync_buffers=False)
        with torch.no_grad():
            for tensor in [*supernet.parameters(), *supernet.buffers()]:
                dist.broadcast(tensor, src=0)
        return supernet

    def release(self, supernet: Supernet) -> None:
        """The supernet's own BatchNorm back (scoring and export run one process)."""
        supernet.batch_norm = batch_norm

    def member(self, model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Around one sandwich member's forward and backward: DDP synchronises after the last one only."""
        if isinstance(model, nn.parallel.DistributedDataParallel) and not last:
            return model.no_sync()
        return contextlib.nullcontext()

    def average_gradients(self, supernet: Supernet) -> None:
        """Average the gradients over the ranks in one all-reduce (by hand; DDP has done it already)."""
        if self.alone or self.settings.gradients == "ddp":
            return
        # Every rank trained the same members, so the same parameters have gradients on every rank.
        grads = [p.grad for p in supernet.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            grad.copy_(part.view_as(grad))

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the ranks (a new tensor; ``value`` itself alone)."""
        if self.alone:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """With several ranks, seed this rank's global generator (dropout) from the seed, the epoch and the rank.

        One rank keeps the single-process generator, restored from the checkpoint. With several,
        each rank's draws follow from (seed, epoch, rank) alone, so a restart from a checkpoint
        (which holds rank 0's state only) draws what the uninterrupted run drew.
        """
        if not self.alone:
            digest = hashlib.sha256(f"{seed}:{epoch}:{self.rank}".encode()).digest()
            torch.manual_seed(int.from_bytes(digest[:8], "little") % 2**63)

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


def synced_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, channels: int, *, world_size: int) -> torch.Tensor:
    """:func:`~mobilenet_search.arch.supernet.batch_norm` with the mean and variance of every rank's batch.

    In training mode the ranks' per-channel means, variances and counts are gathered (a differentiable
    all-gather, so the gradients flow through the shared statistics as through one process's) and
    combined with Chan et al.'s parallel formula; the running statistics take the global unbiased
    variance, as one process's BatchNorm would. On CUDA PyTorch's own SyncBatchNorm function does the
    work; it has no CPU kernel, hence the version here. In eval mode nothing is synchronised.
    """
    if not bn.training:
        return batch_norm(bn, x, channels)
    momentum = batch_norm_momentum(bn)
    weight, bias = bn.weight[:channels], bn.bias[:channels]
    running_mean, running_var = bn.running_mean[:channels], bn.running_var[:channels]
    if x.device.type == "cuda":
        from torch.nn.modules._functions import SyncBatchNorm

        return SyncBatchNorm.apply(x, weight, bias, running_mean, running_var, bn.eps, momentum,
                                   dist.group.WORLD, world_size)
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
    count = mean.new_full((1,), x.numel() // channels)
    gathered = _AllGather.apply(torch.cat([mean, var, count]))
    means, variances, counts = gathered[:, :channels], gathered[:, channels:2 * channels], gathered[:, 2 * channels:]
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var * (total / (total - 1)), alpha=momentum)
    scale = weight * torch.rsqrt(var + bn.eps)
    shift = bias - mean * scale
    return (x * scale[None, :, None, None] + shift[None, :, None, None]).to(x.dtype)


class _AllGather(torch.autograd.Function):
    """Every rank's tensor, stacked (rank-major); differentiable: a rank's input gets the sum over the ranks of
    the gradients of its row. (torch.distributed.nn's version is deprecated, and its successor's backward
    needs a reduce-scatter, which gloo lacks.)"""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


@contextlib.contextmanager
def process_group(launch: Launch, device: str, settings: DistributedSettings) -> Iterator[Ranks]:
    """Join the other ranks (gloo on the CPU, nccl on CUDA) and leave the group at the end.

    The start-up wait and every collective give up after ``settings.timeout`` seconds: a rank that
    never joins is a :class:`UserError` on the ranks that did, not a hang.
    """
    if launch.world_size == 1:
        yield Ranks(device=device)
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
    timeout = datetime.timedelta(seconds=settings.timeout)
    try:
        dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size, timeout=timeout)
        dist.barrier()  # everyone is here: the first collective, under the same timeout
    except (dist.DistError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"rank {launch.rank} of {launch.world_size}: the other ranks did not join within "
                        f"{settings.timeout:g} s ({first[:200]}); check --nnodes, --nproc-per-node and "
                        "--rdzv-endpoint") from None
    try:
        yield Ranks(launch.rank, launch.world_size, settings, device)
    finally:
        dist.destroy_process_group()

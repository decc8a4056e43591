"""Training a weight-sharing supernet once, then scoring any member on its inherited weights.

Training follows BigNAS (Yu et al. 2020) and AttentiveNAS: no progressive shrinking; every residual
block starts as the identity (the last BatchNorm's scale zeroed); every step trains the largest subnet,
the smallest and ``random_subnets`` random members (the sandwich rule), each on the labels (or, with
``distill``, the others on the largest subnet's soft predictions: in-place distillation), adds up
their gradients and takes one optimizer step. Each member sees the step's images at its own proxy
size (the per-size uint8 caches share split and order). Everything else is proxy training's
(:mod:`mobilenet_search.measure.train`): input normalisation, augmentation, AdamW without weight
decay on BatchNorm, a per-step cosine schedule with warm-up.

A checkpoint is written atomically after every epoch; a run started again with the same
checkpoint path and tag continues after the last finished epoch and ends with the same weights
as an uninterrupted run. Several processes train one supernet together, data-parallel, when
given their :class:`~mobilenet_search.measure.distributed.Ranks` (launched by ``torchrun``).

Scoring a member (:func:`score_subnet`) extracts it, recomputes its BatchNorm statistics on a
fixed set of training images (as Once-for-All does: the shared running statistics belong to no
member in particular) and evaluates it on the validation split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_path
from mobilenet_search.measure.data import ImageData
from mobilenet_search.measure.distributed import Ranks
from mobilenet_search.measure.small_depthwise import small_map_depthwise
from mobilenet_search.measure.train import (
    Evaluation,
    TrainConfig,
    TrainingDiverged,
    _augment,
    _lr_factor,
    _optimizer,
    evaluate,
    input_transform,
    recalibrate_batchnorm,
)

_CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = {"format", "tag", "epoch", "steps_per_epoch", "model", "optimizer", "scheduler", "generator",
                    "torch_rng", "losses"}


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet training and scoring settings.

    Defaults: the sandwich rule's two random members as in BigNAS and AttentiveNAS, every member
    learning the labels. In-place distillation (BigNAS: the others learn the largest member's soft
    predictions) is off: on the embedded data at proxy size 32, after 8 epochs, it left every
    member at the majority class (0.674-0.688), while without it the largest member reached 0.770
    and the smallest 0.745, above the same nets trained alone (0.754, 0.691); an undertrained
    teacher on an imbalanced two-class task teaches the class prior. Every residual block starts as
    the identity (BigNAS's zero-initialised last BatchNorm): without it the middle of the space
    stayed at the majority class (0.686-0.691 for widths 0.5-1.3 at proxy size 32 after 8 epochs,
    the smallest member too), with it the same members scored 0.737-0.781
    (``benchmarks/supernet_recipe.py --variant labels`` vs ``zero-gamma``). Learning rate, weight decay,
    label smoothing, batch and augmentation as the measured proxy training (:class:`TrainConfig`);
    24 epochs, three times the 8-epoch proxy, for a network that trains four members per step
    (BigNAS trains its supernet a few times longer than a single net); one warm-up epoch; 512
    BatchNorm-recalibration images, about a quarter of the embedded
    data's training split (OFA uses 2,000 ImageNet images, AttentiveNAS 64 batches).
    """

    epochs: int = 24
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05  # not applied to BatchNorm weights and biases
    label_smoothing: float = 0.1  # on every member's labels (with distill: on the largest member's alone)
    warmup_epochs: int = 1
    random_subnets: int = 2
    distill: bool = False  # True: in-place distillation from the largest member (see above)
    zero_init_residual: bool = True  # each residual block starts as the identity (BigNAS; see above)
    crop_padding: float = 0.125
    seed: int = 0
    device: str = "cpu"
    bn_images: int = 512  # training images for each scored member's BatchNorm statistics
    eval_batch_size: int = 256
    channels_last: bool = True  # faster on CUDA and, sliced weights included, about 25 % on the CPU measured
    amp: bool = True  # bfloat16 autocast, on CUDA only

    def __post_init__(self) -> None:
        def integer(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        checks = [
            ("epochs", integer(self.epochs, 1), "an integer >= 1"),
            ("batch_size", integer(self.batch_size, 2), "an integer >= 2"),
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a positive number"),
            ("weight_decay", isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0, "a number >= 0"),
            ("label_smoothing", isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1,
             "a number in [0, 1)"),
            ("warmup_epochs", integer(self.warmup_epochs, 0), "an integer >= 0"),
            ("random_subnets", integer(self.random_subnets, 0), "an integer >= 0"),
            ("distill", isinstance(self.distill, bool), "true or false"),
            ("zero_init_residual", isinstance(self.zero_init_residual, bool), "true or false"),
            ("crop_padding", isinstance(self.crop_padding, (int, float)) and 0 <= self.crop_padding < 1,
             "a number in [0, 1)"),
            ("seed", integer(self.seed, 0), "an integer >= 0"),
            ("device", isinstance(self.device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None,
             "cpu, cuda or cuda:N"),
            ("bn_images", integer(self.bn_images, 2), "an integer >= 2"),
            ("eval_batch_size", integer(self.eval_batch_size, 2), "an integer >= 2"),
            ("channels_last", isinstance(self.channels_last, bool), "true or false"),
            ("amp", isinstance(self.amp, bool), "true or false"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise UserError(f"invalid supernet setting {name}={getattr(self, name)!r}: expected {expected}")

    def train_config(self, steps_per_epoch: int) -> TrainConfig:
        """The same settings as proxy training reads them, for its optimizer and schedule."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           label_smoothing=self.label_smoothing, optimizer="adamw",
                           warmup_steps=self.warmup_epochs * steps_per_epoch, crop_padding=self.crop_padding,
                           seed=self.seed, device=self.device, channels_last=self.channels_last, amp=self.amp)


@dataclass(frozen=True)
class SupernetTrainResult:
    """What a (possibly resumed) supernet training run did."""

    losses: tuple[float, ...]  # mean training loss of the largest member in each epoch, resumed epochs included
    train_seconds: float  # time spent in this call's training steps
    resumed_epochs: int  # epochs read from the checkpoint (0 for a fresh run)
    steps_per_epoch: int


def supernet_tag(**settings: Any) -> str:
    """A short hash of ``settings`` (JSON): a checkpoint is resumed only by a run with the same tag.

    Pass everything that determines the trained weights: the space's content, the dataset, the
    training settings. Dataclasses (an :class:`ArchSpec`, a :class:`SupernetConfig`) and paths are
    accepted as values.

    >>> supernet_tag(space={"width_mult": [0.5, 1.0]}, data="embedded") == supernet_tag(
    ...     data="embedded", space={"width_mult": [0.5, 1.0]})
    True
    """
    text = json.dumps(settings, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"supernet_tag: cannot hash a {type(value).__name__}")


class _Inputs:
    """The step's images at each member's proxy size: one uint8 cache and one normalisation per size."""

    def __init__(self, data_for_size: Callable[[int], ImageData], labels: torch.Tensor, device: torch.device,
                 memory_format: torch.memory_format) -> None:
        self._data_for_size = data_for_size
        self._labels = labels
        self._device = device
        self._memory_format = memory_format
        self._by_size: dict[int, tuple[ImageData, Callable[[torch.Tensor], torch.Tensor]]] = {}

    def at(self, size: int) -> tuple[ImageData, Callable[[torch.Tensor], torch.Tensor]]:
        if size not in self._by_size:
            data = self._data_for_size(size)
            if not torch.equal(data.train_labels, self._labels):
                raise ValueError(f"data_for_size({size}) has another training split than the largest member's data")
            self._by_size[size] = data, input_transform(data, self._device, self._memory_format)
        return self._by_size[size]


def train_supernet(supernet: Supernet, data_for_size: Callable[[int], ImageData],
                   sample: Callable[[torch.Generator], ArchSpec], smallest: ArchSpec, largest: ArchSpec,
                   proxy_size: Callable[[ArchSpec], int], config: SupernetConfig, checkpoint: Path, tag: str,
                   on_step: Callable[[int, int, int, float], None] | None = None,
                   ranks: Ranks | None = None) -> SupernetTrainResult:
    """Train ``supernet`` in place with the sandwich rule, checkpointing to ``checkpoint`` after each epoch.

    ``data_for_size(size)`` gives the dataset at ``size`` pixels (same split and order at every
    size); ``proxy_size(spec)`` the size a member trains at (e.g. ``proxy_resolution(64,
    spec.resolution)``); ``sample(generator)`` a random member, drawn only from ``generator``.
    ``on_step(epoch, step, steps_per_epoch, loss)`` runs after each step with the largest member's
    loss; exceptions it raises propagate (the last finished epoch stays in the checkpoint).

    If ``checkpoint`` exists it must carry ``tag`` (else :class:`UserError`); training continues
    after its last epoch. A NaN or infinite loss raises :class:`TrainingDiverged`. The same seed
    gives the same weights on the CPU; the caller's random state is left alone.

    With ``ranks`` of several processes, each trains on its share of every batch and only rank 0
    writes the checkpoint (see :mod:`mobilenet_search.measure.distributed`); ``config.device`` is
    this rank's device.
    """
    ranks = Ranks() if ranks is None else ranks
    run = _Run.start(supernet, data_for_size, smallest, largest, proxy_size, config, ranks)
    checkpoint = Path(checkpoint)
    train_seconds = 0.0
    # fork_rng: dropout draws from the global generator; seed it without disturbing the caller's.
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        losses = _resume(run, checkpoint, tag)
        resumed = len(losses)
        model = ranks.prepare(supernet)
        for epoch in range(resumed, config.epochs):
            start = time.perf_counter()
            losses.append(_train_epoch(run, model, epoch, sample, on_step))
            train_seconds += time.perf_counter() - start
            if ranks.writer:
                _write_checkpoint(checkpoint, tag, epoch + 1, run.steps_per_epoch, supernet, run.optimizer,
                                  run.scheduler, run.generator, losses, run.device)
        ranks.release(supernet)
    return SupernetTrainResult(losses=tuple(losses), train_seconds=train_seconds, resumed_epochs=resumed,
                               steps_per_epoch=run.steps_per_epoch)


@dataclass
class _Run:
    """What every step of one supernet training reads: the members, the data, the optimizer and its schedule."""

    supernet: Supernet
    config: SupernetConfig
    ranks: Ranks
    device: torch.device
    largest: ArchSpec
    smallest: ArchSpec
    proxy_size: Callable[[ArchSpec], int]
    base: ImageData  # the largest member's data: the training labels and their order
    inputs: _Inputs
    steps_per_epoch: int
    shard: slice  # this rank's share of every batch
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    generator: torch.Generator  # epoch order, augmentation seeds and random members, in that order each step
    amp: torch.autocast

    @classmethod
    def start(cls, supernet: Supernet, data_for_size: Callable[[int], ImageData], smallest: ArchSpec,
              largest: ArchSpec, proxy_size: Callable[[ArchSpec], int], config: SupernetConfig,
              ranks: Ranks) -> _Run:
        """Check the device and the extreme members, move the supernet there, make the optimizer and schedule."""
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"invalid supernet setting device={config.device!r}: no CUDA device is available")
        supernet.check(smallest)
        supernet.check(largest)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        supernet.to(device, memory_format=memory_format)
        base = data_for_size(proxy_size(largest))
        # Drop the last partial batch: a batch of one breaks BatchNorm on 1x1 feature maps.
        steps_per_epoch = max(1, len(base.train_labels) // config.batch_size)
        total_steps = config.epochs * steps_per_epoch
        train_config = config.train_config(steps_per_epoch)
        optimizer = _optimizer(supernet, train_config)
        return cls(
            supernet=supernet, config=config, ranks=ranks, device=device, largest=largest, smallest=smallest,
            proxy_size=proxy_size, base=base, inputs=_Inputs(data_for_size, base.train_labels, device, memory_format),
            steps_per_epoch=steps_per_epoch, shard=ranks.shard(config.batch_size), optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps, train_config)),
            criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
            generator=torch.Generator().manual_seed(config.seed),
            amp=torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda"))


def _resume(run: _Run, checkpoint: Path, tag: str) -> list[float]:
    """The losses of the epochs ``checkpoint`` holds, its state restored into ``run``; a fresh start otherwise
    (every residual block zero-initialised, with ``zero_init_residual``)."""
    run.ranks.agree("checkpoint tag", tag)
    saved = run.ranks.from_first(lambda: _read_checkpoint(checkpoint, tag))
    if saved is None:
        if run.config.zero_init_residual:
            run.supernet.zero_init_residual()
        return []
    _restore(saved, checkpoint, run.supernet, run.optimizer, run.scheduler, run.generator, run.steps_per_epoch,
             run.device)
    return list(saved["losses"])


def _train_epoch(run: _Run, model: nn.Module, epoch: int, sample: Callable[[torch.Generator], ArchSpec],
                 on_step: Callable[[int, int, int, float], None] | None) -> float:
    """One epoch of sandwich steps; the largest member's mean loss (over every rank)."""
    config, ranks = run.config, run.ranks
    ranks.seed_epoch(config.seed, epoch)
    run.supernet.train()
    order = torch.randperm(len(run.base.train_labels), generator=run.generator)
    largest_sum = torch.zeros((), device=run.device)
    total_sum = torch.zeros((), device=run.device)
    for step in range(run.steps_per_epoch):
        index = order[step * config.batch_size:(step + 1) * config.batch_size]
        # Members at the same size see the same augmented images; every size the same flips.
        augment_seed = int(torch.randint(2**62, (1,), generator=run.generator))
        members = [run.largest, run.smallest] + [sample(run.generator) for _ in range(config.random_subnets)]
        largest_loss, total = _sandwich_step(run, model, index, augment_seed, members)
        largest_sum += largest_loss
        total_sum += total
        # Checking every 16 steps, not every step, spares CUDA a host sync per step.
        # (Averaged over the ranks: every rank stops at the same step.)
        if (step % 16 == 15 or step == run.steps_per_epoch - 1) and not torch.isfinite(ranks.mean(total_sum)):
            raise TrainingDiverged(
                f"supernet training diverged: the loss became {total_sum.item()} in epoch {epoch + 1}, "
                f"by step {step + 1} (lr={config.lr:g}); try a lower learning rate")
        if on_step is not None:
            on_step(epoch, step, run.steps_per_epoch, largest_loss.item())
    return ranks.mean(largest_sum).item() / run.steps_per_epoch


def _sandwich_step(run: _Run, model: nn.Module, index: torch.Tensor, augment_seed: int,
                   members: list[ArchSpec]) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the images ``index`` for every member, gradients added up (the largest first:
    with ``distill`` its soft predictions are the others' targets). The largest member's loss and the sum."""
    config, ranks = run.config, run.ranks
    labels = run.base.train_labels[index][run.shard].to(run.device, non_blocking=True)
    batches: dict[int, torch.Tensor] = {}
    run.optimizer.zero_grad(set_to_none=True)
    teacher, total = None, torch.zeros((), device=run.device)
    for number, spec in enumerate(members):
        size = run.proxy_size(spec)
        if size not in batches:
            data, prepare = run.inputs.at(size)
            # The global batch's augmentation, then this rank's share: the same images at any N.
            batches[size] = prepare(_augment(data.train_images[index], data.hflip, config.crop_padding,
                                             torch.Generator().manual_seed(augment_seed))[run.shard])
        with ranks.member(model, last=number == len(members) - 1):
            with run.amp, small_map_depthwise(run.device):  # oneDNN is slow on the last 2x2, 1x1 maps
                logits = model(batches[size], spec)
                if teacher is None or not config.distill:
                    loss = run.criterion(logits, labels)
                else:  # in-place distillation: the largest member's soft predictions are the targets
                    loss = -(teacher * F.log_softmax(logits.float(), 1)).sum(1).mean()
            loss.backward()  # one graph at a time: memory for one member, gradients add up
        if teacher is None:
            teacher = logits.detach().float().softmax(1)
            largest_loss = loss.detach()
        total += loss.detach()
    ranks.average_gradients(run.supernet)
    run.optimizer.step()
    run.scheduler.step()
    return largest_loss, total


def _write_checkpoint(path: Path, tag: str, epoch: int, steps_per_epoch: int, supernet: Supernet,
                      optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
                      losses: list[float], device: torch.device) -> None:
    # Tensors and plain types only, so it loads with weights_only=True.
    state = {
        "format": _CHECKPOINT_FORMAT, "tag": tag, "epoch": epoch, "steps_per_epoch": steps_per_epoch,
        "model": supernet.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "losses": list(losses),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def check_checkpoint(path: Path, tag: str) -> int | None:
    """The epochs a checkpoint holds, None when there is none; a :class:`UserError` when it is unreadable,
    corrupt, truncated or of another tag. Reads and writes nothing else: a caller checks before creating
    anything that the training would need."""
    state = _read_checkpoint(Path(path), tag)
    return None if state is None else int(state["epoch"])


def _read_checkpoint(path: Path, tag: str) -> dict | None:
    if not path.exists():
        return None
    try:
        # torch.save writes a zip archive with a CRC-32 per record, which torch.load does not check: flipped
        # bytes inside a tensor would load as other weights. testzip reads every record and checks its CRC.
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"record {damaged} fails its CRC-32")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a torch file at all
        raise UserError(f"checkpoint {path} cannot be read ({type(exc).__name__}: corrupt or truncated); "
                        "delete it to train afresh") from None
    if not isinstance(state, dict) or not state.keys() >= _CHECKPOINT_KEYS or state["format"] != _CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {path} is not a supernet checkpoint of this version; delete it to train afresh")
    if state["tag"] != tag:
        raise UserError(f"checkpoint {path} was trained for another space/data/settings (tag {state['tag']}, "
                        f"these give {tag}); choose another checkpoint path or delete it")
    return state


def _restore(state: dict, path: Path, supernet: Supernet, optimizer: torch.optim.Optimizer, scheduler: Any,
             generator: torch.Generator, steps_per_epoch: int, device: torch.device) -> None:
    if state["steps_per_epoch"] != steps_per_epoch or len(state["losses"]) != state["epoch"]:
        raise UserError(f"checkpoint {path} was trained for another space/data/settings "
                        f"({state['steps_per_epoch']} steps per epoch, these give {steps_per_epoch})")
    try:
        supernet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} does not fit this supernet ({first_line})") from None
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def calibration_indices(data: ImageData, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` training-image indices drawn with ``seed`` (all of them if fewer): BatchNorm recalibration images.

    The same indices for every scored member keep their scores comparable.
    """
    n = len(data.train_labels)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def calibrated_subnet(supernet: Supernet, spec: ArchSpec, data: ImageData, *, calibration: torch.Tensor,
                      device: str | torch.device = "cpu", batch_size: int = 256,
                      channels_last: bool = True) -> nn.Module:
    """Member ``spec`` extracted with the supernet's weights (:meth:`Supernet.subnet`), its BatchNorm
    statistics recomputed on the ``calibration`` training images: the network that is scored, and
    exported. The supernet's weights and buffers are left as they were; deterministic."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = supernet.subnet(spec).to(device, memory_format=memory_format)
    prepare = input_transform(data, device, memory_format)
    images = data.train_images[calibration]
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    # Dropout runs during recalibration and draws from the global generator: keep the caller's.
    with torch.random.fork_rng(devices=[device] if cuda else []), amp:
        # Slices of at least two images: a single image gives BatchNorm no variance on 1x1 maps.
        recalibrate_batchnorm(model, (prepare(images[i:i + batch_size]) for i in range(0, len(images) - 1, batch_size)))
    return model.eval()


def evaluate_subnet(model: nn.Module, data: ImageData, *, device: str | torch.device = "cpu", batch_size: int = 256,
                    channels_last: bool = True) -> tuple[Evaluation, float]:
    """Accuracy of an extracted member (:func:`calibrated_subnet`) on the validation split, and the seconds it took.

    The model is moved to ``device`` in place, in the channels-last layout with ``channels_last``.
    """
    start = time.perf_counter()
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).eval()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        evaluation = evaluate(model, data, input_transform(data, device, memory_format), batch_size)
    return evaluation, time.perf_counter() - start


def score_subnet(supernet: Supernet, spec: ArchSpec, data: ImageData, *, calibration: torch.Tensor,
                 device: str | torch.device = "cpu", batch_size: int = 256,
                 channels_last: bool = True) -> tuple[Evaluation, float]:
    """Accuracy of member ``spec`` on the supernet's weights, and the seconds scoring took.

    ``data`` is the dataset at the member's proxy size; ``calibration`` indexes the training
    images on which its BatchNorm statistics are recomputed (see :func:`calibration_indices` and
    :func:`calibrated_subnet`). Deterministic for a given supernet, spec, data and calibration.
    """
    start = time.perf_counter()
    model = calibrated_subnet(supernet, spec, data, calibration=calibration, device=device, batch_size=batch_size,
                              channels_last=channels_last)
    evaluation, _ = evaluate_subnet(model, data, device=device, batch_size=batch_size, channels_last=channels_last)
    return evaluation, time.perf_counter() - start

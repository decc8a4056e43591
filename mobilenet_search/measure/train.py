"""Proxy training: a few epochs on small in-memory images, then top-1 accuracy on the validation split.

One plain loop: AdamW (or SGD with momentum) with a per-step cosine schedule and optional linear
warm-up, label smoothing, batched augmentation on uint8 tensors (random shifts by cropping a
padded image, horizontal flips where the data allow), float conversion and normalisation per
batch. Before each evaluation BatchNorm's running statistics are recomputed on a few training
batches: after a short training run they lag the weights so far that an otherwise fair network
can score at chance.

>>> from mobilenet_search import ArchSpec, build_model
>>> from mobilenet_search.measure.data import load_dataset
>>> data = load_dataset("synthetic:64", 32, cache_dir=None)
>>> model = build_model(ArchSpec.mobilenet_v2(0.35, 96, num_classes=4, in_channels=1))
>>> result = train_and_evaluate(model, data, TrainConfig(epochs=1, batch_size=16))
>>> len(result.history), 0 <= result.accuracy <= 1
(1, True)
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, normaliser, preprocessing
from mobilenet_search.measure.small_depthwise import small_map_depthwise


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (usually a learning rate too high for the network)."""


@dataclass(frozen=True)
class TrainConfig:
    """Proxy training settings. Defaults measured with ``benchmarks/measure_datasets.py`` (data, rate) and
    ``benchmarks/bench_fidelity.py`` (epochs: 8 rank candidates like longer training; 4 did not)."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05  # not applied to BatchNorm weights and biases
    label_smoothing: float = 0.1
    optimizer: str = "adamw"  # "adamw" or "sgd" (Nesterov momentum 0.9)
    warmup_steps: int = 0
    crop_padding: float = 0.125  # random shifts of up to this fraction of the image side
    seed: int = 0
    device: str = "cpu"
    bn_recalibration: int = 4  # training batches used to recompute BatchNorm statistics; 0 disables
    # False: evaluate after the last epoch only (about 10 % of a run's time saved; the same final accuracy).
    eval_every_epoch: bool = True
    eval_batch_size: int = 256
    channels_last: bool = True  # faster on the CPUs measured and on CUDA
    amp: bool = True  # bfloat16 autocast, on CUDA only

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 2, "an integer >= 2"),
            ("lr", self.lr > 0, "a positive number"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            ("optimizer", self.optimizer in ("adamw", "sgd"), "adamw or sgd"),
            ("warmup_steps", self.warmup_steps >= 0, "an integer >= 0"),
            ("crop_padding", 0 <= self.crop_padding < 1, "a number in [0, 1)"),
            ("device", re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None, "cpu, cuda or cuda:N"),
            ("bn_recalibration", self.bn_recalibration >= 0, "an integer >= 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise UserError(f"invalid training setting {name}={getattr(self, name)!r}: expected {expected}")


@dataclass(frozen=True)
class TrainResult:
    """What one proxy training run measured; accuracies are fractions of the validation split."""

    accuracy: float
    balanced_accuracy: float  # mean recall over the classes: fair on imbalanced data such as elpv
    history: tuple[float, ...]  # validation accuracy after each evaluated epoch (every one, or the last)
    train_seconds: float
    eval_seconds: float
    images_per_second: float  # training images per second of training steps
    predictions: torch.Tensor | None = None  # the last evaluation's predicted class per validation image
    loss_history: tuple[float, ...] = ()  # mean training loss of each epoch
    test_predictions: torch.Tensor | None = None  # the final network's predicted class per test image, if any


def train_and_evaluate(model: nn.Module, data: ImageData, config: TrainConfig = TrainConfig(), *,
                       on_epoch: Callable[[int, float | None], None] | None = None) -> TrainResult:
    """Train ``model`` (in place, moved to ``config.device``) on ``data`` and evaluate it after each epoch,
    or after the last one only (``config.eval_every_epoch=False``: the same final result).

    ``on_epoch(epoch, val_accuracy)`` runs after each epoch (epochs count from 0; ``val_accuracy``
    None for an epoch not evaluated); exceptions it raises, such as ``optuna.TrialPruned``,
    propagate. A NaN or infinite loss raises :class:`TrainingDiverged`. The same seed gives the
    same result on the CPU.
    """
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("invalid training setting device='cuda': no CUDA device is available")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda")

    prepare = input_transform(data, device, memory_format)

    n_train = len(data.train_labels)
    # Drop the last partial batch: a batch of one breaks BatchNorm on 1x1 feature maps.
    steps_per_epoch = max(1, n_train // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total_steps, config))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    history: list[float] = []
    losses: list[float] = []
    test = None
    train_seconds = eval_seconds = 0.0
    rng_devices = [device] if device.type == "cuda" else []
    # fork_rng: dropout draws from the global generator; seed it without disturbing the caller's.
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(config.epochs):
            start = time.perf_counter()
            model.train()
            order = torch.randperm(n_train, generator=generator)
            loss_sum = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                images = _augment(data.train_images[index], data.hflip, config.crop_padding, generator)
                labels = data.train_labels[index].to(device, non_blocking=True)
                with amp, small_map_depthwise(device):  # oneDNN is slow on the last 2x2, 1x1 maps
                    loss = criterion(model(prepare(images)), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                # Checking every 16 steps, not every step, spares CUDA a host sync per step.
                if (step % 16 == 15 or step == steps_per_epoch - 1) and not torch.isfinite(loss_sum):
                    raise TrainingDiverged(
                        f"training diverged: the loss became {loss_sum.item()} in epoch {epoch + 1}, "
                        f"by step {step + 1} (lr={config.lr:g}); try a lower learning rate")
            train_seconds += time.perf_counter() - start
            losses.append(loss_sum.item() / steps_per_epoch)

            # Drawn whether or not this epoch is evaluated: the training that follows is the same either way.
            subset = torch.randperm(n_train, generator=generator)[:config.bn_recalibration * config.batch_size]
            accuracy = None
            if config.eval_every_epoch or epoch == config.epochs - 1:
                start = time.perf_counter()
                # Its own random state (dropout runs during recalibration): training draws the same with or without.
                with torch.random.fork_rng(devices=rng_devices):
                    # Slices of at least two images: a single image gives BatchNorm no variance on 1x1 maps.
                    recalibrate_batchnorm(model, (prepare(data.train_images[subset[i:i + config.batch_size]])
                                                  for i in range(0, len(subset) - 1, config.batch_size)))
                with amp:
                    evaluation = evaluate(model, data, prepare, config.eval_batch_size)
                    if epoch == config.epochs - 1 and len(data.test_labels):
                        test = evaluate(model, data, prepare, config.eval_batch_size, split="test")
                eval_seconds += time.perf_counter() - start
                accuracy = evaluation.accuracy
                history.append(accuracy)
            if on_epoch is not None:
                on_epoch(epoch, accuracy)

    return TrainResult(
        accuracy=history[-1], balanced_accuracy=evaluation.balanced_accuracy, history=tuple(history),
        loss_history=tuple(losses),
        predictions=evaluation.predictions, test_predictions=None if test is None else test.predictions,
        train_seconds=train_seconds, eval_seconds=eval_seconds,
        images_per_second=total_steps * min(config.batch_size, n_train) / train_seconds if train_seconds else 0.0,
    )


def input_transform(data: ImageData, device: torch.device | str = "cpu",
                    memory_format: torch.memory_format = torch.contiguous_format,
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images -> float inputs on ``device``, normalised by the training images' channel statistics
    (so inputs are roughly zero-mean and unit-variance): what every network trained or scored here sees.

    The normalisation of :func:`~mobilenet_search.measure.data.preprocessing`, the description a study
    records and a library entry's ``transforms()`` applies."""
    return normaliser(preprocessing(data), device, memory_format)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BatchNorm parameters and biases (1-D tensors), as is usual for MobileNets.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to zero at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _augment(images: torch.Tensor, hflip: bool, padding: float, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (a random crop of the zero-padded image) and optional flips, for a whole uint8 batch."""
    n, _, h, w = images.shape
    pad = round(padding * min(h, w))
    if pad:
        padded = nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        images = padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                        rows, cols]
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm layer's running mean and variance on ``batches`` of model inputs.

    PyTorch's :func:`torch.optim.swa_utils.update_bn`: the statistics become the plain average
    over those batches (momentum ``None``), so they match the final weights instead of trailing
    them as the running averages do. With no batches the statistics are left as they were.
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return
    # Leaves the model in train mode, as BatchNorm needs; dropout, also active, sits after them.
    update_bn(itertools.chain([first], batches), model)
    model.train()


@dataclass(frozen=True)
class Evaluation:
    """Top-1 accuracy, balanced accuracy and every validation image's predicted class."""

    accuracy: float
    balanced_accuracy: float  # mean per-class recall over the classes present
    predictions: torch.Tensor  # int64, one per validation image, in the split's order

    def correct(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-image correctness (bool), the record that paired tests and intervals are computed from."""
        return self.predictions == labels


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, prepare: Callable[[torch.Tensor], torch.Tensor],
             batch_size: int = 256, split: str = "val") -> Evaluation:
    """Evaluate ``model`` (in eval mode) on the validation split (``split="test"``: the test split);
    ``prepare`` turns uint8 images into inputs."""
    model.eval()
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    predictions = torch.cat([
        model(prepare(images[i:i + batch_size])).argmax(1).cpu()
        for i in range(0, len(labels), batch_size)
    ])
    correct = (predictions == labels).double()
    per_class = torch.zeros(data.num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    counts = torch.bincount(labels, minlength=data.num_classes).double()
    present = counts > 0
    return Evaluation(correct.mean().item(), (per_class[present] / counts[present]).mean().item(), predictions)

"""Throughput of ``train_and_evaluate`` against a minimal PyTorch loop on the same tensors.

Both train the same MobileNetV2 from the same initial weights with AdamW at the same batch
size and memory format; the plain loop does nothing else (no augmentation, schedule, loss
check, BatchNorm recalibration or evaluation). Runs alternate to spread the noise of a shared
machine evenly; medians are printed. Target: ours within 10 % of the plain loop.

Run: ``python benchmarks/bench_train.py`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.measure.data import ImageData, load_dataset
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate


def plain_loop(model: nn.Module, data: ImageData, config: TrainConfig) -> float:
    """Train with the fewest possible lines; return training images per second."""
    model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    steps = len(data.train_labels) // config.batch_size
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(len(data.train_labels))
        for step in range(steps):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            images = ((data.train_images[index].float() - 127.5) / 64).contiguous(memory_format=torch.channels_last)
            loss = criterion(model(images), data.train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return config.epochs * steps * config.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    # One thread by default: on a shared, oversubscribed machine two spinning OpenMP threads
    # stall each other and the timings swing by a factor of ten.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(f"synthetic:{args.images}", args.size, cache_dir=None)
    spec = ArchSpec.mobilenet_v2(args.width, 224, num_classes=data.num_classes, in_channels=data.in_channels)
    config = TrainConfig(epochs=args.epochs)
    ours, plain, outside = [], [], []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        plain.append(plain_loop(build_model(spec), data, config))
        torch.manual_seed(repeat)
        start = time.perf_counter()
        result = train_and_evaluate(build_model(spec), data, config)
        total = time.perf_counter() - start
        ours.append(result.images_per_second)
        outside.append(1 - result.train_seconds / total)
        print(f"repeat {repeat}: plain {plain[-1]:.1f} img/s, ours {ours[-1]:.1f} img/s, "
              f"outside training steps {outside[-1]:.1%}", flush=True)
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"MobileNetV2 width {args.width} at {args.size} px, batch {config.batch_size}, {len(data.train_labels)} "
          f"training images x {args.epochs} epochs, {args.threads} threads")
    print(f"median training throughput: ours {statistics.median(ours):.1f} img/s, "
          f"plain loop {statistics.median(plain):.1f} img/s, ratio {ratio:.3f} (target >= 0.90)")
    print(f"median share of train_and_evaluate's time outside training steps (BatchNorm recalibration, "
          f"evaluation, set-up): {statistics.median(outside):.1%}")


if __name__ == "__main__":
    main()

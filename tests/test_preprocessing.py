"""The input preprocessing record and its transforms (measure/preprocessing.py, the functions in measure/data.py).

The end-to-end check (a study's entry reproduces its trial from image files) is in test_export.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenet_search import UserError
from mobilenet_search.measure.data import channel_stats, load_dataset, preprocessing, resize
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.preprocessing import Preprocessing
from mobilenet_search.measure.train import input_transform

GREY = Preprocessing(size=24, channels=1, mean=(101.25,), std=(47.5,))


def test_the_record_is_json_and_reads_back_without_torch():
    code = ("import json, sys; from mobilenet_search.measure.preprocessing import Preprocessing; "
            "import mobilenet_search.results.library; "
            f"p = Preprocessing.from_dict(json.loads({json.dumps(json.dumps(GREY.to_dict()))})); "
            "print(p.size, p.mode, sorted(m for m in ('torch', 'torchvision', 'PIL') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["24", "L", "[]"]
    assert Preprocessing.from_dict(json.loads(json.dumps(GREY.to_dict()))) == GREY


@pytest.mark.parametrize(("change", "message"), [
    (dict(crop="random"), "crop='random' \\(expected 'center'\\)"),
    (dict(value_range=[0, 1]), "value_range=\\(0, 1\\)"),
    (dict(mean=[1.0, 2.0]), "mean=\\(1.0, 2.0\\) \\(expected 1 finite numbers"),
    (dict(std=[0.0]), "expected 1 finite numbers, all positive"),
    (dict(interpolation="lanczos"), "interpolation='lanczos'"),
    (dict(extra=1), "unknown fields \\['extra'\\]"),
])
def test_a_record_this_version_cannot_apply_is_refused(change, message):
    with pytest.raises(UserError, match=message):
        Preprocessing.from_dict(GREY.to_dict() | change)


def test_the_recorded_statistics_normalise_bit_for_bit_as_the_training_images_statistics():
    data = load_dataset("synthetic:40", 32, cache_dir=None)
    prep = preprocessing(data)
    assert (prep.size, prep.channels) == (32, 1)
    mean, std = channel_stats(data.train_images)
    expected = (data.val_images.float() - mean) / std
    assert torch.equal(input_transform(data)(data.val_images), expected)
    restored = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert torch.equal(restored.transforms()(data.val_images), expected)  # already at size: resized to itself


def test_every_kind_of_raw_image_gives_the_same_input():
    pixels = np.random.default_rng(0).integers(0, 256, (30, 45), dtype=np.uint8)
    prepare = GREY.transforms()
    image = Image.fromarray(pixels, "L")
    tensor = torch.from_numpy(pixels)
    single = prepare(image)
    assert single.shape == (1, 24, 24) and single.dtype == torch.float32
    for raw in (tensor, tensor[None]):
        assert torch.equal(prepare(raw), single)
    assert torch.equal(prepare(tensor[None, None].expand(3, 1, -1, -1)), single.expand(3, 1, 24, 24))
    # The decode, resize and crop of the tool's image folders: shorter side to 24, then the centre.
    expected = (resize(tensor[None, None], 24).float() - 101.25) / 47.5
    assert torch.equal(single, expected[0])
    # A colour image is converted as image folders convert it (Pillow's L).
    colour = Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1), "RGB")
    assert torch.equal(prepare(colour), prepare(torch.from_numpy(np.array(colour.convert("L")))))


@pytest.mark.parametrize(("raw", "message"), [
    (torch.zeros(3, 20, 20, dtype=torch.uint8), "has 3 channels; this network takes 1"),
    (torch.zeros(20, 20), "not a torch.float32 tensor of shape \\(20, 20\\)"),
    (np.zeros((20, 20), dtype=np.uint8), "not ndarray"),
])
def test_what_is_not_a_raw_image_of_the_networks_channels_is_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        GREY.transforms()(raw)


def test_a_data_cache_tells_each_size_once_as_it_is_first_loaded():
    cache = DataCache("synthetic:40", 32)
    seen = []
    cache.on_load(lambda data: seen.append(data.size))
    assert seen == [32]  # the size loaded when the cache was made
    cache(40), cache(40), cache(32)
    assert seen == [32, 40]

"""Weights files (files.save_weights, files.load_weights, builder.build_with_weights), checked against the
safetensors calls they replaced (issue 23)."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file, save_file

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.arch.builder import build_with_weights
from mobilenet_search.errors import UserError
from mobilenet_search.files import save_weights


def _random_specs(count: int, seed: int) -> list[ArchSpec]:
    rng = random.Random(seed)
    specs = []
    for _ in range(count):
        make = rng.choice([ArchSpec.mobilenet_v2, ArchSpec.mobilenet_v1])
        specs.append(make(rng.choice([0.25, 0.35, 0.5]), 32, num_classes=rng.choice([2, 10]),
                          in_channels=rng.choice([1, 3]), activation=rng.choice(["relu", "relu6"]),
                          head=rng.choice(["fc", "conv1x1"])))
    return specs


def _old_save_weights(model: torch.nn.Module, path) -> None:
    """What save_weights did before safetensors.torch.save_model (without the atomic rename)."""
    save_file({key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, str(path))


def test_save_weights_writes_the_bytes_the_old_save_file_wrote(tmp_path):
    for i, spec in enumerate(_random_specs(6, seed=0)):
        model = build_model(spec, seed=i)
        model.train()(torch.randn(2, spec.in_channels, 32, 32))  # moves the BatchNorm statistics off their defaults
        _old_save_weights(model, tmp_path / "old.safetensors")
        assert save_weights(model, tmp_path / "new.safetensors") == tmp_path / "new.safetensors"
        assert (tmp_path / "new.safetensors").read_bytes() == (tmp_path / "old.safetensors").read_bytes(), spec


def test_a_weights_file_builds_the_network_the_old_state_dict_load_built(tmp_path):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for i, spec in enumerate(_random_specs(6, seed=1)):
        spec = spec.replace(in_channels=3)
        model = build_model(spec, seed=i)
        model.train()(x)
        save_weights(model, tmp_path / "net.safetensors")
        new = build_with_weights(spec, tmp_path / "net.safetensors").eval()
        old = build_with_weights(spec, load_file(str(tmp_path / "net.safetensors"))).eval()
        assert new.state_dict().keys() == old.state_dict().keys()
        assert all(torch.equal(new.state_dict()[k], v) for k, v in old.state_dict().items())
        with torch.no_grad():
            assert torch.equal(new(x), model.eval()(x))


def test_weights_that_do_not_fit_are_one_line_naming_the_first_mismatch(tmp_path):
    spec = ArchSpec.mobilenet_v2(0.35, 32, num_classes=10)
    save_weights(build_model(spec.replace(width_mult=0.5)), tmp_path / "wider.safetensors")
    state = build_model(spec).state_dict()
    del state["classifier.1.bias"]
    save_file(state, str(tmp_path / "short.safetensors"))
    missing = r'^Missing key\(s\) in state_dict: "classifier\.1\.bias"\.?$'
    for weights, message in [(tmp_path / "wider.safetensors", r"^size mismatch for features\.\d+\.conv\."),
                             (state, missing), (tmp_path / "short.safetensors", missing)]:
        with pytest.raises(ValueError, match=message) as info:
            build_with_weights(spec, weights)
        assert "\n" not in str(info.value) and not isinstance(info.value, UserError)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    for name in ("broken.safetensors", "absent.safetensors"):
        with pytest.raises(UserError, match=f"^cannot read weights '.*{name}': "):
            build_with_weights(spec, tmp_path / name)

"""Supernet training (sandwich rule, zero-initialised residual blocks, distillation), checkpoints, resume, scoring."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, load_dataset
from mobilenet_search.measure.supernet_train import (
    SupernetConfig,
    calibration_indices,
    score_subnet,
    supernet_tag,
    train_supernet,
)
from mobilenet_search.measure.train import TrainingDiverged
from mobilenet_search.search.space import load_space, supernet_envelope

SPACE = load_space("tiny")
ENVELOPE = supernet_envelope(SPACE, num_classes=4, in_channels=1)
SMALLEST = SPACE.extreme(num_classes=4, in_channels=1)
FAST = SupernetConfig(epochs=2, batch_size=32, lr=5e-3, warmup_epochs=0)


@functools.cache
def stripes(size: int) -> ImageData:
    return load_dataset("synthetic:256", size, cache_dir=None)


def proxy_size(spec: ArchSpec) -> int:
    # tiny's resolutions 32, 48, 64 -> 16, 24, 32 px: three sizes, so members train at different sizes.
    return spec.resolution // 2


def sample(generator: torch.Generator) -> ArchSpec:
    params = {name: values[int(torch.randint(len(values), (1,), generator=generator))]
              for name, values in SPACE.searched.items()}
    return SPACE.spec(params, num_classes=4, in_channels=1)


def train(checkpoint, config=FAST, tag="t", seed=0, on_step=None):
    net = Supernet(ENVELOPE, seed=seed)
    result = train_supernet(net, stripes, sample, SMALLEST, ENVELOPE, proxy_size, config, checkpoint, tag,
                            on_step=on_step)
    return net, result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A supernet trained long enough to learn the stripes (a few seconds)."""
    config = SupernetConfig(epochs=8, batch_size=32, lr=5e-3, warmup_epochs=1)
    return train(tmp_path_factory.mktemp("trained") / "supernet.pt", config)


def test_the_largest_members_training_loss_goes_down(trained):
    _, result = trained
    assert len(result.losses) == 8 and result.resumed_epochs == 0 and result.train_seconds > 0
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_a_trained_supernets_members_score_above_chance_on_the_stripes(trained):
    net, _ = trained
    for spec in (ENVELOPE, SMALLEST):
        data = stripes(proxy_size(spec))
        evaluation, seconds = score_subnet(net, spec, data, calibration=calibration_indices(data, 128))
        assert evaluation.accuracy > 0.45, spec  # chance is 0.25
        assert len(evaluation.predictions) == len(data.val_labels) and seconds > 0


def test_scoring_leaves_the_supernet_and_the_random_state_alone_and_is_deterministic(trained):
    net, _ = trained
    spec = sample(torch.Generator().manual_seed(5))
    data = stripes(proxy_size(spec))
    calibration = calibration_indices(data, 100, seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first, _ = score_subnet(net, spec, data, calibration=calibration)
    second, _ = score_subnet(net, spec, data, calibration=calibration)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert first.accuracy == second.accuracy and torch.equal(first.predictions, second.predictions)


def test_seeded_runs_give_the_same_weights_and_another_seed_does_not(tmp_path):
    torch.manual_seed(1)
    net_a, result_a = train(tmp_path / "a.pt", FAST)
    torch.manual_seed(2)  # the global random state plays no part
    net_b, result_b = train(tmp_path / "b.pt", FAST)
    assert result_a.losses == result_b.losses
    assert all(torch.equal(v, net_b.state_dict()[k]) for k, v in net_a.state_dict().items())
    net_c, _ = train(tmp_path / "c.pt", dataclasses.replace(FAST, seed=1))
    assert not torch.equal(net_c.classifier[1].weight, net_a.classifier[1].weight)


@pytest.mark.parametrize("zero_init", [True, False])
def test_a_fresh_training_starts_every_residual_block_as_the_identity_unless_told_not_to(tmp_path, zero_init):
    residual = [i + 1 for i, block in enumerate(ENVELOPE.blocks()) if block.residual]
    assert residual  # tiny's envelope has residual blocks

    def stop_after_the_first_step(epoch, step, steps_per_epoch, loss):
        raise KeyboardInterrupt

    config = dataclasses.replace(FAST, zero_init_residual=zero_init)
    net = Supernet(ENVELOPE, seed=0)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(net, stripes, sample, SMALLEST, ENVELOPE, proxy_size, config, tmp_path / "s.pt", "t",
                       on_step=stop_after_the_first_step)
    for index in residual:
        scale = net.features[index].conv[-1].weight.abs().max().item()
        # One AdamW step moves a parameter by about the learning rate; torchvision initialises the scales to 1.
        assert (scale <= 2 * config.lr) if zero_init else (scale > 0.9), (index, scale)


def test_training_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train(tmp_path / "s.pt", SupernetConfig(epochs=1, batch_size=64, warmup_epochs=0))
    assert torch.equal(torch.rand(3), expected)


def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint_to_the_uninterrupted_weights(tmp_path):
    net_full, full = train(tmp_path / "full.pt")
    steps = []

    def kill_in_second_epoch(epoch, step, steps_per_epoch, loss):
        steps.append((epoch, step))
        assert steps_per_epoch == full.steps_per_epoch and loss > 0
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed.pt", on_step=kill_in_second_epoch)
    saved = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["tag"] == "t"
    # A new process: fresh weights (another initialisation, even), everything comes from the checkpoint.
    net_resumed, resumed = train(tmp_path / "killed.pt", seed=123)
    assert resumed.resumed_epochs == 1 and resumed.losses == full.losses
    assert all(torch.equal(v, net_resumed.state_dict()[k]) for k, v in net_full.state_dict().items())
    # A finished run started again trains nothing more.
    _, again = train(tmp_path / "killed.pt", seed=123)
    assert again.resumed_epochs == FAST.epochs and again.train_seconds == 0


def test_a_checkpoint_of_other_settings_is_refused_in_one_line(tmp_path):
    path = tmp_path / "s.pt"
    one_epoch = SupernetConfig(epochs=1, batch_size=64, warmup_epochs=0)
    train(path, one_epoch, tag=supernet_tag(space="tiny", data="synthetic:256"))
    with pytest.raises(UserError, match=r"^checkpoint .*s\.pt was trained for another space/data/settings") as error:
        train(path, one_epoch, tag=supernet_tag(space="tiny", data="synthetic:512"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-a-checkpoint"])
def test_a_corrupt_or_truncated_checkpoint_is_a_user_error_naming_the_path(tmp_path, damage):
    path = tmp_path / "s.pt"
    one_epoch = SupernetConfig(epochs=1, batch_size=64, warmup_epochs=0)
    if damage == "truncate":
        train(path, one_epoch)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a zip file at all")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match=rf"^checkpoint {path}") as error:
        train(path, one_epoch)
    assert "\n" not in str(error.value)


def test_a_diverging_run_raises_training_diverged_and_keeps_no_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="diverged"):
        train(tmp_path / "s.pt", SupernetConfig(epochs=1, batch_size=32, lr=1e12, warmup_epochs=0))
    assert not (tmp_path / "s.pt").exists()


def test_supernet_tag_is_stable_and_changes_with_any_setting():
    config = SupernetConfig()
    tag = supernet_tag(space=SPACE, data="embedded", config=config)
    assert len(tag) == 16 and tag == supernet_tag(config=config, data="embedded", space=SPACE)
    assert tag != supernet_tag(space=SPACE, data="embedded", config=SupernetConfig(epochs=25))
    assert tag != supernet_tag(space=load_space("mobilenetv2"), data="embedded", config=config)


@pytest.mark.parametrize("setting", [dict(epochs=0), dict(batch_size=1), dict(lr=0), dict(random_subnets=-1),
                                     dict(label_smoothing=1.0), dict(device="tpu"), dict(bn_images=1),
                                     dict(distill="yes")])
def test_invalid_settings_are_user_errors_naming_the_setting(setting):
    name = next(iter(setting))
    with pytest.raises(UserError, match=rf"^invalid supernet setting {name}="):
        SupernetConfig(**setting)

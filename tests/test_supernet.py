"""The weight-sharing supernet: a member run in place equals its extracted subnet, which equals build_model's."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.errors import UserError
from mobilenet_search.search.space import available_spaces, load_space, supernet_envelope

# Small inputs keep 50 members of mobilenetv2 fast: the net is fully convolutional.
IN_CHANNELS, NUM_CLASSES, SIZE = 1, 2, 32


def _randomised_supernet(space_name: str) -> tuple[Supernet, object]:
    """A supernet whose BatchNorm layers have non-trivial weights and running statistics (fixed seed)."""
    space = load_space(space_name)
    net = Supernet(supernet_envelope(space, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS), seed=0)
    _randomise_batchnorm(net, seed=1)
    return net.eval(), space


def _randomise_batchnorm(net: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm weights and running statistics, and classifier bias (fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
        net.classifier[1].bias.normal_(0, 0.2, generator=generator)


def _random_members(space, count: int, seed: int) -> list[ArchSpec]:
    rng = random.Random(seed)
    return [space.spec({name: rng.choice(values) for name, values in space.searched.items()},
                       num_classes=NUM_CLASSES, in_channels=IN_CHANNELS) for _ in range(count)]


@pytest.mark.parametrize("space_name", ["mobilenetv2", "tiny", "mobilenetv1"])
def test_members_run_in_place_give_the_logits_of_their_extracted_subnets(space_name):
    net, space = _randomised_supernet(space_name)
    x = torch.randn(2, IN_CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for i, spec in enumerate(_random_members(space, 50, seed=3)):
        assert net.covers(spec)
        subnet = net.subnet(spec).eval()
        if i % 5 == 0:  # building the reference costs as much as the rest: every fifth member is plenty
            reference = build_model(spec)
            assert type(subnet) is type(reference)
            assert {k: v.shape for k, v in subnet.state_dict().items()} == {
                k: v.shape for k, v in reference.state_dict().items()}
        with torch.no_grad():
            difference = (net(x, spec) - subnet(x)).abs().max().item()
        assert difference <= 1e-5, spec
    # Neither running members in eval mode nor extracting them changes the supernet.
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_the_envelopes_subnet_is_the_whole_supernet():
    net, _ = _randomised_supernet("tiny")
    subnet = net.subnet(net.envelope)
    assert subnet.state_dict().keys() == net.state_dict().keys()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in subnet.state_dict().items())
    x = torch.randn(3, IN_CHANNELS, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(net(x), subnet.eval()(x))


def test_a_subnet_with_fewer_blocks_takes_the_first_blocks_of_each_stage():
    envelope = ArchSpec.mobilenet_v2(0.5, 64, stages=[(1, 8, 1, 1), (4, 16, 3, 2), (4, 24, 2, 2)],
                                     stem_channels=8, head_channels=64, num_classes=2, in_channels=1)
    net = Supernet(envelope, seed=0)
    spec = envelope.replace(stages=[(1, 8, 1, 1), (4, 16, 1, 2), (4, 24, 2, 2)])
    subnet = net.subnet(spec)
    # Envelope features: stem, 1, 3 blocks (2-4), 2 blocks (5-6), head (7); the subnet skips blocks 3 and 4.
    for ours, theirs in [(0, 0), (1, 1), (2, 2), (3, 5), (4, 6), (5, 7)]:
        a, b = subnet.features[ours].state_dict(), net.features[theirs].state_dict()
        assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_zero_init_residual_makes_every_residual_block_the_identity_so_depth_changes_nothing_at_first():
    envelope = ArchSpec.mobilenet_v2(0.5, 64, stages=[(1, 8, 1, 1), (4, 16, 3, 2), (4, 24, 2, 1)],
                                     stem_channels=8, head_channels=64, num_classes=2, in_channels=1)
    shallow = envelope.replace(stages=[(1, 8, 1, 1), (4, 16, 1, 2), (4, 24, 1, 1)])
    net = Supernet(envelope, seed=0).eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(net(x), net(x, shallow), atol=1e-4)  # the extra blocks compute something
        net.zero_init_residual()
        assert torch.allclose(net(x), net(x, shallow), atol=1e-6)  # now they pass their input through
    # Exactly the projection BatchNorm of each residual block, nothing else: block 1 (8 -> 8 channels, stride 1,
    # no expansion layer) and the blocks after each stage's first (3, 4 and 6).
    zeroed = {name for name, p in net.named_parameters() if name.endswith(".weight") and not p.any()}
    assert zeroed == {"features.1.conv.2.weight", "features.3.conv.3.weight", "features.4.conv.3.weight",
                      "features.6.conv.3.weight"}


def test_a_stride_1_stages_first_block_gets_a_residual_when_the_subnets_widths_match():
    envelope = ArchSpec.mobilenet_v2(1.0, 64, stages=[(1, 16, 1, 1), (6, 24, 2, 1)],
                                     stem_channels=16, head_channels=32, num_classes=2, in_channels=1)
    net = Supernet(envelope, seed=0).eval()
    spec = envelope.replace(stages=[(1, 16, 1, 1), (6, 16, 2, 1)])
    first_block = next(b for b in spec.blocks() if b.stage == 1)
    assert first_block.residual and not next(b for b in envelope.blocks() if b.stage == 1).residual
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x, spec), net.subnet(spec).eval()(x), atol=1e-6)


def test_training_mode_updates_the_first_channels_of_the_shared_batchnorm_statistics():
    net, space = _randomised_supernet("tiny")
    small = space.extreme(num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
    # The last stage's projection BatchNorm: features[4] is its only block, conv[3] the BN after the projection.
    bn = net.features[4].conv[3]
    before, count = bn.running_mean.clone(), bn.num_batches_tracked.item()
    net.train()(torch.randn(4, IN_CHANNELS, SIZE, SIZE), small)
    used = small.stages_out
    assert used < len(before)
    assert not torch.equal(bn.running_mean[:used], before[:used])
    assert torch.equal(bn.running_mean[used:], before[used:])
    assert bn.num_batches_tracked.item() == count + 1


@pytest.mark.parametrize("change, named", [
    (dict(family="mobilenet_v1", stages=[(1, 8, 1, 1), (1, 16, 2, 2), (1, 24, 1, 2)]), "family"),
    (dict(activation="relu"), "activation"),
    (dict(linear_bottleneck=False), "linear_bottleneck"),
    (dict(head="conv1x1"), "head"),
    (dict(head_channels=None), "head_channels"),
    (dict(num_classes=3), "num_classes"),
    (dict(in_channels=3), "in_channels"),
    (dict(width_mult=1.0), "channels"),
    (dict(stem_channels=32), "stem"),
    (dict(head_channels=256), "head layer"),
    (dict(stages=[(1, 8, 1, 1), (4, 16, 3, 2), (4, 24, 1, 2)]), "stage 2 has 3 blocks"),
    (dict(stages=[(1, 8, 1, 1), (4, 16, 2, 1), (4, 24, 1, 2)]), "stage 2 has stride 1"),
    (dict(stages=[(1, 8, 1, 1), (1, 16, 2, 2), (4, 24, 1, 2)]), "stage 2 has expansion 1"),
    (dict(stages=[(2, 8, 1, 1), (4, 16, 2, 2), (4, 24, 1, 2)]), "stage 1 has expansion 2"),
    (dict(stages=[(1, 8, 1, 1), (6, 16, 2, 2), (4, 24, 1, 2)]), "hidden"),
    (dict(stages=[(1, 8, 1, 1), (4, 16, 2, 2)]), "2 stages"),
])
def test_a_spec_the_supernet_cannot_run_is_a_user_error_naming_what_does_not_fit(change, named):
    net, space = _randomised_supernet("tiny")
    spec = net.envelope.replace(**change)
    assert not net.covers(spec)
    for run in (net.check, net.subnet, lambda s: net(torch.zeros(2, IN_CHANNELS, SIZE, SIZE), s)):
        with pytest.raises(UserError, match=named) as error:
            run(spec)
        assert "\n" not in str(error.value)


def test_the_envelope_of_each_shipped_space_covers_its_largest_and_smallest_members():
    assert set(available_spaces()) == {"mobilenetv1", "mobilenetv2", "mobilenetv2_ablations", "mobilenetv2_scaling",
                                       "tiny"}
    for name in ("mobilenetv1", "mobilenetv2", "tiny"):
        space = load_space(name)
        envelope = supernet_envelope(space, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
        assert space.params_of(envelope) is not None  # a member of the space: its largest
        net = Supernet(envelope)
        for largest in (False, True):
            assert net.covers(space.extreme(largest=largest, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS))
        assert envelope.num_classes == NUM_CLASSES and envelope.in_channels == IN_CHANNELS
    envelope = supernet_envelope(load_space("mobilenetv2"), num_classes=10, in_channels=3)
    assert envelope.width_mult == 1.4 and envelope.resolution == 224
    assert [s.expansion for s in envelope.stages] == [1, 6, 6, 6, 6, 6, 6]
    assert [s.channels for s in envelope.stages] == [16, 32, 40, 80, 112, 192, 384]
    assert [s.repeats for s in envelope.stages] == [1, 3, 4, 5, 4, 4, 2]


def test_a_space_that_varies_layer_types_has_no_envelope_and_the_error_names_the_first_such_field():
    # The ablations space varies head_channels (with null), activation, linear_bottleneck and head;
    # head_channels comes first in the file's order.
    with pytest.raises(UserError, match=r"^space 'mobilenetv2_ablations' cannot share weights.*head_channels"):
        supernet_envelope(load_space("mobilenetv2_ablations"), num_classes=2, in_channels=1)


@pytest.mark.parametrize("field, values", [
    ("activation", ["relu6", "relu"]),
    ("round_nearest", [8, 4]),
])
def test_an_envelope_refuses_a_varying_structural_field(field, values):
    from mobilenet_search.search.space import parse_space
    space = parse_space({"family": "mobilenet_v2", field: values,
                         "stages": [{"expansion": [1, 6], "channels": 16, "repeats": 1, "stride": [1, 2]}]})
    with pytest.raises(UserError, match=field):
        supernet_envelope(space, num_classes=2, in_channels=1)
    fixed = parse_space({"family": "mobilenet_v2",
                         "stages": [{"expansion": [1, 6], "channels": 16, "repeats": 1, "stride": 1}]})
    with pytest.raises(UserError, match=r"stage1\.expansion varies \(1, 6\)"):
        supernet_envelope(fixed, num_classes=2, in_channels=1)


@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1"])
@pytest.mark.parametrize("activation", ["relu6", "relu"])
@pytest.mark.parametrize("linear_bottleneck", [True, False])
@pytest.mark.parametrize("head", ["fc", "conv1x1"])
@pytest.mark.parametrize("head_channels", [None, 96])
def test_every_layer_type_run_in_place_equals_the_built_member_with_inherited_weights(
        family, activation, linear_bottleneck, head, head_channels):
    # Supernet.forward runs the builder's modules on sliced weights (which layers, and which have an activation,
    # it reads from them): this holds the two together for every kind of layer the builder makes: stem, blocks
    # without (t = 1) and with an expansion layer, linear and non-linear projections, residual and plain blocks
    # (a stride-1 first block with matching widths too), each activation, a head layer or none, and either
    # classifier. Eval mode, then training mode (batch statistics, running statistics updated in place), where the
    # built member updates its own.
    t = 1 if family == "mobilenet_v1" else 6
    envelope = ArchSpec(family=family, width_mult=1.0, resolution=64, activation=activation,
                        linear_bottleneck=linear_bottleneck, head=head, head_channels=head_channels, dropout=0.0,
                        stages=((1, 16, 1, 1), (t, 24, 2, 2), (t, 24, 2, 1), (t, 32, 2, 2)),
                        stem_channels=16, num_classes=3, in_channels=2)
    net = Supernet(envelope, seed=0)
    _randomise_batchnorm(net, seed=1)
    rng = random.Random(2)
    x = torch.randn(4, 2, 24, 24, generator=torch.Generator().manual_seed(3))
    members = [envelope] + [envelope.replace(
        width_mult=rng.choice([0.5, 0.75, 1.0]),
        stages=[(1, 16, 1, 1)] + [(rng.choice([t, max(1, t // 2)]), stage.channels, rng.randint(1, stage.repeats),
                                   stage.stride) for stage in envelope.stages[1:]]) for _ in range(4)]
    for spec in members:
        assert net.covers(spec), spec
        subnet = net.eval().subnet(spec)
        with torch.no_grad():
            torch.testing.assert_close(net(x, spec), subnet(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(net.train()(x, spec), subnet.train()(x), rtol=1e-5, atol=1e-5)
        updated = net.subnet(spec).state_dict()
        for key, value in subnet.state_dict().items():
            torch.testing.assert_close(updated[key], value, rtol=1e-6, atol=1e-6, msg=f"{spec}: {key}")

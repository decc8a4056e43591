"""ArchSpec: immutability, validation, the resolution multiplier, lossless round trips, make_divisible."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from torchvision.models._utils import _make_divisible

from mobilenet_search.arch.spec import MOBILENET_V2_STAGES, ArchSpec, StageSpec, make_divisible, parse_arch
from mobilenet_search.errors import UserError

V2 = ArchSpec.mobilenet_v2()

# Specs a round trip must preserve exactly: the papers' nets and every unusual field value.
SPECIAL_SPECS = [
    V2,
    ArchSpec.mobilenet_v1(),
    ArchSpec.mobilenet_v2(0.35, 96),
    ArchSpec.mobilenet_v2(1.3, 150),
    ArchSpec.mobilenet_v2(1.4, 224, num_classes=1001),
    ArchSpec.mobilenet_v1(0.25, 128, num_classes=2),
    ArchSpec.mobilenet_v2(activation="relu"),
    ArchSpec.mobilenet_v2(linear_bottleneck=False),
    ArchSpec.mobilenet_v2(head="conv1x1"),
    ArchSpec.mobilenet_v2(head_channels=None),
    ArchSpec.mobilenet_v2(in_channels=1, resolution=97, num_classes=10),
    ArchSpec.mobilenet_v2(width_mult=0.1 + 0.2, dropout=1e-05),  # floats without a short decimal form
    ArchSpec.mobilenet_v2(width_mult=1e-05, dropout=0.0),
    ArchSpec.mobilenet_v2(round_nearest=1, stem_channels=3),
]


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        V2.width_mult = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        V2.stages[0].expansion = 2  # type: ignore[misc]


def test_stages_given_as_lists_are_stored_as_an_immutable_tuple_equal_to_the_default() -> None:
    spec = ArchSpec(stages=[list(row) for row in MOBILENET_V2_STAGES])
    assert isinstance(spec.stages, tuple)
    assert spec == V2
    assert hash(spec) == hash(V2)


def test_integer_width_is_stored_as_float() -> None:
    spec = ArchSpec.mobilenet_v2(width_mult=1)
    assert spec == V2
    assert isinstance(spec.width_mult, float)


def test_mobilenet_v2_is_the_papers_table_2() -> None:
    # Sandler et al. 2018, Table 2: (t, c, n, s) rows, 32-channel stem, 1280-channel last conv.
    assert [(s.expansion, s.channels, s.repeats, s.stride) for s in V2.stages] == [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ]
    assert (V2.stem_channels, V2.head_channels, V2.activation, V2.resolution) == (32, 1280, "relu6", 224)
    assert sum(1 for _ in V2.blocks()) == 17


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"width_mult": 0.0}, "width_mult", "0.0"),
        ({"width_mult": -1.0}, "width_mult", "-1.0"),
        ({"width_mult": float("inf")}, "width_mult", "inf"),
        ({"width_mult": float("nan")}, "width_mult", "nan"),
        ({"width_mult": "1.0"}, "width_mult", "'1.0'"),
        ({"resolution": 31}, "resolution", "31"),
        ({"resolution": 224.0}, "resolution", "224.0"),
        ({"family": "mobilenet_v3"}, "family", "'mobilenet_v3'"),
        ({"activation": "swish"}, "activation", "'swish'"),
        ({"head": "mlp"}, "head", "'mlp'"),
        ({"dropout": 1.0}, "dropout", "1.0"),
        ({"dropout": -0.1}, "dropout", "-0.1"),
        ({"num_classes": 0}, "num_classes", "0"),
        ({"in_channels": 0}, "in_channels", "0"),
        ({"stem_channels": 0}, "stem_channels", "0"),
        ({"head_channels": 0}, "head_channels", "0"),
        ({"round_nearest": 0}, "round_nearest", "0"),
        ({"linear_bottleneck": "yes"}, "linear_bottleneck", "'yes'"),
        ({"stages": ()}, "stages", "()"),
        ({"stages": ((0, 16, 1, 1),)}, "expansion", "0"),
        ({"stages": ((1, 0, 1, 1),)}, "channels", "0"),
        ({"stages": ((1, 16, 0, 1),)}, "repeats", "0"),
        ({"stages": ((1, 16, 1, 3),)}, "stride", "3"),
        ({"stages": ((1, 16, 1, 0),)}, "stride", "0"),
        ({"stages": ((1, 16, 1, True),)}, "stride", "True"),
    ],
)
def test_invalid_field_raises_user_error_naming_field_and_value(changes: dict, field: str, value: str) -> None:
    with pytest.raises(UserError) as info:
        V2.replace(**changes)
    message = str(info.value)
    assert field in message
    assert value in message


def test_mobilenet_v1_stage_with_expansion_is_rejected_naming_the_stage() -> None:
    with pytest.raises(UserError, match=r"stages\[1\]\.expansion.*6"):
        ArchSpec.mobilenet_v1(stages=((1, 64, 1, 1), (6, 128, 2, 2)))


@pytest.mark.parametrize(("resolution", "mult"), [(224, 1.0), (192, 192 / 224), (160, 160 / 224), (96, 96 / 224)])
def test_resolution_mult_is_resolution_over_224(resolution: int, mult: float) -> None:
    assert ArchSpec.mobilenet_v2(resolution=resolution).resolution_mult == mult


@pytest.mark.parametrize("spec", SPECIAL_SPECS, ids=str)
def test_special_specs_round_trip_through_json_and_string(spec: ArchSpec) -> None:
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_string(spec.to_string()) == spec
    assert parse_arch(spec.to_json()) == spec
    assert parse_arch(spec.to_string()) == spec
    assert ArchSpec.from_dict(json.loads(spec.to_json())) == spec


def test_random_specs_round_trip_through_json_and_string(random_specs: list[ArchSpec]) -> None:
    for spec in random_specs:
        assert ArchSpec.from_json(spec.to_json()) == spec, spec
        assert ArchSpec.from_string(spec.to_string()) == spec, spec
        assert parse_arch(" " + spec.to_string() + "\n") == spec, spec
        # The string form is a plain name: one token, no spaces, usable as a file name.
        assert spec.to_string().isprintable() and " " not in spec.to_string() and "/" not in spec.to_string()


def test_distinct_random_specs_have_distinct_strings(random_specs: list[ArchSpec]) -> None:
    assert len({s.to_string() for s in random_specs}) == len(set(random_specs))


def test_v2_string_names_every_setting() -> None:
    assert V2.to_string() == (
        "mnv2_w1.0_r224_stem32_t1c16n1s1-t6c24n2s2-t6c32n3s2-t6c64n4s2-t6c96n3s1-t6c160n3s2-t6c320n1s1"
        "_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8"
    )
    assert str(V2) == V2.to_string()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mobilenet",
        "mnv3_w1.0_r224_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",
        "mnv2_w1.0_r224_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop0.2_cls1000_in3",  # missing token
        "mnv2_w1.0_r224_stem32__head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",  # no stages
        "mnv2_wabc_r224_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",
        "mnv2_w1.0_r16_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",  # resolution < 32
        "mnv2_w1.0_r224_stem32_t1c16n1s3_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",  # stride 3
        "mnv2_w0_r224_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop0.2_cls1000_in3_div8",  # width 0
        "mnv1_w1.0_r224_stem32_t6c16n1s1_head0_relu6_nonlinear_fc_drop0.0_cls1000_in3_div8",  # V1 with t=6
        "mnv2_w1.0_r224_stem32_t1c16n1s1_head1280_relu6_linear_fc_drop1.5_cls1000_in3_div8",  # dropout >= 1
        "mnv2_w1.0_r224_stem32_t1c16n1s1_head1280_gelu_linear_fc_drop0.2_cls1000_in3_div8",
    ],
)
def test_malformed_string_raises_user_error(text: str) -> None:
    with pytest.raises(UserError):
        ArchSpec.from_string(text)
    with pytest.raises(UserError):
        parse_arch(text)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"width_mult": }',
        "[1, 2]",
        '"mobilenet_v2"',
        '{"depth_mult": 1.0}',  # unknown field
        '{"stages": [[6, 24, 2]]}',  # row of three
        '{"stages": 5}',
        '{"stages": [[6, 24, 2, 2, 1]]}',
        '{"stages": [[6, "24", 2, 2]]}',
        '{"width_mult": -0.5}',
        '{"resolution": 16}',
        '{"family": "mobilenet_v1"}',  # V1 with V2's expanded stages
        '{"head_channels": 0}',
        '{"width_mult": null}',
        '{"width_mult": 1e309}',  # json reads it as inf
        '{"dropout": NaN}',
        '{"in_channels": 2.5}',
        '{"family": {"a": 1}}',
        '{"stages": [[6, null, 2, 2]]}',
        '{"stages": null}',
        'null',
    ],
)
def test_malformed_json_raises_user_error(text: str) -> None:
    with pytest.raises(UserError):
        ArchSpec.from_json(text)
    with pytest.raises(UserError):
        parse_arch(text)


def test_json_with_null_head_and_partial_fields_uses_defaults() -> None:
    spec = ArchSpec.from_json('{"head_channels": null, "width_mult": 0.5}')
    assert spec == ArchSpec.mobilenet_v2(0.5, head_channels=None)


def test_make_divisible_equals_torchvision() -> None:
    rng = random.Random(0)
    widths = (0.1, 0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    values = [c * w for c in (3, 8, 16, 24, 32, 96, 160, 320, 1280) for w in widths]
    values += [rng.uniform(0.01, 3000.0) for _ in range(5000)] + [float(v) for v in range(1, 500)]
    for divisor in (1, 2, 4, 8, 16):
        for value in values:
            assert make_divisible(value, divisor) == _make_divisible(value, divisor), (value, divisor)


def test_make_divisible_published_examples() -> None:
    # torchvision mobilenet_v2(width_mult=0.35) has a 16-channel stem; width 1.4 a 1792-channel last conv.
    assert make_divisible(0.35 * 32) == 16
    assert make_divisible(1.4 * 1280) == 1792
    assert make_divisible(0.35 * 16) == 8


def test_blocks_residual_only_in_v2_stride_1_equal_channels() -> None:
    v2 = list(V2.blocks())
    assert [b.residual for b in v2] == [b.stride == 1 and b.in_channels == b.out_channels for b in v2]
    assert sum(b.residual for b in v2) == 10  # Table 2: the repeats after each stage's first block
    assert not any(b.residual for b in ArchSpec.mobilenet_v1(stages=((1, 64, 3, 1),)).blocks())


def test_stage_spec_string_form() -> None:
    assert StageSpec(6, 24, 2, 2).to_string() == "t6c24n2s2"


def test_width_with_positive_exponent_round_trips_through_string() -> None:
    # repr() writes floats >= 1e16 as "1e+16"; any finite width > 0 is valid, so the string form must take it.
    spec = ArchSpec.mobilenet_v2(width_mult=1e16)
    assert ArchSpec.from_string(spec.to_string()) == spec

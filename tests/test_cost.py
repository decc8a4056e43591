"""The cost model: exact agreement with PyTorch's FlopCounterMode, published figures, the stage table."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.cost import (
    FLOAT_BYTES,
    MODULE_BYTES,
    TRAINING_COPIES,
    conv_out,
    count_activations,
    count_madds,
    count_params,
    format_stage_table,
    profile_module,
    stage_table,
    training_memory,
)
from mobilenet_search.arch.spec import ArchSpec

V2 = ArchSpec.mobilenet_v2()


def input_size(spec: ArchSpec) -> tuple[int, int, int, int]:
    """The one-image input shape the spec's network takes."""
    return (1, spec.in_channels, spec.resolution, spec.resolution)


def test_mobilenet_v2_madds_and_params() -> None:
    # Sandler et al. 2018, Table 3: MobileNetV2 300M MAdds, 3.4M parameters (torchvision's count: 3,504,872).
    assert count_madds(V2) == 300_774_272
    assert count_params(V2) == 3_504_872


def test_mobilenet_v1_madds_and_params() -> None:
    # Howard et al. 2017, Table 8 and Table 6: 1.0 MobileNet-224 has 569M mult-adds and 4.2M parameters.
    spec = ArchSpec.mobilenet_v1()
    assert count_madds(spec) == 568_740_352
    assert count_params(spec) == 4_231_976
    assert round(count_madds(spec) / 1e6) == 569


def test_profile_module_counts_torchvisions_mobilenet_v2_like_the_spec() -> None:
    assert profile_module(torchvision.models.mobilenet_v2(), (1, 3, 224, 224)) == (300_774_272, 3_504_872)


def test_flop_counter_charges_convolutions_and_linear_layers_only() -> None:
    # FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix products and nothing
    # for BatchNorm, ReLU6 or pooling, so its raw total is exactly twice the papers' 300,774,272 MAdds.
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.mobilenet_v2().eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() == 2 * count_madds(V2)


@pytest.mark.parametrize("resolution", [96, 128, 160, 192, 224])
@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_analytic_cost_equals_flop_counter_for_paper_mobilenet_v2(width_mult: float, resolution: int) -> None:
    spec = ArchSpec.mobilenet_v2(width_mult, resolution)
    assert profile_module(build_model(spec), input_size(spec)) == (count_madds(spec), count_params(spec))


@pytest.mark.parametrize("resolution", [128, 224])
@pytest.mark.parametrize("width_mult", [0.25, 0.5, 0.75, 1.0])
def test_analytic_cost_equals_flop_counter_for_paper_mobilenet_v1(width_mult: float, resolution: int) -> None:
    spec = ArchSpec.mobilenet_v1(width_mult, resolution)
    assert profile_module(build_model(spec), input_size(spec)) == (count_madds(spec), count_params(spec))


def test_analytic_cost_equals_flop_counter_for_random_specs(random_specs: list[ArchSpec]) -> None:
    for spec in random_specs:
        model = build_model(spec)
        expected = (count_madds(spec), count_params(spec))
        assert profile_module(model, input_size(spec)) == expected, spec
        assert sum(p.numel() for p in model.parameters()) == count_params(spec), spec


@pytest.mark.parametrize("spec", [V2, ArchSpec.mobilenet_v1(), V2.replace(head="conv1x1", linear_bottleneck=False),
                                  V2.replace(head_channels=None, activation="relu", in_channels=1, resolution=150)],
                         ids=str)
def test_count_params_equals_built_module(spec: ArchSpec) -> None:
    assert count_params(spec) == sum(p.numel() for p in build_model(spec).parameters())


# tensorflow/models research/slim/nets/mobilenet/README.md, "Mobilenet V2 Imagenet Checkpoints" (the reference
# checkpoints behind Sandler et al. 2018, Fig. 5/Table 6): (width, resolution, MACs in M, parameters in M).
# The checkpoints have 1001 classes; the README truncates MACs to whole millions and its parameter counts
# exclude BatchNorm's scale and shift (TensorFlow folds them into the moving statistics it does not train).
TF_SLIM_MOBILENET_V2 = [
    (1.4, 224, 582, 6.06), (1.3, 224, 509, 5.34),
    (1.0, 224, 300, 3.47), (1.0, 192, 221, 3.47), (1.0, 160, 154, 3.47), (1.0, 128, 99, 3.47), (1.0, 96, 56, 3.47),
    (0.75, 224, 209, 2.61), (0.75, 192, 153, 2.61), (0.75, 160, 107, 2.61), (0.75, 128, 69, 2.61),
    (0.75, 96, 39, 2.61),
    (0.5, 224, 97, 1.95), (0.5, 192, 71, 1.95), (0.5, 160, 50, 1.95), (0.5, 128, 32, 1.95), (0.5, 96, 18, 1.95),
    (0.35, 224, 59, 1.66), (0.35, 192, 43, 1.66), (0.35, 160, 30, 1.66), (0.35, 128, 20, 1.66), (0.35, 96, 11, 1.66),
]


def batchnorm_params(spec: ArchSpec) -> int:
    """BatchNorm's scale and shift parameters in the built network (TensorFlow's table leaves them out)."""
    return sum(p.numel() for m in build_model(spec).modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


@pytest.mark.parametrize(("width_mult", "resolution", "madds_m", "params_m"), TF_SLIM_MOBILENET_V2)
def test_mobilenet_v2_reference_checkpoints(width_mult: float, resolution: int, madds_m: int, params_m: float) -> None:
    spec = ArchSpec.mobilenet_v2(width_mult, resolution, num_classes=1001)
    assert count_madds(spec) // 1_000_000 == madds_m
    assert round((count_params(spec) - batchnorm_params(spec)) / 1e6, 2) == params_m


# Howard et al. 2017, Table 6 (width multiplier) and Table 7 (resolution): (width, resolution, MAdds in M, params in M).
# The paper rounds loosely (290M for 160 where the count is 290.7M), so MAdds are checked to within 1M.
HOWARD_2017_MOBILENET_V1 = [
    (1.0, 224, 569, 4.2), (0.75, 224, 325, 2.6), (0.5, 224, 149, 1.3), (0.25, 224, 41, 0.5),
    (1.0, 192, 418, 4.2), (1.0, 160, 290, 4.2), (1.0, 128, 186, 4.2),
]


@pytest.mark.parametrize(("width_mult", "resolution", "madds_m", "params_m"), HOWARD_2017_MOBILENET_V1)
def test_mobilenet_v1_paper_tables(width_mult: float, resolution: int, madds_m: int, params_m: float) -> None:
    spec = ArchSpec.mobilenet_v1(width_mult, resolution)
    assert abs(count_madds(spec) / 1e6 - madds_m) < 1
    assert round(count_params(spec) / 1e6, 1) == params_m


def test_conv_madds_scale_with_resolution_squared_and_params_do_not() -> None:
    # Howard et al. 2017, section 3.4: the resolution multiplier reduces conv cost by rho^2 and leaves the
    # parameters alone. 448 and 224 divide evenly through all five stride-2 layers, so the ratio is exact.
    full, double = V2, V2.replace(resolution=448)
    classifier = stage_table(V2)[-1].madds
    assert count_params(double) == count_params(full)
    assert count_madds(double) - classifier == 4 * (count_madds(full) - classifier)


# -- stage table ------------------------------------------------------------------------------------------------


def check_stage_table(spec: ArchSpec) -> None:
    """Rows sum to the totals, chain in resolution and channels, and match the built module's layers."""
    rows = stage_table(spec)
    expected_names = ["stem"] + [f"stage{i + 1}" for i in range(len(spec.stages))]
    expected_names += ["head"] if spec.head_channels is not None else []
    assert [r.name for r in rows] == [*expected_names, "classifier"]
    assert sum(r.madds for r in rows) == count_madds(spec)
    assert sum(r.params for r in rows) == count_params(spec)
    assert rows[0].in_resolution == spec.resolution and rows[0].in_channels == spec.in_channels
    assert rows[-1].out_resolution == 1 and rows[-1].out_channels == spec.num_classes
    for previous, row in zip(rows, rows[1:], strict=False):
        assert row.in_resolution == previous.out_resolution, (spec, row)
        assert row.in_channels == previous.out_channels, (spec, row)

    # The built module: each row's output shape is what the corresponding layers produce.
    model = build_model(spec).eval()
    outputs: list[torch.Size] = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.shape)) for m in model.features]
    with torch.no_grad():
        model(torch.zeros(input_size(spec)))
    for hook in hooks:
        hook.remove()
    ends = [0]  # index in model.features of the last layer of each row
    for stage in spec.stages:
        ends.append(ends[-1] + stage.repeats)
    if spec.head_channels is not None:
        ends.append(ends[-1] + 1)
    for row, end in zip(rows, ends, strict=False):
        assert outputs[end][1:] == (row.out_channels, row.out_resolution, row.out_resolution), (spec, row)
    classifier = model.classifier[-1]
    assert getattr(classifier, "in_features", getattr(classifier, "in_channels", None)) == rows[-1].in_channels
    for row, stage in zip(rows[1:], spec.stages, strict=False):
        assert (row.expansion, row.repeats, row.stride) == (stage.expansion, stage.repeats, stage.stride)


@pytest.mark.parametrize("spec", [V2, ArchSpec.mobilenet_v1(), ArchSpec.mobilenet_v2(1.4, 150),
                                  ArchSpec.mobilenet_v2(0.35, 97, head="conv1x1"), ArchSpec.mobilenet_v1(0.5, 33)],
                         ids=str)
def test_stage_table_of_paper_nets(spec: ArchSpec) -> None:
    check_stage_table(spec)


def test_stage_table_of_random_specs(random_specs: list[ArchSpec]) -> None:
    for spec in random_specs[:60]:
        check_stage_table(spec)


def test_stage_table_of_mobilenet_v2_is_table_2() -> None:
    # Sandler et al. 2018, Table 2: input sizes 224, 112, 112, 56, 28, 14, 14, 7, 7 and output channels.
    rows = stage_table(V2)
    assert [r.in_resolution for r in rows] == [224, 112, 112, 56, 28, 14, 14, 7, 7, 7]
    assert [r.out_channels for r in rows] == [32, 16, 24, 32, 64, 96, 160, 320, 1280, 1000]


def test_format_stage_table_ends_with_the_totals() -> None:
    text = format_stage_table(V2)
    assert text.splitlines()[-1].split()[-2:] == ["300,774,272", "3,504,872"]
    assert len(text.splitlines()) == 1 + 1 + len(stage_table(V2)) + 1 + 1


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_out_matches_torch(stride: int) -> None:
    for size in [1, 2, 3, 7, 32, 33, 97, 150]:
        out = nn.functional.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, 3, 3), stride=stride, padding=1)
        assert out.shape[-1] == conv_out(size, stride)


# -- profile_module leaves its module alone -----------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_profile_module_leaves_the_module_untouched(training: bool) -> None:
    model = build_model(ArchSpec.mobilenet_v2(0.35, 64)).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    profile_module(model, (1, 3, 64, 64))
    assert [m.training for m in model.modules()] == modes
    assert model.state_dict().keys() == before.keys()  # no total_ops/total_params buffers left behind
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for module in model.modules():
        assert not hasattr(module, "total_ops") and not hasattr(module, "total_params")
        assert not module._forward_hooks


def test_profile_module_counts_a_module_not_built_from_a_spec() -> None:
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    madds, params = profile_module(module, (1, 3, 10, 10))
    assert madds == 3 * 3 * 3 * 8 * 10 * 10 + 8 * 5
    assert params == 3 * 3 * 3 * 8 + 2 * 8 + 8 * 5 + 5


def test_count_madds_does_not_depend_on_batch_and_is_exact_integer() -> None:
    madds, _ = profile_module(build_model(V2.replace(width_mult=0.5, resolution=96)), (4, 3, 96, 96))
    assert madds == 4 * count_madds(V2.replace(width_mult=0.5, resolution=96))
    assert isinstance(count_madds(V2), int) and not math.isnan(count_madds(V2))


# -- memory ----------------------------------------------------------------------------------------


def _saved_elements_per_image(spec: ArchSpec, batch: int = 2) -> float:
    """Elements of the tensors autograd keeps for backward in one training step, parameters and buffers aside,
    each storage once (an in-place activation's output is also the next convolution's input)."""
    model = build_model(spec, seed=0).train()
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes() // tensor.element_size()
        return tensor

    images = torch.randn(batch, spec.in_channels, spec.resolution, spec.resolution)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images).logsumexp(1).mean().backward()
    return sum(saved.values()) / batch


MEMORY_SPECS = [ArchSpec.mobilenet_v2(0.5, 64, num_classes=3), ArchSpec.mobilenet_v1(0.5, 64, num_classes=3),
                ArchSpec.mobilenet_v2(0.5, 64, num_classes=3).replace(linear_bottleneck=False),
                ArchSpec.mobilenet_v2(0.5, 64, num_classes=3).replace(head_channels=None),
                ArchSpec.mobilenet_v2(0.35, 32, num_classes=2, in_channels=1,
                                      stages=((1, 8, 1, 1), (6, 16, 5, 2), (4, 24, 3, 1)))]


@pytest.mark.parametrize("spec", MEMORY_SPECS, ids=lambda spec: spec.to_string()[:60])
def test_count_activations_is_what_autograd_keeps_for_backward(spec: ArchSpec) -> None:
    # Uncounted: BatchNorm's per-channel batch statistics (2 x channels per layer, whatever the image size),
    # under 1 % of the total on these nets: 2 % tolerance, never an overcount beyond it.
    assert count_activations(spec) == pytest.approx(_saved_elements_per_image(spec), rel=0.02)


def test_count_activations_of_random_specs(random_specs: list[ArchSpec]) -> None:
    # Odd nets stray further: BatchNorm's statistics weigh a few % at 1x1 feature maps (under), and without a
    # head layer the last unit's output is counted though pooling does not keep it (over). Measured on the first
    # 80 random specs: 0.97 to 1.09 of what autograd keeps.
    for spec in random_specs[:16]:
        assert count_activations(spec) == pytest.approx(_saved_elements_per_image(spec), rel=0.1), spec.to_string()


def test_training_memory_counts_exact_weights_and_modules(random_specs: list[ArchSpec]) -> None:
    for spec in [*MEMORY_SPECS, *random_specs[:20]]:
        model = build_model(spec)
        memory = training_memory(spec, batch_size=8)
        assert memory.weights == TRAINING_COPIES * sum(p.numel() * p.element_size() for p in model.parameters())
        assert memory.modules == MODULE_BYTES * sum(1 for _ in model.modules())
        assert memory.activations == FLOAT_BYTES * 8 * count_activations(spec)
        assert memory.total == memory.weights + memory.activations + memory.modules


def test_training_memory_of_a_million_block_net_is_arithmetic_not_a_build() -> None:
    deep = ArchSpec.mobilenet_v2(0.25, 32, num_classes=2, stages=((1, 8, 1, 1), (2, 8, 1_000_000, 2)))
    shallow = deep.replace(stages=((1, 8, 1, 1), (2, 8, 1, 2)))
    # One repeated block's share, times the repeats: linear in depth, in microseconds.
    per_block = training_memory(deep.replace(stages=((1, 8, 1, 1), (2, 8, 2, 2))), 64).total - \
        training_memory(shallow, 64).total
    assert training_memory(deep, 64).total == training_memory(shallow, 64).total + 999_999 * per_block
    assert training_memory(deep, 64).total > 2**40  # over a TiB: no machine trains it

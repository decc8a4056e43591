"""build_model: torchvision equivalence, layer layout, residuals, heads, shapes, activations."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import Conv2dNormActivation

from mobilenet_search.arch.builder import ACTIVATION_LAYERS, build_model
from mobilenet_search.arch.spec import ACTIVATIONS, ArchSpec

# Small nets for layout checks: builds in milliseconds and still has every kind of block.
SMALL_V2 = ArchSpec.mobilenet_v2(0.35, 64, num_classes=10)
SMALL_V1 = ArchSpec.mobilenet_v1(0.25, 64, num_classes=10)


def n_params(model: nn.Module) -> int:
    """Trainable parameters, counted the way torchvision's model cards count them."""
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: nn.Module, seed: int) -> None:
    """Give BatchNorm non-trivial statistics and affine terms so an eval-mode comparison means something."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(shape, generator=generator) * 0.1)


def test_mobilenet_v2_has_torchvisions_parameter_count() -> None:
    # torchvision's mobilenet_v2() has 3,504,872 parameters; Sandler et al. 2018 (Table 3) report 3.4M.
    model = build_model(ArchSpec.mobilenet_v2())
    assert n_params(model) == 3_504_872
    assert n_params(torchvision.models.mobilenet_v2()) == 3_504_872


@pytest.mark.parametrize(("width_mult", "input_side"), [(1.0, 224), (0.35, 64), (0.5, 64), (0.75, 64), (1.3, 64),
                                                        (1.4, 64)])
def test_torchvision_state_dict_loads_strictly_and_outputs_match(width_mult: float, input_side: int) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(width_mult=width_mult)  # no weights: nothing is downloaded
    randomize_bn(reference, seed=1)
    model = build_model(ArchSpec.mobilenet_v2(width_mult=width_mult))
    model.load_state_dict(reference.state_dict(), strict=True)
    assert n_params(model) == n_params(reference)
    reference.eval()
    model.eval()
    x = torch.randn(2, 3, input_side, input_side, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)
        actual = model(x)
    assert actual.shape == (2, 1000)
    assert expected.abs().max() > 1e-3  # the comparison is not between two near-zero outputs
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", [SMALL_V2, SMALL_V1, SMALL_V2.replace(linear_bottleneck=False)], ids=str)
def test_every_batchnorm_follows_a_bias_free_conv(spec: ArchSpec) -> None:
    modules = list(build_model(spec).modules())
    leaves = [m for m in modules if not list(m.children())]
    bn_count = 0
    for previous, module in zip(leaves, leaves[1:], strict=False):
        if isinstance(module, nn.BatchNorm2d):
            bn_count += 1
            assert isinstance(previous, nn.Conv2d)
            assert previous.bias is None
            assert previous.out_channels == module.num_features
    convs = [m for m in leaves if isinstance(m, nn.Conv2d)]
    assert bn_count == len(convs)  # every convolution of the body is followed by BatchNorm


def block_io_shapes(spec: ArchSpec) -> list[tuple[bool, torch.Size, torch.Size]]:
    """(use_res_connect, input shape, output shape) of every block, from an actual forward pass."""
    model = build_model(spec).eval()
    records: list[tuple[bool, torch.Size, torch.Size]] = []
    blocks = [m for m in model.features if hasattr(m, "use_res_connect")]
    hooks = [b.register_forward_hook(lambda m, i, o: records.append((m.use_res_connect, i[0].shape, o.shape)))
             for b in blocks]
    with torch.no_grad():
        model(torch.randn(1, spec.in_channels, spec.resolution, spec.resolution))
    for hook in hooks:
        hook.remove()
    assert len(records) == sum(s.repeats for s in spec.stages)
    return records


def test_v2_residual_exactly_where_stride_1_and_equal_channels() -> None:
    records = block_io_shapes(ArchSpec.mobilenet_v2(0.5, 96))
    assert [res for res, _, _ in records] == [shape_in == shape_out for _, shape_in, shape_out in records]
    assert sum(res for res, _, _ in records) == 10  # Sandler et al. 2018, Table 2: 17 blocks, 10 with a shortcut


def test_v2_stage_with_stride_1_and_same_width_as_stem_gets_residual_on_first_block() -> None:
    spec = ArchSpec.mobilenet_v2(stages=((1, 32, 2, 1), (6, 32, 1, 2)), resolution=32)
    assert [res for res, _, _ in block_io_shapes(spec)] == [True, True, False]


def test_v1_never_has_a_residual() -> None:
    # Stride 1 and equal widths everywhere: a V2 would add shortcuts, V1 must not.
    spec = ArchSpec.mobilenet_v1(stages=((1, 32, 3, 1), (1, 64, 2, 1)), resolution=32)
    records = block_io_shapes(spec)
    assert any(shape_in == shape_out for _, shape_in, shape_out in records)
    assert not any(res for res, _, _ in records)


def test_residual_block_adds_its_input_out_of_place_and_gradient_is_identity_plus_branch() -> None:
    model = build_model(SMALL_V2).double().eval()
    block = next(m for m in model.features if getattr(m, "use_res_connect", False))
    channels = block.conv[0][0].in_channels
    x = torch.randn(2, channels, 5, 5, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    out = block(x)
    assert out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(x.detach(), before)  # the input was not overwritten
    torch.testing.assert_close(out, x + block.conv(x))
    weights = torch.randn_like(out)
    (grad_block,) = torch.autograd.grad((block(x) * weights).sum(), x)
    (grad_branch,) = torch.autograd.grad((block.conv(x) * weights).sum(), x)
    torch.testing.assert_close(grad_block, weights + grad_branch)
    assert torch.autograd.gradcheck(block, (x[:1, :, :3, :3].detach().clone().requires_grad_(),))


@pytest.mark.parametrize("spec", [SMALL_V2, SMALL_V1, SMALL_V2.replace(linear_bottleneck=False, activation="relu")],
                         ids=str)
def test_backward_pass_in_training_mode_reaches_every_parameter(spec: ArchSpec) -> None:
    model = build_model(spec).train()
    out = model(torch.randn(2, spec.in_channels, spec.resolution, spec.resolution))
    out.logsumexp(dim=1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("head", ["fc", "conv1x1"])
@pytest.mark.parametrize("resolution", [150, 97, 32])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1"])
def test_output_shape_is_batch_by_classes(head: str, resolution: int, in_channels: int, family: str) -> None:
    spec = ArchSpec(family=family, width_mult=0.25, resolution=resolution, head=head, in_channels=in_channels,
                    num_classes=7, stages=((1, 16, 1, 1), (1, 24, 2, 2), (1, 32, 1, 2)), head_channels=64)
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(3, in_channels, resolution, resolution))
    assert out.shape == (3, 7)


def test_conv1x1_head_has_same_parameters_and_function_as_fc() -> None:
    fc_model = build_model(SMALL_V2).eval()
    conv_model = build_model(SMALL_V2.replace(head="conv1x1")).eval()
    assert n_params(conv_model) == n_params(fc_model)
    # The paper's 1x1-conv classifier on pooled features is the linear layer with a reshaped weight.
    state = fc_model.state_dict()
    state["classifier.1.weight"] = state["classifier.1.weight"][:, :, None, None]
    conv_model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(conv_model(x), fc_model(x))


@pytest.mark.parametrize(("activation", "present", "absent"),
                         [("relu6", nn.ReLU6, nn.ReLU), ("relu", nn.ReLU, nn.ReLU6)])
@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1"])
def test_activation_modules_are_the_ones_asked_for(activation: str, present: type, absent: type, family: str) -> None:
    spec = ArchSpec(family=family, width_mult=0.25, resolution=32, activation=activation,
                    stages=((1, 16, 1, 1), (1, 24, 2, 2)))
    types = [type(m) for m in build_model(spec).modules()]
    assert present in types
    assert absent not in types


def activations_per_block(spec: ArchSpec) -> list[tuple[int, type]]:
    """(number of activations, type of the last leaf module) for every block."""
    rows = []
    for block in (m for m in build_model(spec).features if hasattr(m, "use_res_connect")):
        leaves = [m for m in block.modules() if not list(m.children())]
        rows.append((sum(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in leaves), type(leaves[-1])))
    return rows


def test_linear_bottleneck_has_no_activation_after_projection() -> None:
    rows = activations_per_block(ArchSpec.mobilenet_v2())
    # Table 1 of Sandler et al. 2018: expansion + depthwise carry ReLU6, the projection is linear (t = 1: no expansion).
    assert rows == [(1, nn.BatchNorm2d)] + [(2, nn.BatchNorm2d)] * 16


def test_nonlinear_bottleneck_adds_activation_after_projection() -> None:
    rows = activations_per_block(ArchSpec.mobilenet_v2(linear_bottleneck=False))
    assert rows == [(2, nn.ReLU6)] + [(3, nn.ReLU6)] * 16


def test_v1_layers_are_depthwise_separable_with_activation_after_both_convs() -> None:
    # Howard et al. 2017, Fig. 3: 3x3 depthwise-BN-ReLU, then 1x1-BN-ReLU, in every one of the 13 layers.
    spec = ArchSpec.mobilenet_v1()
    assert activations_per_block(spec) == [(2, nn.ReLU6)] * 13
    blocks = [m for m in build_model(spec).features if hasattr(m, "use_res_connect")]
    for block in blocks:
        depthwise, pointwise = (m for m in block.modules() if isinstance(m, nn.Conv2d))
        assert depthwise.groups == depthwise.in_channels == depthwise.out_channels
        assert pointwise.kernel_size == (1, 1) and pointwise.groups == 1


def test_mobilenet_v1_has_4_2_million_parameters() -> None:
    # Howard et al. 2017, Table 1 architecture, Table 6/7: 1.0 MobileNet-224 has 4.2M parameters.
    model = build_model(ArchSpec.mobilenet_v1())
    assert n_params(model) == 4_231_976
    assert round(n_params(model) / 1e6, 1) == 4.2
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 27  # stem + 13 depthwise + 13 pointwise (Table 1, before the FC layer)
    assert isinstance(model.classifier[-1], nn.Linear) and model.classifier[-1].in_features == 1024


def test_build_is_a_pure_function_of_the_spec() -> None:
    torch.manual_seed(0)
    first = build_model(SMALL_V2)
    torch.manual_seed(0)
    second = build_model(SMALL_V2)
    assert first.state_dict().keys() == second.state_dict().keys()
    for key, value in first.state_dict().items():
        torch.testing.assert_close(value, second.state_dict()[key])
    assert first.spec == SMALL_V2


def test_a_seed_fixes_the_initial_weights_and_leaves_the_global_generator_alone():
    spec = ArchSpec.mobilenet_v2(0.35, 96, num_classes=10)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    a, b = build_model(spec, seed=3).state_dict(), build_model(spec, seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[key], b[key]) for key in a)
    c = build_model(spec, seed=4).state_dict()
    assert not torch.equal(a["features.0.0.weight"], c["features.0.0.weight"])


class _OldConvBNAct(nn.Sequential):
    """The builder's own conv-BN-activation layer before torchvision's Conv2dNormActivation replaced it (issue 23)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: type[nn.Module] | None = nn.ReLU6) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


def test_conv2d_norm_activation_is_the_old_conv_bn_act_layer_for_layer_on_random_shapes() -> None:
    generator = torch.Generator().manual_seed(0)
    cases = torch.Generator().manual_seed(1)
    for _ in range(40):
        pick = lambda *options: options[int(torch.randint(len(options), (1,), generator=cases))]  # noqa: E731
        channels, kernel, stride = pick(1, 3, 8, 16), pick(1, 3), pick(1, 2)
        out, groups = (channels, channels) if kernel == 3 and pick(True, False) else (pick(4, 8, 24), 1)
        act = pick(nn.ReLU6, nn.ReLU, None)
        old = _OldConvBNAct(channels, out, kernel, stride, groups, act)
        new = Conv2dNormActivation(channels, out, kernel, stride, groups=groups, activation_layer=act)
        # Same modules with the same settings (padding, bias, groups, in-place activation), hence the same keys.
        assert [(type(m), m.extra_repr()) for m in old] == [(type(m), m.extra_repr()) for m in new]
        randomize_bn(old, seed=int(torch.randint(1000, (1,), generator=cases)))
        new.load_state_dict(old.state_dict(), strict=True)
        x = torch.randn(2, channels, 9, 9, generator=generator)
        with torch.no_grad():
            torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=0, atol=0)


def test_activation_layers_cover_every_activation_a_spec_accepts() -> None:
    assert tuple(ACTIVATION_LAYERS) == ACTIVATIONS


@pytest.mark.parametrize(("family", "linear_bottleneck", "linear"),
                         [("mobilenet_v2", True, True), ("mobilenet_v2", False, False),
                          ("mobilenet_v1", True, False), ("mobilenet_v1", False, False)])
def test_only_a_v2_linear_bottleneck_leaves_the_projection_without_activation(family, linear_bottleneck, linear):
    spec = ArchSpec(family=family, width_mult=0.25, resolution=32, linear_bottleneck=linear_bottleneck,
                    stages=((1, 16, 1, 1), (1, 24, 2, 2)))
    assert spec.linear_projection is linear
    assert {last for _, last in activations_per_block(spec)} == {nn.BatchNorm2d if linear else nn.ReLU6}

"""SmallMapDepthwise: the broadcast product equals conv2d, values and gradients, and leaves other calls alone."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.measure.small_depthwise import SmallMapDepthwise, depthwise_as_product


def _conv_and_grads(x, weight, bias, mode, **conv):
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    bias = None if bias is None else bias.detach().requires_grad_()
    with mode:
        out = F.conv2d(x, weight, bias, **conv)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * upstream).sum().backward()
    return [out, x.grad, weight.grad] + ([] if bias is None else [bias.grad])


@pytest.mark.parametrize("shape, kernel, stride, padding, bias", [
    ((5, 7, 1, 1), 3, 1, 1, False),     # the last stage of a 32 px proxy
    ((5, 7, 2, 2), 3, 1, 1, True),
    ((5, 7, 2, 2), 3, 2, 1, False),     # a stride-2 block on a 2x2 map
    ((5, 7, 1, 2), 3, 1, 1, False),     # not square
    ((5, 7, 2, 2), 5, 1, 2, True),      # MnasNet-style 5x5 kernels
    ((5, 7, 1, 3), 3, (1, 2), (1, 0), False),
])
def test_the_product_equals_conv2d_in_float64(shape, kernel, stride, padding, bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    weight = torch.randn(shape[1], 1, kernel, kernel, generator=generator, dtype=torch.float64)
    b = torch.randn(shape[1], generator=generator, dtype=torch.float64) if bias else None
    conv = dict(stride=stride, padding=padding, groups=shape[1])
    expected = _conv_and_grads(x, weight, b, contextlib.nullcontext(), **conv)
    got = _conv_and_grads(x, weight, b, SmallMapDepthwise(), **conv)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_calls_it_does_not_handle_run_conv2d_unchanged():
    """Maps over 4 pixels, grouped but not depthwise, dense, dilated: bit for bit what conv2d gives."""
    generator = torch.Generator().manual_seed(0)
    cases = [
        (torch.randn(2, 6, 4, 4, generator=generator), torch.randn(6, 1, 3, 3, generator=generator), dict(groups=6)),
        (torch.randn(2, 6, 2, 2, generator=generator), torch.randn(6, 2, 3, 3, generator=generator),
         dict(groups=3, padding=1)),
        (torch.randn(2, 6, 2, 2, generator=generator), torch.randn(4, 6, 1, 1, generator=generator), {}),
        (torch.randn(2, 6, 2, 2, generator=generator), torch.randn(6, 1, 3, 3, generator=generator),
         dict(groups=6, padding=2, dilation=2)),
    ]
    for x, weight, conv in cases:
        with SmallMapDepthwise():
            got = F.conv2d(x, weight, **conv)
        assert torch.equal(got, F.conv2d(x, weight, **conv))


def test_a_call_with_no_output_pixel_still_raises_conv2ds_error():
    x, weight = torch.randn(1, 4, 1, 1), torch.randn(4, 1, 3, 3)
    with pytest.raises(RuntimeError), SmallMapDepthwise():
        F.conv2d(x, weight, groups=4)


def test_a_mobilenet_training_step_matches_plain_pytorch():
    """MobileNetV2 0.35 at a 32 px proxy (its last stages at 2x2 and 1x1): same loss and gradients as oneDNN,
    up to float32 rounding; gradients compared where they are not rounding noise themselves."""
    spec = ArchSpec.mobilenet_v2(0.35, 96, num_classes=2, in_channels=3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (16,), generator=generator)
    results = []
    for mode in (contextlib.nullcontext(), SmallMapDepthwise()):
        model = build_model(spec, seed=0).to(memory_format=torch.channels_last).eval()  # no dropout draw
        with mode:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), {name: p.grad for name, p in model.named_parameters()}))
    (loss_plain, grads_plain), (loss_small, grads_small) = results
    torch.testing.assert_close(loss_small, loss_plain, rtol=1e-5, atol=1e-6)
    scale = max(g.abs().max() for g in grads_plain.values())
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_small[name], grad, rtol=1e-3, atol=1e-5 * scale, msg=name)


def test_depthwise_as_product_handles_channels_last_inputs():
    x = torch.randn(3, 8, 2, 2).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 1, 3, 3)
    expected = F.conv2d(x, weight, padding=1, groups=8)
    torch.testing.assert_close(depthwise_as_product(x, weight, None, (1, 1), (1, 1)), expected)

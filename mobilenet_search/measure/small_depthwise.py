"""Depthwise convolutions on tiny feature maps, computed as one broadcast product on the CPU.

A proxy trains on small images (32 px for a 96 px network), so a MobileNet's last stages run on
2x2 and 1x1 feature maps. There oneDNN's depthwise convolution backward is pathologically slow:
measured on the 2-core development machine (torch 2.14, batch 64, forward + backward), a
3x3 depthwise convolution over 1248 channels at 1x1 took 22 ms, about as long as one over 384
channels at 4x4 takes in 1 ms. For MobileNetV2 1.3 at 32 px these layers were 73 % of the
convolution backward time.

On a map of at most ``max_pixels`` pixels the convolution is, per channel, a small dense matrix
(``pixels x output pixels``) whose entries are the kernel's taps: out[n, c, q] = sum_p x[n, c, p]
* M[c, p, q]. :class:`SmallMapDepthwise` is a :class:`torch.overrides.TorchFunctionMode` that
computes exactly that for every ``F.conv2d`` call that is depthwise, on the CPU, on such a map;
autograd differentiates it like any other product, and every other call runs unchanged. The
result equals the convolution up to float rounding (the taps are summed in another order).

>>> import torch
>>> import torch.nn.functional as F
>>> x, w = torch.randn(8, 16, 2, 2), torch.randn(16, 1, 3, 3)
>>> with SmallMapDepthwise():
...     y = F.conv2d(x, w, padding=1, groups=16)
>>> torch.allclose(y, F.conv2d(x, w, padding=1, groups=16), atol=1e-5)
True
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

#: Maps of at most this many pixels take the broadcast product: it was 3.6-35x faster than oneDNN
#: at 2x2 and 1x1, and 7-150x slower at 4x4 and above (forward + backward, batch 64).
MAX_PIXELS = 4


class SmallMapDepthwise(TorchFunctionMode):
    """Within this mode, CPU depthwise ``F.conv2d`` calls on maps of at most ``max_pixels`` pixels
    are computed as a broadcast product (same result, a fraction of the backward time)."""

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        super().__init__()
        self.max_pixels = max_pixels

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d:
            call = _depthwise_call(*args, **kwargs)
            if call is not None and call[0].shape[-1] * call[0].shape[-2] <= self.max_pixels:
                return depthwise_as_product(*call)
        return func(*args, **kwargs)


def _depthwise_call(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, int],
                               tuple[int, int]] | None:
    """The arguments of a ``conv2d`` call this module handles (CPU, batched, depthwise, numeric
    padding, no dilation), normalised; None for any other call."""
    if (input.dim() != 4 or input.device.type != "cpu" or weight.dim() != 4 or weight.shape[1] != 1
            or groups != input.shape[1] or weight.shape[0] != groups or isinstance(padding, str)
            or _pair(dilation) != (1, 1)):
        return None
    stride, padding = _pair(stride), _pair(padding)
    if any(size + 2 * pad < k for size, pad, k in zip(input.shape[-2:], padding, weight.shape[-2:], strict=True)):
        return None  # no output pixel: conv2d's own error says so
    return input, weight, bias, stride, padding


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def depthwise_as_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, groups=channels)`` as one broadcast product."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    index, ho, wo = _tap_index(h, w, kh, kw, stride, padding)
    taps = torch.cat([weight.reshape(c, kh * kw), weight.new_zeros(c, 1)], 1)  # the last tap: zero (padding)
    out = (x.reshape(n, c, h * w, 1) * taps[:, index]).sum(2).reshape(n, c, ho, wo)
    return out if bias is None else out + bias.view(1, c, 1, 1)


@functools.lru_cache(maxsize=256)
def _tap_index(h: int, w: int, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int],
               ) -> tuple[torch.Tensor, int, int]:
    """For each (input pixel, output pixel), the kernel tap that joins them, or ``kh * kw`` (a zero)."""
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    index = torch.full((h * w, ho * wo), kh * kw, dtype=torch.long)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * stride[0] + ky - padding[0], ox * stride[1] + kx - padding[1]
                    if 0 <= iy < h and 0 <= ix < w:
                        index[iy * w + ix, oy * wo + ox] = ky * kw + kx
    return index, ho, wo


def small_map_depthwise(device: torch.device) -> contextlib.AbstractContextManager:
    """The mode for training steps on ``device``: :class:`SmallMapDepthwise` on the CPU; nothing on
    CUDA, where cuDNN has no such slow case."""
    return SmallMapDepthwise() if device.type == "cpu" else contextlib.nullcontext()

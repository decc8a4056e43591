"""``build_model(spec)``: turn an :class:`ArchSpec` into a PyTorch module, and nothing else.

The module layout mirrors torchvision's ``MobileNetV2`` (``features`` of conv-BN-activation
sequences and inverted-residual blocks with a ``conv`` sequence, ``classifier`` of dropout
and linear), so torchvision's state dict loads into a MobileNetV2 spec strictly, key for key.
The only layout difference is the paper's ``conv1x1`` head, whose classifier weight is the
linear weight reshaped to ``(k, C, 1, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from mobilenet_search.arch.spec import ArchSpec, Block
from mobilenet_search.files import load_weights

#: The module of each :data:`~mobilenet_search.arch.spec.ACTIVATIONS` name.
ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "relu": nn.ReLU}


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (when t > 1), 3x3 depthwise, 1x1 projection.

    With ``linear=True`` the projection has no activation (the paper's linear bottleneck).
    The same block with t = 1, no residual and a non-linear projection is MobileNetV1's
    depthwise-separable layer.
    """

    def __init__(self, block: Block, act: type[nn.Module], linear: bool) -> None:
        super().__init__()
        self.use_res_connect = block.residual
        layers: list[nn.Module] = []
        # Conv2dNormActivation: convolution without bias, BatchNorm, activation (torchvision's MobileNetV2 layers).
        if block.expansion != 1:
            layers.append(Conv2dNormActivation(block.in_channels, block.hidden, 1, activation_layer=act))
        layers.append(Conv2dNormActivation(block.hidden, block.hidden, 3, block.stride, groups=block.hidden,
                                           activation_layer=act))
        if linear:
            # Conv and BN directly in this sequence: torchvision's key layout (conv.N, conv.N+1).
            layers += [nn.Conv2d(block.hidden, block.out_channels, 1, bias=False), nn.BatchNorm2d(block.out_channels)]
        else:
            layers.append(Conv2dNormActivation(block.hidden, block.out_channels, 1, activation_layer=act))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Out of place: autograd needs x for the residual's backward pass.
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNet(nn.Module):
    """A MobileNetV1/V2 network built from a spec: ``features``, global pooling, ``classifier``."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        act = ACTIVATION_LAYERS[spec.activation]
        features: list[nn.Module] = [Conv2dNormActivation(spec.in_channels, spec.stem_out, 3, 2, activation_layer=act)]
        features += [InvertedResidual(block, act, spec.linear_projection) for block in spec.blocks()]
        if spec.head_out is not None:
            features.append(Conv2dNormActivation(spec.stages_out, spec.head_out, 1, activation_layer=act))
        self.features = nn.Sequential(*features)
        width = spec.features_out
        if spec.head == "fc":
            last: nn.Module = nn.Linear(width, spec.num_classes)
        else:
            last = nn.Conv2d(width, spec.num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(p=spec.dropout), last)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        if self.spec.head == "fc":
            x = torch.flatten(x, 1)
            return self.classifier(x)
        return torch.flatten(self.classifier(x), 1)


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNetV2 initialisation (Kaiming fan-out convs, N(0, 0.01) classifier)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def build_model(spec: ArchSpec, seed: int | None = None) -> MobileNet:
    """Build the network ``spec`` describes, freshly initialised.

    With ``seed`` the initial weights are a pure function of ``(spec, seed)`` and the global
    random state is left as it was; without it they come from torch's global generator.

    >>> from mobilenet_search import ArchSpec, build_model
    >>> model = build_model(ArchSpec.mobilenet_v2())
    >>> sum(p.numel() for p in model.parameters())
    3504872
    """
    if seed is None:
        return MobileNet(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MobileNet(spec)


def build_with_weights(spec: ArchSpec, weights: Mapping[str, torch.Tensor] | Path) -> MobileNet:
    """``build_model(spec)`` with ``weights`` loaded strictly (every key, every shape): a state dict, or the
    safetensors file :func:`~mobilenet_search.files.save_weights` wrote.

    Weights that do not fit are a one-line :class:`ValueError` naming the first mismatch; callers say whose
    weights they were. A file that cannot be read is a :class:`~mobilenet_search.errors.UserError`.
    """
    model = build_model(spec, seed=0)
    try:
        if isinstance(weights, Mapping):
            model.load_state_dict(weights, strict=True)
        else:
            load_weights(model, weights)
    except RuntimeError as exc:
        # torch's message: a header line ("Error(s) in loading state_dict for MobileNet:"), then one line a problem.
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        raise ValueError(lines[1] if len(lines) > 1 else lines[0]) from None
    return model

"""A weight-sharing supernet (OFA / BigNAS style): one set of weights for every member of a space.

:class:`Supernet` holds the network of an *envelope* spec, every elastic field at its maximum
(width multiplier, and per stage the expansion t, width c and depth n). A member ``spec`` of the
space runs on a slice of those weights: the first channels of every layer (output and input
channels of each convolution, the depthwise channels, BatchNorm's parameters and running
statistics, the classifier's input features) and the first ``n`` blocks of each stage, as in
Once-for-All (Cai et al. 2020) and BigNAS (Yu et al. 2020).

The supernet's modules are those of ``build_model(envelope)``, so its state dict is that
network's; :meth:`Supernet.subnet` returns exactly ``build_model(spec)`` carrying the inherited
weights, so latency, zero-cost scores and export treat it as any other candidate::

    >>> from mobilenet_search import ArchSpec
    >>> envelope = ArchSpec.mobilenet_v2(1.0, 224, num_classes=4, in_channels=1)
    >>> net = Supernet(envelope, seed=0)
    >>> spec = envelope.replace(width_mult=0.5, resolution=96)
    >>> net(torch.zeros(2, 1, 32, 32), spec).shape, net.covers(spec)
    (torch.Size([2, 4]), True)
    >>> net.covers(envelope.replace(width_mult=1.4))
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mobilenet_search.arch.builder import MobileNet, build_model
from mobilenet_search.arch.spec import ArchSpec, Block
from mobilenet_search.errors import UserError

BatchNorm = Callable[[nn.BatchNorm2d, torch.Tensor, int], torch.Tensor]  # (layer, input, channels) -> output


class _Placed(NamedTuple):
    """One block of a subnet: where it sits in the envelope's and in the subnet's ``features``."""

    envelope_index: int
    subnet_index: int
    block: Block


class Supernet(nn.Module):
    """The envelope's network, run for any covered spec by slicing its weights on the fly.

    ``forward(x, spec)`` computes what ``self.subnet(spec)(x)`` computes, without copying weights,
    so a training step's gradients land in the shared weights. It runs the builder's own modules
    (their layers and activations, read from them), so every rule of a block's layout stays in
    :mod:`mobilenet_search.arch.builder`. In training mode each BatchNorm
    normalises with the batch's statistics and updates the first channels of its running
    statistics, as the subnet's own BatchNorm would. ``batch_norm`` is the function that does so
    (:func:`batch_norm`); data-parallel training swaps in one that normalises with the statistics of
    every rank's batch (:mod:`mobilenet_search.measure.distributed`).
    """

    def __init__(self, envelope: ArchSpec, seed: int | None = None,
                 build: Callable[..., MobileNet] = build_model) -> None:
        super().__init__()
        self.envelope = envelope
        self.build = build  # build(spec, seed=...): the envelope here, each member in subnet() (tests count them)
        model = build(envelope, seed=seed)  # torchvision's initialisation, seeded as build_model is
        self.features = model.features
        self.classifier = model.classifier
        self.batch_norm: BatchNorm = batch_norm

    def zero_init_residual(self) -> None:
        """Zero the scale of the last BatchNorm in every residual block, so each starts as the identity (BigNAS).

        The blocks with a residual in the envelope: every block after a stage's first (which has one in
        every member too, so a member that drops such blocks starts as the same function as one that keeps
        them), and a stride-1 first block whose widths match. Training from there is what makes the middle
        of the space learn (see :class:`~mobilenet_search.measure.supernet_train.SupernetConfig`).
        """
        for block, module in zip(self.envelope.blocks(), list(self.features)[1:], strict=False):
            if block.residual:
                last = [m for m in module.conv.modules() if isinstance(m, nn.BatchNorm2d)][-1]
                nn.init.zeros_(last.weight)

    # -- which specs fit ----------------------------------------------------------------------

    def check(self, spec: ArchSpec) -> None:
        """Raise :class:`UserError` naming the first thing of ``spec`` that the supernet cannot run."""
        problem = self._misfit(spec)
        if problem is not None:
            raise UserError(f"architecture {spec} does not fit the supernet: {problem}")

    def covers(self, spec: ArchSpec) -> bool:
        """Whether ``spec`` runs on this supernet's weights (a prefix of every layer and stage)."""
        return self._misfit(spec) is None

    def _misfit(self, spec: ArchSpec) -> str | None:
        env = self.envelope
        for name in ("family", "in_channels", "num_classes", "activation", "head"):
            if getattr(spec, name) != getattr(env, name):
                return f"{name} is {getattr(spec, name)!r}, the supernet's is {getattr(env, name)!r}"
        if spec.linear_projection != env.linear_projection:
            return f"linear_bottleneck is {spec.linear_bottleneck}, the supernet's is {env.linear_bottleneck}"
        if (spec.head_channels is None) != (env.head_channels is None):
            return (f"head_channels is {spec.head_channels}, the supernet's is {env.head_channels} "
                    "(a head layer cannot be added or removed)")
        if len(spec.stages) != len(env.stages):
            return f"{len(spec.stages)} stages, the supernet has {len(env.stages)}"
        if spec.stem_out > env.stem_out:
            return f"the stem has {spec.stem_out} channels, the supernet's {env.stem_out}"
        for i, (ours, theirs) in enumerate(zip(spec.stages, env.stages, strict=True), start=1):
            if ours.stride != theirs.stride:
                return f"stage {i} has stride {ours.stride}, the supernet's {theirs.stride}"
            if (ours.expansion == 1) != (theirs.expansion == 1):
                # t = 1 has no expansion layer: the block's layers differ, not only their widths.
                return f"stage {i} has expansion {ours.expansion}, the supernet's {theirs.expansion} (1 and >1 differ)"
            if ours.repeats > theirs.repeats:
                return f"stage {i} has {ours.repeats} blocks, the supernet {theirs.repeats}"
        for (first, repeat), (env_first, env_repeat) in zip(spec.stage_blocks(), env.stage_blocks(), strict=True):
            for ours, theirs in ((first, env_first), (repeat, env_repeat)):
                if ours is None:
                    continue
                for name in ("in_channels", "hidden", "out_channels"):
                    if getattr(ours, name) > getattr(theirs, name):
                        return (f"stage {ours.stage + 1} needs {name}={getattr(ours, name)}, "
                                f"the supernet has {getattr(theirs, name)}")
        if spec.head_out is not None and spec.head_out > env.head_out:
            return f"the head layer has {spec.head_out} channels, the supernet's {env.head_out}"
        return None

    def _placed(self, spec: ArchSpec) -> Iterator[_Placed]:
        """Every block of ``spec`` with its index in the envelope's ``features`` and in the subnet's.

        Block j of stage i is the envelope's block j of stage i: the first blocks of each stage are kept.
        """
        env_start = sub_start = 1  # features[0] is the stem
        blocks = spec.blocks()
        for ours, theirs in zip(spec.stages, self.envelope.stages, strict=True):
            for j in range(ours.repeats):
                yield _Placed(env_start + j, sub_start + j, next(blocks))
            env_start += theirs.repeats
            sub_start += ours.repeats

    # -- running a subnet in place ------------------------------------------------------------

    def forward(self, x: torch.Tensor, spec: ArchSpec | None = None) -> torch.Tensor:
        """Logits of the subnet ``spec`` (default: the envelope) for inputs ``x``, on the shared weights."""
        spec = self.envelope if spec is None else spec
        self.check(spec)
        norm = self.batch_norm
        x = _run(_units(self.features[0]), x, [spec.stem_out], norm)
        for placed in self._placed(spec):
            block, units = placed.block, _units(self.features[placed.envelope_index].conv)
            # Every unit but the projection outputs the hidden width (the depthwise's input is the expansion's output).
            h = _run(units, x, [block.hidden] * (len(units) - 1) + [block.out_channels], norm)
            # The residual follows the subnet's own widths: a stage's first block gets one when they match.
            x = x + h if block.residual else h
        if spec.head_out is not None:
            x = _run(_units(self.features[-1]), x, [spec.head_out], norm)
        x = F.adaptive_avg_pool2d(x, 1)
        x = F.dropout(x, spec.dropout, self.training)
        last = self.classifier[1]
        width = spec.features_out
        weight = _prefix(last.weight, spec.num_classes, width)
        if spec.head == "fc":
            return F.linear(torch.flatten(x, 1), weight, last.bias)
        return torch.flatten(F.conv2d(x, weight, last.bias), 1)

    # -- extracting a subnet ------------------------------------------------------------------

    def subnet(self, spec: ArchSpec) -> MobileNet:
        """``build_model(spec)`` carrying the supernet's weights and BatchNorm buffers for ``spec``.

        Same modules and state-dict keys as any built candidate; it shares no memory with the
        supernet (which is left unchanged), sits on the supernet's device and is in its mode.
        """
        self.check(spec)
        # Seeded so the global random state is left alone; the initial weights are overwritten below.
        model = self.build(spec, seed=0)
        envelope_index = {0: 0}  # the subnet's features index -> the envelope's
        envelope_index.update({p.subnet_index: p.envelope_index for p in self._placed(spec)})
        if spec.head_out is not None:
            envelope_index[len(model.features) - 1] = len(self.features) - 1
        ours = self.state_dict()
        state = {}
        for key, target in model.state_dict().items():
            source = key
            if key.startswith("features."):
                _, index, rest = key.split(".", 2)
                source = f"features.{envelope_index[int(index)]}.{rest}"
            # A prefix in every dimension: output and input channels, depthwise channels, BN vectors.
            state[key] = ours[source][tuple(slice(0, n) for n in target.shape)]
        model.load_state_dict(state)  # copies
        device = self.classifier[1].weight.device
        return model.to(device).train(self.training)


def _prefix(tensor: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The first ``sizes`` entries of ``tensor``'s leading dimensions; the tensor itself when that is all of it.

    Returning the whole parameter spares its backward pass a zero-filled full-size gradient and a copy.
    """
    if all(n == m for n, m in zip(sizes, tensor.shape, strict=False)):
        return tensor
    return tensor[tuple(slice(0, n) for n in sizes)]


def batch_norm_momentum(bn: nn.BatchNorm2d) -> float:
    """The running statistics' momentum of this call of ``bn`` (0 in eval mode), counting the batch in training
    mode: nn.BatchNorm2d's rules."""
    if not bn.training:
        return 0.0
    bn.num_batches_tracked.add_(1)
    return bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, channels: int) -> torch.Tensor:
    """``bn`` on its first ``channels`` channels, with nn.BatchNorm2d's rules for training and momentum."""
    momentum = batch_norm_momentum(bn)
    # Slices of the running buffers are views: F.batch_norm updates the shared statistics in place.
    return F.batch_norm(x, _prefix(bn.running_mean, channels), _prefix(bn.running_var, channels),
                        _prefix(bn.weight, channels), _prefix(bn.bias, channels), bn.training, momentum, bn.eps)


def _conv(conv: nn.Conv2d, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    in_channels = x.shape[1]
    if conv.groups == 1:
        weight, groups = _prefix(conv.weight, out_channels, in_channels), 1
    else:  # depthwise: one 3x3 filter per channel
        weight, groups = _prefix(conv.weight, out_channels), out_channels
    return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, groups)


Unit = tuple[nn.Conv2d, nn.BatchNorm2d, nn.Module | None]  # convolution, BatchNorm, activation (None: linear)


def _units(layers: nn.Sequential) -> list[Unit]:
    """The convolution-BatchNorm(-activation) units of a sequence the builder made, in order.

    Read from the modules, not from the spec: whether a block has an expansion layer, and which
    convolutions an activation follows (the linear bottleneck), is decided in one place, the builder.
    A unit is a ``Conv2dNormActivation`` (conv, BatchNorm, activation if any), or a bare convolution
    followed by its BatchNorm (the linear projection, in torchvision's key layout).
    """
    children = list(layers)
    if isinstance(children[0], nn.Conv2d):  # one unit: a Conv2dNormActivation itself (stem, head)
        return [(children[0], children[1], children[2] if len(children) > 2 else None)]
    units: list[Unit] = []
    for i, layer in enumerate(children):
        if isinstance(layer, nn.Sequential):
            units += _units(layer)
        elif isinstance(layer, nn.Conv2d):
            units.append((layer, children[i + 1], None))
    return units


def _run(units: list[Unit], x: torch.Tensor, widths: list[int], norm: BatchNorm) -> torch.Tensor:
    """``units`` on their first channels: unit ``i`` outputs ``widths[i]`` channels, its input's are ``x``'s."""
    for (conv, bn, act), width in zip(units, widths, strict=True):
        x = norm(bn, _conv(conv, x, width), width)
        x = x if act is None else act(x)
    return x

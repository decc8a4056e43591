"""The cost model: multiply-adds and parameters as arithmetic on an :class:`ArchSpec`.

Convention (Howard et al. 2017, Sandler et al. 2018): only the multiply-adds of
convolutions and fully connected layers count; BatchNorm, activations, pooling and the
residual additions do not, nor do bias additions. Parameters are every trainable tensor
element (convolution and linear weights, biases, BatchNorm's scale and shift), as
``sum(p.numel() for p in model.parameters())`` counts them. Nothing here builds a network:
``count_madds`` is what lets a search reject an over-budget candidate in microseconds.

:func:`profile_module` counts any module on the same convention through FlopCounterMode, for
networks that do not come from a spec and as the cross-check of the arithmetic.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from mobilenet_search.arch.spec import ArchSpec, Block


def conv_out(size: int, stride: int) -> int:
    """Output side of a 3x3 (padding 1) or 1x1 (stride 1) convolution on a ``size`` input."""
    return (size - 1) // stride + 1


class StageRow(NamedTuple):
    """One layer group of a network: its shapes, settings and exact costs (immutable, cheap to build)."""

    name: str
    in_resolution: int
    out_resolution: int
    in_channels: int
    out_channels: int
    expansion: int | None  # t, for stages
    repeats: int | None  # n, for stages
    stride: int
    madds: int
    params: int


def _conv(cin: int, cout: int, kernel: int, out_size: int, groups: int = 1, bn: bool = True) -> tuple[int, int]:
    """(madds, params) of a bias-free convolution, plus BatchNorm's two parameters per channel."""
    weights = kernel * kernel * (cin // groups) * cout
    return weights * out_size * out_size, weights + (2 * cout if bn else 0)


def _block_cost(block: Block, size: int) -> tuple[int, int, int]:
    """(madds, params, output size) of one block on a ``size`` input."""
    out_size = conv_out(size, block.stride)
    madds, params = _conv(block.hidden, block.hidden, 3, out_size, groups=block.hidden)
    m, p = _conv(block.hidden, block.out_channels, 1, out_size)
    madds, params = madds + m, params + p
    if block.expansion != 1:
        m, p = _conv(block.in_channels, block.hidden, 1, size)
        madds, params = madds + m, params + p
    return madds, params, out_size


def stage_table(spec: ArchSpec) -> list[StageRow]:
    """One row per layer group: stem, each stage, head (the last 1x1 conv), classifier.

    The rows' ``madds`` and ``params`` sum exactly to :func:`count_madds` and
    :func:`count_params`; the CLI, the dashboard and the model library all print an
    architecture through this table.
    """
    size = spec.resolution
    stem_size = conv_out(size, 2)
    madds, params = _conv(spec.in_channels, spec.stem_out, 3, stem_size)
    rows = [StageRow("stem", size, stem_size, spec.in_channels, spec.stem_out, None, None, 2, madds, params)]
    size = stem_size

    for index, ((first, repeat), stage) in enumerate(zip(spec.stage_blocks(), spec.stages, strict=True)):
        stage_in_size = size
        madds, params, size = _block_cost(first, size)
        if repeat is not None:
            m, p, _ = _block_cost(repeat, size)
            madds, params = madds + m * (stage.repeats - 1), params + p * (stage.repeats - 1)
        rows.append(StageRow(
            f"stage{index + 1}", stage_in_size, size, first.in_channels, first.out_channels,
            stage.expansion, stage.repeats, stage.stride, madds, params,
        ))

    channels = spec.stages_out
    if spec.head_out is not None:
        madds, params = _conv(channels, spec.head_out, 1, size)
        rows.append(StageRow("head", size, size, channels, spec.head_out, None, None, 1, madds, params))
        channels = spec.head_out
    # Global average pooling (not counted), then a fully connected layer or its 1x1 conv twin.
    fc = channels * spec.num_classes
    rows.append(StageRow("classifier", size, 1, channels, spec.num_classes, None, None, 1, fc, fc + spec.num_classes))
    return rows


def count_madds(spec: ArchSpec) -> int:
    """Multiply-adds of one image at the spec's resolution (conv and FC only; see module doc).

    >>> count_madds(ArchSpec.mobilenet_v2())
    300774272
    """
    return sum(row.madds for row in stage_table(spec))


def count_params(spec: ArchSpec) -> int:
    """Trainable parameters of ``build_model(spec)``, computed without building it.

    >>> count_params(ArchSpec.mobilenet_v2())
    3504872
    """
    return sum(row.params for row in stage_table(spec))


# Bytes of one nn.Module object on CPython 3.11 with torch 2.x, its parameters aside (its dicts of parameters,
# buffers, submodules and hooks): measured at 3.5 KB over 3,000-block networks; rounded up.
MODULE_BYTES = 4096
FLOAT_BYTES = 4  # float32 weights, gradients, optimiser moments and activations
# Copies of every parameter while training: the weights, their gradients and AdamW's two moments.
TRAINING_COPIES = 4


class MemoryEstimate(NamedTuple):
    """Peak memory of training a network, in bytes, from its spec alone (:func:`training_memory`)."""

    weights: int  # the parameters, their gradients and the optimiser's moments
    activations: int  # what autograd keeps for the backward pass of one batch
    modules: int  # the Python objects of the layers themselves

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.modules


def _units(block: Block, linear: bool) -> list[tuple[int, int, bool]]:
    """(channels, stride, activated) of a block's conv-BN units, in order."""
    units = [] if block.expansion == 1 else [(block.hidden, 1, True)]
    return units + [(block.hidden, block.stride, True), (block.out_channels, 1, not linear)]


def count_activations(spec: ArchSpec) -> int:
    """Elements per image that autograd keeps for the backward pass of ``build_model(spec)`` in training mode,
    at the spec's resolution (pass ``spec.replace(resolution=...)`` for a proxy size).

    A convolution-BatchNorm-activation unit keeps three tensors of its output's size with ReLU6: the convolution's
    output (BatchNorm's input), the copy of BatchNorm's output that torch's in-place ReLU6 saves, and the
    activation's output (the next layer's input); two with ReLU, which saves only its output. A linear projection
    (no activation) keeps two, and so does the head layer (global pooling keeps none of its input); a residual sum
    after an activated projection is one more. Add the input image, the classifier's input and dropout's mask.
    Not counted: BatchNorm's batch statistics (per channel, a few % at 1x1 feature maps). Counted though not
    kept: the last unit's output when global pooling reads it directly (no head layer), up to 9 % over. A test
    checks this against what autograd really keeps.
    """
    kept = 3 if spec.activation == "relu6" else 2  # per activated unit, in units of its output
    size = conv_out(spec.resolution, 2)
    elements = spec.in_channels * spec.resolution ** 2 + kept * spec.stem_out * size ** 2
    for (first, repeat), stage in zip(spec.stage_blocks(), spec.stages, strict=True):
        for block, count in ((first, 1), (repeat, stage.repeats - 1)):
            if block is None:
                continue
            block_size, per_block = size, 0
            for channels, stride, activated in _units(block, spec.linear_projection):
                block_size = conv_out(block_size, stride)
                per_block += (kept if activated else 2) * channels * block_size ** 2
            if block.residual and not spec.linear_projection:  # the activation keeps its output; the sum is new
                per_block += block.out_channels * block_size ** 2
            elements += per_block * count
            size = block_size
    if spec.head_out is not None:
        elements += 2 * spec.head_out * size ** 2  # global pooling keeps no input: the head's output is not kept
    return elements + spec.features_out * (2 if spec.dropout > 0 else 1)


def count_modules(spec: ArchSpec) -> int:
    """How many ``nn.Module`` objects ``build_model(spec)`` holds (see :data:`MODULE_BYTES`)."""
    per_unit = 4  # Conv2dNormActivation: the sequence, its convolution, BatchNorm and activation
    modules = 3 + per_unit + 2  # the network, its features and classifier sequences; the stem; dropout, the last layer
    for (first, repeat), stage in zip(spec.stage_blocks(), spec.stages, strict=True):
        for block, count in ((first, 1), (repeat, stage.repeats - 1)):
            if block is not None:
                units = _units(block, spec.linear_projection)
                # The block and its sequence; a linear projection is a bare convolution and BatchNorm.
                modules += count * (2 + sum(per_unit if activated else 2 for _, _, activated in units))
    return modules + (per_unit if spec.head_out is not None else 0)


def training_memory(spec: ArchSpec, batch_size: int) -> MemoryEstimate:
    """Peak memory of training ``build_model(spec)`` on batches of ``batch_size`` images at the spec's resolution
    (the proxy resolution: ``spec.replace(resolution=...)``), computed without building it.

    Weights: every parameter (exact, :func:`count_params`) in :data:`TRAINING_COPIES` float32 copies.
    Activations: :func:`count_activations` per image, times the batch. Modules: :func:`count_modules` Python
    objects of :data:`MODULE_BYTES`. What PyTorch itself takes (a few hundred MB) is not included.

    >>> round(training_memory(ArchSpec.mobilenet_v2(), 64).total / 2**30, 1)  # GiB, at 224 px
    4.7
    """
    return MemoryEstimate(weights=TRAINING_COPIES * FLOAT_BYTES * count_params(spec),
                          activations=FLOAT_BYTES * batch_size * count_activations(spec),
                          modules=MODULE_BYTES * count_modules(spec))


def format_bytes(value: float) -> str:
    """Bytes as a short text in powers of 1024: ``format_bytes(3 * 2**30) == '3.0 GiB'``."""
    for scale, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {suffix}"
    return f"{value:.0f} B"


def format_count(value: float) -> str:
    """A count the way the papers print it: ``format_count(300_774_272) == '300.8M'``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.{2 if abs(value) < 10 * scale else 1}f}{suffix}"
    return f"{value:g}"


def format_stage_table(spec: ArchSpec) -> str:
    """The stage table as aligned text with a totals line, for terminals and logs."""
    header = ("layer", "in", "out", "c_in", "c_out", "t", "n", "s", "MAdds", "params")
    rows = [header]
    for r in stage_table(spec):
        rows.append((
            r.name, f"{r.in_resolution}²", f"{r.out_resolution}²", str(r.in_channels), str(r.out_channels),
            "" if r.expansion is None else str(r.expansion), "" if r.repeats is None else str(r.repeats),
            str(r.stride), f"{r.madds:,}", f"{r.params:,}",
        ))
    rows.append(("total", "", "", "", "", "", "", "", f"{count_madds(spec):,}", f"{count_params(spec):,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def profile_module(module, input_size: tuple[int, ...]) -> tuple[int, int]:
    """(MAdds, params) of any module on the papers' convention, counted by PyTorch's own
    :class:`torch.utils.flop_counter.FlopCounterMode`: an independent cross-check of the analytic count.

    FlopCounterMode counts the FLOPs of convolutions and matrix products only, two per
    multiply-add, and charges nothing for BatchNorm, activations or pooling: half its total is
    the papers' MAdds. ``input_size`` is the full input shape, batch included, e.g.
    ``(1, 3, 224, 224)``. The module is profiled on a copy, in eval mode, and left untouched.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(module).eval()
    device = next(probe.parameters(), torch.zeros(0)).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        probe(torch.zeros(input_size, device=device))
    flops = counter.get_total_flops()
    return flops // 2, sum(p.numel() for p in probe.parameters())

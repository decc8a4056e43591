"""Zero-cost proxies: scores of an untrained network on one fixed mini-batch, for pre-screening a space.

Four scores from the literature, each computed at initialisation in a fraction of a second on the
CPU (``benchmarks/bench_zero_cost.py``), each larger for a network expected to train better:

- ``synflow``: synaptic flow, Tanaka et al. 2020 (:func:`synflow`);
- ``jacob_cov``: the NASWOT score, Mellor et al. 2021 (:func:`jacob_cov`);
- ``snip``: connection sensitivity, Lee et al. 2019 (:func:`snip`);
- ``grad_norm``: the summed gradient norms of Abdelfattah et al. 2021 (:func:`grad_norm`).

Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS" (ICLR), turned these pruning
and NAS scores into whole-network proxies; the conventions follow their reference implementation
(github.com/SamsungLabs/zero-cost-nas): a network's score is the sum of per-layer scores over the
weights of its convolutions and linear layers (biases and BatchNorm parameters excluded), the
loss is the mean cross-entropy on the batch, synflow runs in double precision without BatchNorm.

Every score is computed on a deep copy of the model, moved to the images' device, so the
caller's model (weights, gradients, train/eval mode) is never touched. The batch pass runs in
train mode, so BatchNorm normalises with the batch's statistics as it does at the start of
training (an initialised network's running statistics are the identity), but with dropout off:
a random mask would make the score depend on the draw instead of the architecture. No score
draws random numbers, so the same model and inputs give the same scores.

>>> import math, torch
>>> from mobilenet_search import ArchSpec, build_model
>>> from mobilenet_search.measure.data import load_dataset
>>> _ = torch.manual_seed(0)
>>> model = build_model(ArchSpec.mobilenet_v2(0.35, 224, num_classes=4, in_channels=1))
>>> images, labels = fixed_batch(load_dataset("synthetic:64", 32, cache_dir=None), 16, seed=0)
>>> values = scores(model, images, labels)
>>> list(values) == list(PROXIES), all(math.isfinite(v) for v in values.values())
(True, True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from mobilenet_search.arch.builder import ACTIVATION_LAYERS
from mobilenet_search.bounds import ZERO_COST_PROXIES
from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, normaliser, preprocessing, stratified_subset

PROXIES = ZERO_COST_PROXIES  # named without torch in bounds.py, so the settings check them without loading it
_BATCH_PROXIES = ("jacob_cov", "snip", "grad_norm")  # share one forward (and backward) pass
_WEIGHTED = (nn.Conv2d, nn.Linear)  # the layers whose weights the scores sum over
_ACTIVATIONS = tuple(ACTIVATION_LAYERS.values())  # jacob_cov's binary codes come from these units


def scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
           names: Iterable[str] = PROXIES) -> dict[str, float]:
    """The named proxies of ``model`` on a batch of normalised ``images`` and their ``labels``, in order.

    ``jacob_cov``, ``snip`` and ``grad_norm`` share one forward and backward pass. The batch
    needs at least two images (BatchNorm on batch statistics); labels are ``int64`` class indices.
    An unknown name raises :class:`UserError`.
    """
    names = tuple(names)
    for name in names:
        _check_name(name)
    result: dict[str, float] = {}
    if "synflow" in names:
        result["synflow"] = synflow(model, images)
    batch_names = [name for name in names if name in _BATCH_PROXIES]
    if batch_names:
        result.update(_batch_scores(model, images, labels, batch_names))
    return {name: result[name] for name in names}


def score(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """One proxy by name (one of :data:`PROXIES`), as :func:`scores` computes it."""
    return scores(model, images, labels, (name,))[name]


def synflow(model: nn.Module, images: torch.Tensor) -> float:
    """Synaptic flow: ``sum |θ ⊙ ∂R/∂θ|`` over conv and linear weights θ, where ``R = 1ᵀ(∏|θ|)1``.

    Tanaka et al. 2020, "Pruning neural networks without any data by iteratively conserving
    synaptic flow" (NeurIPS), eq. 2 and Algorithm 1: every parameter is replaced by its absolute
    value and the network is run on one all-ones input, so the summed output ``R`` is the sum
    over all input-output paths of the products of the path's weights. Only the input's shape
    is used, never its content. For a chain of L linear layers each layer's flow equals ``R``
    (the paper's conservation law), so the score is ``L·R``.

    As in Abdelfattah et al.'s reference (their ``synflow``, not ``synflow_bn``), BatchNorm and
    dropout are removed. The reference runs in double precision; the path sums of a MobileNet
    reach about 1e30 at initialisation, which float32 still holds (up to 3e38), so the pass runs
    in float32 and is repeated in float64 only if it overflows. One departure: ReLU6 becomes ReLU.
    ``R`` is defined on the linearised network (ReLU is the identity on its non-negative inputs);
    ReLU6 clips at 6, which every unit of a MobileNetV2 exceeds on this input, and the clipped
    units pass no gradient, so with ReLU6 all layers but the classifier would score zero.
    """
    # float32 holds values up to 3e38, enough for MobileNets at proxy resolutions and 10-20x faster
    # on CPU than float64 (no oneDNN kernels for doubles); a non-finite result falls back to float64.
    for dtype in (torch.float32, torch.float64):
        net = copy.deepcopy(model)
        _replace_modules(net, {nn.modules.batchnorm._BatchNorm: nn.Identity, nn.Dropout: nn.Identity,
                               nn.ReLU6: nn.ReLU})
        net.to(images.device, dtype)
        _prepare_parameters(net)
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.abs_()
        with torch.enable_grad():
            net(torch.ones_like(images[:1], dtype=dtype)).sum().backward()
        score = _sum_over_weights(net, lambda w: (w.double() * w.grad.double()).abs().sum())
        if math.isfinite(score):
            return score
    return score


def jacob_cov(model: nn.Module, images: torch.Tensor) -> float:
    """The NASWOT score: ``log |K_H|`` of the batch's kernel of binary ReLU activation codes.

    Mellor et al. 2021, "Neural Architecture Search without Training" (ICML), eq. 2: each image's
    code ``c`` has one bit per ReLU unit of the network, 1 where the unit's input is positive;
    ``K_H[i, j] = N_A − d_H(c_i, c_j)``, the number of units (of ``N_A``) on which images i and j
    agree. The score is the log-determinant (``slogdet``); it is ``-inf`` when two images share a
    code (a singular kernel), and larger when the network separates the images more.

    The name: Abdelfattah et al. 2021 call ``jacob_cov`` the score of the first version of
    Mellor et al.'s paper (2020, from the correlations of the input Jacobians); the second,
    published version replaced it with this kernel score, which is what the issue asks for
    under that name. Codes come from every ``nn.ReLU`` and ``nn.ReLU6`` module; for ReLU6 too a
    unit's bit is its pre-activation > 0 (equal to output > 0, so in-place activations work).
    """
    return _batch_scores(model, images, None, ["jacob_cov"])["jacob_cov"]


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Connection sensitivity: ``sum |θ ⊙ ∂L/∂θ|`` over conv and linear weights, L the cross-entropy.

    Lee et al. 2019, "SNIP: Single-shot network pruning based on connection sensitivity" (ICLR),
    eq. 6 (before normalisation): the first-order change of the loss when a connection is
    removed, ``|∂L/∂c · c|`` at mask ``c = 1``, is ``|θ ∂L/∂θ|``. Summed over the network as in
    Abdelfattah et al. 2021. ``L`` is the mean cross-entropy over the batch.
    """
    return _batch_scores(model, images, labels, ["snip"])["snip"]


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``sum over conv and linear layers of ||∂L/∂W||₂`` (the Frobenius norm), L the mean cross-entropy.

    Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS" (ICLR), section 3.
    """
    return _batch_scores(model, images, labels, ["grad_norm"])["grad_norm"]


def fixed_batch(data: ImageData, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, class-stratified batch of ``size`` training images, normalised as training does.

    Returns ``(images, labels)``: float32 N×C×H×W images, standardised per channel with the mean
    and standard deviation of all of ``data.train_images`` (as :mod:`mobilenet_search.measure.train`
    does), and their ``int64`` labels. Asking for more images than the training split holds
    gives all of them.
    """
    if size < 2:
        raise UserError(f"invalid zero-cost batch size {size!r}: expected an integer >= 2")
    n = min(size, len(data.train_labels))
    index = stratified_subset(data.train_labels, n, torch.Generator().manual_seed(seed))
    return normaliser(preprocessing(data))(data.train_images[index]), data.train_labels[index]


def _check_name(name: str) -> None:
    if name not in PROXIES:
        raise UserError(f"unknown zero-cost proxy {name!r}: expected one of {', '.join(PROXIES)}")


def _batch_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                  names: list[str]) -> dict[str, float]:
    """jacob_cov, snip and grad_norm from one forward pass (and one backward pass when a gradient score is asked)."""
    net = copy.deepcopy(model).to(images.device)
    _replace_modules(net, {nn.Dropout: nn.Identity})
    net.train()
    _prepare_parameters(net)
    kernel = torch.zeros(len(images), len(images), dtype=torch.float64, device=images.device)

    def add_codes(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # The outputs are >= 0, so their sign is the code, in one pass. Units where both codes are 1
        # plus units where both are 0, C Cᵀ + (1 − C)(1 − C)ᵀ, need only C Cᵀ, whose diagonal counts
        # each image's ones. Sums of 0/1 products in float32 are exact up to 2^24 units per layer
        # (a 224 px MobileNetV2 layer has at most 1.3 million).
        codes = torch.sign(output.detach()).flatten(1)
        both = (codes @ codes.T).double()
        ones = both.diagonal()
        kernel.add_(2 * both - ones[:, None] - ones[None, :] + codes.shape[1])

    hooks = [m.register_forward_hook(add_codes) for m in net.modules() if isinstance(m, _ACTIVATIONS)]
    if "jacob_cov" in names and not hooks:
        raise ValueError("jacob_cov needs a network with nn.ReLU or nn.ReLU6 modules")
    gradients = "snip" in names or "grad_norm" in names
    with torch.set_grad_enabled(gradients):
        outputs = net(images)
        if gradients:
            F.cross_entropy(outputs, labels.to(images.device)).backward()
    for hook in hooks:
        hook.remove()
    result = {}
    if "jacob_cov" in names:
        result["jacob_cov"] = torch.linalg.slogdet(kernel).logabsdet.item()
    if gradients:
        result["snip"] = _sum_over_weights(net, lambda w: (w * w.grad).abs().sum())
        result["grad_norm"] = _sum_over_weights(net, lambda w: w.grad.norm())
    return {name: result[name] for name in names}


def _prepare_parameters(net: nn.Module) -> None:
    """Gradients for every parameter of the copy (the caller's may be frozen), none accumulated yet."""
    for parameter in net.parameters():
        parameter.requires_grad_(True)
        parameter.grad = None


@torch.no_grad()
def _sum_over_weights(net: nn.Module, per_layer: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``per_layer(weight)`` summed over the conv and linear layers that received a gradient, as a float."""
    return float(sum(per_layer(m.weight).double() for m in net.modules()
                     if isinstance(m, _WEIGHTED) and m.weight.grad is not None))


def _replace_modules(net: nn.Module, replacements: dict[type[nn.Module], type[nn.Module]]) -> None:
    """Swap, in place, each submodule that is an instance of a key for a new module of the value's type."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            for kind, new in replacements.items():
                if isinstance(child, kind):
                    setattr(parent, name, new())
                    break


"""Zero-cost proxies: each checked against a value computed by hand, then on real MobileNets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mobilenet_search import ArchSpec, UserError, build_model
from mobilenet_search.measure.data import load_dataset
from mobilenet_search.measure.zero_cost import PROXIES, fixed_batch, grad_norm, jacob_cov, score, scores, snip, synflow


def linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    """A linear layer with the given weight (out × in) and bias (none when omitted)."""
    weight = torch.tensor(weight)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def identity_relu(n: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """x -> act(x) on n features, so a unit's activation code is simply the sign of its input."""
    return nn.Sequential(linear(torch.eye(n).tolist(), [0.0] * n), act())


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return fixed_batch(load_dataset("synthetic:64", 32, cache_dir=None), 16, seed=0)


def mobilenet(width_mult: float = 0.35, family: str = "mobilenet_v2", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    make = ArchSpec.mobilenet_v2 if family == "mobilenet_v2" else ArchSpec.mobilenet_v1
    return build_model(make(width_mult, 224, num_classes=4, in_channels=1))


# -- synflow ---------------------------------------------------------------------------------------------------------


def test_synflow_of_one_linear_layer_is_the_sum_of_absolute_weights() -> None:
    # R = Σ_i (Σ_j |W_ij| + |b_i|), so ∂R/∂W_ij = 1 and the score is Σ|W| = 21; biases are not scored.
    layer = linear([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]], bias=[-10.0, 7.0])
    assert synflow(layer, torch.randn(5, 3)) == 21.0


def test_synflow_of_a_two_layer_chain_is_twice_the_path_sum_with_batchnorm_and_relu6_linearised() -> None:
    # |W1|·1 = (6, 15); |W2|·(6, 15) = (21, 19.5); R = 40.5. Each layer's flow equals R (Tanaka et al.'s
    # conservation law), so the score is 2R = 81. The unit at 15 would be clipped by ReLU6, and
    # BatchNorm in either mode would change R: both are linearised away.
    net = nn.Sequential(linear([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]), nn.BatchNorm1d(2), nn.ReLU6(),
                        nn.Dropout(0.5), linear([[1.0, -1.0], [2.0, 0.5]]))
    assert synflow(net, torch.randn(4, 3)) == 81.0


def test_synflow_ignores_the_image_content() -> None:
    model = mobilenet()
    assert synflow(model, torch.zeros(2, 1, 32, 32)) == synflow(model, torch.randn(2, 1, 32, 32))


# -- snip and grad_norm ----------------------------------------------------------------------------------------------

# z = W x with x = (1, 2): z = (ln 3, 0), softmax(z) = (3/4, 1/4). For label 1 the cross-entropy gradient
# is (softmax − onehot) xᵀ = (3/4, −3/4)ᵀ (1, 2). For labels (1, 0) on the same x twice, the mean loss has
# gradient ((3/4, −3/4) + (−1/4, 1/4))/2 ⊗ (1, 2) = (1/4, −1/4)ᵀ (1, 2).
HAND_WEIGHT = [[math.log(3), 0.0], [-1.0, 0.5]]
HAND_CASES = [
    # labels, snip = Σ|W ⊙ G|, grad_norm = ||G||_F
    ([1], 0.75 * math.log(3) + 0.75 + 0.75, math.sqrt(2 * 0.75**2 * (1 + 4))),
    ([1, 0], 0.25 * math.log(3) + 0.25 + 0.25, math.sqrt(2 * 0.25**2 * (1 + 4))),
]


@pytest.mark.parametrize(("labels", "expected_snip", "expected_grad_norm"), HAND_CASES)
def test_snip_and_grad_norm_match_the_hand_computed_cross_entropy_gradient(
        labels: list[int], expected_snip: float, expected_grad_norm: float) -> None:
    layer = linear(HAND_WEIGHT)
    images, targets = torch.tensor([[1.0, 2.0]] * len(labels)), torch.tensor(labels)
    assert snip(layer, images, targets) == pytest.approx(expected_snip, rel=1e-6)
    assert grad_norm(layer, images, targets) == pytest.approx(expected_grad_norm, rel=1e-6)


def test_grad_norm_sums_the_layer_norms_rather_than_taking_the_global_norm() -> None:
    # Two layers with the same gradient norm g: the sum is 2g, the global norm would be √2·g.
    first = linear([[1.0, 0.0], [0.0, 1.0]])
    net = nn.Sequential(first, linear([[math.log(3), 0.0], [-1.0, 0.5]]))
    images, targets = torch.tensor([[1.0, 2.0]]), torch.tensor([1])
    last = grad_norm(net[1], images, targets)
    # The first layer is the identity, so its gradient is W2ᵀ(softmax − onehot) xᵀ = ((3/4)(ln 3 + 1), −3/8)ᵀ(1, 2).
    first_norm = math.hypot(0.75 * (math.log(3) + 1), 0.375) * math.sqrt(5)
    assert grad_norm(net, images, targets) == pytest.approx(last + first_norm, rel=1e-6)


# -- jacob_cov (NASWOT) ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
def test_jacob_cov_is_the_log_determinant_of_the_agreement_kernel(act: type[nn.Module]) -> None:
    # Codes (input > 0; 7 is clipped by ReLU6 but still codes 1; 0 codes 0): 110, 100, 011.
    # K = N_A − Hamming = [[3, 2, 1], [2, 3, 0], [1, 0, 3]], det K = 27 − 12 − 3 = 12.
    images = torch.tensor([[7.0, 2.0, -1.0], [3.0, -1.0, -2.0], [0.0, 5.0, 4.0]])
    assert jacob_cov(identity_relu(3, act), images) == pytest.approx(math.log(12), rel=1e-9)


def test_jacob_cov_sums_the_kernels_of_all_activation_layers() -> None:
    # The second layer sees the first's non-negative outputs and repeats its codes: K doubles, det × 2³.
    images = torch.tensor([[7.0, 2.0, -1.0], [3.0, -1.0, -2.0], [0.0, 5.0, 4.0]])
    net = nn.Sequential(identity_relu(3), identity_relu(3, nn.ReLU6))
    assert jacob_cov(net, images) == pytest.approx(math.log(12 * 2**3), rel=1e-9)


def test_jacob_cov_of_complementary_codes_is_log_of_n_a_to_the_n() -> None:
    # Codes 10 and 01 disagree everywhere: K = 2·I, det = 4.
    assert jacob_cov(identity_relu(2), torch.tensor([[1.0, -1.0], [-1.0, 1.0]])) == pytest.approx(math.log(4))


def test_jacob_cov_of_images_sharing_a_code_is_minus_infinity() -> None:
    # Different images, same code 101: two equal rows make the kernel singular.
    images = torch.tensor([[1.0, -1.0, 2.0], [3.0, -2.0, 0.5], [-1.0, 1.0, 1.0]])
    assert jacob_cov(identity_relu(3), images) == -math.inf


def test_jacob_cov_needs_relu_modules() -> None:
    with pytest.raises(ValueError, match="ReLU"):
        jacob_cov(linear([[1.0]]), torch.ones(2, 1))


# -- on real networks ------------------------------------------------------------------------------------------------


def test_scores_leave_the_callers_model_untouched(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = mobilenet()
    images, labels = batch
    model(images).sum().backward()  # gradients the caller may hold
    model.eval()
    model.features[0].requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    frozen = {k: p.requires_grad for k, p in model.named_parameters()}
    with torch.no_grad():  # the scores need gradients even inside a caller's no_grad block
        values = scores(model, images, labels)
    assert all(math.isfinite(v) for v in values.values())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())
    assert not any(m.training for m in model.modules())
    assert {k: p.requires_grad for k, p in model.named_parameters()} == frozen
    for k, p in model.named_parameters():
        assert (p.grad is None) == (grads[k] is None) and (p.grad is None or torch.equal(p.grad, grads[k]))


@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1"])
def test_scores_are_finite_positive_and_deterministic(family: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = mobilenet(family=family)
    first = scores(model, *batch)
    assert list(first) == list(PROXIES)
    assert all(math.isfinite(v) and v > 0 for v in first.values())
    assert scores(model, *batch) == first
    assert {name: score(name, model, *batch) for name in PROXIES} == first
    assert scores(model, *batch, names=["snip", "synflow"]) == {"snip": first["snip"], "synflow": first["synflow"]}


def test_a_wider_network_has_more_synaptic_flow_and_a_larger_naswot_score(
        batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    narrow, wide = (scores(mobilenet(w), *batch) for w in (0.35, 1.0))
    # More paths (synflow) and more units separating the images (NASWOT's kernel grows with N_A).
    assert wide["synflow"] > 100 * narrow["synflow"]
    assert wide["jacob_cov"] > narrow["jacob_cov"]
    assert wide["snip"] != narrow["snip"] and wide["grad_norm"] != narrow["grad_norm"]


def test_an_unknown_proxy_is_a_user_error(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(UserError, match="unknown zero-cost proxy 'naswot'.*synflow, jacob_cov, snip, grad_norm"):
        score("naswot", mobilenet(), *batch)


# -- fixed_batch -----------------------------------------------------------------------------------------------------


def test_fixed_batch_is_seeded_stratified_and_normalised_with_the_training_statistics() -> None:
    data = load_dataset("synthetic:100", 32, cache_dir=None)
    images, labels = fixed_batch(data, 40, seed=3)
    assert images.dtype == torch.float32 and images.shape == (40, 1, 32, 32)
    assert torch.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    pixels = data.train_images.float()
    # Undoing the normalisation with the statistics of the whole training split gives back its images.
    restored = (images * pixels.std() + pixels.mean()).round().to(torch.uint8)
    index = [next(i for i, image in enumerate(data.train_images) if torch.equal(image, row)) for row in restored]
    assert torch.equal(data.train_labels[index], labels)
    again, _ = fixed_batch(data, 40, seed=3)
    other, _ = fixed_batch(data, 40, seed=4)
    assert torch.equal(again, images) and not torch.equal(other, images)


def test_fixed_batch_takes_at_most_the_training_split_and_at_least_two_images() -> None:
    data = load_dataset("synthetic:20", 32, cache_dir=None)
    images, labels = fixed_batch(data, 64, seed=0)
    assert len(images) == len(labels) == len(data.train_labels) == 16
    with pytest.raises(UserError, match="zero-cost batch size 1"):
        fixed_batch(data, 1)

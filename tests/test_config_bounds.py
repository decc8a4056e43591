"""A study's settings are bounded and checked by arithmetic before any data are read (search/config.py, issue 24)."""

from __future__ import annotations

import itertools

import pytest

from mobilenet_search.bounds import INT_BOUNDS
from mobilenet_search.errors import UserError
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.results.records import check_split
from mobilenet_search.search.config import SearchConfig


def _refused(call) -> bool:
    try:
        call()
    except UserError:
        return True
    return False


@pytest.mark.parametrize(("source", "limit", "val_fraction"), [
    *itertools.product(["synthetic:8", "synthetic:20", "synthetic:64"], [None, 4, 7, 8, 12, 20], [0.2, 0.5, 0.9]),
    ("synthetic:64", None, 0.99), ("synthetic:64", None, 0.01), ("synthetic:64", 3, 0.2),
])
def test_the_split_arithmetic_refuses_exactly_what_the_data_would(source, limit, val_fraction):
    """Cross-checked against the real split (DataCache decodes the synthetic set, without a cache)."""
    by_arithmetic = _refused(lambda: check_split(source, limit, val_fraction))
    by_data = _refused(lambda: DataCache(source, 32, limit=limit, val_fraction=val_fraction, cache_dir=None))
    assert by_arithmetic == by_data


@pytest.mark.parametrize(("limit", "val_fraction"), [(3, 0.2), (2, 0.5), (10, 0.9), (10, 0.05)])
def test_a_limit_that_leaves_fewer_than_two_images_on_a_side_is_refused_for_any_data(limit, val_fraction):
    with pytest.raises(UserError, match=f"invalid --dataset-limit {limit} with --val-fraction"):
        check_split("embedded", limit, val_fraction)


@pytest.mark.parametrize(("field", "value"), [
    *((name, high + 1) for name, (_, high) in INT_BOUNDS.items()),
    *((name, low - 1) for name, (low, _) in INT_BOUNDS.items()),
    ("lr", float("nan")), ("lr", float("inf")), ("lr", 11.0), ("val_fraction", float("nan")),
])
def test_every_integer_setting_has_bounds_on_both_sides(field, value):
    with pytest.raises(UserError, match=f"invalid --{field.replace('_', '-')}"):
        SearchConfig(budget="300M-madds", **{field: value})


@pytest.mark.parametrize(("budget", "message"), [
    ("٣٠٠M-madds", "ASCII"), ("３００M-madds", "ASCII"), ("9" * 10_000 + "M-madds", "at most 100 characters"),
    ("9999999999G-madds", "is above 1e\\+15 madds"), ("99999999ms-latency", "is above"),
])
def test_budgets_are_ascii_short_and_finite(budget, message):
    with pytest.raises(UserError, match=message) as caught:
        SearchConfig(budget=budget)
    assert len(str(caught.value)) < 300  # a 10,000-digit budget is not echoed in full


@pytest.mark.parametrize("dataset", ["synthetic:٣٠٠", "synthetic:99999999999999", "synthetic:-5", ""])
def test_synthetic_sizes_are_ascii_and_bounded(dataset):
    with pytest.raises(UserError, match="invalid --dataset"):
        SearchConfig(budget="300M-madds", dataset=dataset)


def _split_sides_by_torch(size: int, val_fraction: float, test_fraction: float) -> list[int]:
    """Classes per side (validation, training, test) of the synthetic set's real split, drawn with torch by
    measure.data's stratified_subset: what check_split did before its arithmetic went torch-free."""
    import torch

    from mobilenet_search.measure.data import stratified_subset

    labels = torch.arange(size) % 4
    val = torch.zeros(size, dtype=torch.bool)
    val[stratified_subset(labels, round(size * val_fraction), torch.Generator())] = True
    test = torch.zeros(size, dtype=torch.bool)
    if test_fraction:
        rest = (~val).nonzero().flatten()
        test[rest[stratified_subset(labels[rest], round(size * test_fraction), torch.Generator())]] = True
    return [len(labels[side].unique()) for side in (val, ~val & ~test, test)]


def test_the_torch_free_split_arithmetic_refuses_what_the_torch_split_did_on_random_cases():
    import random

    rng = random.Random(23)
    refused = 0
    for _ in range(600):
        size = rng.randint(8, 120)
        val_fraction = rng.choice([rng.uniform(0.01, 0.9), rng.choice([0.1, 0.2, 0.25, 0.5])])
        test_fraction = rng.choice([0.0, rng.uniform(0.0, 0.94 - val_fraction), 0.2])
        if val_fraction + test_fraction >= 0.95:
            continue
        counts = _split_sides_by_torch(size, val_fraction, test_fraction)
        torch_refuses = any(n < 4 for n in counts[:2]) or bool(test_fraction and counts[2] < 4)
        source = f"synthetic:{size}"
        arithmetic_refuses = _refused(lambda s=source, v=val_fraction, t=test_fraction: check_split(s, None, v, t))
        assert arithmetic_refuses == torch_refuses, (size, val_fraction, test_fraction)
        refused += arithmetic_refuses
    assert 0 < refused < 500  # both kinds of case were drawn


def test_stratified_counts_are_what_stratified_subset_takes():
    import random

    import torch

    from mobilenet_search.measure.data import stratified_subset
    from mobilenet_search.results.records import stratified_counts

    rng = random.Random(24)
    for _ in range(300):
        counts = [rng.choice([0, rng.randint(1, 40)]) for _ in range(rng.randint(1, 7))]
        if not sum(counts):
            continue
        labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])[torch.randperm(sum(counts))]
        n = rng.randint(0, sum(counts))
        taken = labels[stratified_subset(labels, n, torch.Generator().manual_seed(0))]
        assert stratified_counts(counts, n) == [int((taken == k).sum()) for k in range(len(counts))], (counts, n)

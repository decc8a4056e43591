"""A study's settings are bounded and checked by arithmetic before any data are read (search/config.py, issue 24)."""

from __future__ import annotations

import itertools

import pytest

from mobilenet_search.errors import UserError
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.search.bounds import INT_BOUNDS
from mobilenet_search.search.config import SearchConfig, check_split


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

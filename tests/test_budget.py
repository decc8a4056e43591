"""Tests for mobilenet_search.arch.budget: grammar, the precision rule, feasibility and messages."""

from __future__ import annotations

from decimal import Decimal

import optuna
import pytest

from mobilenet_search import ArchSpec, count_madds
from mobilenet_search.arch.budget import Budget, Limit
from mobilenet_search.errors import UserError


@pytest.mark.parametrize(("text", "kind", "bound"), [
    ("300M-madds", "madds", Decimal(301_000_000)),
    ("300.5M-madds", "madds", Decimal(300_600_000)),
    ("1.2G-madds", "madds", Decimal(1_300_000_000)),
    ("3.4M-params", "params", Decimal(3_500_000)),
    ("250K-params", "params", Decimal(251_000)),
    ("1000000-params", "params", Decimal(1_000_001)),
    ("5ms-latency", "latency", Decimal(6)),
    ("5.25ms-latency", "latency", Decimal("5.26")),
    ("0.5ms-latency", "latency", Decimal("0.6")),
])
def test_bound_is_one_unit_of_the_last_written_digit_above_the_number(text, kind, bound):
    limit = Limit.parse(text)
    assert (limit.kind, limit.bound, limit.text) == (kind, bound, text)


def test_count_edges_of_300M_madds():
    limit = Limit.parse("300M-madds")
    assert limit.admits(300_999_999)
    assert not limit.admits(301_000_000)
    assert limit.admits(1)


def test_mobilenet_v2_counts_as_a_300M_network():
    # Sandler et al. 2018, Table 3: MobileNetV2 1.0/224 has "300M" multiply-adds; exactly 300,774,272.
    madds = count_madds(ArchSpec.mobilenet_v2())
    assert madds == 300_774_272
    assert Budget.parse("300M-madds").violations(madds=madds) == {}
    assert Budget.parse("300.7M-madds").violations(madds=madds) == {}
    assert "madds" in Budget.parse("300.6M-madds").violations(madds=madds)


def test_decimal_bounds_are_exact_where_floats_are_not():
    # 0.1 + 0.2 in floats is 0.30000000000000004, which would put 1.3G a hair off.
    limit = Limit.parse("1.2G-madds")
    assert limit.admits(1_299_999_999)
    assert not limit.admits(1_300_000_000)
    # A latency that prints as 5.26 is at the bound of 5.25ms-latency, though the binary float is just below it.
    latency = Limit.parse("5.25ms-latency")
    assert latency.admits(5.259999)
    assert not latency.admits(5.26)
    assert not latency.admits(5.25 + 0.01)  # 5.26 after float rounding


def test_written_precision_is_kept():
    assert Limit.parse("300.0M-madds").bound == Decimal(300_100_000)
    assert str(Budget.parse("300.0M-madds")) == "300.0M-madds"
    assert Budget.parse("300.0M-madds") != Budget.parse("300M-madds")


def test_excess_is_positive_exactly_when_not_admitted():
    limit = Limit.parse("300M-madds")
    for value in (1, 300_000_000, 300_999_999):
        assert limit.admits(value) and limit.excess(value) <= 0
    for value in (301_000_000, 301_000_001, 10**12):
        assert not limit.admits(value) and limit.excess(value) > 0
    latency = Limit.parse("5ms-latency")
    assert latency.excess(5.999999) <= 0 < latency.excess(6.0)


def test_excess_is_relative_to_the_bound_and_grows_with_the_value():
    madds, latency = Limit.parse("300M-madds"), Limit.parse("5ms-latency")
    assert madds.excess(331_100_000) == pytest.approx(0.1)
    assert latency.excess(6.6) == pytest.approx(0.1)
    assert madds.excess(150_500_000) == pytest.approx(-0.5)
    values = [100_000_000, 300_999_999, 301_000_000, 301_000_001, 400_000_000]
    excesses = [madds.excess(v) for v in values]
    assert excesses == sorted(excesses)


def test_excess_sets_feasibility_in_optuna():
    budget = Budget.parse("300M-madds,4M-params")
    measured = [  # (madds, params, objective): the infeasible trials score better
        (300_999_999, 3_999_999, 3.0),  # feasible, both at the edge
        (301_000_000, 1_000_000, 1.0),  # madds exactly at the exclusive bound
        (100_000_000, 5_000_000, 2.0),
    ]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for madds, params, objective in measured:
        trial = study.ask()
        for kind, excess in budget.excesses(madds=madds, params=params).items():
            trial.set_constraint(kind, excess)
        study.tell(trial, objective)
    assert [sorted(t.constraints) for t in study.trials] == [["madds", "params"]] * 3
    assert [all(c <= 0 for c in t.constraints.values()) for t in study.trials] == [True, False, False]
    assert study.best_trial.number == 0


def test_parse_canonicalises_case_spacing_and_order():
    budget = Budget.parse(" 4m-PARAMS ,  5MS-Latency,300m-madds ")
    assert str(budget) == "300M-madds,4M-params,5ms-latency"
    assert budget.kinds == ("madds", "params", "latency")
    assert Budget.parse(str(budget)) == budget
    assert Budget.parse("0300M-madds") == Budget.parse("300M-madds")
    tiny = Budget.parse("0.0000001K-params")  # canonical text never goes scientific
    assert str(tiny) == "0.0000001K-params" and Budget.parse(str(tiny)) == tiny


def test_get_and_needs_latency():
    budget = Budget.parse("300M-madds")
    assert budget.get("madds") == Limit.parse("300M-madds")
    assert budget.get("latency") is None
    assert not budget.needs_latency
    assert Budget.parse("300M-madds,5ms-latency").needs_latency


def test_violations_lists_only_measured_kinds_that_are_over():
    budget = Budget.parse("300M-madds,4M-params,5ms-latency")
    over = budget.violations(madds=310_000_000, params=3_000_000, latency_ms=7.0)
    assert set(over) == {"madds", "latency"}
    assert all(v > 0 for v in over.values())
    # Latency not measured (absent or None) is ignored rather than guessed.
    assert budget.violations(madds=1, params=1) == {}
    assert budget.violations(madds=1, params=1, latency_ms=None) == {}
    # A measured kind with no limit is ignored too.
    assert Budget.parse("300M-madds").violations(madds=1, params=10**9) == {}


def test_unknown_measured_keyword_is_a_programming_error():
    with pytest.raises(TypeError, match="latency"):
        Budget.parse("5ms-latency").violations(latency=3.0)


def test_nan_measurement_is_a_programming_error():
    with pytest.raises(ValueError, match="finite"):
        Limit.parse("5ms-latency").admits(float("nan"))


def test_reason_names_value_budget_and_bound():
    budget = Budget.parse("300M-madds,5.25ms-latency")
    assert budget.reason(madds=300_774_272, latency_ms=5.0) is None
    assert budget.reason(madds=320_112_000) == "madds 320,112,000 over budget 300M-madds (admits < 301,000,000)"
    assert budget.reason(madds=320_112_000, latency_ms=5.26) == (
        "madds 320,112,000 over budget 300M-madds (admits < 301,000,000); "
        "latency 5.2600 ms over budget 5.25ms-latency (admits < 5.26 ms)"
    )


@pytest.mark.parametrize(("text", "named"), [
    ("300X-madds", "300X-madds"),
    ("-5M-madds", "-5M-madds"),
    ("madds", "madds"),
    ("", "''"),
    ("   ", "'   '"),
    ("300M-flops", "flops"),
    ("0M-madds", "0M-madds"),
    ("0.0ms-latency", "0.0ms-latency"),
    ("300M-madds,310M-madds", "madds twice"),
    ("5-latency", "5-latency"),
    ("5M-latency", "5M-latency"),
    ("5ms-madds", "5ms-madds"),
    ("nan-madds", "nan-madds"),
    ("inf-madds", "inf-madds"),
    ("nan", "nan"),
    ("inf", "inf"),
    ("3e8-madds", "3e8-madds"),
    ("300M-madds,", "'300M-madds,' has an empty item"),
    ("300M-madds,,4M-params", "empty item"),
    ("300 M-madds", "300 M-madds"),
])
def test_malformed_budget_is_a_user_error_naming_the_item_with_an_example(text, named):
    with pytest.raises(UserError) as caught:
        Budget.parse(text)
    message = str(caught.value)
    assert named in message
    assert "e.g." in message
    assert "\n" not in message


def test_budget_holds_each_kind_once_even_when_built_directly():
    with pytest.raises(ValueError, match="at most once"):
        Budget((Limit.parse("300M-madds"), Limit.parse("200M-madds")))

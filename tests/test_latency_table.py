"""Tests for the latency lookup table (measure/latency_table.py), its space plan (search/latency_plan.py)
and the ``latency-table`` command (ui/cli_latency.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from mobilenet_search import ArchSpec, build_model
from mobilenet_search.errors import UserError
from mobilenet_search.measure.latency_table import (
    Entry,
    LatencyTable,
    build_table,
    check_table,
    device_identity,
    device_key,
    entries_for,
    fit_overhead,
    load_table_for,
    overhead_ms,
    predict_latency_ms,
    spec_entries,
    table_path,
    table_sum_ms,
)
from mobilenet_search.search.latency_plan import build_space_table, distinct_entries, sample_members
from mobilenet_search.search.space import load_space
from mobilenet_search.ui.cli import main


def fake_ms(module: nn.Module, input_shape: tuple[int, ...]) -> float:
    """A deterministic stand-in for timing: 1 us per parameter plus 1 us per input element, plus 0.01 ms."""
    params = sum(p.numel() for p in module.parameters())
    return 0.01 + 1e-3 * (params + math.prod(input_shape)) / 1e3


class Interrupting:
    """A measure function that counts its calls and raises KeyboardInterrupt on call ``stop_after + 1``."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls = 0
        self.stop_after = stop_after

    def __call__(self, module: nn.Module, input_shape: tuple[int, ...]) -> float:
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return fake_ms(module, input_shape)


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture
def table(tmp_path, tiny):
    """The tiny space's table, built with the fake timer and fitted."""
    built, _ = build_space_table(tiny, device="cpu", results_dir=tmp_path, passes=2, fit_per_resolution=2,
                                 measure=fake_ms, progress=False)
    return built


def _path(tmp_path):
    return table_path(tmp_path, device_key("cpu", 1, 1))


def test_entries_of_mobilenet_v2_follow_the_paper_table():
    spec = ArchSpec.mobilenet_v2()
    counted = spec_entries(spec)
    # Stem, 17 blocks (Sandler et al. 2018, Table 2: n = 1+2+3+4+3+3+1), head, classifier.
    assert sum(count for _, count in counted) == 1 + 17 + 1 + 1
    # Seven first blocks and six repeated ones (stages with n > 1), plus stem, head and classifier.
    assert len(entries_for(spec)) == 15
    keys = [entry.key for entry in entries_for(spec)]
    assert keys[0] == "stem r224 3>32 s2 relu6"
    assert "block r56 24>24 t6 s1 relu6 linear residual" in keys
    assert keys[-2:] == ["head r7 320>1280 relu6", "classifier r7 1280>1000 fc"]


def test_entry_modules_run_at_their_shapes_and_chain_like_the_network():
    spec = ArchSpec.mobilenet_v1(width_mult=0.25, resolution=64, num_classes=10)
    x = torch.zeros(1, 3, 64, 64)
    for entry, count in spec_entries(spec):
        for _ in range(count):
            assert x.shape == entry.input_shape(1)
            x = entry.module().eval()(x)
    assert x.shape == build_model(spec).eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    # MobileNetV1's layers end with the activation and never add a residual.
    assert all(e.variant == "nonlinear" and not e.residual for e in entries_for(spec) if e.kind == "block")


def test_entry_modules_hold_exactly_the_networks_parameters(random_specs):
    # The entries are the network cut into pieces: their parameters add up to count_params, for
    # both families, both heads, no head layer, non-linear bottlenecks and odd channel divisors.
    from mobilenet_search import count_params

    for spec in random_specs[:40]:
        pieces = sum(sum(p.numel() for p in entry.module().parameters()) * count for entry, count in spec_entries(spec))
        assert pieces == count_params(spec), spec.to_string()


def test_distinct_entries_of_a_space_are_exactly_those_of_its_members(tiny):
    brute = {entry for params in tiny.members() for entry in entries_for(tiny.spec(params))}
    assert set(distinct_entries(tiny)) == brute
    assert len(distinct_entries(tiny)) == len(brute) == 37


def test_distinct_entries_cover_a_space_with_searched_strides_and_globals():
    from mobilenet_search.search.space import parse_space

    space = parse_space({
        "family": "mobilenet_v2", "width_mult": [0.25, 0.5], "resolution": [32, 40], "stem_channels": 8,
        "head_channels": [32, None], "head": ["fc", "conv1x1"], "activation": ["relu", "relu6"],
        "stages": [{"expansion": [1, 2], "channels": [8, 16], "repeats": [1, 2], "stride": [1, 2]},
                   {"expansion": 2, "channels": [8, 24], "repeats": [1, 2], "stride": [1, 2]}],
    })
    brute = {entry for params in space.members() for entry in entries_for(space.spec(params))}
    assert set(distinct_entries(space)) == brute


def test_device_key_names_cpu_threads_dtype_and_batch():
    key = device_key("cpu", threads=2, batch=8)
    assert key.startswith("cpu-") and key.endswith("-2t-float32-b8")
    assert device_key("cpu", 1, 1) != key
    assert device_identity("cpu", 3, 1).name.endswith("(3 threads)")
    with pytest.raises(UserError, match="batch"):
        device_key("cpu", 1, 0)


def test_tiny_table_built_with_the_real_timer_covers_the_space(tmp_path, tiny):
    built, path = build_space_table(tiny, device="cpu", results_dir=tmp_path, repeats=2, warmup=1, passes=1,
                                    rounds=1, fit_per_resolution=1, progress=False)
    assert path == _path(tmp_path) and path.exists()
    loaded = LatencyTable.load(path)
    assert set(loaded.times) == {entry.key for entry in distinct_entries(tiny)}
    assert all(len(figures) == 1 and figures[0] > 0 for figures in loaded.times.values())
    assert {"intercept", "r32", "r48", "r64"} <= set(loaded.overhead)
    assert len(loaded.fit) == 3 and loaded.device == built.device
    spec = sample_members(tiny, 1, seed=5)[0]
    assert predict_latency_ms(spec, loaded) == pytest.approx(predict_latency_ms(spec, built))


def test_prediction_is_the_sum_of_entries_plus_the_overhead(table, tiny):
    for spec in sample_members(tiny, 10, seed=3):
        by_hand = sum(min(table.times[entry.key]) * count for entry, count in spec_entries(spec))
        assert table_sum_ms(spec, table) == pytest.approx(by_hand)
        assert predict_latency_ms(spec, table) == pytest.approx(by_hand + table.overhead[f"r{spec.resolution}"])


def test_the_overhead_is_the_residual_per_resolution_that_minimises_relative_error(table, tiny):
    specs = sample_members(tiny, 3, seed=9, by_resolution=True)
    table.fit = []
    fit_overhead(table, specs, [table_sum_ms(spec, table) + (1.0 if spec.resolution == 32 else 2.0) for spec in specs])
    assert table.overhead["r32"] == pytest.approx(1.0) and table.overhead["r64"] == pytest.approx(2.0)
    assert 1.0 < table.overhead["intercept"] < 2.0
    assert overhead_ms(tiny.spec({"resolution": 48}), table) == pytest.approx(2.0)
    del table.overhead["r48"]
    assert overhead_ms(tiny.spec({"resolution": 48}), table) == table.overhead["intercept"]
    # Two networks of 10 ms and 20 ms, 1 ms and 4 ms above their sums: relative errors weigh the small one 4x.
    table.fit = []
    specs = sample_members(tiny, 2, seed=9, by_resolution=True)[:2]
    sums = [table_sum_ms(spec, table) for spec in specs]
    fit_overhead(table, specs, [10.0, 20.0])
    residuals, weights = [10.0 - sums[0], 20.0 - sums[1]], [1 / 100, 1 / 400]
    expected = sum(r * w for r, w in zip(residuals, weights, strict=True)) / sum(weights)
    assert table.overhead["r32"] == pytest.approx(expected)


def test_median_statistic_combines_passes_by_median(table):
    key = next(iter(table.times))
    table.times[key] = [3.0, 1.0, 2.0]
    assert table.ms(key) == 1.0
    table.statistic = "median"
    assert table.ms(key) == 2.0


def test_an_architecture_outside_the_table_is_one_user_error(table):
    with pytest.raises(UserError, match="has no entry 'stem r224"):
        predict_latency_ms(ArchSpec.mobilenet_v2(), table)


def test_check_figures_of_perfect_and_biased_predictions(table, tiny):
    specs = sample_members(tiny, 12, seed=4)
    exact = [predict_latency_ms(spec, table) for spec in specs]
    figures = check_table(specs, table, exact)
    assert (figures["within_10"], figures["within_5"], figures["mape"]) == (1.0, 1.0, 0.0)
    assert figures["tau"] == pytest.approx(1.0) and -1 <= figures["tau_madds"] <= 1
    slow = check_table(specs, table, [ms / 1.08 for ms in exact])  # predictions 8 % high
    assert (slow["within_10"], slow["within_5"]) == (1.0, 0.0) and slow["mape"] == pytest.approx(0.08)


def test_building_resumes_after_an_interruption(tmp_path, tiny):
    entries = distinct_entries(tiny)
    identity = device_identity("cpu", 1, 1)
    path = _path(tmp_path)
    first = Interrupting(stop_after=10)
    with pytest.raises(KeyboardInterrupt):
        build_table(entries, LatencyTable.new(identity, passes=2), measure=first, path=path, save_every=4,
                    progress=False)
    saved = LatencyTable.load(path)  # written on the way out, not only every 4 entries
    assert sum(len(figures) for figures in saved.times.values()) == 10

    second = Interrupting()
    build_table(entries, saved, measure=second, path=path, save_every=4, progress=False)
    assert second.calls == 2 * len(entries) - 10
    done = LatencyTable.load(path)
    assert all(len(done.times[entry.key]) == 2 for entry in entries)

    third = Interrupting()
    build_table(entries, done, measure=third, path=path, progress=False)
    assert third.calls == 0


def test_load_table_for_is_none_when_absent_and_refuses_a_foreign_table(tmp_path, table):
    assert load_table_for("cpu", 1, tmp_path / "elsewhere") is None
    assert load_table_for("cpu", 1, tmp_path).times == table.times
    path = _path(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "device_key": "cuda-nvidia-h100-driver550-float32-b1", "device": "H100"}))
    with pytest.raises(UserError, match="measured on H100"):
        load_table_for("cpu", 1, tmp_path)


def _run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_check_without_a_table_is_one_line_and_exit_code_2(tmp_path, capsys):
    code, err = _run_cli(capsys, "latency-table", "check", "--device", "cpu", "--results-dir", str(tmp_path),
                         "--quiet")
    assert code == 2 and len(err) == 1
    assert "no latency table" in err[0] and "latency-table build" in err[0]


def test_cli_refuses_a_foreign_device_table_in_one_line(tmp_path, capsys, table):
    path = _path(tmp_path)
    data = json.loads(path.read_text())
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**data, "device_key": "cpu-apple-m2-1t-float32-b1", "device": "cpu: Apple M2"}))
    for argv in (["--table", str(foreign)], ["--results-dir", str(tmp_path)]):
        if argv[0] == "--results-dir":
            path.write_text(foreign.read_text())
        code, err = _run_cli(capsys, "latency-table", "check", "--device", "cpu", "--space", "tiny", *argv, "--quiet")
        assert code == 2 and len(err) == 1 and "measured on cpu: Apple M2" in err[0]


def test_cli_refuses_a_truncated_table_in_one_line(tmp_path, capsys, table):
    path = _path(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    code, err = _run_cli(capsys, "latency-table", "show", "--device", "cpu", "--results-dir", str(tmp_path))
    assert code == 2 and len(err) == 1 and "not valid JSON" in err[0]
    path.write_text(json.dumps({**json.loads(text), "version": 99}))
    code, err = _run_cli(capsys, "latency-table", "show", "--device", "cpu", "--results-dir", str(tmp_path))
    assert code == 2 and len(err) == 1 and "version 99" in err[0]


def test_cli_build_check_and_show_on_the_tiny_space(tmp_path, capsys):
    common = ["--device", "cpu", "--results-dir", str(tmp_path)]
    assert main(["latency-table", "build", "--space", "tiny", "--repeats", "1", "--warmup", "0", "--passes", "1",
                 "--fit-samples", "1", "--rounds", "1", "--quiet", *common]) == 0
    assert "37 entries" in capsys.readouterr().out
    assert main(["latency-table", "check", "--space", "tiny", "--samples", "4", "--rounds", "1", "--quiet",
                 *common]) == 0
    assert "4 networks:" in capsys.readouterr().out
    stored = LatencyTable.load(_path(tmp_path)).check
    assert stored["samples"] == 4 and stored["space"] == "tiny" and len(stored["nets"]) == 4
    arch = load_space("tiny").spec().to_string()
    assert main(["latency-table", "show", "--arch", arch, *common]) == 0
    out = capsys.readouterr().out
    assert "last check (tiny" in out and "predicted" in out


@pytest.mark.parametrize("action", ["build", "check", "show"])
def test_cli_help_explains_every_option_with_examples(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["latency-table", action, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and "--device" in text and "--results-dir" in text


def test_entry_keys_distinguish_every_field():
    base = Entry("block", 28, 32, 32, 1, 6, True, "relu6", "linear")
    variants = [base._replace(**{name: value}) for name, value in (
        ("resolution", 14), ("in_channels", 24), ("out_channels", 24), ("stride", 2), ("expansion", 4),
        ("residual", False), ("activation", "relu"), ("variant", "nonlinear"))]
    assert len({entry.key for entry in [base, *variants]}) == 1 + len(variants)


def test_the_thread_clock_is_the_default_on_one_cpu_thread_and_refused_elsewhere():
    # measure_latency's clock option exists for this table; its rules are checked here, beside their one user.
    from mobilenet_search.measure.latency import measure_latency

    assert LatencyTable.new(device_identity("cpu", 1, 1)).clock == "thread"
    assert LatencyTable.new(device_identity("cpu", 2, 1)).clock == "wall"
    with pytest.raises(UserError, match="clock"):
        LatencyTable.new(device_identity("cpu", 2, 1), clock="thread")
    with pytest.raises(UserError, match="threads 1"):
        measure_latency(nn.Conv2d(3, 4, 1), (1, 3, 8, 8), threads=2, clock="thread")
    result = measure_latency(nn.Conv2d(3, 4, 1), (1, 3, 8, 8), repeats=3, clock="thread")
    assert 0 < result.min_ms <= result.ms


def test_a_latency_budget_rejects_on_the_prediction_before_building(tmp_path, tiny):
    from mobilenet_search.measure.latency import Latency
    from mobilenet_search.search.config import SearchConfig
    from mobilenet_search.search.study import run_search

    # The synthetic data has 4 classes and 1 channel: the table needs those classifier and stem entries.
    built, _ = build_space_table(tiny, device="cpu", results_dir=tmp_path, passes=1, fit_per_resolution=1,
                                 measure=fake_ms, progress=False, num_classes=4, in_channels=1)
    timed = []

    def latency(model, shape, device="cpu"):
        timed.append(model.spec)
        return Latency(predict_latency_ms(model.spec, built), 0, 0, "cpu: fake", 1, 1)

    predictions = sorted(predict_latency_ms(s, built) for s in sample_members(
        tiny, 20, seed=0, num_classes=4, in_channels=1))
    bound = predictions[len(predictions) // 2]  # about half the space is over it
    config = SearchConfig(budget=f"{bound:.4f}ms-latency", space="tiny", dataset="synthetic:96", epochs=2, lr=0.01,
                          proxy_size=32, batch_size=16, sampler="random", references="none")
    study = run_search(config, storage=f"sqlite:///{tmp_path / 'lat.db'}", study_name="lat", trials=2,
                       results_dir=tmp_path, latency=latency)
    rejected = [t for t in study.trials if t.user_attrs.get("outcome") == "over_budget"]
    assert rejected, "the random sampler should propose members predicted over the budget"
    for trial in rejected:
        assert "predicted by the latency table" in trial.user_attrs["status_reason"]
        assert "time_build" not in trial.user_attrs and trial.constraints["latency_over_budget"] > 0
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == "trained"]
    assert len(trained) == 2 and len(timed) == 2  # only the candidates inside were built and timed for real
    for trial in trained:
        assert trial.user_attrs["latency_predicted_ms"] == pytest.approx(trial.user_attrs["latency_ms"])

"""A member that cannot fit in memory is refused before it is built (issue 24).

A space with ``repeats: [1, 1000000]`` under a budget that admits the deep member grew one process to 13 GB:
reproduced at a safe scale, the process grew 8 MB/s while ``build_model`` made the first of a million blocks'
Python objects (about 46 KB each), never reaching training. Now the estimate from the spec
(:func:`mobilenet_search.arch.cost.training_memory`, checked against autograd in ``test_cost.py``) rejects it in
``Pipeline.check``, and a study none of whose members fits is refused before anything is written.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import optuna

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.memory import available_memory
from mobilenet_search.results.records import Outcome
from mobilenet_search.search.config import SearchConfig, train_config
from mobilenet_search.search.evaluate import Pipeline, ScratchTraining, memory_needed

TREE = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(TREE)}
GiB = 2**30
DEEP = ArchSpec.mobilenet_v2(0.25, 32, num_classes=4, in_channels=1, stages=((1, 8, 1, 1), (2, 8, 1_000_000, 2)))
# The issue's space, at its scale: one stage's depth is 1 or a million; the rest fixed (two members).
DEEP_SPACE = """
name: deep
family: mobilenet_v2
width_mult: 0.25
resolution: 32
stem_channels: 8
head_channels: 64
stages:
  - {expansion: 1, channels: 8, repeats: 1, stride: 1}
  - {expansion: 2, channels: 8, repeats: [1, 1000000], stride: 2}
"""


def _pipeline(tmp_path: Path, available: int | None) -> Pipeline:
    config = SearchConfig(budget="100G-madds", space="tiny", dataset="synthetic:64", proxy_size=32)
    data = DataCache("synthetic:64", 32, cache_dir=tmp_path)
    return Pipeline(budget=Budget.parse(config.budget), data=data,
                    accuracy=ScratchTraining(train_config(config, "cpu")),
                    proxy_size=32, batch_size=64, available_memory=lambda: available)


def test_a_member_that_cannot_fit_is_rejected_before_it_is_built(tmp_path):
    needed = memory_needed(DEEP, 32, 64).total
    assert needed > 2**40  # activations of a million blocks: over a TiB
    record = _pipeline(tmp_path, 16 * GiB).check(DEEP)
    assert record.outcome == Outcome.OVER_BUDGET and record.model is None
    assert record.reason.startswith("needs about 1.") and "TiB of memory to train" in record.reason
    assert record.reason.endswith("more than the 16.0 GiB available: not built")
    assert all(excess <= 0 for excess in record.excess.values())  # inside the budget: memory alone refused it


def test_a_member_that_fits_passes_and_unknown_memory_refuses_nothing(tmp_path):
    shallow = DEEP.replace(stages=((1, 8, 1, 1), (2, 8, 1, 2)))
    needed = memory_needed(shallow, 32, 64).total
    assert _pipeline(tmp_path, needed).check(shallow).outcome is None  # exactly enough is enough
    assert _pipeline(tmp_path, needed - 1).check(shallow).outcome == Outcome.OVER_BUDGET
    assert _pipeline(tmp_path, None).check(DEEP).outcome is None


def test_available_memory_is_what_ulimit_v_leaves_in_a_real_process():
    limit = GiB  # below what any machine that runs the tests has available: the limit decides
    code = "from mobilenet_search.measure.memory import available_memory; print(available_memory())"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, preexec_fn=cap,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    left = int(done.stdout)
    assert limit - 256 * 2**20 < left < limit  # less what the interpreter already holds
    assert available_memory() > 0


def test_the_issues_space_runs_and_its_million_block_member_is_never_built(tmp_path):
    """Real process: on the code before this check the grid's first member (a million blocks) was being built
    at 8 MB/s and the command ran past the timeout; now it is rejected at once and the run ends."""
    (tmp_path / "deep.yaml").write_text(DEEP_SPACE)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["--budget", "100G-madds", "--space", str(tmp_path / "deep.yaml"), "--dataset", "synthetic:64",
            "--epochs", "1", "--references", "none", "--proxy-size", "32", "--noise-repeats", "0", "--sampler", "grid",
            "--trials", "2", "--results-dir", str(tmp_path / "results"), "--storage", storage, "--study", "deep"]
    done = subprocess.run([sys.executable, "-m", "mobilenet_search", *argv], capture_output=True, text=True, env=ENV,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child so far
    assert peak < 3 * GiB
    trials = optuna.load_study(study_name="deep", storage=storage).trials
    deep = [t for t in trials if t.params["stage2.repeats"] == 1_000_000]
    assert len(deep) == 1 and deep[0].user_attrs["outcome"] == "over_budget"
    assert "of memory to train" in deep[0].user_attrs["status_reason"] and "time_build" not in deep[0].user_attrs
    assert [t.user_attrs["outcome"] for t in trials if t not in deep] == ["trained"]

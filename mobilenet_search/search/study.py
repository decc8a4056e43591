"""The search: an Optuna study whose trials are candidate networks, measured and trained.

One trial samples an :class:`ArchSpec` from the search space, counts it (instantly, from
the spec), rejects it before any training when it is over budget (telling the sampler
through Optuna's constraints), measures its latency at the deployment resolution, trains a
short proxy at a proxy resolution and records everything as user attributes (names in
:data:`mobilenet_search.results.frame.TRIAL_ATTRS`). The study itself records the settings it was
created with, so resuming it (or joining it from another process) needs nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.cost import count_madds, count_params, format_count
from mobilenet_search.arch.references import paper_family, spread
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, load_dataset, proxy_resolution
from mobilenet_search.measure.latency import measure_latency
from mobilenet_search.measure.train import TrainConfig, TrainingDiverged, TrainResult, train_and_evaluate
from mobilenet_search.measure.zero_cost import PROXIES, fixed_batch
from mobilenet_search.measure.zero_cost import scores as zero_cost_scores
from mobilenet_search.results.frame import study_quality, write_results
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    EVALUATED,
    REFERENCES_ATTR,
    Outcome,
    counts_toward_target,
    is_reference,
    outcome,
    set_outcome,
)
from mobilenet_search.results.report import write_report
from mobilenet_search.search.space import SearchSpace, load_space
from mobilenet_search.search.storage import DEFAULT_HEARTBEAT, clean_message, make_storage, redact

OBJECTIVES = ("multi", "accuracy")
SAMPLERS = ("tpe", "nsga2", "random", "grid")
GRID_LIMIT = 100_000  # Optuna's GridSampler materialises the grid: refuse bigger spaces
REFERENCE_CHOICES = ("default", "all", "none")
DEFAULT_REFERENCES = 3  # keeps the quick start within minutes on 2 CPU cores; `--references all` for more
ZERO_COST_BATCH = 64  # images in the fixed mini-batch the zero-cost proxies score
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial


@dataclass(frozen=True)
class SearchConfig:
    """What defines a study: stored in it, so every run or worker of the study uses the same."""

    budget: str
    space: str = "mobilenetv2"
    dataset: str = "embedded"
    dataset_limit: int | None = None  # a seeded stratified subset, for quick runs and tests
    epochs: int = 8  # measured: 4 epochs ranked candidates no better than chance within MAdds bins
    batch_size: int = 64
    proxy_size: int = 64
    lr: float = 2e-3
    objective: str = "multi"
    sampler: str = "tpe"
    seed: int = 0
    latency_batch: int = 1
    references: str = "default"  # the papers' scaling family trained alongside: default (<= 3), all, none

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", str(Budget.parse(self.budget)))
        if self.objective not in OBJECTIVES and self.zero_cost not in PROXIES:
            raise UserError(f"invalid objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)} or "
                            f"zero-cost:NAME with NAME one of {', '.join(PROXIES)}")
        if self.references not in REFERENCE_CHOICES:
            raise UserError(f"invalid references {self.references!r}: expected one of {', '.join(REFERENCE_CHOICES)}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"invalid sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        for name in ("epochs", "batch_size", "proxy_size", "latency_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"invalid --{name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 1")
        if self.proxy_size < 32:
            raise UserError(f"invalid --proxy-size {self.proxy_size}: expected an integer >= 32")

    @property
    def zero_cost(self) -> str | None:
        """The zero-cost proxy that replaces accuracy (``--objective zero-cost:NAME``), if any."""
        kind, _, name = self.objective.partition(":")
        return name if kind == "zero-cost" else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def train_config(self, device: str) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           device=device)


def init_seed(spec: ArchSpec, seed: int) -> int:
    """The seed of a candidate's initial weights: the same architecture starts from the same weights
    in every trial, retry and fidelity retraining, whatever ran before it in the process."""
    return (zlib.crc32(spec.to_string().encode()) + seed) % 2**63


def default_study_name(config: SearchConfig) -> str:
    """A readable name from the space, budget and dataset: ``mobilenetv2-300M-madds``."""
    parts = [Path(config.space).stem, config.budget.replace(",", "_")]
    if config.dataset != "embedded":
        kind, _, root = config.dataset.partition(":")
        parts.append(Path(root).name if kind in ("imagefolder", "cifar10") and Path(root).name else config.dataset)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))


def default_storage(results_dir: Path, study_name: str) -> str:
    return f"sqlite:///{Path(results_dir) / f'{study_name}.db'}"


class Objective:
    """Evaluates one trial; holds the datasets decoded so far (one per proxy resolution)."""

    def __init__(self, config: SearchConfig, device: str = "cpu", cache_dir: Path | None = Path("results/cache"),
                 on_epoch: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.budget = Budget.parse(config.budget)
        self.space = load_space(config.space)
        self.device = device
        self.cache_dir = cache_dir
        self.on_epoch = on_epoch
        self.target: int | None = None  # the study-wide --trials target, when slots are claimed
        self.poll_seconds = 1.0
        self._data: dict[int, ImageData] = {}
        self._batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # zero-cost mini-batch per size
        probe = self.data(config.proxy_size)
        self.num_classes, self.in_channels = probe.num_classes, probe.in_channels

    def data(self, size: int) -> ImageData:
        if size not in self._data:
            self._data[size] = load_dataset(self.config.dataset, size, seed=self.config.seed,
                                            cache_dir=self.cache_dir, limit=self.config.dataset_limit)
        return self._data[size]

    def _constrain(self, trial: optuna.Trial, **measured: float | None) -> str | None:
        """Report every budget kind as an Optuna constraint (<= 0 feasible); the reason if over.

        Kinds not measured yet (latency of a candidate rejected on MAdds) are reported as 0:
        the candidate is infeasible through the measured kind alone.
        """
        excess = self.budget.excesses(**measured)
        for kind in self.budget.kinds:
            trial.set_constraint(f"{kind}_over_budget", excess.get(kind, 0.0))
        return self.budget.reason(**measured)

    def _values(self, quality: float, madds: int) -> float | tuple[float, float]:
        return quality if self.config.objective == "accuracy" else (quality, float(madds))

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        config = self.config
        started = time.perf_counter()
        spec = self.space.sample(trial, num_classes=self.num_classes, in_channels=self.in_channels)
        madds, params = count_madds(spec), count_params(spec)
        for key, value in {"arch": spec.to_string(), "spec": spec.to_json(), "madds": madds, "params": params,
                           "epochs": config.epochs, "worker": WORKER}.items():
            trial.set_user_attr(key, value)

        if not self.budget.needs_latency:
            reason = self._constrain(trial, madds=madds, params=params)
        else:
            reason = self.budget.reason(madds=madds, params=params)
            if reason:
                self._constrain(trial, madds=madds, params=params)
        if reason:
            return self._reject(trial, reason, madds)
        # A trial re-queued by the heartbeat callback names the dead trial in its system attributes.
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        retry_of = trial.user_attrs.get("retry_of", frozen.system_attrs.get("failed_trial"))
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
        if not trial.user_attrs.get("reference"):
            self._take_slot(trial)

        try:
            model = build_model(spec, seed=init_seed(spec, config.seed))
            trial.set_user_attr("time_build", time.perf_counter() - started)
            if config.zero_cost is None or self.budget.needs_latency:
                latency_ms = self._measure_latency(trial, model, spec)
                if self.budget.needs_latency:
                    reason = self._constrain(trial, madds=madds, params=params, latency_ms=latency_ms)
                    if reason:
                        return self._reject(trial, reason, madds)
            size = proxy_resolution(config.proxy_size, spec.resolution)
            trial.set_user_attr("proxy_resolution", size)
            # At initialisation, before training changes the weights.
            zero_cost = self._zero_cost(trial, model, size)
            if config.zero_cost is not None:
                set_outcome(trial, Outcome.SCORED)
                return self._values(zero_cost[config.zero_cost], madds)
            result = self._train(trial, model, size)
        except KeyboardInterrupt:
            set_outcome(trial, Outcome.INTERRUPTED, "interrupted by the user; retried when the study resumes")
            raise
        except (TrainingDiverged, torch.OutOfMemoryError, UserError) as exc:
            set_outcome(trial, Outcome.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        return self._values(result.accuracy, madds)

    def _measure_latency(self, trial: optuna.Trial, model: torch.nn.Module, spec: ArchSpec) -> float:
        """Latency at the deployment resolution, recorded with its device and batch size."""
        t0 = time.perf_counter()
        shape = (self.config.latency_batch, spec.in_channels, spec.resolution, spec.resolution)
        latency = measure_latency(model, shape, device=self.device)
        for key, value in {"time_latency": time.perf_counter() - t0, "latency_ms": latency.ms,
                           "latency_device": latency.device, "latency_batch": latency.batch_size}.items():
            trial.set_user_attr(key, value)
        return latency.ms

    def _zero_cost(self, trial: optuna.Trial, model: torch.nn.Module, size: int) -> dict[str, float]:
        """Zero-cost proxy scores on the fixed mini-batch (only the searched one in zero-cost mode)."""
        if size not in self._batches:
            images, labels = fixed_batch(self.data(size), ZERO_COST_BATCH, seed=self.config.seed)
            self._batches[size] = (images.to(self.device), labels.to(self.device))
        t0 = time.perf_counter()
        names = PROXIES if self.config.zero_cost is None else (self.config.zero_cost,)
        values = zero_cost_scores(model, *self._batches[size], names=names)
        for name, value in values.items():
            trial.set_user_attr(f"zc_{name}", value)
        trial.set_user_attr("time_zero_cost", time.perf_counter() - t0)
        return values

    def _train(self, trial: optuna.Trial, model: torch.nn.Module, size: int) -> TrainResult:
        """Proxy training; per-epoch accuracy goes to Optuna's pruner in single-objective mode."""
        config = self.config

        def report(epoch: int, accuracy: float) -> None:
            if self.on_epoch:
                self.on_epoch(epoch + 1, config.epochs)
            if config.objective == "accuracy":
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    set_outcome(trial, Outcome.PRUNED)
                    raise optuna.TrialPruned(f"accuracy {accuracy:.3f} after epoch {epoch + 1}")

        result = train_and_evaluate(model, self.data(size), config.train_config(self.device), on_epoch=report)
        for key, value in {
            "accuracy": result.accuracy, "balanced_accuracy": result.balanced_accuracy,
            "accuracy_history": list(result.history), "train_seconds": result.train_seconds,
            "time_train": result.train_seconds, "time_eval": result.eval_seconds, "outcome": Outcome.TRAINED.value,
        }.items():
            trial.set_user_attr(key, value)
        return result

    def _take_slot(self, trial: optuna.Trial) -> None:
        """Claim one of the study's ``--trials`` slots before training, or give the trial up.

        Workers claim by marking their running trial; the lowest-numbered claimants get the
        free slots, so several workers finish exactly the target. While claimed trials ahead of
        this one are still running, wait: one may die, fail by heartbeat and free its slot. A
        trial that loses gives up as ``surplus`` (pruned, never trained), leaving a queued retry
        to the next trial.
        """
        if self.target is None:
            return
        trial.set_user_attr("claimed", True)
        study = trial.study
        while True:
            with warnings.catch_warnings():  # marked experimental, stable since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = sum(counts_toward_target(t) for t in trials)
            ahead = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number < trial.number
                        and t.user_attrs.get("claimed") and not is_reference(t))
            if done + ahead < self.target:
                return
            if done >= self.target or any(t.state == TrialState.WAITING for t in trials):
                if done >= self.target:
                    study.stop()
                set_outcome(trial, Outcome.SURPLUS)
                trial.set_user_attr("status_reason", f"not trained: the study's target of {self.target} trials "
                                                     "was taken by other workers")
                raise optuna.TrialPruned("surplus")
            time.sleep(self.poll_seconds)

    def _reject(self, trial: optuna.Trial, reason: str, madds: int) -> float | tuple[float, float]:
        """An over-budget candidate: complete (so the sampler learns the constraint), never trained.

        Its quality is the worst there is: accuracy 0, or -inf for a zero-cost score (which can be negative).
        """
        set_outcome(trial, Outcome.OVER_BUDGET, reason)
        return self._values(0.0 if self.config.zero_cost is None else -math.inf, madds)


def make_sampler(config: SearchConfig, space: SearchSpace, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler by name, seeded with ``seed + offset``; constraints reach TPE/NSGA-II through
    ``trial.set_constraint``. A fresh study uses offset 0 (reproducible); see :func:`_sampler_offset`."""
    seed = (config.seed + offset) % 2**32
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=False)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if space.size > GRID_LIMIT:
        raise UserError(f"--sampler grid needs a small space: {space.name!r} has {space.size:,} members "
                        f"(at most {GRID_LIMIT:,}); use tpe, nsga2 or random")
    return optuna.samplers.GridSampler({k: list(v) for k, v in space.searched.items()}, seed=seed)


def _sampler_offset(study: optuna.Study, worker: bool) -> int:
    """A sampler joining an existing study must not replay the random draws of the process before it:
    offset its seed by the trials already there, and for a worker also by who it is, since workers
    start side by side on the same history."""
    return len(study.get_trials(deepcopy=False)) + (zlib.crc32(WORKER.encode()) if worker else 0)


def check_budget_reachable(config: SearchConfig, space: SearchSpace, num_classes: int, in_channels: int) -> None:
    """Refuse a study whose space has no member inside the budget (MAdds and parameters)."""
    budget = Budget.parse(config.budget)
    for kind, cost in (("madds", count_madds), ("params", count_params)):
        if budget.get(kind) is None:
            continue
        cheapest = space.extreme(cost, num_classes=num_classes, in_channels=in_channels)
        value = cost(cheapest)
        if not budget.get(kind).admits(value):
            raise UserError(f"no member of space {space.name!r} fits budget {config.budget}: the cheapest by "
                            f"{kind} has {format_count(value)} {kind} ({cheapest.to_string()})")


def _pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def open_study(storage: str, study_name: str, config: SearchConfig | None, *, load_only: bool = False,
               heartbeat: float | None = DEFAULT_HEARTBEAT) -> tuple[optuna.Study, SearchConfig]:
    """Create the study, or resume it; a resumed study must have been created with ``config``.

    With ``config=None`` the study must exist, and the settings stored in it are used (a
    worker's case). ``load_only`` opens an existing study for reading (report, export).
    Two processes creating the same study at once both succeed.
    """
    study, config, _ = _open_study(storage, study_name, config, load_only=load_only, heartbeat=heartbeat)
    return study, config


def _open_study(storage: str, study_name: str, config: SearchConfig | None, *, load_only: bool,
                heartbeat: float | None) -> tuple[optuna.Study, SearchConfig, bool]:
    """:func:`open_study`, and whether this call created the study (exactly one racing creator does)."""
    backend = make_storage(storage, heartbeat=None if load_only else heartbeat,
                           must_exist=config is None or load_only)
    created = False
    try:
        if config is None or load_only:
            study = optuna.load_study(study_name=study_name, storage=backend)
        else:
            directions = ["maximize"] if config.objective == "accuracy" else ["maximize", "minimize"]
            sampler = make_sampler(config, load_space(config.space))
            try:  # the storage's unique study name decides which of several racing creators creates it
                study = optuna.create_study(study_name=study_name, storage=backend, directions=directions,
                                            sampler=sampler, pruner=_pruner())
                created = True
            except optuna.exceptions.DuplicatedStudyError:  # resumed, or created by a racing process
                study = optuna.load_study(study_name=study_name, storage=backend, sampler=sampler, pruner=_pruner())
                study.sampler = make_sampler(config, load_space(config.space), _sampler_offset(study, worker=False))
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(storage)}") from None
    except ValueError as exc:  # e.g. an existing study with other directions
        message = clean_message(exc, storage)
        raise UserError(f"cannot open study {study_name!r} in {redact(storage)}: {message}") from None

    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        if config is None or load_only:
            raise UserError(f"study {study_name!r} was not created by mobilenet-search (no stored settings)")
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        return study, config, created
    stored_config = SearchConfig.from_dict(stored)
    if config is not None and stored_config != config:
        differ = [k for k, v in config.to_dict().items() if stored.get(k) != v]
        raise UserError(f"study {study_name!r} already exists with other settings ({', '.join(differ)}: "
                        f"{', '.join(f'{k}={stored.get(k)!r}' for k in differ)}); use another --study name "
                        "or the same settings to resume it")
    if config is None and not load_only:
        # A worker: its sampler and pruner come from the stored settings (samplers are not stored).
        study = optuna.load_study(study_name=study_name, storage=backend, pruner=_pruner())
        offset = _sampler_offset(study, worker=True)
        study.sampler = make_sampler(stored_config, load_space(stored_config.space), offset)
    return study, stored_config, created


def requeue_interrupted(study: optuna.Study) -> int:
    """Enqueue once again every trial a Ctrl-C interrupted, so resuming loses nothing."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    count = 0
    for trial in trials:
        if (trial.state == TrialState.FAIL and outcome(trial) == Outcome.INTERRUPTED.value
                and trial.number not in retried):
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            count += 1
    return count


def evaluated_count(study: optuna.Study) -> int:
    """How many trials count towards ``--trials`` (see :func:`counts_toward_target`), across all workers."""
    return sum(counts_toward_target(t) for t in study.get_trials(deepcopy=False))


def reference_candidates(config: SearchConfig, space: SearchSpace, num_classes: int,
                         in_channels: int) -> dict[str, dict[str, Any]]:
    """The papers' networks to train in this study: name -> the space's parameters for it.

    Members of the family the space can express and the budget admits (MAdds and parameters;
    latency is only known once measured), cheapest first; by default at most three spread over
    that range, with ``references="all"`` every one, with ``"none"`` none.
    """
    if config.references == "none":
        return {}
    budget = Budget.parse(config.budget)
    family = paper_family(space.family, num_classes=num_classes, in_channels=in_channels)
    fitting = []
    for name, spec in family.items():
        params = space.params_of(spec)
        madds, n_params = count_madds(spec), count_params(spec)
        if params is not None and budget.reason(madds=madds, params=n_params) is None:
            fitting.append((madds, name, params))
    fitting.sort(key=lambda item: item[0])
    if config.references == "default":
        fitting = spread(fitting, DEFAULT_REFERENCES)
    return {name: params for _, name, params in fitting}


def enqueue_references(study: optuna.Study, references: dict[str, dict[str, Any]]) -> None:
    """Enqueue the reference networks in a study just created (a resumed study never enqueues them again)."""
    if study.user_attrs.get(REFERENCES_ATTR) is not None:
        return
    for name, params in references.items():
        study.enqueue_trial(params, user_attrs={"reference": True, "reference_name": name})
    study.set_user_attr(REFERENCES_ATTR, list(references))


def best_quality(study: optuna.Study) -> float | None:
    """The best accuracy (or zero-cost score) among the study's feasible, evaluated trials."""
    quality = study_quality(study)
    values = [t.user_attrs[quality] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if outcome(t) in EVALUATED and quality in t.user_attrs]
    return max(values) if values else None


class StopAfter:
    """Stop the study once it holds ``target`` evaluated trials (counted across all workers).

    Over-budget rejections cost milliseconds and do not count, but at most ``max_attempts``
    trials are started in all, so a budget that only the rare candidate meets still ends.
    """

    def __init__(self, target: int, max_attempts: int) -> None:
        self.target, self.max_attempts = target, max_attempts

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if evaluated_count(study) >= self.target or len(study.get_trials(deepcopy=False)) >= self.max_attempts:
            study.stop()


def run_search(config: SearchConfig, *, storage: str, study_name: str, trials: int, timeout: float | None = None,
               device: str = "cpu", results_dir: Path = Path("results"), progress: bool = True,
               heartbeat: float | None = DEFAULT_HEARTBEAT) -> optuna.Study:
    """Create or resume a study and run it until it holds ``trials`` evaluated trials.

    After every trial, ``results_dir/<study>/trials.csv`` and ``pareto.json`` are rewritten
    (atomically). Ctrl-C stops at once; the interrupted trial is retried when the study is
    run again, and every completed trial is kept in the storage. ``trials=0`` only creates
    the study (settings and reference networks recorded) for workers to run.
    """
    # Everything that can refuse the run (data, space, budget, sampler) is checked before the study exists.
    objective = Objective(config, device=device, cache_dir=Path(results_dir) / "cache")
    check_budget_reachable(config, objective.space, objective.num_classes, objective.in_channels)
    make_sampler(config, objective.space)
    study, config, created = _open_study(storage, study_name, config, load_only=False, heartbeat=heartbeat)
    if created:  # only the creator: two creators racing must not queue each reference twice
        enqueue_references(study, reference_candidates(config, objective.space, objective.num_classes,
                                                       objective.in_channels))
    return _optimize(study, objective, storage=storage, trials=trials, timeout=timeout, results_dir=results_dir,
                     progress=progress)


def run_worker(*, storage: str, study_name: str, trials: int, timeout: float | None = None, device: str = "cpu",
               results_dir: Path = Path("results"), progress: bool = True,
               heartbeat: float | None = DEFAULT_HEARTBEAT) -> optuna.Study:
    """Join an existing study with the settings stored in it, and run trials until it holds ``trials``."""
    study, config = open_study(storage, study_name, None, heartbeat=heartbeat)
    objective = Objective(config, device=device, cache_dir=Path(results_dir) / "cache")
    return _optimize(study, objective, storage=storage, trials=trials, timeout=timeout, results_dir=results_dir,
                     progress=progress)


def _optimize(study: optuna.Study, objective: Objective, *, storage: str, trials: int, timeout: float | None,
              results_dir: Path, progress: bool) -> optuna.Study:
    from tqdm.auto import tqdm

    config, name = objective.config, study.study_name
    if progress:
        print(f"study {name!r} in {redact(storage)}: budget {config.budget}, space {config.space}, "
              f"dataset {config.dataset}, {config.epochs} epochs at proxy size {config.proxy_size}, "
              f"device {objective.device}", file=sys.stderr)
    requeue_interrupted(study)
    objective.target = trials
    # The bar counts the reference networks too: they train first and take real time.
    references = len(study.user_attrs.get(REFERENCES_ATTR) or [])
    bar = tqdm(total=trials + references, desc=name, unit="trial", disable=not progress, dynamic_ncols=True)

    def done() -> int:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        return min(evaluated_count(study), trials) + min(references, sum(
            1 for t in finished if is_reference(t) and outcome(t) != Outcome.INTERRUPTED.value))

    def show_epoch(epoch: int, epochs: int) -> None:
        bar.set_postfix_str(f"training epoch {epoch}/{epochs}", refresh=True)

    objective.on_epoch = show_epoch
    folder = Path(results_dir) / name

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_results(study, folder)
        if outcome(trial) == Outcome.FAILED.value:
            bar.write(f"trial {trial.number} failed: {trial.user_attrs.get('status_reason')}")
        bar.n = done()
        best = best_quality(study)
        bar.set_postfix_str(f"best {study_quality(study)} " + ("-" if best is None else f"{best:.4g}"),
                            refresh=True)

    bar.n = done()
    bar.refresh()
    try:
        if evaluated_count(study) < trials:
            study.optimize(
                objective, timeout=timeout, catch=(TrainingDiverged, torch.OutOfMemoryError, UserError),
                callbacks=[after_trial, StopAfter(trials, max_attempts=len(study.trials) + 50 * trials + 100)],
            )
    finally:
        bar.close()
        write_results(study, folder)
        write_report(study, folder)
    return study

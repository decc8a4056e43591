"""The search: open (or resume) an Optuna study whose trials are candidate networks, and run it.

One trial samples an :class:`ArchSpec` from the search space and runs it through the
evaluation pipeline (:mod:`mobilenet_search.search.evaluate`): counted from the spec,
rejected before any training when over budget (the sampler learns through Optuna's
constraints), timed, scored and trained. What a trial records is defined in
:mod:`mobilenet_search.results.records`. The study stores the settings it was created with,
so resuming it, or joining it from another process, needs nothing else. Printing and
progress belong to the caller (the CLI passes its callbacks in).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.cost import count_madds, count_params, format_count
from mobilenet_search.arch.references import paper_family, spread
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.measure.data import ImageData, preprocessing
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.latency import measure_latency
from mobilenet_search.measure.latency_table import load_table_for, predict_latency_ms
from mobilenet_search.measure.memory import available_memory
from mobilenet_search.measure.preprocessing import Preprocessing
from mobilenet_search.results.frame import ResultsWriter
from mobilenet_search.results.records import (
    CONFIG_ATTR,
    PREPROCESSING_ATTR,
    REFERENCES_ATTR,
    SUPERNET_ATTR,
    TEST_LABELS_ATTR,
    VAL_LABELS_ATTR,
    Outcome,
    StudySettings,
    TrialRecord,
    is_confirmation,
    pack_labels,
    set_attrs,
)
from mobilenet_search.results.report import write_report
from mobilenet_search.search.config import SearchConfig, check_results_dir, train_config
from mobilenet_search.search.coordination import (
    Slots,
    StopAfter,
    evaluated_count,
    fail_trial,
    recover_dead_trials,
    requeue_interrupted,
    sampler_offset,
)
from mobilenet_search.search.evaluate import AccuracySource, Pipeline, ScratchTraining, memory_needed, memory_reason
from mobilenet_search.search.objective import TRIAL_ERRORS, Objective
from mobilenet_search.search.space import (
    SearchSpace,
    changed_fields,
    load_space,
    space_from_dict,
    space_to_dict,
)
from mobilenet_search.search.storage import (
    DEFAULT_HEARTBEAT,
    clean_message,
    disk_full,
    error_chain,
    make_storage,
    redact,
    storage_file,
)
from mobilenet_search.search.strategies import (
    InheritedWeights,
    OnStep,
    check_supernet,
    confirm_candidates,
    enqueue_confirmations,
    prepare_supernet,
    record_supernet,
)

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]

SPACE_ATTR = "mobilenet_search.space"  # the space's content (space_to_dict): an edited file cannot change a study
# The fewest classes and channels a dataset can have: the cheapest member under any data, checked before decoding it.
MIN_CLASSES, MIN_CHANNELS = 2, 1
GRID_LIMIT = 100_000  # Optuna's GridSampler materialises the grid: refuse bigger spaces
# The cheapest and the largest net the budget admits; more would take the quick start past minutes on 2 CPU cores.
DEFAULT_REFERENCES = 2


@dataclass(frozen=True)
class RunContext:
    """What one run of a study resolves once from its settings and passes down: the space (the content the
    study stored), the parsed budget and the data cache. Nothing downstream loads the space or parses the budget
    again."""

    settings: SearchConfig
    space: SearchSpace
    budget: Budget
    data: DataCache

    @classmethod
    def of(cls, settings: SearchConfig, data: DataCache, space: SearchSpace | None = None) -> RunContext:
        """The context of ``settings`` over ``data``; ``space`` when already loaded (else the settings' file)."""
        return cls(settings, space or load_space(settings.space), Budget.parse(settings.budget), data)


def make_sampler(config: SearchConfig, space: SearchSpace, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler by name, seeded with ``seed + offset``; constraints reach TPE/NSGA-II through
    ``trial.set_constraint``. A fresh study uses offset 0 (reproducible); see :func:`sampler_offset`."""
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


def check_budget_reachable(budget: Budget, space: SearchSpace, num_classes: int, in_channels: int, *,
                           any_data: bool = False) -> None:
    """Refuse a study whose space has no member inside the budget (MAdds and parameters).

    With ``any_data`` the counts are the fewest a dataset can have (checked before the data are read),
    and the message says so.
    """
    for kind, cost in (("madds", count_madds), ("params", count_params)):
        if budget.get(kind) is None:
            continue
        cheapest = space.extreme(cost, num_classes=num_classes, in_channels=in_channels)
        value = cost(cheapest)
        if not budget.get(kind).admits(value):
            data = f" with any data (even {num_classes} classes of {in_channels}-channel images)" if any_data else ""
            raise UserError(f"no member of space {space.name!r} fits budget {budget}{data}: the cheapest by "
                            f"{kind} has {format_count(value)} {kind} ({cheapest.to_string()})")


def check_memory_reachable(config: SearchConfig, space: SearchSpace, num_classes: int, in_channels: int, *,
                           available: int | None) -> None:
    """Refuse a study none of whose members this machine can hold while training one (``available`` bytes;
    None: unknown, nothing refused). A space whose larger members cannot fit still runs: those are rejected
    one by one before they are built (:meth:`Pipeline.check`)."""
    if available is None:
        return

    def needed(spec: ArchSpec) -> int:
        return memory_needed(spec, config.proxy_size, config.batch_size).total

    smallest = space.extreme(needed, num_classes=num_classes, in_channels=in_channels)
    reason = memory_reason(memory_needed(smallest, config.proxy_size, config.batch_size), available)
    if reason is not None:
        raise UserError(f"no member of space {space.name!r} fits in this machine's memory at --batch-size "
                        f"{config.batch_size} and --proxy-size {config.proxy_size}: the smallest "
                        f"({smallest.to_string()}) {reason}")


@contextlib.contextmanager
def _undone_on_refusal(results_dir: Path) -> Iterator[None]:
    """Create ``results_dir`` for the block; if the block refuses (:class:`UserError`), remove what it added
    there: new files in its data cache, and the folders it created while they are empty."""
    results_dir = Path(results_dir)
    missing = [folder for folder in (results_dir, *results_dir.parents) if not folder.exists()]
    cache = results_dir / "cache"
    cached = set(cache.iterdir()) if cache.is_dir() else set()
    cache_existed = cache.is_dir()
    check_results_dir(results_dir, create=True)
    try:
        yield
    except UserError:
        for file in set(cache.iterdir()) - cached if cache.is_dir() else ():
            with contextlib.suppress(OSError):
                file.unlink()
        for folder in ([] if cache_existed else [cache]) + missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only while empty
        raise


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
                heartbeat: float | None, space: SearchSpace | None = None) -> tuple[optuna.Study, SearchConfig, bool]:
    """:func:`open_study`, and whether this call created the study (exactly one racing creator does).

    ``space`` is ``config``'s space as loaded now; a new study stores its content (:data:`SPACE_ATTR`).
    """
    backend = make_storage(storage, heartbeat=None if load_only else heartbeat,
                           must_exist=config is None or load_only)
    created = False
    try:
        if config is None or load_only:
            study = optuna.load_study(study_name=study_name, storage=backend)
        else:
            space = space or load_space(config.space)
            directions = ["maximize"] if config.objective == "accuracy" else ["maximize", "minimize"]
            sampler = make_sampler(config, space)
            try:  # the storage's unique study name decides which of several racing creators creates it
                study = optuna.create_study(study_name=study_name, storage=backend, directions=directions,
                                            sampler=sampler, pruner=_pruner())
                created = True
            except optuna.exceptions.DuplicatedStudyError:  # resumed, or created by a racing process
                study = optuna.load_study(study_name=study_name, storage=backend, sampler=sampler, pruner=_pruner())
                study.sampler = make_sampler(config, space, sampler_offset(study, worker=False))
    except KeyError:
        raise UserError(f"study {study_name!r} does not exist in {redact(storage)}") from None
    except ValueError as exc:  # e.g. an existing study with other directions
        message = clean_message(exc, storage)
        raise UserError(f"cannot open study {study_name!r} in {redact(storage)}: {message}") from None

    stored_config = StudySettings.from_study(study)
    if stored_config is None:
        if config is None or load_only:
            raise UserError(f"study {study_name!r} was not created by mobilenet-search (no stored settings)")
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.set_user_attr(SPACE_ATTR, space_to_dict(space))
        return study, config, created
    if config is not None and not load_only:
        stored_config = check_same_settings(study_name, study.user_attrs, config, space)
        if SPACE_ATTR not in study.user_attrs:  # a study from before spaces were stored: its space from now on
            study.set_user_attr(SPACE_ATTR, space_to_dict(space))
    if config is None and not load_only:
        # A worker: its sampler and pruner come from the stored settings (samplers are not stored).
        study = optuna.load_study(study_name=study_name, storage=backend, pruner=_pruner())
        offset = sampler_offset(study, worker=True)
        study.sampler = make_sampler(stored_config, study_space(study, stored_config), offset)
    return study, stored_config, created


def study_space(study: optuna.Study, config: SearchConfig, loaded: SearchSpace | None = None) -> SearchSpace:
    """The space a study was created with: the content it stored, whatever became of the file since
    (studies from before spaces were stored read ``config.space`` again, or take ``loaded``, that file loaded)."""
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored:
        return space_from_dict(stored)
    return loaded or load_space(config.space)


def check_same_settings(study_name: str, user_attrs: dict[str, Any], config: SearchConfig,
                        space: SearchSpace) -> SearchConfig:
    """The settings to resume an existing study with (its stored ones), once ``config`` is found to match them.

    The space compares by content: the same file under another path resumes, an edited one is refused
    with the parameters that changed. Any other setting that differs is refused, naming it.
    """
    stored_config = StudySettings.from_study(user_attrs)
    stored = stored_config.to_dict()  # as the study runs: a setting added since it was made takes its default
    stored_space = user_attrs.get(SPACE_ATTR)
    if stored_space is not None:
        changed = changed_fields(space_from_dict(stored_space), space)
        if changed:
            raise UserError(f"study {study_name!r} was created with another content of space {config.space!r}: "
                            f"{', '.join(changed)} changed; restore the file, or use another --study name")
    same_space = stored_space is not None or stored.get("space") == config.space
    differ = [k for k, v in config.to_dict().items() if stored.get(k) != v and not (k == "space" and same_space)]
    if differ:
        raise UserError(f"study {study_name!r} already exists with other settings ({', '.join(differ)}: "
                        f"{', '.join(f'{k}={stored.get(k)!r}' for k in differ)}); use another --study name "
                        "or the same settings to resume it")
    return stored_config


def stored_attrs(storage: str, study_name: str) -> dict[str, Any] | None:
    """An existing study's user attributes, read without creating anything; None when there is no such study
    (or no storage file yet)."""
    file = storage_file(storage)
    if file is not None and not file.is_file():
        return None
    backend = make_storage(storage, heartbeat=None, must_exist=True)
    try:
        return backend.get_study_user_attrs(backend.get_study_id_from_name(study_name))
    except KeyError:
        return None


def reference_candidates(run: RunContext) -> dict[str, dict[str, Any]]:
    """The papers' networks to train in this study: name -> the space's parameters for it.

    Members of the family the space can express and the budget admits (MAdds and parameters;
    latency is only known once measured), cheapest first; by default at most ``DEFAULT_REFERENCES``: the two
    ends of that range, with ``references="all"`` every one, with ``"none"`` none.
    """
    if run.settings.references == "none":
        return {}
    family = paper_family(run.space.family, num_classes=run.data.num_classes, in_channels=run.data.in_channels)
    fitting = []
    for name, spec in family.items():
        params = run.space.params_of(spec)
        madds, n_params = count_madds(spec), count_params(spec)
        if params is not None and run.budget.reason(madds=madds, params=n_params) is None:
            fitting.append((madds, name, params))
    fitting.sort(key=lambda item: item[0])
    if run.settings.references == "default":
        fitting = spread(fitting, DEFAULT_REFERENCES)
    return {name: params for _, name, params in fitting}


def enqueue_references(study: optuna.Study, references: dict[str, dict[str, Any]]) -> None:
    """Enqueue the reference networks in a study just created (a resumed study never enqueues them again)."""
    if study.user_attrs.get(REFERENCES_ATTR) is not None:
        return
    for name, params in references.items():
        study.enqueue_trial(params, user_attrs=TrialRecord(reference=True, reference_name=name).to_attrs())
    study.set_user_attr(REFERENCES_ATTR, list(references))


def enqueue_noise_repeats(study: optuna.Study, references: dict[str, dict[str, Any]], config: SearchConfig) -> None:
    """Queue the cheapest reference net ``noise_repeats`` more times, each with another seed (its initial
    weights and training order; the validation split stays the same, so the runs are paired): the study's
    seed-to-seed noise, measured."""
    if not references or not config.noise_repeats:
        return
    name, params = next(iter(references.items()))  # cheapest first
    for k in range(1, config.noise_repeats + 1):
        record = TrialRecord(reference=True, reference_name=name, noise_seed=config.seed + k)
        study.enqueue_trial(params, user_attrs=record.to_attrs())


def make_pipeline(run: RunContext, *, device: str = "cpu", accuracy: AccuracySource | None = None,
                  latency: Callable[..., Any] = measure_latency, results_dir: Path | None = None) -> Pipeline:
    """The evaluation pipeline of a run's settings; ``accuracy`` defaults to scratch training
    (zero-cost studies have none). This device's latency table under ``results_dir``, when one has
    been built (``mobilenet-search latency-table build``), predicts every candidate's latency from its
    spec, so a latency budget rejects before anything is built."""
    config, data = run.settings, run.data
    if accuracy is None and config.zero_cost is None:
        accuracy = ScratchTraining(train_config(config, device))
    predict = None
    table = load_table_for(device, batch=config.latency_batch, results_dir=results_dir) if results_dir else None
    if table is not None:
        probe = run.space.extreme(num_classes=data.num_classes, in_channels=data.in_channels)
        try:
            predict_latency_ms(probe, table)
        except UserError as exc:
            raise UserError(f"the latency table does not cover this study's networks ({exc}); rebuild it with "
                            f"`mobilenet-search latency-table build --space {config.space} --classes "
                            f"{data.num_classes} --in-channels {data.in_channels}`") from None
        predict = functools.partial(predict_latency_ms, table=table)
    return Pipeline(budget=run.budget, data=data, accuracy=accuracy, proxy_size=config.proxy_size,
                    seed=config.seed, device=device, latency_batch=config.latency_batch, latency=latency,
                    search_zero_cost=config.zero_cost, predict_latency=predict, metric=config.metric,
                    batch_size=config.batch_size)


def make_data(config: SearchConfig, results_dir: Path) -> DataCache:
    """The study's datasets, decoded on first use and cached under ``results_dir/cache``."""
    return DataCache(config.dataset, config.proxy_size, seed=config.seed, limit=config.dataset_limit,
                     cache_dir=Path(results_dir) / "cache", val_fraction=config.val_fraction,
                     test_fraction=config.test_fraction)


def record_preprocessing(study: optuna.Study, data: ImageData) -> None:
    """Record in ``study``, once per proxy resolution, how ``data``'s images become network inputs
    (:func:`~mobilenet_search.measure.data.preprocessing`), so an export needs no dataset."""
    key = f"{PREPROCESSING_ATTR}.{data.size}"
    if key not in study.user_attrs:
        study.set_user_attr(key, preprocessing(data).to_dict())


def recorded_preprocessing(study: optuna.Study, size: int) -> Preprocessing | None:
    """The preprocessing ``study`` recorded at proxy resolution ``size``; None if it recorded none (a study
    made before studies recorded it, or a size none of its trials used)."""
    recorded = study.user_attrs.get(f"{PREPROCESSING_ATTR}.{size}")
    return None if recorded is None else Preprocessing.from_dict(recorded)


def run_search(config: SearchConfig, *, storage: str, study_name: str, trials: int, timeout: float | None = None,
               device: str = "cpu", results_dir: Path = Path("results"),
               heartbeat: float | None = DEFAULT_HEARTBEAT, callbacks: Sequence[Callback] = (),
               on_epoch: Callable[[int, int], None] | None = None, accuracy: AccuracySource | None = None,
               latency: Callable[..., Any] = measure_latency, supernet: Path | None = None,
               on_supernet_step: OnStep | None = None,
               on_start: Callable[[optuna.Study], None] | None = None,
               on_create: Callable[[optuna.Study], None] | None = None, space: SearchSpace | None = None,
               data: DataCache | None = None) -> optuna.Study:
    """Create or resume a study and run it until it holds ``trials`` evaluated trials.

    ``results_dir/<study>/trials.csv`` and ``pareto.json`` are rewritten (atomically, complete)
    every 50 trials (a tenth of the study past 500) or 30 s, and at the end; after every trial
    each of ``callbacks`` runs. Ctrl-C stops at once; the interrupted trial is run again first
    when the study resumes, and so is a trial whose process was killed. ``trials=0`` only
    creates the study (settings and reference networks recorded) for workers. ``accuracy`` and
    ``latency`` replace scratch training and real timing (tests).

    With ``strategy="supernet"`` the supernet is trained first (or resumed, or reused: see
    :mod:`mobilenet_search.search.strategies`; ``supernet`` names its checkpoint), candidates are
    scored with inherited weights, and when the search ends (its target or ``timeout``) its Pareto
    candidates (up to ``config.confirm``) are retrained from scratch, as the reference nets are.

    ``on_start(study)`` runs once every check has passed and the study is open (the CLI prints
    its header and starts its progress bar there, so bad input prints one line). ``on_create(study)`` runs
    before it, once, in the process that created the study (the scaling experiment queues its grid there).

    The space, budget and data cache are resolved once (:class:`RunContext`) and passed down; a caller that
    has already loaded ``config``'s space or made its ``data`` passes them.
    """
    # Everything that can refuse the run is checked before the study exists: first what needs no data (space,
    # budget, sampler, weight sharing, the settings of a study resumed), before anything is written.
    space, budget = space or load_space(config.space), Budget.parse(config.budget)
    check_budget_reachable(budget, space, MIN_CLASSES, MIN_CHANNELS, any_data=True)
    check_memory_reachable(config, space, MIN_CLASSES, MIN_CHANNELS, available=available_memory(device))
    make_sampler(config, space)
    if config.supernet:  # the space shares weights; the checkpoint is readable and of these settings
        check_supernet(config, space, results_dir=results_dir, checkpoint=supernet)
    existing = stored_attrs(storage, study_name)
    if existing is not None and CONFIG_ATTR in existing:
        check_same_settings(study_name, existing, config, space)
    with _undone_on_refusal(results_dir):  # then what needs the data: nothing written is left if it refuses
        data = data or make_data(config, results_dir)
        check_budget_reachable(budget, space, data.num_classes, data.in_channels)
        study, config, created = _open_study(storage, study_name, config, load_only=False, heartbeat=heartbeat,
                                             space=space)
    # The stored settings and space from here on (a resumed study's are checked to be the same as asked).
    run = RunContext(config, study_space(study, config, space), budget, data)
    if created:  # only the creator: two creators racing must not queue each reference twice
        # The validation labels once per study: with each trial's correctness vector, balanced-accuracy intervals.
        study.set_user_attr(VAL_LABELS_ATTR, pack_labels(data(config.proxy_size).val_labels.numpy()))
        if config.test_fraction:  # and the test split's: the report's figures and its trivial floor
            study.set_user_attr(TEST_LABELS_ATTR, pack_labels(data(config.proxy_size).test_labels.numpy()))
        references = reference_candidates(run)
        enqueue_references(study, references)
        enqueue_noise_repeats(study, references, config)
        if on_create is not None:
            on_create(study)
    if on_start is not None:
        on_start(study)
    objective = make_objective(run, study, device=device, results_dir=results_dir, accuracy=accuracy,
                               latency=latency, supernet=supernet, train=True, on_epoch=on_epoch,
                               on_supernet_step=on_supernet_step, slots=Slots(trials))
    optimize(study, objective, trials=trials, timeout=timeout, results_dir=results_dir, callbacks=callbacks,
             storage=storage)
    if config.supernet and trials > 0:  # the search ended (target or --timeout): confirm its front
        confirm(study, objective, config.confirm, results_dir=results_dir, callbacks=callbacks, storage=storage)
    return study


def make_objective(run: RunContext, study: optuna.Study, *, device: str, results_dir: Path,
                   accuracy: AccuracySource | None, latency: Callable[..., Any], supernet: Path | None, train: bool,
                   on_epoch: Callable[[int, int], None] | None, on_supernet_step: OnStep | None,
                   slots: Slots) -> Objective:
    """The study's objective: its pipeline and accuracy source; for a supernet study the supernet trained
    (``train``) or loaded first. :func:`confirm` takes it to retrain a supernet study's front."""
    config, scratch = run.settings, None
    run.data.on_load(functools.partial(record_preprocessing, study))
    if config.supernet and accuracy is None:
        started, steps = time.perf_counter(), []

        def on_step(*step: Any) -> None:
            steps.append(1)
            if on_supernet_step is not None:
                on_supernet_step(*step)

        net, path, tag = prepare_supernet(config, run.space, run.data, results_dir=results_dir, device=device,
                                          checkpoint=supernet, train=train, on_step=on_step)
        # Training seconds only when it trained: loading a finished checkpoint is not training.
        record_supernet(study, path, tag, time.perf_counter() - started if steps else None)
        accuracy = InheritedWeights(net, seed=config.seed, device=device)
        scratch = ScratchTraining(train_config(config, device))
    pipeline = make_pipeline(run, device=device, accuracy=accuracy, latency=latency, results_dir=results_dir)
    return Objective(config, run.space, pipeline, slots=slots, on_epoch=on_epoch, scratch=scratch,
                     weights_dir=Path(results_dir) / study.study_name / "weights")


def confirm(study: optuna.Study, objective: Objective, k: int, *, results_dir: Path,
            callbacks: Sequence[Callback] = (), storage: str | None = None) -> list[int]:
    """Retrain from scratch, under the references' proxy, up to ``k`` Pareto candidates of a supernet study
    (inherited accuracy vs MAdds): the accuracies the search gain is computed on. Resumable: a candidate
    already confirmed is not queued again. Returns the confirmed trials' numbers."""
    numbers = confirm_candidates(study, k)
    enqueue_confirmations(study, numbers)
    waiting = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if is_confirmation(t)]
    if waiting:
        _run_recorded(study, objective, results_dir=results_dir, callbacks=callbacks, storage=storage,
                      n_trials=len(waiting))
    return numbers


def run_worker(*, storage: str, study_name: str, trials: int, timeout: float | None = None, device: str = "cpu",
               results_dir: Path = Path("results"), heartbeat: float | None = DEFAULT_HEARTBEAT,
               callbacks: Sequence[Callback] = (), on_epoch: Callable[[int, int], None] | None = None,
               supernet: Path | None = None, on_start: Callable[[optuna.Study], None] | None = None) -> optuna.Study:
    """Join an existing study with the settings stored in it, and run trials until it holds ``trials``.

    A worker of a supernet study scores with the study's trained checkpoint (``supernet``, else
    the one the study recorded); it never trains one.
    """
    study, config = open_study(storage, study_name, None, heartbeat=heartbeat)
    if supernet is not None and not config.supernet:
        raise UserError(f"--supernet {str(supernet)!r} applies to supernet studies only; study {study_name!r} trains "
                        f"each candidate ({config.strategy})")
    space = study_space(study, config)
    check_results_dir(results_dir, create=True)
    run = RunContext.of(config, make_data(config, results_dir), space)
    recorded = (study.user_attrs.get(SUPERNET_ATTR) or {}).get("checkpoint")
    objective = make_objective(run, study, device=device, results_dir=results_dir, accuracy=None,
                               latency=measure_latency, supernet=supernet or (Path(recorded) if recorded else None),
                               train=False, on_epoch=on_epoch, on_supernet_step=None, slots=Slots(trials))
    if on_start is not None:
        on_start(study)
    return optimize(study, objective, trials=trials, timeout=timeout, results_dir=results_dir, callbacks=callbacks,
                    storage=storage)


def optimize(study: optuna.Study, objective: Objective, *, trials: int, timeout: float | None,
             results_dir: Path, callbacks: Sequence[Callback] = (), storage: str | None = None) -> optuna.Study:
    """Run ``objective`` on ``study`` until it holds ``trials`` evaluated trials (or ``timeout``).

    First, trials of this host whose process died are failed and, with interrupted trials,
    queued again: they run before any new sample. A full disk stops the run (see :func:`_run_recorded`);
    ``storage`` is the study's URL, named in that message.
    """
    try:  # on resume: the disk may still be full
        recover_dead_trials(study)
        requeue_interrupted(study)
    except Exception as exc:
        error = _full_disk_error(exc, study, storage)
        if error is None:
            raise
        raise error from None
    if evaluated_count(study) < trials:
        _run_recorded(study, objective, results_dir=results_dir, callbacks=callbacks, timeout=timeout,
                      stop=StopAfter(trials, max_attempts=len(study.trials) + 50 * trials + 100), storage=storage)
    else:  # nothing to run: the result files are still brought up to date
        _run_recorded(study, objective, results_dir=results_dir, callbacks=callbacks, n_trials=0, storage=storage)
    return study


def _run_recorded(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *, results_dir: Path,
                  callbacks: Sequence[Callback], stop: StopAfter | None = None, storage: str | None = None,
                  **optimize_args: Any) -> None:
    """``study.optimize`` with the study's result files kept: only each new trial is added to them
    (complete files at every flush and at the end), then ``callbacks`` run; the report at the end.

    A full disk (the storage's, or the result files') stops the run with one :class:`UserError` naming
    what could not be written: the trial it hit is failed with that reason where the storage still takes
    the write, else it stays RUNNING and the next run fails it and runs it again (:func:`recover_dead_trials`).
    """
    folder = Path(results_dir) / study.study_name
    writer = ResultsWriter.for_study(study, folder)
    started: list[int] = []

    def run(trial: optuna.Trial) -> Any:
        started.append(trial.number)
        try:
            return objective(trial)
        except Exception as exc:
            full = disk_full(exc)
            if full is not None:  # the reason, while the trial runs: Optuna then fails it without one
                with contextlib.suppress(Exception):  # the storage itself may be the full disk
                    set_attrs(trial, outcome=Outcome.FAILED,
                              status_reason=f"disk full: {_what_is_full(exc, full, storage)}")
            raise

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        writer.update(trial)
        for callback in callbacks:
            callback(study, trial)

    stopped = None  # the line a full disk ends the run with
    try:
        study.optimize(run, catch=TRIAL_ERRORS, callbacks=[after_trial, *([stop] if stop else [])], **optimize_args)
    except Exception as exc:  # Optuna's AssertionError too: its trial's final write failed (see disk_full)
        stopped = _full_disk_error(exc, study, storage, started[-1:])
        if stopped is None:
            raise
        raise stopped from None
    finally:
        try:
            writer.flush()
            write_report(study, folder)
        except Exception as exc:
            if stopped is None:  # else that line stands; the next run brings the files up to date
                error = _full_disk_error(exc, study, storage)  # the trials are recorded, their result files not
                if error is None:
                    raise
                raise error from None


def _full_disk_error(exc: BaseException, study: optuna.Study, storage: str | None,
                     numbers: Sequence[int] = ()) -> UserError | None:
    """The one line a full disk found in ``exc`` ends the run with, after failing (where the storage still takes
    it) the trial of ``numbers`` it hit; None when ``exc`` is not a full disk."""
    full = disk_full(exc)
    return None if full is None else UserError(_stopped_by_full_disk(study, numbers, _what_is_full(exc, full, storage)))


def _what_is_full(exc: BaseException, full: BaseException, storage: str | None) -> str:
    """What a full disk refused, for messages: ``cannot write PATH: REASON`` (a result file, or the storage)."""
    ours = next((str(e) for e in error_chain(exc) if isinstance(e, UserError) and str(e).startswith("cannot write ")),
                None)
    if ours is not None:  # files.atomic_path's message names the file
        return ours
    if isinstance(full, OSError) and full.filename is not None:
        return f"cannot write {full.filename}: {full.strerror}"
    what = f"storage {redact(storage)}" if storage else "the study's storage"
    return f"cannot write {what}: {getattr(full, 'strerror', None) or clean_message(full, storage or '')}"


def _stopped_by_full_disk(study: optuna.Study, numbers: Sequence[int], what: str) -> str:
    """The line that ends a run a full disk stopped; its trial (of ``numbers``) is failed with the reason where
    the storage still takes the write."""
    notes = []
    for frozen in study.get_trials(deepcopy=False):
        if frozen.number not in numbers:
            continue
        if frozen.state == TrialState.RUNNING:
            recorded = fail_trial(study, frozen, Outcome.FAILED, f"disk full: {what}")
        elif str(TrialRecord.from_trial(frozen).status_reason or "").startswith("disk full: "):
            recorded = True
        else:
            continue  # it ended before the disk filled
        notes.append(f"trial {frozen.number} is recorded as failed" if recorded else
                     f"trial {frozen.number} could not be recorded: the next run fails it and runs it again")
    return f"the disk is full: {what}; {'; '.join([*notes, 'free space, then run the same command to resume'])}"

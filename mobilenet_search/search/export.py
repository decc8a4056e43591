"""Export: take a network chosen from a study into the model library (and, on request, ONNX).

A trial is chosen by number, or as the best: among the Pareto-optimal feasible trials
(accuracy vs MAdds, optionally under a budget such as ``300M-madds``), the most accurate,
ties broken by fewer MAdds. The entry records the architecture, where it came from
(storage, study, trial, why it was picked), what the trial measured and the study's
settings (dataset, proxy size, epochs: what the proxy accuracy means)::

    export("mobilenetv2-300M-madds", storage="sqlite:///results/mobilenetv2-300M-madds.db",
           name="mnv2-300M", best=True, under="250M-madds")

When the study kept trained weights for the trial, the entry stores them too
(``<name>.safetensors``, see :func:`trained_weights`): a supernet study's confirmation's
scratch-trained weights, preferred, else the weights the trial inherited from the supernet,
BatchNorm recalibrated exactly as it was scored. ``library.build(name, weights="trained")``
then gives the network that scored the accuracy the entry records, and the entry's
``transforms()`` the input it scored it on: the entry records the preprocessing the study
recorded at the trial's proxy resolution (:func:`trial_preprocessing`), so export reads no dataset.

:func:`export_scaled` takes a scaling study's recommended net for a budget instead of a trial
(``export --scaled 150M-madds``): its predicted accuracy with an interval, and the trial that
trained exactly it, with its weights, where there is one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from mobilenet_search.arch.budget import KINDS, Budget
from mobilenet_search.arch.cost import count_params, format_count
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError, require
from mobilenet_search.files import atomic_path
from mobilenet_search.measure.preprocessing import Preprocessing
from mobilenet_search.results import library as model_library
from mobilenet_search.results import records
from mobilenet_search.results.frame import pareto_front, trained, trials_frame
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.storage import redact, storage_file
from mobilenet_search.search.study import make_data, open_study, recorded_preprocessing

if TYPE_CHECKING:
    from torch import nn

ONNX_OPSET = 17  # widely supported by runtimes (onnxruntime >= 1.11, TensorRT 8.5+) and enough for these ops
# The measurements an entry records, as the trial's user attributes name them.
METRICS = ("madds", "params", "latency_ms", "latency_device", "latency_batch", "accuracy", "balanced_accuracy",
           "proxy_resolution", "epochs", "outcome", "status_reason")


@dataclass(frozen=True)
class Choice:
    """The trial an export takes and a sentence saying why."""

    trial: optuna.trial.FrozenTrial
    reason: str


@dataclass(frozen=True)
class TrainedWeights:
    """A trial's trained network and where its weights come from.

    ``source`` is ``confirmed`` (a supernet study's confirmation: the candidate retrained from
    scratch under the proxy), ``inherited`` (the weights the candidate inherited from the
    study's supernet, BatchNorm recalibrated as when it was scored) or ``trained`` (a trial's
    own scratch-trained weights, saved by its study). ``trial`` is the trial whose accuracy
    they scored: the confirmation's for ``confirmed``.
    """

    model: nn.Module
    source: str
    trial: optuna.trial.FrozenTrial

    def metadata(self, preprocessing: Preprocessing | None, unknown: str = "") -> dict[str, Any]:
        """What an entry records about its weights: the trial, the accuracy, and the input they expect (its
        resolution; the entry's ``preprocessing`` describes the rest, or ``unknown`` says why it cannot)."""
        record = records.TrialRecord.from_trial(self.trial)
        expected: dict[str, Any] = {"resolution": int(record.proxy_resolution)}
        if preprocessing is None:
            expected["normalise"] = f"unknown ({unknown})"
        return {"trial": self.trial.number,
                **{key: getattr(record, key) for key in ("accuracy", "balanced_accuracy")
                   if getattr(record, key) is not None},
                "input": expected}


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote: the entry's file, its name, the choice, and the ONNX file if any.

    ``weights`` is None when the entry holds the architecture only.
    """

    name: str
    path: Path
    choice: Choice
    spec: ArchSpec
    onnx: Path | None = None
    weights: TrainedWeights | None = None


def load_study(study_name: str, storage: str) -> tuple[optuna.Study, SearchConfig]:
    """Open an existing mobilenet-search study for reading; a missing one is a :class:`UserError`."""
    return open_study(storage, study_name, None, load_only=True)


def _within(frame: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    """The rows whose measured values all fit ``budget``; a value not measured does not fit."""
    def fits(row: pd.Series) -> bool:
        return all(pd.notna(row[KINDS[limit.kind]]) and limit.admits(row[KINDS[limit.kind]])
                   for limit in budget.limits)

    return frame[frame.apply(fits, axis=1)] if len(frame) else frame


def choose_trial(study: optuna.Study, *, trial: int | None = None, best: bool = False,
                 under: str | None = None) -> Choice:
    """The trial numbered ``trial``, or with ``best`` the most accurate Pareto-optimal feasible one.

    ``under`` (a budget such as ``300M-madds`` or ``200M-madds,5ms-latency``) narrows the
    candidates for ``best`` first. Accuracy ties go to fewer MAdds, then the lower trial number.
    """
    if (trial is None) == (not best):
        raise UserError("give exactly one of --trial N and --best")
    if under is not None and not best:
        raise UserError("--under applies to --best only")
    if not best:
        return _numbered(study, trial)

    frame = trials_frame(study)
    candidates = trained(frame)
    scope = f"study {study.study_name!r}"
    if under is not None:
        budget = Budget.parse(under)
        candidates = _within(candidates, budget)
        scope += f" under {budget}"
    front = pareto_front(candidates)
    if front.empty:
        raise UserError(f"no trained feasible trial in {scope} ({len(frame)} trials, {len(trained(frame))} trained "
                        f"and feasible); {'relax --under or ' if under else ''}train more (`mobilenet-search search`)")
    pick = front.sort_values(["accuracy", "madds", "number"], ascending=[False, True, True]).iloc[0]
    number = int(pick["number"])
    reason = (f"trial {number}: the most accurate (accuracy {pick['accuracy']:.4f}, {format_count(pick['madds'])} "
              f"MAdds) of the {len(front)} Pareto-optimal of {len(candidates)} trained feasible trials in {scope}")
    tied = candidates[(candidates["accuracy"] == pick["accuracy"]) & (candidates["number"] != number)]
    if len(tied):
        reason += (f"; accuracy tie with trial(s) {', '.join(map(str, sorted(tied['number'])))} "
                   "broken by fewer MAdds, then the lower trial number")
    return Choice(study.get_trials(deepcopy=False)[number], reason)


def _numbered(study: optuna.Study, number: int) -> Choice:
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        span = f"trials 0-{len(trials) - 1}" if trials else "no trials"
        raise UserError(f"study {study.study_name!r} has no trial {number} ({span})")
    chosen = trials[number]
    record = records.TrialRecord.from_trial(chosen)
    if record.spec is None:
        raise UserError(f"trial {number} of study {study.study_name!r} has no recorded architecture "
                        f"(state {chosen.state.name}); choose another trial")
    reason = f"trial {number}, as asked"
    outcome = records.outcome(chosen) or chosen.state.name.lower()
    feasible = records.is_feasible(chosen)
    if outcome != records.Outcome.TRAINED.value or not feasible:
        why = record.status_reason
        reason += (f" (note: outcome {outcome}, {'feasible' if feasible else 'infeasible'}"
                   f"{'' if why is None else ': ' + why}"
                   f"{'' if record.accuracy is not None else '; no proxy accuracy'})")
    return Choice(chosen, reason)


def _absolute(storage: str) -> str:
    """The storage URL with a relative file path made absolute, so the entry points back from anywhere."""
    file = storage_file(storage)
    if file is None or file.is_absolute():
        return storage
    return storage.replace(str(file), str(file.resolve()), 1)


def entry_metadata(study: optuna.Study, choice: Choice, storage: str, config: SearchConfig) -> dict[str, Any]:
    """The ``metadata`` of an exported entry: ``source``, ``metrics`` and ``study_config``.

    The storage URL is stored with any password redacted.
    """
    trial = choice.trial
    record = records.TrialRecord.from_trial(trial)
    return {
        "source": {"storage": redact(_absolute(storage)), "study": study.study_name, "trial": trial.number,
                   "picked": choice.reason},
        "metrics": {key: getattr(record, key) for key in METRICS if getattr(record, key) is not None}
        | {"feasible": records.is_feasible(trial)},
        # Dataset, proxy size, epochs, learning rate: what the proxy accuracy was measured under.
        "study_config": config.to_dict(),
    }


def _confirmation_of(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial | None:
    """The latest finished confirmation of trial ``number`` that saved its weights, if any."""
    found = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if (record := records.TrialRecord.from_trial(t)).confirms == number
             and record.outcome == records.Outcome.TRAINED and record.weights]
    return found[-1] if found else None


def _saved(trial: optuna.trial.FrozenTrial, spec: ArchSpec, source: str) -> TrainedWeights:
    from mobilenet_search.arch.builder import build_with_weights

    path = Path(records.TrialRecord.from_trial(trial).weights)
    if not path.is_file():
        raise UserError(f"trial {trial.number}'s weights {str(path)!r} are missing (moved with the results "
                        "folder?); export without weights (--no-weights) or restore the file")
    try:
        model = build_with_weights(spec, path)
    except ValueError as exc:
        raise UserError(f"weights {str(path)!r} do not fit trial {trial.number}'s architecture ({exc})") from None
    return TrainedWeights(model.eval(), source, trial)


def _inherited(study: optuna.Study, config: SearchConfig, trial: optuna.trial.FrozenTrial, spec: ArchSpec, *,
               results_dir: Path, supernet: Path | None) -> TrainedWeights:
    from mobilenet_search.search.space import load_space
    from mobilenet_search.search.strategies import InheritedWeights, prepare_supernet

    recorded = (study.user_attrs.get(records.SUPERNET_ATTR) or {}).get("checkpoint")
    checkpoint = supernet or (Path(recorded) if recorded else None)
    if checkpoint is None:
        raise UserError(f"study {study.study_name!r} recorded no supernet checkpoint; point --supernet at it, or "
                        "export without weights (--no-weights)")
    data = make_data(config, results_dir)
    net, _, _ = prepare_supernet(config, load_space(config.space), data, results_dir=results_dir,
                                 checkpoint=checkpoint, train=False)
    # The scorer's own defaults (BatchNorm images, seed): the network exported is the one that was scored.
    size = int(records.TrialRecord.from_trial(trial).proxy_resolution)
    model = InheritedWeights(net, seed=config.seed).model(spec, data(size))
    return TrainedWeights(model.eval(), "inherited", trial)


def trained_weights(study: optuna.Study, config: SearchConfig, trial: optuna.trial.FrozenTrial, *,
                    results_dir: Path = Path("results"), supernet: Path | None = None) -> TrainedWeights | None:
    """The trained network a study can give for ``trial``, or None (architecture only).

    In order: the trial's own saved weights (a confirmation's, or a scratch trial's); for a trial
    scored with inherited weights, those of its confirmation (retrained from scratch under the
    references' proxy) or the inherited ones (the checkpoint the study recorded, or ``supernet``;
    the data decoded under ``results_dir``), whichever scored higher on the validation split, the
    confirmation on a tie; a confirmation's weights for any other trial. A recorded file that is
    missing is a :class:`UserError`.

    Inherited weights can beat the confirmation: ``benchmarks/bench_strategies.py``'s four confirmed
    candidates inherited 0.741-0.798 and scored 0.689-0.695 retrained from scratch for its 2-epoch
    proxy (fine-tuning the inherited network with that schedule gave 0.743-0.781: no better than
    inheriting, ``benchmarks/confirm_finetune.py``).
    """
    record = records.TrialRecord.from_trial(trial)
    spec = ArchSpec.from_json(record.spec)
    if record.weights:
        return _saved(trial, spec, "confirmed" if record.role == records.Role.CONFIRMATION else "trained")
    confirmation = _confirmation_of(study, trial.number)
    inherited = record.strategy == records.Strategy.SUPERNET and record.proxy_resolution is not None
    if confirmation is not None and not (
            inherited and record.accuracy > records.TrialRecord.from_trial(confirmation).accuracy):
        return _saved(confirmation, spec, "confirmed")
    if inherited:
        return _inherited(study, config, trial, spec, results_dir=Path(results_dir), supernet=supernet)
    return None


def trial_preprocessing(study: optuna.Study, config: SearchConfig, trial: optuna.trial.FrozenTrial, *,
                        results_dir: Path, decode: bool = True) -> Preprocessing | None:
    """How the images ``trial`` was scored on became its network's input: what the study recorded at the
    trial's proxy resolution. None for a trial scored at none.

    A study made before studies recorded it: with ``decode``, the study's dataset is decoded again
    (under ``results_dir``) to learn it, a :class:`UserError` if it cannot be read; without, None.
    """
    size = records.TrialRecord.from_trial(trial).proxy_resolution
    if size is None:
        return None
    recorded = recorded_preprocessing(study, int(size))
    if recorded is not None or not decode:
        return recorded
    from mobilenet_search.measure.data import preprocessing

    # A study made before studies recorded their preprocessing: only its dataset, decoded again, tells.
    return preprocessing(make_data(config, results_dir)(int(size)))


def write_onnx(spec: ArchSpec, path: str | Path, opset: int = ONNX_OPSET, model: nn.Module | None = None) -> Path:
    """Write ``model`` (default ``build_model(spec)``, fresh weights), in eval mode, as ONNX at the deployment
    resolution.

    The input is ``input`` of shape ``(batch, in_channels, resolution, resolution)`` with a
    dynamic batch, the output ``logits``. TorchScript-based exporter (no onnxscript needed),
    opset :data:`ONNX_OPSET`; the file appears atomically. Needs the ``onnx`` package
    (``pip install 'mobilenet-search[onnx]'``).
    """
    require("onnx", "onnx", "--onnx")
    import torch

    from mobilenet_search.arch.builder import build_model

    path = Path(path)
    model = (build_model(spec) if model is None else model).eval()
    example = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The legacy exporter announces its deprecation; it is chosen on purpose (no onnxscript dependency).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _record_input(metadata: dict[str, Any], study: optuna.Study, config: SearchConfig,
                  trial: optuna.trial.FrozenTrial, trained: TrainedWeights | None, results_dir: Path) -> None:
    """Record in ``metadata`` the input the entry's network expects (``preprocessing``) and, with ``trained``
    weights, where they come from and what they scored."""
    unknown = "the study recorded none"
    try:  # a study from before studies recorded it is decoded again, for weights only
        prep = trial_preprocessing(study, config, trial if trained is None else trained.trial,
                                   results_dir=results_dir, decode=trained is not None)
    except UserError as exc:  # the dataset is gone: the weights are still worth keeping
        prep, unknown = None, f"the study recorded none and its dataset could not be read: {exc}"
    if prep is not None:
        metadata["preprocessing"] = prep.to_dict()
    if trained is not None:
        metadata["weights_source"] = trained.source
        metadata["weights"] = trained.metadata(prep, unknown)


def _onnx_into(metadata: dict[str, Any], spec: ArchSpec, onnx: str | Path, trained: TrainedWeights | None) -> Path:
    """Write the entry's network as ONNX (its trained weights if any, else fresh ones) and record it in ``metadata``."""
    path = write_onnx(spec, onnx, model=None if trained is None else trained.model)
    metadata["onnx"] = {"path": str(path.resolve()), "opset": ONNX_OPSET,
                        "input": ["batch", spec.in_channels, spec.resolution, spec.resolution],
                        "weights": "fresh" if trained is None else trained.source}
    return path


def export(study_name: str, *, storage: str, name: str, trial: int | None = None, best: bool = False,
           under: str | None = None, force: bool = False, library: str | Path | None = None,
           onnx: str | Path | None = None, weights: bool = True, results_dir: str | Path = "results",
           supernet: str | Path | None = None) -> Exported:
    """Choose a trial of ``study_name`` (see :func:`choose_trial`) and save it as library entry ``name``.

    With ``weights`` (the default) and trained weights to give (:func:`trained_weights`;
    ``results_dir`` holds the study's data cache, ``supernet`` overrides the checkpoint it
    recorded), the entry also stores them, and its metadata says where they come from
    (``weights_source``: ``confirmed``, ``inherited`` or ``trained``) and what they scored
    (``weights``: trial, accuracy, input). Without, the entry holds the architecture only.
    Either way it records ``preprocessing`` (:func:`trial_preprocessing`; a study from before
    studies recorded it is decoded again for an entry with weights only).

    With ``onnx``, also write the network there (:func:`write_onnx`; trained weights when the
    entry has them) before the entry, so a failed ONNX export leaves no entry. Nothing is
    written if the name is taken (without ``force``), the study or trial is missing, the trial
    has no usable architecture, or its recorded weights cannot be read.
    """
    model_library.check_writable(name, force=force, library=library)
    study, config = load_study(study_name, storage)
    choice = choose_trial(study, trial=trial, best=best, under=under)
    spec = ArchSpec.from_json(records.TrialRecord.from_trial(choice.trial).spec)
    metadata = entry_metadata(study, choice, storage, config)
    trained = None
    if weights:
        trained = trained_weights(study, config, choice.trial, results_dir=Path(results_dir),
                                  supernet=None if supernet is None else Path(supernet))
    _record_input(metadata, study, config, choice.trial, trained, Path(results_dir))
    onnx_path = None if onnx is None else _onnx_into(metadata, spec, onnx, trained)
    path = model_library.save(name, spec, metadata, force=force, library=library,
                              weights=None if trained is None else trained.model)
    return Exported(name, path, choice, spec, onnx_path, trained)


@dataclass(frozen=True)
class ScaledExport:
    """What :func:`export_scaled` wrote: the entry, the recommendation it holds, and the trained trial and
    weights that came with it, if any."""

    name: str
    path: Path
    spec: ArchSpec
    recommendation: dict[str, Any]
    trial: optuna.trial.FrozenTrial | None = None
    onnx: Path | None = None
    weights: TrainedWeights | None = None


def _trained_as(study: optuna.Study, arch: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of ``study`` that trained exactly ``arch`` (its seeds; confirmations aside), by number."""
    from mobilenet_search.search.scaling import point_runs

    return [trial for trial, record in point_runs(study) if record.arch == arch]


def export_scaled(study_name: str, *, storage: str, name: str, at: str, force: bool = False,
                  library: str | Path | None = None, onnx: str | Path | None = None, weights: bool = True,
                  results_dir: str | Path = "results", supernet: str | Path | None = None,
                  resamples: int | None = None) -> ScaledExport:
    """Save the scaled network a scaling study recommends for the budget ``at`` (``150M-madds``) as library
    entry ``name``: :func:`mobilenet_search.search.scaling.recommend_at` on the study's analysis, as
    ``mobilenet-search scaling --study NAME --at`` prints it.

    Where the study trained exactly that network, the entry is that trial's (its measurements, and its
    weights where the study kept some: :func:`trained_weights`, as :func:`export`). Otherwise it holds the
    architecture, and the accuracy is the fit's prediction: the entry's ``scaled`` metadata records the
    direction, multipliers, predicted accuracy with its 95 % interval, the plateau note, the trials that
    measured it, and a sentence saying whether weights are included. Nothing is written when the study
    is not a scaling study, ``at`` is malformed or above the study's budget, or the name is taken.
    """
    from mobilenet_search.results.scaling_fit import CONFIDENCE, RESAMPLES
    from mobilenet_search.search.scaling import analyse, madds_limit, recommend_at
    from mobilenet_search.search.study import study_space

    model_library.check_writable(name, force=force, library=library)
    madds_limit(at, "--scaled")  # a malformed budget is refused before the study is read and fitted
    study, config = load_study(study_name, storage)
    analysis = analyse(study, resamples=RESAMPLES if resamples is None else resamples)
    answer = recommend_at(analysis, at, study_space(study, config), option="--scaled")
    spec = ArchSpec.from_string(answer["arch"])
    measured = _trained_as(study, answer["arch"])
    trained, trial = None, measured[0] if measured else None
    for candidate in measured if weights else ():  # the first seed that kept weights, if any did
        trained = trained_weights(study, config, candidate, results_dir=Path(results_dir),
                                  supernet=None if supernet is None else Path(supernet))
        if trained is not None:
            trial = candidate
            break
    predicted = f"predicted accuracy {answer['accuracy']:.4f}" + (
        "" if answer["interval"] is None else f" [{answer['interval'][0]:.4f}, {answer['interval'][1]:.4f}]")
    reason = (f"recommended for {at} by the scaling fit of study {study.study_name!r}: {answer['direction']} "
              f"scaling, {format_count(answer['madds'])} MAdds, {predicted}")
    accuracies = [records.TrialRecord.from_trial(t).accuracy for t in measured]
    if measured:
        reason += (f"; trained in the study by trial(s) {', '.join(str(t.number) for t in measured)} (accuracy "
                   f"{sum(accuracies) / len(accuracies):.4f} over {len(measured)} run(s))")
    else:
        reason += "; not trained in the study: the accuracy is the fit's prediction"
    if trained is not None:
        about = f"included: {trained.source} weights of trial {trained.trial.number}"
    elif not weights:
        about = "not included (--no-weights)"
    else:
        about = ("not included: the study " + ("trained this network without keeping its weights" if measured else
                                               "did not train this network")
                 + "; library.build gives freshly initialised weights: train it on your data (the predicted accuracy "
                   "is for the study's proxy training)")
    if trial is not None:
        metadata = entry_metadata(study, Choice(trial, reason), storage, config)
    else:
        metadata = {"source": {"storage": redact(_absolute(storage)), "study": study.study_name, "trial": None,
                               "picked": reason},
                    "metrics": {"madds": answer["madds"], "params": count_params(spec)},
                    "study_config": config.to_dict()}
    metadata["scaled"] = {
        "budget": at, "direction": answer["direction"], "madds": answer["madds"],
        "multipliers": answer["multipliers"], "predicted_accuracy": answer["accuracy"],
        "interval": answer["interval"], "confidence": CONFIDENCE, "plateau": answer["plateau"],
        "measured": None if not measured else {"trials": [t.number for t in measured], "accuracies": accuracies},
        "strategy": analysis.get("strategy", "scratch"), "weights": about}
    if trial is not None:
        _record_input(metadata, study, config, trial, trained, Path(results_dir))
    onnx_path = None if onnx is None else _onnx_into(metadata, spec, onnx, trained)
    path = model_library.save(name, spec, metadata, force=force, library=library,
                              weights=None if trained is None else trained.model)
    return ScaledExport(name, path, spec, answer, trial, onnx_path, trained)

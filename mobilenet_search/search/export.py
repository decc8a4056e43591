"""Export: take a network chosen from a study into the model library (and, on request, ONNX).

A trial is chosen by number, or as the best: among the Pareto-optimal feasible trials
(accuracy vs MAdds, optionally under a budget such as ``300M-madds``), the most accurate,
ties broken by fewer MAdds. The entry records the architecture, where it came from
(storage, study, trial, why it was picked), what the trial measured and the study's
settings (dataset, proxy size, epochs: what the proxy accuracy means)::

    export("mobilenetv2-300M-madds", storage="sqlite:///results/mobilenetv2-300M-madds.db",
           name="mnv2-300M", best=True, under="250M-madds")
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from mobilenet_search.arch.budget import KINDS, Budget
from mobilenet_search.arch.cost import format_count
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_path
from mobilenet_search.results import library as model_library
from mobilenet_search.results import records
from mobilenet_search.results.frame import pareto_front, trained, trials_frame
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.storage import redact, storage_file
from mobilenet_search.search.study import open_study

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
class Exported:
    """What :func:`export` wrote: the entry's file, its name, the choice, and the ONNX file if any."""

    name: str
    path: Path
    choice: Choice
    spec: ArchSpec
    onnx: Path | None = None


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
    if "spec" not in chosen.user_attrs:
        raise UserError(f"trial {number} of study {study.study_name!r} has no recorded architecture "
                        f"(state {chosen.state.name}); choose another trial")
    reason = f"trial {number}, as asked"
    outcome = records.outcome(chosen) or chosen.state.name.lower()
    feasible = records.is_feasible(chosen)
    if outcome != records.Outcome.TRAINED.value or not feasible:
        why = chosen.user_attrs.get("status_reason")
        reason += (f" (note: outcome {outcome}, {'feasible' if feasible else 'infeasible'}"
                   f"{'' if why is None else ': ' + why}"
                   f"{'' if 'accuracy' in chosen.user_attrs else '; no proxy accuracy'})")
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
    return {
        "source": {"storage": redact(_absolute(storage)), "study": study.study_name, "trial": trial.number,
                   "picked": choice.reason},
        "metrics": {key: trial.user_attrs[key] for key in METRICS if trial.user_attrs.get(key) is not None}
        | {"feasible": records.is_feasible(trial)},
        # Dataset, proxy size, epochs, learning rate: what the proxy accuracy was measured under.
        "study_config": config.to_dict(),
    }


def write_onnx(spec: ArchSpec, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write ``build_model(spec)`` (eval mode, fresh weights) as ONNX at its deployment resolution.

    The input is ``input`` of shape ``(batch, in_channels, resolution, resolution)`` with a
    dynamic batch, the output ``logits``. TorchScript-based exporter (no onnxscript needed),
    opset :data:`ONNX_OPSET`; the file appears atomically. Needs the ``onnx`` package
    (``pip install 'mobilenet-search[onnx]'``).
    """
    if importlib.util.find_spec("onnx") is None:
        raise UserError("--onnx needs the onnx package: pip install 'mobilenet-search[onnx]' (or pip install onnx)")
    import torch

    from mobilenet_search.arch.builder import build_model

    path = Path(path)
    model = build_model(spec).eval()
    example = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The legacy exporter announces its deprecation; it is chosen on purpose (no onnxscript dependency).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def export(study_name: str, *, storage: str, name: str, trial: int | None = None, best: bool = False,
           under: str | None = None, force: bool = False, library: str | Path | None = None,
           onnx: str | Path | None = None) -> Exported:
    """Choose a trial of ``study_name`` (see :func:`choose_trial`) and save it as library entry ``name``.

    With ``onnx``, also write the network there (:func:`write_onnx`) before the entry, so a
    failed ONNX export leaves no entry. Nothing is written if the name is taken (without
    ``force``), the study or trial is missing, or the trial has no usable architecture.
    """
    model_library.check_writable(name, force=force, library=library)
    study, config = load_study(study_name, storage)
    choice = choose_trial(study, trial=trial, best=best, under=under)
    spec = ArchSpec.from_json(choice.trial.user_attrs["spec"])
    metadata = entry_metadata(study, choice, storage, config)
    onnx_path = None
    if onnx is not None:
        onnx_path = write_onnx(spec, onnx)
        metadata["onnx"] = {"path": str(onnx_path.resolve()), "opset": ONNX_OPSET,
                            "input": ["batch", spec.in_channels, spec.resolution, spec.resolution]}
    path = model_library.save(name, spec, metadata, force=force, library=library)
    return Exported(name, path, choice, spec, onnx_path)

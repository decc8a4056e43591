"""A study on the search side: its proxy training, its default names and folders.

Its settings (:class:`StudySettings`, checked before anything is created) live in
:mod:`mobilenet_search.results.records`, without torch, so every reader of a study reads them the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mobilenet_search.errors import UserError
from mobilenet_search.files import check_safe_name
from mobilenet_search.measure.train import TrainConfig
from mobilenet_search.results.records import StudySettings

#: The name the search side and the public API have used for a study's settings; defined (without torch) in
#: :mod:`mobilenet_search.results.records`.
SearchConfig = StudySettings


def train_config(settings: StudySettings, device: str, **changes: Any) -> TrainConfig:
    """The proxy training of one candidate of a study of ``settings`` (``changes`` override, e.g. another seed or
    more epochs).

    Evaluated after every epoch only where Optuna's pruner reads it (``--objective accuracy``);
    otherwise after the last, which gives the same accuracy in about 10 % less time.
    """
    values = dict(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed,
                  device=device, eval_every_epoch=settings.objective == "accuracy")
    return TrainConfig(**{**values, **changes})


def default_study_name(config: StudySettings) -> str:
    """A readable name from the space, budget and dataset: ``mobilenetv2-300M-madds``."""
    parts = [Path(config.space).stem, config.budget.replace(",", "_")]
    if config.dataset != "embedded":
        kind, _, root = config.dataset.partition(":")
        parts.append(Path(root).name if kind in ("imagefolder", "cifar10") and Path(root).name else config.dataset)
    if config.strategy != "scratch":
        parts.append(config.strategy)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-.")[:128] or "study"


def check_study_name(name: str) -> str:
    """A study name becomes a file and a folder under the results folder: nothing that could leave it."""
    return check_safe_name(name, "--study")


def default_storage(results_dir: Path, study_name: str) -> str:
    return f"sqlite:///{Path(results_dir) / f'{check_study_name(study_name)}.db'}"


def check_results_dir(results_dir: Path | str, *, create: bool = False) -> Path:
    """The results folder: a folder, or one that can be created (created only with ``create``); one line
    naming it otherwise. Without ``create`` nothing is written, so a run refused later leaves no folder."""
    if str(results_dir).strip() == "":
        raise UserError("invalid --results-dir '': expected a folder")
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise UserError(f"invalid --results-dir {str(results_dir)!r}: it is a file, not a folder")
    if not create:
        existing = next(folder for folder in (results_dir, *results_dir.absolute().parents) if folder.exists())
        if not existing.is_dir():
            raise UserError(f"invalid --results-dir {str(results_dir)!r}: {str(existing)!r} is a file, not a folder")
        return results_dir
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --results-dir {str(results_dir)!r}: {exc.strerror or exc}") from None
    return results_dir

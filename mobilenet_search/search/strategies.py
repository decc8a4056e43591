"""How candidates get their accuracy in a study: ``scratch`` training, or weights from one ``supernet``.

``--strategy supernet`` trains one elastic network over the search space (the sandwich rule of
BigNAS, every member on the labels) once, on the user's data, then scores every candidate in seconds
with the weights it inherits (:class:`InheritedWeights`), BatchNorm statistics recalibrated. The
checkpoint is keyed by a hash of what it depends on (space, data, training settings), so a later
study with the same settings reuses it and one with others is refused. When the search ends, the
Pareto candidates are retrained from scratch under the references' proxy (:func:`confirm`): only
those accuracies are comparable with the hand-scaled networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.bounds import INT_BOUNDS
from mobilenet_search.errors import UserError
from mobilenet_search.files import check_not_special
from mobilenet_search.measure.data import ImageData, proxy_resolution
from mobilenet_search.measure.datasets import DataCache
from mobilenet_search.measure.distributed import Ranks
from mobilenet_search.measure.supernet_train import (
    SupernetConfig,
    calibrated_subnet,
    calibration_indices,
    check_checkpoint,
    evaluate_subnet,
    supernet_tag,
    train_supernet,
)
from mobilenet_search.results.frame import pareto_mask, trained, trials_frame
from mobilenet_search.results.records import (
    CONFIRMS_ATTR,
    SUPERNET_ATTR,
    Role,
    Strategy,
    TrialRecord,
    frame_role,
)
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.evaluate import OnEpoch, Scored
from mobilenet_search.search.space import SearchSpace, supernet_envelope

OnStep = Callable[[int, int, int, float], None]  # (epoch, step, steps per epoch, loss)


def supernet_config(config: SearchConfig, device: str) -> SupernetConfig:
    """The supernet training of a study's settings: its epochs, and the proxy's batch, rate and seed."""
    return SupernetConfig(epochs=config.supernet_epochs, batch_size=config.batch_size, lr=config.lr,
                          seed=config.seed, device=device)


def checkpoint_tag(config: SearchConfig, space: SearchSpace, *, epochs: int | None = None) -> str:
    """What a supernet checkpoint depends on, hashed: the space's choices, the data and the training
    (``epochs``: the tag of that many supernet epochs instead of ``config.supernet_epochs``)."""
    training = supernet_config(config, device="cpu")
    if epochs is not None:
        training = dataclasses.replace(training, epochs=epochs)
    return supernet_tag(space=dict(space.parameters), family=space.family, dataset=config.dataset,
                        dataset_limit=config.dataset_limit, val_fraction=config.val_fraction,
                        proxy_size=config.proxy_size, training=training,
                        # the training images a test split leaves (a tag made before test splits stays the same)
                        **({"test_fraction": config.test_fraction} if config.test_fraction else {}))


def default_checkpoint(results_dir: Path, tag: str) -> Path:
    """Where a supernet of this tag lives unless ``--supernet PATH`` says otherwise: shared by every study."""
    return Path(results_dir) / "supernets" / f"{tag}.pt"


def find_supernet(config: SearchConfig, space: SearchSpace, *, results_dir: Path,
                  epochs: int | None = None) -> tuple[Path, int] | None:
    """The finished supernet checkpoint a study of ``config``'s space, data and proxy would score with, and its
    epochs: under ``results_dir/supernets/``, of ``epochs`` epochs where given, else the one with the most.
    None when there is none (an unfinished one does not count). Reads only; a corrupt checkpoint of these
    settings is a :class:`UserError`, as for a study that would score with it."""
    folder = Path(results_dir) / "supernets"
    present = {path.stem for path in folder.glob("*.pt")} if folder.is_dir() else set()
    if not present:  # the common case: no tag to compute
        return None
    low, high = INT_BOUNDS["supernet_epochs"]
    for count in [epochs] if epochs is not None else range(high, low - 1, -1):
        tag = checkpoint_tag(config, space, epochs=count)
        if tag in present:
            path = default_checkpoint(results_dir, tag)
            if check_checkpoint(path, tag) == count:
                return path, count
    return None


def random_member(space: SearchSpace, generator: torch.Generator, *, num_classes: int,
                  in_channels: int) -> ArchSpec:
    """A uniformly random member of ``space``, drawn only from ``generator``."""
    params = {name: choices[int(torch.randint(len(choices), (1,), generator=generator))]
              for name, choices in space.searched.items()}
    return space.spec(params, num_classes=num_classes, in_channels=in_channels)


def check_supernet(config: SearchConfig, space: SearchSpace, *, results_dir: Path,
                   checkpoint: Path | None = None, train: bool = True) -> Path:
    """Everything :func:`prepare_supernet` would refuse, checked without training or writing: the space
    shares weights, and the checkpoint (``checkpoint``, else the default of this tag) is absent (with
    ``train``) or a readable one of these settings (finished, without ``train``). Returns its path.

    A search calls it before reading its data or creating its study, so that bad input leaves nothing behind.
    """
    supernet_envelope(space, num_classes=2, in_channels=1)  # whether it shares weights does not hang on the data
    tag = checkpoint_tag(config, space)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(results_dir, tag)
    check_not_special(path, "supernet checkpoint")
    epochs = check_checkpoint(path, tag)
    if not train and epochs is None:
        raise UserError(f"supernet checkpoint {str(path)!r} does not exist: run the search (which trains it) first, "
                        "or point --supernet at a shared copy")
    if not train and epochs < config.supernet_epochs:
        raise UserError(f"supernet checkpoint {str(path)!r} is unfinished ({epochs} of {config.supernet_epochs} "
                        "epochs): run the search (which trains it) first")
    return path


def prepare_supernet(config: SearchConfig, space: SearchSpace, data: DataCache, *, results_dir: Path,
                     device: str = "cpu", checkpoint: Path | None = None, train: bool = True,
                     on_step: OnStep | None = None, ranks: Ranks | None = None) -> tuple[Supernet, Path, str]:
    """The study's trained supernet: trained (or resumed) into its checkpoint, or loaded when complete.

    A space whose members cannot share weights is refused (one line naming the field) before any
    work; a checkpoint of another space, data or settings is refused; ``train=False`` (a worker)
    refuses a checkpoint that is missing or unfinished instead of training it. ``ranks``: this process's
    part in a data-parallel training (``device`` is then this rank's).
    """
    envelope = supernet_envelope(space, num_classes=data.num_classes, in_channels=data.in_channels)
    tag = checkpoint_tag(config, space)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(results_dir, tag)
    if not train and not path.is_file():
        raise UserError(f"supernet checkpoint {str(path)!r} does not exist: run the search (which trains it) first, "
                        "or point --supernet at a shared copy")
    supernet = Supernet(envelope, seed=config.seed)
    settings = supernet_config(config, device)
    generator_args = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    smallest = space.extreme(count_madds, num_classes=data.num_classes, in_channels=data.in_channels)

    def refuse(*_: Any) -> None:
        raise UserError(f"supernet checkpoint {str(path)!r} is unfinished: run the search (which trains it) first")

    train_supernet(supernet, data, lambda g: random_member(space, g, **generator_args), smallest, envelope,
                   lambda spec: proxy_resolution(config.proxy_size, spec.resolution), settings, path, tag,
                   on_step=on_step if train else refuse, ranks=ranks)
    return supernet, path, tag


class InheritedWeights:
    """The accuracy of a candidate with the weights it inherits from a trained supernet.

    :meth:`model` extracts the candidate with its inherited weights and recomputes its BatchNorm
    statistics on a fixed, seeded set of ``bn_images`` training images (the same for every
    candidate); calling the source scores that network on the validation split: seconds per candidate.
    """

    strategy = Strategy.SUPERNET
    at_initialisation = False  # trained weights: no zero-cost scores (see Pipeline.measure)

    def __init__(self, supernet: Supernet, *, bn_images: int = 512, seed: int = 0, device: str = "cpu") -> None:
        self.supernet, self.bn_images, self.seed, self.device = supernet, bn_images, seed, device

    def calibration(self, data: ImageData) -> torch.Tensor:
        return calibration_indices(data, self.bn_images, self.seed)

    def model(self, spec: ArchSpec, data: ImageData, seed: int | None = None) -> torch.nn.Module:
        """The scored network itself (inherited weights, recalibrated BatchNorm), as the pipeline times it and
        export writes it: in the builder's memory layout. ``seed`` is not read: the weights are the supernet's."""
        self.supernet.check(spec)
        model = calibrated_subnet(self.supernet, spec, data, calibration=self.calibration(data), device=self.device)
        return model.to(memory_format=torch.contiguous_format)

    def __call__(self, spec: ArchSpec, model: torch.nn.Module, data: ImageData, *,
                 on_epoch: OnEpoch | None = None) -> Scored:
        evaluation, seconds = evaluate_subnet(model, data, device=self.device)
        return Scored(evaluation.accuracy, evaluation.balanced_accuracy, evaluation.predictions,
                      {"time_score": seconds, "time_eval": seconds})


def confirm_candidates(study: optuna.Study, k: int) -> list[int]:
    """Up to ``k`` Pareto-optimal supernet-scored trials (inherited accuracy vs MAdds) not yet confirmed,
    spread over the front's MAdds range, cheapest first."""
    from mobilenet_search.arch.references import spread

    frame = trained(trials_frame(study))
    roles = frame_role(frame)
    searched = frame[roles == Role.SEARCHED]
    front = searched[pareto_mask(searched)].sort_values("madds")
    done = set(frame.loc[roles == Role.CONFIRMATION, CONFIRMS_ATTR].astype(int))
    numbers = [int(n) for n in front["number"] if int(n) not in done]
    return spread(numbers, k) if k < len(numbers) else numbers


def enqueue_confirmations(study: optuna.Study, numbers: list[int]) -> int:
    """Queue each trial in ``numbers`` once more, to be trained from scratch (``confirms`` its number)."""
    queued = {TrialRecord.from_trial(t).confirms for t in study.get_trials(deepcopy=False)}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    count = 0
    for number in numbers:
        if number not in queued:
            study.enqueue_trial(by_number[number].params, user_attrs=TrialRecord(confirms=number).to_attrs())
            count += 1
    return count


def record_supernet(study: optuna.Study, path: Path, tag: str, seconds: float | None) -> None:
    """Store the checkpoint a supernet study scores with, so export, fidelity and workers find it."""
    stored = dict(study.user_attrs.get(SUPERNET_ATTR) or {})
    stored.update(checkpoint=str(Path(path).resolve()), tag=tag)
    if seconds is not None:
        stored["train_seconds"] = stored.get("train_seconds", 0.0) + seconds
    study.set_user_attr(SUPERNET_ATTR, stored)

"""What defines a study: its settings, checked before anything is created, and its default names."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mobilenet_search.arch.budget import Budget
from mobilenet_search.errors import UserError
from mobilenet_search.files import check_safe_name
from mobilenet_search.measure.data import SYNTHETIC_DEFAULT_SIZE, stratified_subset
from mobilenet_search.measure.train import TrainConfig
from mobilenet_search.measure.zero_cost import PROXIES
from mobilenet_search.search.bounds import INT_BOUNDS, MAX_BUDGET, MAX_BUDGET_CHARS, MAX_LR, MAX_SYNTHETIC

OBJECTIVES = ("multi", "accuracy")
SAMPLERS = ("tpe", "nsga2", "random", "grid")
STRATEGIES = ("scratch", "supernet")
REFERENCE_CHOICES = ("default", "all", "none")
METRICS = ("accuracy", "balanced")
MIN_SPLIT = 2  # every dataset has at least 2 classes: each needs a training and a validation image


@dataclass(frozen=True)
class SearchConfig:
    """What defines a study: stored in it, so every run or worker of the study uses the same.

    Every field is checked here, before a study or a file exists: a bad setting is one
    :class:`UserError` line naming the option.
    """

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
    references: str = "default"  # the papers' scaling family trained alongside: default (<= 2), all, none
    val_fraction: float = 0.2  # share of the images held out for validation (stratified, seeded): ranks candidates
    test_fraction: float = 0.2  # share held out for the test split: reports the final figures, never ranks
    metric: str = "accuracy"  # what a candidate is ranked by: accuracy, or balanced accuracy (imbalanced data)
    noise_repeats: int = 1  # the cheapest reference net retrained with this many other seeds: the seed noise
    strategy: str = "scratch"  # how a candidate gets its accuracy: scratch training, or a weight-sharing supernet
    supernet_epochs: int = 24  # supernet training epochs (strategy supernet): 3x the 8-epoch proxy
    confirm: int = 3  # Pareto candidates trained from scratch when a supernet study ends

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", check_budget(self.budget))
        if self.objective not in OBJECTIVES and self.zero_cost not in PROXIES:
            raise UserError(f"invalid objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)} or "
                            f"zero-cost:NAME with NAME one of {', '.join(PROXIES)}")
        for name, value, choices in (("references", self.references, REFERENCE_CHOICES),
                                     ("sampler", self.sampler, SAMPLERS), ("strategy", self.strategy, STRATEGIES),
                                     ("metric", self.metric, METRICS)):
            if value not in choices:
                raise UserError(f"invalid --{name} {value!r}: expected one of {', '.join(choices)}")
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name == "dataset_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"invalid --{name.replace('_', '-')} {value!r}: expected an integer in [{low}, {high}]")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise UserError(f"invalid --lr {self.lr!r}: expected a number in (0, {MAX_LR:g}]")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise UserError(f"invalid --val-fraction {self.val_fraction!r}: expected a number in (0, 1)")
        if not 0 <= self.test_fraction < 1:
            raise UserError(f"invalid --test-fraction {self.test_fraction!r}: expected a number in [0, 1)")
        if self.val_fraction + self.test_fraction >= 0.95:
            raise UserError(f"invalid --val-fraction {self.val_fraction!r} with --test-fraction {self.test_fraction!r}:"
                            " together they must leave at least 5 % of the images for training")
        check_dataset(self.dataset)
        check_split(self.dataset, self.dataset_limit, self.val_fraction, self.test_fraction)
        if self.metric == "balanced" and self.zero_cost is not None:
            raise UserError("--metric balanced ranks by balanced accuracy; a zero-cost objective trains nothing")
        if self.strategy == "supernet" and self.objective != "multi":
            raise UserError(f"--strategy supernet scores with inherited weights; it takes --objective multi, "
                            f"not {self.objective!r}")

    @property
    def zero_cost(self) -> str | None:
        """The zero-cost proxy that replaces accuracy (``--objective zero-cost:NAME``), if any."""
        kind, _, name = self.objective.partition(":")
        return name if kind == "zero-cost" else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """The settings stored in a study; fields added since it was created take their defaults, except that a
        study made before test splits existed has none (``test_fraction`` 0), so its split stays the same."""
        known = {f.name for f in dataclasses.fields(cls)}
        legacy = {} if "test_fraction" in data else {"test_fraction": 0.0}
        return cls(**{**legacy, **{k: v for k, v in data.items() if k in known}})

    def train_config(self, device: str, **changes: Any) -> TrainConfig:
        """The proxy training of one candidate (``changes`` override, e.g. another seed or more epochs).

        Evaluated after every epoch only where Optuna's pruner reads it (``--objective accuracy``);
        otherwise after the last, which gives the same accuracy in about 10 % less time.
        """
        settings = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed, device=device,
                        eval_every_epoch=self.objective == "accuracy")
        return TrainConfig(**{**settings, **changes})


def check_budget(text: str) -> str:
    """A ``--budget`` in its canonical form: ASCII only (``\\d`` would take Arabic-Indic or full-width digits),
    at most :data:`MAX_BUDGET_CHARS` characters, each limit below :data:`MAX_BUDGET`."""
    if not isinstance(text, str) or not text.isascii() or len(text) > MAX_BUDGET_CHARS:
        shown = text if len(str(text)) <= 40 else f"{str(text)[:40]}..."
        raise UserError(f"invalid --budget {shown!r}: expected ASCII digits and at most {MAX_BUDGET_CHARS} characters, "
                        "e.g. 300M-madds")
    budget = Budget.parse(text)
    for limit in budget.limits:
        if limit.bound > MAX_BUDGET[limit.kind]:
            raise UserError(f"invalid --budget {text!r}: {limit.text} is above {MAX_BUDGET[limit.kind]:.0e} "
                            f"{'ms' if limit.kind == 'latency' else limit.kind}")
    return str(budget)


def check_dataset(source: str) -> None:
    """What of a ``--dataset`` can be checked without reading it: ``synthetic:N`` has ASCII digits and N is
    at most :data:`MAX_SYNTHETIC`; an empty source is refused."""
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"invalid --dataset {source!r}: expected embedded, elpv, mnist, cifar10:ROOT, "
                        "imagefolder:ROOT or synthetic[:N]")
    kind, sep, count = source.partition(":")
    if kind == "synthetic" and sep and not (count.isascii() and count.isdigit() and int(count) <= MAX_SYNTHETIC):
        raise UserError(f"invalid --dataset {source!r}: expected synthetic:N with N an integer in [8, "
                        f"{MAX_SYNTHETIC:,}] (ASCII digits)")


def check_split(source: str, limit: int | None, val_fraction: float, test_fraction: float = 0.0) -> None:
    """Refuse, by arithmetic alone, a ``--dataset-limit``/``--val-fraction``/``--test-fraction`` that leaves a class
    without a training, validation or test image: at least :data:`MIN_SPLIT` images on each side for any data, and
    for ``synthetic:N`` (4 classes) each class's share of the stratified split exactly. Fashion-MNIST's limit keeps
    training images only (validation and test come from its test set): at least one per class."""
    kind, sep, count = source.partition(":")
    if kind == "fashion-mnist":
        if limit is not None and limit < 10:
            raise UserError(f"invalid --dataset-limit {limit}: fashion-mnist has 10 classes; keep at least 10 "
                            "training images")
        return
    if limit is not None:
        val, test = round(limit * val_fraction), round(limit * test_fraction)
        if val < MIN_SPLIT or limit - val - test < MIN_SPLIT or (test_fraction and test < MIN_SPLIT):
            raise UserError(f"invalid --dataset-limit {limit} with --val-fraction {val_fraction:g} and "
                            f"--test-fraction {test_fraction:g}: {limit - val - test} training, {val} validation "
                            f"and {test} test images; every class needs one of each (at least {MIN_SPLIT} of each)")
    if kind != "synthetic":
        return
    total = int(count) if sep else SYNTHETIC_DEFAULT_SIZE
    labels = torch.arange(min(total, limit or total)) % 4  # the synthetic set's 4 classes in turn
    val = torch.zeros(len(labels), dtype=torch.bool)
    val[stratified_subset(labels, round(len(labels) * val_fraction), torch.Generator())] = True
    test = torch.zeros(len(labels), dtype=torch.bool)
    if test_fraction:  # drawn from the rest, as measure.data does
        rest = (~val).nonzero().flatten()
        test[rest[stratified_subset(labels[rest], round(len(labels) * test_fraction), torch.Generator())]] = True
    sides = [("validation", val), ("training", ~val & ~test)] + ([("test", test)] if test_fraction else [])
    for side, chosen in sides:
        if len(labels[chosen].unique()) < 4:
            what = f"--dataset-limit {limit} with " if limit else ""
            raise UserError(f"invalid {what}--val-fraction {val_fraction:g} and --test-fraction {test_fraction:g}: "
                            f"a class of {source!r} gets no {side} image")


def default_study_name(config: SearchConfig) -> str:
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

"""The scaling experiment as an ordinary study: EfficientNet's Table 3 on the user's data, with intervals.

From a base network (a member of the study's space) the grid of :mod:`mobilenet_search.arch.scaling`
is queued as fixed trials (``study.enqueue_trial``), each distinct network once per seed, and trained
under the proxy by :func:`mobilenet_search.search.study.run_search`: storage, resume, workers,
dashboard and export work as for any study. It runs in two phases, as EfficientNet did:

1. the base, width only, resolution only, depth only, and EfficientNet's small grid of compound
   coefficients at ``phi = 1`` (about twice the base's MAdds);
2. compound scaling with the coefficients phase 1 found most accurate.

Each trial records the point that queued it (``scaling_direction``, ``scaling_step``); the study
records the whole plan (:data:`SCALING_ATTR`): every point's direction, step, MAdds target, the
network picked and its achieved MAdds. :func:`analyse` fits each direction
(:mod:`mobilenet_search.results.scaling_fit`); :func:`recommend` answers for any budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from mobilenet_search.arch.budget import Budget
from mobilenet_search.arch.cost import count_madds, count_params, format_count
from mobilenet_search.arch.references import paper_family
from mobilenet_search.arch.scaling import (
    BASE,
    DIRECTIONS,
    EFFICIENTNET,
    Multipliers,
    ScaledPoint,
    coefficient_grid,
    madds_targets,
    multipliers_of,
    scaling_grid,
    solve,
)
from mobilenet_search.arch.spec import ArchSpec, parse_arch
from mobilenet_search.errors import UserError
from mobilenet_search.results.records import (
    Outcome,
    Role,
    Strategy,
    StudySettings,
    TrialRecord,
    study_val_labels,
    trial_correct,
    trivial_accuracy,
)
from mobilenet_search.results.scaling_fit import (
    MIN_POINTS,
    RESAMPLES,
    Point,
    best_coefficients,
    fit_direction,
    plateau_summary,
    predict,
)
from mobilenet_search.results.stats import seed_noise, validation_noise
from mobilenet_search.search.config import SearchConfig
from mobilenet_search.search.space import SearchSpace

SCALING_ATTR = "mobilenet_search.scaling"  # study attribute: the plan (base, seeds, points, coefficients)
DIRECTION_ATTR = "scaling_direction"  # trial attributes (TrialRecord fields): the point that queued the trial
STEP_ATTR = "scaling_step"
COEFFICIENTS = "coefficients"  # the direction name of EfficientNet's grid points at phi = 1
DEFAULT_BASE = "mobilenet_v2_0.35_96"


def madds_limit(text: str, option: str) -> Budget:
    """A budget that limits MAdds (and perhaps parameters): what a scaling grid can be solved against."""
    budget = Budget.parse(text)
    if budget.get("madds") is None or budget.get("latency") is not None:
        raise UserError(f"invalid {option} {text!r}: scaling needs a MAdds limit (e.g. 300M-madds, optionally "
                        "with ,4M-params); a latency is only known once a network is measured")
    return budget


def scaling_config(seeds: int, **settings: Any) -> SearchConfig:
    """The settings of a scaling study of ``seeds`` seeds a network: ``settings`` as for :class:`SearchConfig`, with
    no reference networks and no noise repeats (the grid's own seeds measure the noise). What ``mobilenet-search
    scaling --budget`` and ``benchmarks/bench_scaling.py`` run.

    With ``strategy="supernet"`` inherited weights score a network the same every time: ``seeds`` above 1 is a
    :class:`UserError`.
    """
    if seeds > 1 and settings.get("strategy") == Strategy.SUPERNET.value:
        raise UserError(f"invalid --seeds {seeds} with --strategy supernet: inherited weights score a network "
                        "the same every time; seeds apply to --strategy scratch")
    return SearchConfig(**settings, references="none", noise_repeats=0)


def resolve_strategy(seeds: int, settings: dict[str, Any], space: SearchSpace, *, results_dir: Path,
                     stored: Callable[[SearchConfig], dict[str, Any] | None]) -> tuple[SearchConfig, str]:
    """``scaling --strategy auto`` resolved before anything is written: the study's settings, and one line saying which
    strategy it chose and why.

    ``settings`` are :func:`scaling_config`'s keywords (``strategy`` aside), with ``supernet_epochs`` only where
    the user gave it; ``stored(config)`` is the stored attributes of the study those settings would open, None
    where there is none yet. In this order:

    1. a study that exists keeps the strategy it was made with (and its supernet epochs): auto never turns a
       resumed study into another;
    2. ``seeds`` above 1 asks for repeated trainings, which inherited weights do not give: scratch;
    3. a finished supernet checkpoint of this space, data and proxy under ``results_dir/supernets/``
       (:func:`~mobilenet_search.search.strategies.find_supernet`: of ``supernet_epochs`` where given, else the
       one with the most epochs): supernet, with that checkpoint's epochs;
    4. otherwise scratch.
    """
    from mobilenet_search.results.records import CONFIG_ATTR
    from mobilenet_search.search.strategies import find_supernet

    given = settings.get("supernet_epochs")
    scratch = scaling_config(seeds, **{**settings, "strategy": Strategy.SCRATCH.value})
    found = find_supernet(scratch, space, results_dir=results_dir, epochs=given)
    supernet = dataclasses.replace(scratch, strategy=Strategy.SUPERNET.value,
                                   supernet_epochs=found[1] if found else scratch.supernet_epochs)
    use_supernet = found is not None and seeds == 1
    for config in (supernet, scratch) if use_supernet else (scratch, supernet):  # the default study name
        attrs = stored(config)                                                   # depends on the strategy
        if attrs is not None and CONFIG_ATTR in attrs:
            made = StudySettings.from_study(attrs)
            kept = scaling_config(seeds, **{**settings, "strategy": made.strategy,
                                            "supernet_epochs": given or made.supernet_epochs})
            return kept, (f"strategy auto: this study exists and keeps the strategy it was made with, "
                          f"{made.strategy}")
    if use_supernet:
        return supernet, (f"strategy auto: scoring with the supernet checkpoint {found[0]} ({found[1]} epoch(s)) "
                          "found for this space and data; --strategy scratch trains every point instead")
    if found is not None:
        return scratch, (f"strategy auto: training every point from scratch: --seeds {seeds} asks for repeats, "
                         f"which inherited weights do not give; --seeds 1 scores with the supernet checkpoint "
                         f"{found[0]} found for this space and data")
    epochs = f" of {given} epoch(s)" if given else ""
    return scratch, (f"strategy auto: training every point from scratch: no finished supernet checkpoint{epochs} of "
                     f"this space, data and proxy under {Path(results_dir) / 'supernets'}; --strategy supernet "
                     "trains one and scores the points with it")


def nominal_madds(budget: Budget) -> float:
    """The MAdds a budget names (300M for ``300M-madds``), not its exclusive bound (301M)."""
    number, unit = re.match(r"([\d.]+)([KMG]?)", budget.get("madds").text, re.IGNORECASE).groups()
    return float(Decimal(number) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[unit.upper()])


def resolve_base(text: str | None, space: SearchSpace, *, num_classes: int, in_channels: int) -> ArchSpec:
    """The base network: a paper network's name (``mobilenet_v2_0.35_96``), an architecture string or JSON,
    or by default the cheapest paper network the space holds (else the space's cheapest member).
    It must be a member of ``space``."""
    family = paper_family(space.family, num_classes=num_classes, in_channels=in_channels)
    if text is None:
        members = [spec for spec in family.values() if space.params_of(spec) is not None]
        base = min(members, key=count_madds) if members else space.extreme(num_classes=num_classes,
                                                                           in_channels=in_channels)
    elif text in family:
        base = family[text]
    else:
        base = parse_arch(text).replace(num_classes=num_classes, in_channels=in_channels)
    if space.params_of(base) is None:
        raise UserError(f"invalid --base {text!r}: not a member of space {space.name!r} (see `mobilenet-search "
                        f"space {space.name}` for its choices)")
    return base


def admitted(budget: Budget, spec: ArchSpec) -> bool:
    """Whether ``budget`` admits ``spec`` by its MAdds and parameters (a scaling budget has no latency)."""
    return budget.reason(madds=count_madds(spec), params=count_params(spec)) is None


class Grid:
    """The scaling plan of one study: its base, budget, seeds, and the points of each phase."""

    def __init__(self, base: ArchSpec, space: SearchSpace, budget: Budget, seeds: int) -> None:
        self.base, self.space, self.budget, self.seeds = base, space, budget, seeds
        base_madds = count_madds(base)
        if not self.admits(base):
            raise UserError(f"invalid --budget {budget}: below the base network's {format_count(base_madds)} MAdds "
                            f"({format_count(count_params(base))} params)")
        if not madds_targets(base_madds, nominal_madds(budget)):
            least = format_count(math.sqrt(2) * base_madds)
            raise UserError(f"invalid --budget {budget}: leaves no room to scale the base network "
                            f"({format_count(base_madds)} MAdds); give at least {least}")

    def admits(self, spec: ArchSpec) -> bool:
        """Whether the budget admits ``spec`` (MAdds and parameters)."""
        return admitted(self.budget, spec)

    def _solve(self, direction: str, target: float, coefficients: Multipliers, step: int) -> ScaledPoint:
        return solve(self.base, direction, target, coefficients=coefficients, snap=self.space.nearest,
                     admits=self.admits, step=step)

    def first_phase(self) -> list[tuple[ScaledPoint, Multipliers | None]]:
        """The base, the three single directions, and EfficientNet's coefficient grid at phi = 1."""
        points = [(p, None) for p in scaling_grid(self.base, nominal_madds(self.budget), directions=DIRECTIONS[:3],
                                                  snap=self.space.nearest, admits=self.admits)]
        target = 2 * count_madds(self.base)
        for index, coefficients in enumerate(coefficient_grid(), start=1):
            point = self._solve("compound", target, coefficients, index)
            points.append((point._replace(direction=COEFFICIENTS), coefficients))
        return points

    def compound(self, coefficients: Multipliers) -> list[ScaledPoint]:
        """Compound scaling with ``coefficients`` at every target of the grid."""
        targets = madds_targets(count_madds(self.base), nominal_madds(self.budget))
        return [self._solve("compound", target, coefficients, step) for step, target in enumerate(targets, start=1)]


def _record(point: ScaledPoint, coefficients: Multipliers | None = None) -> dict[str, Any]:
    return {"direction": point.direction, "step": point.step, "target_madds": point.target_madds,
            "madds": point.madds, "arch": point.spec.to_string(),
            "coefficients": None if coefficients is None else list(coefficients)}


def enqueue_points(study: optuna.Study, points: list[dict[str, Any]], space: SearchSpace, *, seeds: int, seed: int,
                   queued: set[str] = frozenset()) -> int:
    """Queue each distinct network of ``points`` not in ``queued`` once per seed (the first point naming it
    labels its trials); returns how many trials were queued."""
    count = 0
    for record in points:
        if record["arch"] in queued:
            continue
        queued = {*queued, record["arch"]}
        params = space.params_of(ArchSpec.from_string(record["arch"]))
        for k in range(seeds):
            # Another seed (k > 0) for the same network: its initial weights and training order.
            queued_record = TrialRecord(scaling_direction=record["direction"], scaling_step=record["step"],
                                        noise_seed=seed + k if k else None)
            study.enqueue_trial(params, user_attrs=queued_record.to_attrs())
            count += 1
    return count


def distinct(points: list[dict[str, Any]]) -> int:
    """How many distinct networks ``points`` name."""
    return len({p["arch"] for p in points})


def start_plan(study: optuna.Study, grid: Grid, config: SearchConfig) -> None:
    """Record the plan in a study just created and queue its first phase (run once, by the study's creator)."""
    points = [_record(point, coefficients) for point, coefficients in grid.first_phase()]
    enqueue_points(study, points, grid.space, seeds=grid.seeds, seed=config.seed)
    study.set_user_attr(SCALING_ATTR, {"base": grid.base.to_string(), "budget": str(grid.budget),
                                       "seeds": grid.seeds, "points": points, "compound": None})


def check_plan(study: optuna.Study, grid: Grid) -> dict[str, Any]:
    """The study's recorded plan; a study made with another base, budget or seeds is refused."""
    plan = study.user_attrs.get(SCALING_ATTR)
    if plan is None:
        raise UserError(f"study {study.study_name!r} is not a scaling study (made by `mobilenet-search scaling`)")
    ours = {"base": grid.base.to_string(), "budget": str(grid.budget), "seeds": grid.seeds}
    differ = [key for key, value in ours.items() if plan[key] != value]
    if differ:
        raise UserError(f"study {study.study_name!r} was made with other scaling settings ("
                        + ", ".join(f"{k}={plan[k]!r}" for k in differ) + "); use another --study name")
    return plan


def start_compound(study: optuna.Study, grid: Grid, config: SearchConfig, noise: float) -> int:
    """Phase 2, once: compound scaling with the coefficients phase 1 found most accurate, queued where a network
    is new. Returns how many trials it queued (0 when it was queued before)."""
    plan = study.user_attrs[SCALING_ATTR]
    if plan["compound"] is not None:
        return 0
    candidates = _coefficient_candidates(study, plan)
    best = best_coefficients(candidates, noise)
    coefficients = Multipliers(*best["coefficients"]) if best else EFFICIENTNET
    points = [_record(point, coefficients) for point in grid.compound(coefficients)]
    count = enqueue_points(study, points, grid.space, seeds=grid.seeds, seed=config.seed,
                           queued={p["arch"] for p in plan["points"]})
    study.set_user_attr(SCALING_ATTR, {**plan, "points": plan["points"] + points,
                                       "compound": {"coefficients": list(coefficients), "fit": best}})
    return count


def planned_trials(plan: dict[str, Any]) -> int:
    """How many trials the recorded plan queues: each distinct network once per seed."""
    return distinct(plan["points"]) * plan["seeds"]


# -- reading a scaling study -------------------------------------------------------------------------


def point_runs(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, TrialRecord]]:
    """Every trained run of a scaling study's networks (each seed of each), with its record, by trial number: what
    the fit reads. A confirmation (a supernet-scored point retrained from scratch) is not another seed of its
    point: :func:`confirmations` reads it."""
    return [(trial, record) for trial in study.get_trials(deepcopy=False)
            if (record := TrialRecord.from_trial(trial)).outcome == Outcome.TRAINED.value
            and record.role is not Role.CONFIRMATION]


def _measured(study: optuna.Study) -> dict[str, Point]:
    """Per network (its arch string), its MAdds and per-image validation correctness, one row per seed
    (:func:`point_runs`)."""
    rows: dict[str, list[np.ndarray]] = {}
    madds: dict[str, float] = {}
    for trial, record in point_runs(study):
        correct = trial_correct(trial)
        if correct is None:
            continue
        rows.setdefault(record.arch, []).append(correct)
        madds[record.arch] = float(record.madds)
    return {arch: Point(madds[arch], np.array(vectors, dtype=bool)) for arch, vectors in rows.items()}


def _coefficient_candidates(study: optuna.Study, plan: dict[str, Any]) -> list[tuple[Multipliers, Point]]:
    """Networks scaled to about twice the base's MAdds with alpha beta^2 gamma^2 = 2: the coefficient grid, and the
    single directions' first doubling (width (1, sqrt 2, 1), resolution (1, 1, sqrt 2), depth (2, 1, 1))."""
    measured = _measured(study)
    base_madds = next(p["madds"] for p in plan["points"] if p["direction"] == BASE)
    pure = {"depth": Multipliers(depth=2.0), "width": Multipliers(width=math.sqrt(2)),
            "resolution": Multipliers(resolution=math.sqrt(2))}
    candidates, seen = [], set()
    for p in plan["points"]:
        if p["direction"] == COEFFICIENTS:
            coefficients = Multipliers(*p["coefficients"])
        elif p["direction"] in pure and p["step"] == 1 and p["target_madds"] == round(2 * base_madds):
            coefficients = pure[p["direction"]]
        else:
            continue
        if p["arch"] in measured and p["arch"] not in seen and p["arch"] != plan["base"]:
            seen.add(p["arch"])
            candidates.append((coefficients, measured[p["arch"]]))
    return candidates


def noise_floor(study: optuna.Study) -> dict[str, Any]:
    """The study's noise floor, as the report defines it: the larger of the seed-to-seed sd (pooled over every
    network trained with several seeds) and the validation split's binomial standard error at the mean accuracy;
    at least one image's worth of accuracy (``1 / images``)."""
    measured = _measured(study)
    if not measured:
        raise UserError(f"study {study.study_name!r} has no trained network with per-image records: nothing to fit")
    seed_sd = seed_noise({arch: point.correct.mean(axis=1).tolist() for arch, point in measured.items()})
    size = next(iter(measured.values())).correct.shape[1]
    accuracy = float(np.mean([p.accuracy for p in measured.values()]))
    noise = validation_noise(accuracy, size, seed_sd)
    # At accuracy 0 or 1 the binomial se is 0, yet no split measures a difference finer than one image.
    noise["floor"] = max(noise["floor"], 1 / size)
    return {"seed_sd": seed_sd, **noise, "val_size": size}


def analyse(study: optuna.Study, *, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Fit every direction of a scaling study (see :mod:`mobilenet_search.results.scaling_fit`) as a JSON-ready
    dict: ``directions`` (a fit, or why none), ``noise``, ``trivial``, ``coefficients``, ``plateau``, the
    ``strategy`` that scored the points and, for ``supernet``, the ``confirmations`` (:func:`confirmations`).
    A study with no direction of :data:`MIN_POINTS` trained networks is a :class:`UserError`."""
    plan = study.user_attrs.get(SCALING_ATTR)
    if plan is None:
        raise UserError(f"study {study.study_name!r} is not a scaling study (made by `mobilenet-search scaling`)")
    measured = _measured(study)
    noise = noise_floor(study)
    labels = study_val_labels(study)
    trivial = trivial_accuracy(labels) if labels is not None else 0.0
    base = next(p for p in plan["points"] if p["direction"] == BASE)
    directions: dict[str, Any] = {}
    for direction in DIRECTIONS:
        archs = {base["arch"]} | {p["arch"] for p in plan["points"] if p["direction"] == direction}
        points = [measured[a] for a in archs if a in measured]
        if len({p.madds for p in points}) < MIN_POINTS:
            planned = "not yet queued" if direction == "compound" and plan["compound"] is None else (
                f"{len({p.madds for p in points})} distinct trained networks of {len(archs)} planned")
            directions[direction] = {"fit": None, "reason": f"too few points to fit ({planned}; {MIN_POINTS} needed)"}
            continue
        fit = fit_direction(points, base["madds"], floor=trivial, noise=noise["floor"], resamples=resamples)
        directions[direction] = {"fit": fit, "reason": None}
    fits = {name: d["fit"] for name, d in directions.items() if d["fit"] is not None}
    if not fits:
        raise UserError(f"study {study.study_name!r} has too few points to fit: no direction has {MIN_POINTS} "
                        f"trained networks of different MAdds ({len(measured)} networks trained)")
    compound = plan["compound"] or {}
    return {"study": study.study_name, "base": base, "budget": plan["budget"], "seeds": plan["seeds"],
            "points": plan["points"], "trivial": trivial, "noise": noise, "directions": directions,
            "coefficients": {"fitted": compound.get("coefficients"), "fit": compound.get("fit"),
                             "efficientnet": list(EFFICIENTNET)},
            "plateau": plateau_summary(fits, noise["floor"]),
            "strategy": getattr(StudySettings.from_study(study), "strategy", Strategy.SCRATCH.value),
            "confirmations": confirmations(study)}


def budget_range(analysis: dict[str, Any]) -> tuple[float, float]:
    """The MAdds :func:`recommend` answers for: from the base network up to the study's own budget (or its largest
    measured network, where that is larger)."""
    top = max(d["fit"]["measured_madds"][1] for d in analysis["directions"].values() if d["fit"] is not None)
    return analysis["base"]["madds"], max(top, nominal_madds(madds_limit(analysis["budget"], "--budget")))


def recommend(analysis: dict[str, Any], madds: float, space: SearchSpace,
              admits: Callable[[ArchSpec], bool], *, option: str = "--at") -> dict[str, Any]:
    """The scaled network for a budget of ``madds``: the direction whose fit predicts the most accuracy there,
    its network nearest ``madds`` among those ``admits`` accepts, the multipliers, the predicted accuracy with
    its interval, and, when the budget lies past the knee of the plateau, the cheapest network on it.
    A budget between the largest measured network and the study's own ``--budget`` (where the space reaches no
    further along the fitted directions) gets the best of the measured range, and ``reach`` says so.
    ``option`` names the input in the refusal of a budget outside the study's range."""
    base = ArchSpec.from_string(analysis["base"]["arch"])
    fits = {name: d["fit"] for name, d in analysis["directions"].items() if d["fit"] is not None}
    top = max(fit["measured_madds"][1] for fit in fits.values())
    low, high = budget_range(analysis)
    if madds > high:
        raise UserError(f"invalid {option} {format_count(madds)} MAdds: above the study's --budget "
                        f"{analysis['budget']} (its nets reach {format_count(top)} MAdds); the fits do not "
                        "extrapolate")
    if madds < low:
        raise UserError(f"invalid {option} {format_count(madds)} MAdds: below the base network's "
                        f"{format_count(low)}")
    coefficients = Multipliers(*(analysis["coefficients"]["fitted"] or EFFICIENTNET))
    target = min(madds, top)
    covering = {name: fit for name, fit in fits.items() if fit["measured_madds"][1] >= target}
    direction = max(covering, key=lambda name: predict(covering[name], target)[0])
    reach = top if madds > top else None  # a budget past the measured range: never a net past the fits
    ceiling = math.inf if reach is None else reach

    def net(direction: str, target: float, least: float = 0.0) -> dict[str, Any]:
        point = solve(base, direction, target, coefficients=coefficients, snap=space.nearest,
                      admits=lambda spec: admits(spec) and least <= count_madds(spec) <= ceiling)
        accuracy, interval = predict(fits[direction], point.madds)
        return {"direction": direction, "arch": point.spec.to_string(), "madds": point.madds,
                "multipliers": multipliers_of(point.spec, base)._asdict(), "accuracy": accuracy, "interval": interval}

    answer = {"at_madds": madds, **net(direction, target), "plateau": None, "reach": reach}
    plateau = analysis["plateau"]
    if plateau and plateau["knee_measured"] and madds >= plateau["knee"]:
        try:  # the cheapest network at or past the knee, within the budget asked about
            cheapest = {**net(plateau["cheapest_direction"], plateau["knee"], least=plateau["knee"]), "past_knee": True}
        except ValueError:  # the space has none between the knee and the budget: the answer's own network
            cheapest = {**{key: answer[key] for key in ("direction", "arch", "madds", "multipliers", "accuracy",
                                                        "interval")}, "past_knee": False}
        answer["plateau"] = {"knee": plateau["knee"], "cheapest": cheapest}
    return answer


def recommend_at(analysis: dict[str, Any], text: str, space: SearchSpace, *, option: str = "--at") -> dict[str, Any]:
    """:func:`recommend` for a budget given as text (``150M-madds``, optionally ``,4M-params``): the nets it
    admits, nearest the MAdds it names. A budget without a MAdds limit, or above the study's budget, is a
    :class:`UserError` naming ``option``. What ``scaling --at``, ``export --scaled`` and the dashboard ask."""
    budget = madds_limit(text, option)
    return recommend(analysis, nominal_madds(budget), space, admits=lambda spec: admitted(budget, spec), option=option)


def confirmations(study: optuna.Study) -> list[dict[str, Any]]:
    """The points of a supernet-scored study retrained from scratch: per confirmed network, its MAdds, its
    inherited accuracy (what the fit uses) and its accuracy trained from scratch under the proxy."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    found = []
    for trial in trials:
        record = TrialRecord.from_trial(trial)
        scored = by_number.get(record.confirms)
        if record.role is not Role.CONFIRMATION or record.outcome != Outcome.TRAINED.value or scored is None:
            continue
        source = TrialRecord.from_trial(scored)
        found.append({"arch": source.arch, "madds": float(source.madds), "direction": source.scaling_direction,
                      "trial": scored.number, "inherited": float(source.accuracy), "scratch": float(record.accuracy),
                      "confirmation": trial.number})
    return sorted(found, key=lambda c: c["madds"])


def run_scaling(config: SearchConfig, grid: Grid, *, storage: str, study_name: str,
                run: Callable[..., optuna.Study] | None = None,
                on_start: Callable[[optuna.Study], None] | None = None, **options: Any) -> optuna.Study:
    """Create (or resume) the scaling study and train its grid in two phases (see the module doc).

    ``run(config, storage=..., study_name=..., trials=..., on_create=..., on_start=..., **options)`` runs
    one phase; it defaults to :func:`mobilenet_search.search.study.run_search` (the CLI passes it wrapped
    in its progress bar). A resumed study trains only what is not yet trained: its finished trials count
    towards each phase's target, and an interrupted trial is queued again.
    """
    from mobilenet_search.search.study import run_search

    run = run or run_search
    first = distinct([_record(point) for point, _ in grid.first_phase()]) * grid.seeds

    def started(study: optuna.Study) -> None:
        check_plan(study, grid)
        if on_start is not None:
            on_start(study)

    study = run(config, storage=storage, study_name=study_name, trials=first,
                on_create=lambda s: start_plan(s, grid, config), on_start=started, **options)
    try:
        noise = noise_floor(study)["floor"]
    except UserError:  # nothing trained in phase 1 (every trial failed): nothing to pick coefficients from
        noise = 0.0
    start_compound(study, grid, config, noise)
    total = planned_trials(study.user_attrs[SCALING_ATTR])
    return run(config, storage=storage, study_name=study_name, trials=total, on_start=on_start, **options)

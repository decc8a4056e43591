"""Search spaces as data files: load and validate them, and describe what they hold.

A space file (YAML; those shipped with the tool are the top-level ``search_spaces/*.yaml``) fixes the
family and gives, for each field of :class:`ArchSpec` and each stage's
``expansion``/``channels``/``repeats``/``stride``, either one value or a list of choices::

    family: mobilenet_v2
    width_mult: [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]
    resolution: [96, 128, 160, 192, 224]
    stages:
      - {expansion: 1, channels: 16, repeats: 1, stride: 1}
      - {expansion: [3, 4, 6], channels: [16, 24, 32], repeats: [1, 2, 3], stride: 2}

Each field with several choices becomes one categorical parameter, named like the field
(``width_mult``, ``stage2.expansion``); :meth:`SearchSpace.spec` turns an assignment of
those parameters into an :class:`ArchSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from mobilenet_search.arch.cost import count_madds
from mobilenet_search.arch.spec import FAMILIES, ArchSpec, StageSpec
from mobilenet_search.errors import UserError
from mobilenet_search.files import read_text_file


def _spaces_dir() -> Path:
    """Where the shipped spaces are: ``mobilenet_search/spaces/`` in an installed wheel (pyproject.toml maps the
    top-level ``search_spaces/`` there), else that top-level folder itself (a clone: editable install or
    ``PYTHONPATH``)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "spaces"
    return installed if any(installed.glob("*.yaml")) else package.parent / "search_spaces"


SPACES_DIR = _spaces_dir()
# Fields a space may set; num_classes and in_channels come from the data, not the space.
GLOBAL_FIELDS = ("width_mult", "resolution", "stem_channels", "head_channels", "activation",
                 "linear_bottleneck", "head", "dropout", "round_nearest")
STAGE_FIELDS = ("expansion", "channels", "repeats", "stride")
_NEUTRAL_STAGE = {"expansion": 1, "channels": 8, "repeats": 1, "stride": 1}
_TOP_KEYS = {"name", "description", "family", "stages", *GLOBAL_FIELDS}


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the family, and the choices of every parameter, in order."""

    name: str
    family: str
    choices: tuple[tuple[str, tuple[Any, ...]], ...]  # (parameter, its choices), file order
    num_stages: int
    description: str = ""

    @property
    def parameters(self) -> dict[str, tuple[Any, ...]]:
        """Every parameter with its choices, one-choice (fixed) parameters included."""
        return dict(self.choices)

    @property
    def searched(self) -> dict[str, tuple[Any, ...]]:
        """The parameters that have more than one choice: what a sampler decides."""
        return {name: values for name, values in self.choices if len(values) > 1}

    @property
    def size(self) -> int:
        """Number of distinct assignments (members) of the space."""
        return math.prod(len(values) for _, values in self.choices)

    def spec(self, params: Mapping[str, Any] | None = None, *, num_classes: int = 1000,
             in_channels: int = 3) -> ArchSpec:
        """The member of the space that ``params`` picks; unnamed parameters take their first choice."""
        params = params or {}
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise UserError(f"space {self.name!r} has no parameter(s) {', '.join(unknown)}")
        values = {name: params.get(name, choices[0]) for name, choices in self.choices}
        stages = tuple(
            StageSpec(*(values[f"stage{i + 1}.{field}"] for field in STAGE_FIELDS)) for i in range(self.num_stages)
        )
        fields = {name: values[name] for name in GLOBAL_FIELDS if name in values}
        return ArchSpec(family=self.family, stages=stages, num_classes=num_classes, in_channels=in_channels,
                        **fields)

    def sample(self, trial: Any, *, num_classes: int = 1000, in_channels: int = 3) -> ArchSpec:
        """Let an Optuna trial choose every searched parameter (``suggest_categorical``)."""
        params = {name: trial.suggest_categorical(name, list(values)) for name, values in self.searched.items()}
        return self.spec(params, num_classes=num_classes, in_channels=in_channels)

    def params_of(self, spec: ArchSpec) -> dict[str, Any] | None:
        """The searched parameters that give ``spec``, or None when the space cannot express it."""
        candidate = {name: _value_of(spec, name) for name in self.parameters}
        if any(candidate[name] not in choices for name, choices in self.choices):
            return None
        if self.spec(candidate, num_classes=spec.num_classes, in_channels=spec.in_channels) != spec:
            return None
        return {name: candidate[name] for name in self.searched}

    def nearest(self, spec: ArchSpec) -> ArchSpec:
        """The member of the space nearest ``spec``: each searched number at the choice nearest its value in
        ratio (a scaled network snapped into the space), every other parameter as in ``spec``'s own member.

        ``spec`` must agree with the space wherever a choice is not a number (activation, head, ...).
        """
        params = {}
        for name, values in self.searched.items():
            value = _value_of(spec, name)
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]
            if isinstance(value, (int, float)) and value > 0 and len(numbers) == len(values):
                params[name] = min(values, key=lambda v, x=value: (abs(math.log(v / x)), v))
            else:
                params[name] = value
        return self.spec(params, num_classes=spec.num_classes, in_channels=spec.in_channels)

    def members(self) -> Iterator[dict[str, Any]]:
        """Every assignment of the searched parameters (use only on small spaces)."""
        names = list(self.searched)
        for combo in product(*self.searched.values()):
            yield dict(zip(names, combo, strict=True))

    def extreme(self, cost: Callable[[ArchSpec], float] = count_madds, *, largest: bool = False,
                **spec_kwargs: Any) -> ArchSpec:
        """The cheapest (or most expensive) member by ``cost``, without enumerating the space.

        MAdds and parameters never fall as width, resolution, t, c or n grow, nor rise with
        stride, so the extreme member takes each parameter's extreme choice. Rounding to
        multiples of 8 makes neighbouring choices tie at some settings, so this is a
        coordinate search repeated until stable, ties going to the extreme value. A test
        checks it against brute-force enumeration.
        """
        pick = max if largest else min
        params: dict[str, Any] = {}
        for _ in range(len(self.searched) + 1):
            previous = dict(params)
            for name, values in self.searched.items():
                params[name] = pick(values, key=lambda v, n=name: (
                    cost(self.spec({**params, n: v}, **spec_kwargs)), _order(v)))
            if params == previous:
                break
        return self.spec(params, **spec_kwargs)


def _order(value: Any) -> float:
    """Tie-break order for choices: numbers by value, null lowest, other choices equal."""
    if value is None:
        return float("-inf")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _value_of(spec: ArchSpec, name: str) -> Any:
    if name.startswith("stage"):
        index, field = name[len("stage"):].split(".")
        stages = spec.stages
        return getattr(stages[int(index) - 1], field) if int(index) <= len(stages) else None
    return getattr(spec, name)


def available_spaces() -> list[str]:
    """Names of the spaces shipped with the tool (``search_spaces/*.yaml``; ``mobilenet-search space --list``)."""
    return sorted(path.stem for path in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a space by name (``mobilenetv2``) or path; a bad file is a :class:`UserError`.

    >>> load_space("mobilenetv2").family
    'mobilenet_v2'
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UserError(f"unknown search space {str(name_or_path)!r}: choose one of "
                            f"{', '.join(available_spaces())} or give a path to a .yaml file")
    text = read_text_file(path, "search space file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    try:
        return parse_space(data, default_name=path.stem)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse_space(data: Any, default_name: str = "space") -> SearchSpace:
    """Validate a space given as a dict (a parsed YAML file)."""
    if not isinstance(data, dict):
        raise UserError("expected a mapping of keys such as family, width_mult, resolution, stages")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r}: expected one of {', '.join(sorted(_TOP_KEYS))}")
    family = data.get("family")
    if family not in FAMILIES:
        raise UserError(f"family: {family!r} is not one of {', '.join(FAMILIES)}")
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise UserError("stages: expected a non-empty list of {expansion, channels, repeats, stride} mappings")

    choices: list[tuple[str, tuple[Any, ...]]] = []
    for name in GLOBAL_FIELDS:
        if name in data:
            choices.append((name, _choices(data[name], name)))
    for index, stage in enumerate(stages):
        where = f"stages[{index}]"
        if not isinstance(stage, dict):
            raise UserError(f"{where}: expected a mapping with keys {', '.join(STAGE_FIELDS)}")
        bad = sorted(set(map(str, stage)) - set(STAGE_FIELDS))
        missing = [f for f in STAGE_FIELDS if f not in stage]
        if bad or missing:
            problem = f"unknown key {bad[0]!r}" if bad else f"missing key {missing[0]!r}"
            raise UserError(f"{where}: {problem}; a stage has exactly {', '.join(STAGE_FIELDS)}")
        for field in STAGE_FIELDS:
            choices.append((f"stage{index + 1}.{field}", _choices(stage[field], f"{where}.{field}")))

    space = SearchSpace(name=str(data.get("name", default_name)), family=family, choices=tuple(choices),
                        num_stages=len(stages), description=str(data.get("description", "")).strip())
    # Validate each choice on its own through ArchSpec itself, so ranges live in one place.
    make = ArchSpec.mobilenet_v2 if family == "mobilenet_v2" else ArchSpec.mobilenet_v1
    for name, values in space.choices:
        key, field = name, name
        if name.startswith("stage"):
            number, field = name[len("stage"):].split(".")
            key = f"stages[{int(number) - 1}].{field}"
        for value in values:
            try:
                if key == field:
                    make(**{field: value})
                else:
                    make(stages=[StageSpec(**{**_NEUTRAL_STAGE, field: value})])
            except (UserError, TypeError) as exc:
                raise UserError(f"{key}: {exc}") from None
    return space


def _choices(value: Any, key: str) -> tuple[Any, ...]:
    values = tuple(value) if isinstance(value, list) else (value,)
    if not values:
        raise UserError(f"{key}: an empty list of choices")
    if len(set(map(repr, values))) != len(values):
        raise UserError(f"{key}: repeated choices in {list(values)}")
    for v in values:
        if not isinstance(v, (int, float, str, bool)) and v is not None:
            raise UserError(f"{key}: {v!r} is not a number, string, boolean or null")
    return values


# Fields whose choices change which layers exist or what they compute, not only their widths or depths.
_STRUCTURAL_FIELDS = ("activation", "linear_bottleneck", "head", "round_nearest")


def supernet_envelope(space: SearchSpace, *, num_classes: int, in_channels: int) -> ArchSpec:
    """The space's largest network, every elastic field at its maximum: the weights a supernet shares.

    Width, resolution, stem and head widths, and each stage's expansion t, width c and depth n
    may vary; a member then takes the first channels and blocks of the envelope. Channel rounding
    never falls as width or c grow, so the largest choices give the widest layers. A space that
    varies anything else (activation, bottleneck, head, channel divisor, strides, a head layer
    present in some members only, expansion 1 beside expansions above 1 in a stage) cannot share
    weights: a :class:`UserError` names the first such parameter.

    >>> envelope = supernet_envelope(load_space("tiny"), num_classes=4, in_channels=1)
    >>> envelope.width_mult, [s.expansion for s in envelope.stages], [s.repeats for s in envelope.stages]
    (0.5, [1, 4, 4], [1, 2, 1])
    """
    for name, values in space.searched.items():
        field = name.split(".")[-1]
        mixed_expansion = field == "expansion" and 1 in values
        head_layer = name == "head_channels" and None in values
        if field in _STRUCTURAL_FIELDS or field == "stride" or mixed_expansion or head_layer:
            raise UserError(f"space {space.name!r} cannot share weights in a supernet: {name} varies "
                            f"({', '.join(map(str, values))}); a supernet needs it fixed")
    largest = {name: max(values) for name, values in space.searched.items()}
    return space.spec(largest, num_classes=num_classes, in_channels=in_channels)


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """A space's content as JSON-able data (what a study stores, so an edited file cannot change it)."""
    return {"name": space.name, "family": space.family, "description": space.description,
            "num_stages": space.num_stages, "choices": [[name, list(values)] for name, values in space.choices]}


def space_from_dict(data: Mapping[str, Any]) -> SearchSpace:
    """The space :func:`space_to_dict` stored."""
    return SearchSpace(name=data["name"], family=data["family"], num_stages=int(data["num_stages"]),
                       choices=tuple((name, tuple(values)) for name, values in data["choices"]),
                       description=data.get("description", ""))


def changed_fields(old: SearchSpace, new: SearchSpace) -> list[str]:
    """The parameters (and ``family``) whose choices differ between two spaces, in file order; [] if none."""
    changed = ["family"] if old.family != new.family else []
    before, after = old.parameters, new.parameters
    # JSON keeps lists, never tuples, and a stored 1.0 may come back as 1: compare the values' text.
    for name in [*before, *(n for n in after if n not in before)]:
        if [repr(v) for v in before.get(name, ())] != [repr(v) for v in after.get(name, ())]:
            changed.append(name)
    return changed

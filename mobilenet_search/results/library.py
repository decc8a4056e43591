"""The model library: named architectures, ready to build with one call.

A library is a directory of ``<name>.json`` files, one per entry, each holding an
:class:`ArchSpec`, where it came from and what was measured (see :func:`save`). It also
holds the papers' reference networks as built-in entries -- MobileNetV2 at every width x
resolution of Sandler et al. 2018 and MobileNetV1 1.0/224 -- generated from
:func:`mobilenet_search.arch.references.paper_family` rather than stored, so they need no file::

    >>> from mobilenet_search import library
    >>> library.load("mobilenet_v2_0.75_160").width_mult
    0.75
    >>> model = library.build("mobilenet_v1_1.0_224", num_classes=10)

The directory is ``model_library/`` in the current directory unless ``library=`` (``--library DIR``)
or the environment variable ``MOBILENET_SEARCH_LIBRARY`` names another. Entries are plain
JSON (never pickles), written atomically; names are letters, digits and ``._-``. A built-in
name can never be taken by a user entry, ``force`` or not: a script that builds
``mobilenet_v2_1.0_224`` must always get the paper's network.

An entry may also hold trained weights, ``<name>.safetensors`` beside its JSON (tensors only,
never a pickle; an export from a supernet study writes them): ``build(name, weights="trained")``
loads them, strictly, following torchvision's ``weights=`` convention (``None``: fresh initial
weights). The entry's JSON records the file's SHA-256, so weights that do not belong to the
entry are refused rather than silently loaded.

An exported entry also records how an image becomes the network's input
(``metadata["preprocessing"]``, a :class:`~mobilenet_search.measure.preprocessing.Preprocessing`):
``get(name).transforms()`` applies it to a raw image with the tool's own functions, as
torchvision's ``Weights.transforms()`` does.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilenet_search.arch.cost import count_madds, count_params
from mobilenet_search.arch.references import paper_family
from mobilenet_search.arch.spec import ArchSpec
from mobilenet_search.errors import UserError
from mobilenet_search.files import atomic_write_text, check_safe_name, is_safe_name
from mobilenet_search.measure.preprocessing import Preprocessing
from mobilenet_search.results.records import StudySettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import torch
    from torch import nn

FORMAT_VERSION = 1
ENV_VAR = "MOBILENET_SEARCH_LIBRARY"
WEIGHTS = ("trained",)  # what build(weights=...) accepts besides None, as torchvision's weights= does
DEFAULT_DIR = Path("model_library")  # in the current directory: a folder the user owns, never inside the package
_BUILTIN_SOURCES = {
    "mobilenet_v2": "MobileNetV2, Sandler et al. 2018 (Table 2; the widths and resolutions of Table 6)",
    "mobilenet_v1": "MobileNetV1, Howard et al. 2017 (Table 1)",
}


@dataclass(frozen=True)
class Entry:
    """One library entry: its name, architecture and metadata (``source``, ``metrics``, ...).

    ``path`` is the entry's file, None for a built-in. ``torchvision`` holds the keyword
    arguments of ``torchvision.models.MobileNetV2`` that build the same network, or None
    where torchvision cannot (see :func:`torchvision_kwargs`). ``weights`` describes the
    entry's trained weights file (``file``, ``sha256``), None when it has none.
    """

    name: str
    spec: ArchSpec
    metadata: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False
    path: Path | None = None
    weights: dict[str, Any] | None = None

    @property
    def torchvision(self) -> dict[str, Any] | None:
        return torchvision_kwargs(self.spec)

    @property
    def has_weights(self) -> bool:
        """Whether ``build(name, weights="trained")`` can load trained weights for this entry."""
        return self.weights is not None

    @property
    def weights_path(self) -> Path | None:
        """The entry's safetensors file, beside its JSON; None when it has no weights."""
        return None if self.weights is None or self.path is None else self.path.parent / self.weights["file"]

    @property
    def study_settings(self) -> StudySettings | None:
        """The settings of the study the entry was exported from (``metadata["study_config"]``); None for a
        built-in or an entry that records none. Checked when the entry is read (:func:`_metadata_problem`)."""
        stored = self.metadata.get("study_config")
        return None if stored is None else StudySettings.from_dict(stored)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How an image becomes this network's input, as the study scored it (``metadata["preprocessing"]``,
        written by export); None for a built-in or an entry that records none."""
        if self.metadata.get("preprocessing") is not None:
            return Preprocessing.from_dict(self.metadata["preprocessing"])
        # An entry exported before entries recorded it keeps the statistics beside its weights; the decode,
        # resize and crop are the ones the tool has always used.
        legacy = (self.metadata.get("weights") or {}).get("input") or {}
        if {"resolution", "mean", "std"} <= legacy.keys():
            return Preprocessing(size=int(legacy["resolution"]), channels=self.spec.in_channels,
                                 mean=tuple(legacy["mean"]), std=tuple(legacy["std"]))
        return None

    def transforms(self) -> Callable[[Any], torch.Tensor]:
        """A function from a raw image (a Pillow image, or a uint8 tensor H×W, C×H×W or N×C×H×W) to this
        network's input, by the tool's own decode, resize and normalisation (see
        :meth:`Preprocessing.transforms`), as torchvision's ``Weights.transforms()``::

            entry = library.get("mnv2-300M")
            model, prepare = library.build("mnv2-300M", weights="trained"), entry.transforms()
            logits = model(prepare(PIL.Image.open("cell.png")).unsqueeze(0))

        An entry that records no preprocessing is a :class:`UserError`.
        """
        preprocessing = self.preprocessing
        if preprocessing is None:
            why = "a built-in holds the paper's architecture only" if self.builtin else \
                "exported from a study from before studies recorded it, or saved by hand"
            raise UserError(f"library entry {self.name!r} records no input preprocessing ({why})")
        return preprocessing.transforms()


def library_dir(library: str | Path | None = None) -> Path:
    """The library directory: ``library`` if given, else ``$MOBILENET_SEARCH_LIBRARY``, else ``./model_library/``."""
    env = os.environ.get(ENV_VAR)
    folder = Path(library) if library is not None else Path(env) if env else DEFAULT_DIR
    if folder.exists() and not folder.is_dir():
        raise UserError(f"invalid library folder {str(folder)!r}: it is a file, not a folder")
    return folder


def check_name(name: str) -> str:
    """``name`` if it is a valid entry name; a :class:`UserError` otherwise.

    Names become file names, so nothing that could leave the directory is accepted.

    >>> check_name("mnv2-300M_v1.2")
    'mnv2-300M_v1.2'
    """
    return check_safe_name(name, "entry name")


def _builtins() -> dict[str, ArchSpec]:
    """The built-in entries, generated from the papers' families (cheap: specs are arithmetic)."""
    v1 = {name: spec for name, spec in paper_family("mobilenet_v1").items()
          if spec.width_mult == 1.0 and spec.resolution == 224}
    return {**paper_family("mobilenet_v2"), **v1}


def builtin_names() -> builtins.list[str]:
    """Names of the built-in entries, MobileNetV2 (cheapest width first) then MobileNetV1."""
    return builtins.list(_builtins())


def torchvision_kwargs(spec: ArchSpec) -> dict[str, Any] | None:
    """Keyword arguments of ``torchvision.models.MobileNetV2`` that build ``spec``'s network, or None.

    torchvision's class fixes what the paper fixes: 3 input channels, a 32-channel stem, the
    1280-channel last convolution, ReLU6, linear bottlenecks and a linear classifier; a spec
    that changes any of them has no torchvision equivalent. The resolution is not a
    constructor argument: feed ``spec.resolution`` square images.

    >>> kwargs = torchvision_kwargs(ArchSpec.mobilenet_v2(0.5, 160, num_classes=10))
    >>> kwargs["width_mult"], kwargs["inverted_residual_setting"][1]
    (0.5, [6, 24, 2, 2])
    """
    if (spec.family, spec.in_channels, spec.stem_channels, spec.head_channels, spec.activation,
            spec.linear_bottleneck, spec.head) != ("mobilenet_v2", 3, 32, 1280, "relu6", True, "fc"):
        return None
    return {
        "num_classes": spec.num_classes,
        "width_mult": spec.width_mult,
        "inverted_residual_setting": [[s.expansion, s.channels, s.repeats, s.stride] for s in spec.stages],
        "round_nearest": spec.round_nearest,
        "dropout": spec.dropout,
    }


def _path(name: str, library: str | Path | None) -> Path:
    return library_dir(library) / f"{check_name(name)}.json"


def _read(path: Path) -> Entry:
    """An entry from its file; anything malformed is a :class:`UserError` naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"library entry {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(data, dict) or "spec" not in data:
        raise UserError(f"library entry {str(path)!r} is not an entry: expected a JSON object with a spec")
    version = data.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise UserError(f"library entry {str(path)!r} has format_version {version!r}; this mobilenet-search "
                        f"reads 1 to {FORMAT_VERSION} (a newer version may have written it)")
    try:
        spec = ArchSpec.from_dict(data["spec"])
    except (UserError, TypeError) as exc:
        raise UserError(f"library entry {str(path)!r}: {exc}") from None
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise UserError(f"library entry {str(path)!r}: metadata must be a JSON object")
    problem = _metadata_problem(metadata)
    if problem:
        raise UserError(f"library entry {str(path)!r}: {problem}")
    weights = data.get("weights")
    if weights is not None and not (isinstance(weights, dict) and isinstance(weights.get("sha256"), str)
                                    and weights.get("file") == _weights_file(path.stem)):
        raise UserError(f"library entry {str(path)!r}: weights must be an object with file "
                        f"{_weights_file(path.stem)!r} and its sha256")
    return Entry(path.stem, spec, metadata, builtin=False, path=path, weights=weights)


# Metadata that readers format as numbers (library list and show): each must be a number or null.
_NUMBERS = {"metrics": ("accuracy", "latency_ms", "madds", "params", "latency_batch", "epochs", "proxy_resolution"),
            "weights": ("accuracy", "trial")}


def _metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why an entry's metadata cannot be shown (a wrong type where readers expect a number or an object), or None."""
    for key in ("metrics", "weights", "source", "study_config", "preprocessing"):
        if metadata.get(key) is not None and not isinstance(metadata[key], dict):
            return f"metadata.{key} must be a JSON object, not {json.dumps(metadata[key])[:40]}"
    for key, fields in _NUMBERS.items():
        for name in fields:
            value = (metadata.get(key) or {}).get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                return f"metadata.{key}.{name} must be a number, not {json.dumps(value)[:40]}"
    if metadata.get("study_config") is not None:
        try:
            StudySettings.from_dict(metadata["study_config"])
        except (UserError, TypeError, ValueError) as exc:
            return f"metadata.study_config is not a study's settings: {str(exc)[:200]}"
    if metadata.get("preprocessing") is not None:
        try:
            Preprocessing.from_dict(metadata["preprocessing"])
        except (UserError, TypeError) as exc:
            return f"metadata.preprocessing: {exc}"
    return None


def _weights_file(name: str) -> str:
    return f"{name}.safetensors"


def get(name: str, *, library: str | Path | None = None) -> Entry:
    """The entry called ``name``: a built-in, or the file ``<name>.json`` in the library.

    A missing entry is a :class:`UserError` that lists what there is.
    """
    library_dir(library)  # a file given as the library is refused whatever the name
    specs = _builtins()
    if name in specs:
        spec = specs[name]
        return Entry(name, spec, {"source": {"builtin": _BUILTIN_SOURCES[spec.family]},
                                  "metrics": {"madds": count_madds(spec), "params": count_params(spec)}},
                     builtin=True)
    path = _path(name, library)
    if not path.is_file():
        users = _user_names(library)
        known = f"entries in {library_dir(library)}: {', '.join(users)}" if users else \
            f"no user entries in {library_dir(library)}"
        raise UserError(f"no library entry {name!r} ({known}; built-ins: mobilenet_v2_W_R, mobilenet_v1_1.0_224; "
                        f"see `mobilenet-search library list`)")
    return _read(path)


def load(name: str, *, library: str | Path | None = None) -> ArchSpec:
    """The architecture of entry ``name``.

    >>> load("mobilenet_v2_1.0_224") == ArchSpec.mobilenet_v2()
    True
    """
    return get(name, library=library).spec


def build(name: str, num_classes: int | None = None, *, library: str | Path | None = None,
          weights: str | None = None) -> nn.Module:
    """Build entry ``name``'s network; ``num_classes`` replaces the stored one.

    ``weights=None`` (the default) gives freshly initialised weights: train the result (its
    input is ``load(name).resolution`` square images with ``in_channels`` channels).
    ``weights="trained"``, as torchvision's ``weights=`` argument, loads the entry's trained
    weights (``<name>.safetensors``, see :func:`save`) strictly, and returns the network in
    eval mode. An export records in ``metadata["weights"]`` which trial trained them and the
    accuracy they scored; ``get(name).transforms()`` turns raw images into the input they
    expect (``metadata["preprocessing"]``: proxy resolution, resize, normalisation). Asking
    for the weights of an entry without any, or with another ``num_classes``, is a
    :class:`UserError`.

    >>> model = build("mobilenet_v2_0.35_96", num_classes=10)
    >>> model.classifier[-1].out_features
    10
    """
    from mobilenet_search.arch.builder import build_model, build_with_weights

    if weights is not None and weights not in WEIGHTS:
        raise UserError(f"invalid weights {weights!r}: expected None (fresh initial weights) or "
                        f"{', '.join(map(repr, WEIGHTS))} (the entry's trained weights)")
    entry = get(name, library=library)
    spec = entry.spec
    if num_classes is not None:
        spec = spec.replace(num_classes=num_classes)
    if weights is None:
        return build_model(spec)
    if not entry.has_weights:
        why = "a built-in holds the paper's architecture only" if entry.builtin else \
            "it was exported without them, from a study that saved none"
        raise UserError(f"library entry {name!r} has no trained weights ({why}); build it with weights=None "
                        "and train it")
    if spec.num_classes != entry.spec.num_classes:
        raise UserError(f"library entry {name!r} has trained weights for {entry.spec.num_classes} classes, not "
                        f"{spec.num_classes}: build it with weights=None to train {spec.num_classes} classes")
    state = _read_weights(entry)  # its own UserError (missing, altered, unreadable): not "do not fit"
    try:
        model = build_with_weights(spec, state)
    except ValueError as exc:
        raise UserError(f"weights {str(entry.weights_path)!r} do not fit library entry {name!r} ({exc})") from None
    return model.eval()


def _read_weights(entry: Entry) -> dict[str, torch.Tensor]:
    """The entry's state dict, after checking that the file is the one its JSON recorded."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = entry.weights_path
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the weights of library entry {entry.name!r} ({str(path)!r}): "
                        f"{exc.strerror or exc}") from None
    if hashlib.sha256(content).hexdigest() != entry.weights["sha256"]:
        raise UserError(f"weights {str(path)!r} are not the ones library entry {entry.name!r} was saved with "
                        "(another SHA-256): export the entry again")
    try:
        return load(content)
    except SafetensorError as exc:
        raise UserError(f"cannot read weights {str(path)!r}: {exc}") from None


def check_writable(name: str, *, force: bool = False, library: str | Path | None = None) -> Path:
    """The path entry ``name`` would be written to, or a :class:`UserError` saying why it may not be.

    Lets a caller refuse before doing slow work (opening a study, writing ONNX) that :func:`save` would waste.
    """
    path = _path(name, library)
    if name in _builtins():
        raise UserError(f"entry name {name!r} is a built-in (the paper's network) and cannot be replaced: "
                        "choose another --name")
    shadowed = next((b for b in _builtins() if b.lower() == name.lower()), None)
    if shadowed is not None:
        raise UserError(f"entry name {name!r} is the built-in {shadowed!r} but for case (entries are files, and "
                        "some file systems ignore case): choose another --name")
    suffix = next((s for s in (".json", ".safetensors") if name.lower().endswith(s)), None)
    if suffix is not None:
        raise UserError(f"entry name {name!r} ends in {suffix}: give the name alone ({name[:-len(suffix)]!r}); "
                        f"the files are NAME.json and NAME.safetensors")
    if path.exists() and not force:
        raise UserError(f"library entry {name!r} already exists ({path}); use --force to replace it")
    return path


def save(name: str, spec: ArchSpec, metadata: dict[str, Any] | None = None, *, force: bool = False,
         library: str | Path | None = None, weights: nn.Module | Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write entry ``name`` (atomically) and return its path.

    The file holds ``format_version``, ``name``, ``spec`` (:meth:`ArchSpec.to_dict`),
    ``metadata`` (any JSON object; an export stores ``source`` and ``metrics`` there),
    ``torchvision`` (:func:`torchvision_kwargs`, for readers without this package) and
    ``saved`` (UTC time). An existing entry is replaced only with ``force=True``; a
    built-in name is refused always.

    ``weights`` (a network built from ``spec``, or its state dict) are written first, to
    ``<name>.safetensors`` (atomically, tensors only), and the JSON records that file and its
    SHA-256 under ``weights``; they must load strictly into ``build_model(spec)`` (else
    ``ValueError``: a caller's mistake, nothing is written). Replacing an entry that had
    weights with one that has none removes the old file.
    """
    path = check_writable(name, force=force, library=library)
    document = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "spec": spec.to_dict(),
        "metadata": metadata or {},
        "torchvision": torchvision_kwargs(spec),
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # allow_nan=False: NaN is not JSON, and a reader elsewhere must be able to parse the entry.
    text = json.dumps(document, indent=2, allow_nan=False)  # refuses bad metadata before any file is written
    weights_path = path.parent / _weights_file(name)
    if weights is not None:
        document["weights"] = {"file": weights_path.name, "format": "safetensors",
                               "sha256": _write_weights(spec, weights, weights_path)}
        text = json.dumps(document, indent=2, allow_nan=False)
    # One line per [t, c, n, s] row (any list of numbers that indent split over lines; strings hold no raw newline).
    text = re.sub(r"\[[\d\s,.eE+-]*\n[\d\s,.eE+-]*\]", lambda m: json.dumps(json.loads(m.group())), text)
    atomic_write_text(path, text + "\n")
    if weights is None:
        weights_path.unlink(missing_ok=True)  # a replaced entry's weights belong to another network
    return path


def _write_weights(spec: ArchSpec, weights: nn.Module | Mapping[str, torch.Tensor], path: Path) -> str:
    """Check that ``weights`` fit ``build_model(spec)``, write them as safetensors; their file's SHA-256."""
    from mobilenet_search.arch.builder import build_with_weights
    from mobilenet_search.files import save_weights

    state = weights.state_dict() if hasattr(weights, "state_dict") else weights
    try:
        model = build_with_weights(spec, state)
    except ValueError as exc:
        raise ValueError(f"weights do not fit {spec.to_string()}: {exc}") from None
    save_weights(model, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _user_names(library: str | Path | None) -> builtins.list[str]:
    folder = library_dir(library)
    if not folder.is_dir():
        return []
    taken = set(_builtins())
    return sorted(p.stem for p in folder.glob("*.json") if is_safe_name(p.stem) and p.stem not in taken)


# Defined last: from here on the module's `list` is this function, hence `builtins.list` above.
def list(*, library: str | Path | None = None) -> builtins.list[str]:
    """Every entry name: the built-ins (MobileNetV2 cheapest first, then MobileNetV1), then user entries A-Z.

    >>> list()[:2]
    ['mobilenet_v2_0.35_96', 'mobilenet_v2_0.35_128']
    """
    return builtin_names() + _user_names(library)

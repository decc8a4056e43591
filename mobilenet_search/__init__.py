"""mobilenet-search: architecture search and scaling exploration for the MobileNet family.

The architecture is data: :class:`ArchSpec` (one frozen, validated spec), with a pure cost
model (:func:`count_madds`, :func:`count_params`) and a builder (:func:`build_model`).
Importing the package, the spec, the cost model or the budget never imports torch; the
builder and :mod:`library` load it on first use::

    >>> from mobilenet_search import ArchSpec, count_madds
    >>> count_madds(ArchSpec.mobilenet_v2())
    300774272
"""

from __future__ import annotations

import importlib
from typing import Any

from mobilenet_search.arch.cost import count_madds, count_params, stage_table
from mobilenet_search.arch.spec import ArchSpec, StageSpec, make_divisible
from mobilenet_search.errors import UserError

__all__ = [
    "ArchSpec",
    "StageSpec",
    "UserError",
    "build_model",
    "count_madds",
    "count_params",
    "library",
    "make_divisible",
    "stage_table",
]
__version__ = "0.2.0"

# Loaded on first use: they import torch, which takes seconds.
_LAZY = {"build_model": ("mobilenet_search.arch.builder", "build_model"),
         "library": ("mobilenet_search.results.library", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mobilenet_search' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value

"""mobilenet-search: architecture search and scaling exploration for the MobileNet family."""

from mobilenet_search.builder import build_model
from mobilenet_search.cost import count_madds, count_params, stage_table
from mobilenet_search.errors import UserError
from mobilenet_search.spec import ArchSpec, StageSpec, make_divisible

__all__ = [
    "ArchSpec",
    "StageSpec",
    "UserError",
    "build_model",
    "count_madds",
    "count_params",
    "make_divisible",
    "stage_table",
]
__version__ = "0.1.0"

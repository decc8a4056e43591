"""The package's shape: lower layers never import higher ones; the cheap modules never load torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mobilenet_search"
# Data flows one way: the architecture, how it is measured, what is recorded, the search, the interfaces.
LAYERS = ["arch", "measure", "results", "search", "ui"]


def _imports(path: Path) -> set[str]:
    """Every mobilenet_search module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mobilenet_search"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("mobilenet_search"))
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer):
    above = LAYERS[LAYERS.index(layer) + 1:]
    offending = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / layer).glob("*.py") for name in _imports(path)
        if any(name == f"mobilenet_search.{up}" or name.startswith(f"mobilenet_search.{up}.") for up in above)
    }
    assert not offending, sorted(offending)


def test_spec_cost_budget_and_records_import_without_torch():
    code = ("import sys; import mobilenet_search, mobilenet_search.arch.spec, mobilenet_search.arch.cost, "
            "mobilenet_search.arch.budget, mobilenet_search.results.records; "
            "print(sorted(m for m in ('torch', 'optuna', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

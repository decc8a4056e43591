"""What a study records is read and written through results/records.py alone: no trial attribute named by a string
literal, no strategy compared as a string, no stored settings read as a raw dict anywhere else in the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mobilenet_search"
OWNER = PACKAGE / "results" / "records.py"


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _name(node: ast.AST) -> str | None:
    """``x`` of a ``Name`` or the attribute of an ``Attribute`` (``records.CONFIG_ATTR`` -> ``CONFIG_ATTR``)."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _is_user_attrs(node: ast.AST) -> bool:
    return _name(node) == "user_attrs"


def raw_record_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every raw use of a record in ``source``: ``user_attrs["key"]``, ``user_attrs.get("key")``,
    ``set_user_attr("key", ...)``, ``enqueue_trial(..., user_attrs={"key": ...})``, a comparison with
    ``"supernet"``, the stored settings read as a dict (``.get(CONFIG_ATTR)``, ``[CONFIG_ATTR]``), or a trial's
    ``user_attrs`` held under another name (``attrs = trial.user_attrs``, then read out of sight)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            if _is_user_attrs(node.value) and _is_str(node.slice):
                found.append((node.lineno, f"user_attrs[{node.slice.value!r}]"))
            if _name(node.slice) == "CONFIG_ATTR":
                found.append((node.lineno, "[CONFIG_ATTR]"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, args = node.func.attr, node.args
            if method == "get" and _is_user_attrs(node.func.value) and args and _is_str(args[0]):
                found.append((node.lineno, f"user_attrs.get({args[0].value!r})"))
            if method == "get" and args and _name(args[0]) == "CONFIG_ATTR":
                found.append((node.lineno, ".get(CONFIG_ATTR)"))
            if method == "set_user_attr" and args and _is_str(args[0]):
                found.append((node.lineno, f"set_user_attr({args[0].value!r})"))
            for keyword in node.keywords:
                if keyword.arg == "user_attrs" and isinstance(keyword.value, ast.Dict) and any(
                        _is_str(key) for key in keyword.value.keys):
                    found.append((node.lineno, f"{method}(user_attrs={{'...': ...}})"))
        elif (isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
              and any(_is_str(side) and side.value == "supernet" for side in (node.left, *node.comparators))):
            found.append((node.lineno, 'compared with "supernet"'))
        elif isinstance(node, ast.Assign) and _is_user_attrs(node.value):  # read later by name, out of sight
            found.append((node.lineno, "user_attrs held under another name"))
    return sorted(found)


def test_the_scan_finds_each_kind_of_raw_use():
    source = '\n'.join([
        'a = trial.user_attrs["accuracy"]', 'b = t.user_attrs.get("reference")', 'trial.set_user_attr("worker", 1)',
        'study.enqueue_trial(p, user_attrs={"reference": True})', 'c = config.strategy == "supernet"',
        'd = (study.user_attrs.get(CONFIG_ATTR) or {})', 'e = study.user_attrs[records.CONFIG_ATTR]',
        'attrs = trial.user_attrs',
        'ok = trial.user_attrs.get(NOISE_SEED_ATTR), set_attrs(trial, worker=1), settings.supernet'])
    assert [line for line, _ in raw_record_uses(source)] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_no_module_but_records_reads_or_writes_a_record_raw():
    offending = [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path != OWNER
                 for line, what in raw_record_uses(path.read_text())]
    assert not offending, "\n".join(offending)

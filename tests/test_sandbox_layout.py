"""Shape of the sandbox package: child-side modules stdlib only, no cycles, short functions."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parent.parent / "rlm_graph" / "sandbox"
CHILD = SANDBOX / "child"
MAX_FUNCTION_LINES = 80


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module name, relative level) of every import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_no_function_over_80_lines_in_the_sandbox() -> None:
    long = []
    for path in _modules(SANDBOX):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SANDBOX)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_child_modules_import_only_the_stdlib_and_their_siblings() -> None:
    siblings = {p.stem for p in _modules(CHILD)}
    bad = []
    for path in _modules(CHILD):
        for name, level in _imports(path):
            top = name.split(".")[0]
            ok = level == 0 and (top in sys.stdlib_module_names or top in siblings)
            if not ok and not (level == 0 and top == "__future__"):
                bad.append(f"{path.name}: {'.' * level}{name}")
    assert not bad, bad


def test_no_import_cycle_among_host_side_sandbox_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in SANDBOX.glob("*.py"):
        deps = set()
        for name, level in _imports(path):
            if level == 1 and name and not name.startswith("child"):
                deps.add(name.split(".")[0])
        graph[path.stem] = deps

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            pytest.fail(f"import cycle: {' -> '.join([*stack[stack.index(node) :], node])}")
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in graph:
        visit(module, [])


def test_shared_tables_are_defined_once() -> None:
    for table in ("STR_KINDS", "CALLBACK_NAMES"):
        owners = [
            path.relative_to(SANDBOX).as_posix()
            for path in _modules(SANDBOX)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            and any(
                isinstance(t, ast.Name) and t.id == table
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ]
        assert owners == ["child/tables.py"], (table, owners)

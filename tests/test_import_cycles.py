"""meshkit's packages import each other without a cycle.

The import-linter layers contract forbids upward arrows between the packages it lists; this test
covers every package (and the top-level modules) and fails on any cycle, listing it with the
imports that make each of its arrows. grimp (what import-linter builds its graph with) sees every
``import`` statement, including lazy ones inside functions and those under TYPE_CHECKING; it cannot
see ``importlib.import_module("…")`` with a string, hence the second test.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import grimp

import meshkit

SRC = Path(meshkit.__file__).resolve().parent


def _package(module: str) -> str:
    """``meshkit.rpc.client`` -> ``meshkit.rpc``; ``meshkit`` stays ``meshkit``."""
    return ".".join(module.split(".")[:2])


def _package_graph() -> tuple[grimp.ImportGraph, dict[str, set[str]]]:
    graph = grimp.build_graph("meshkit", cache_dir=None)
    arrows: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _package(module), _package(imported)
            if a != b:
                arrows.setdefault(a, set()).add(b)
    return graph, arrows


def _find_cycle(arrows: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, …, a]`` of the graph, or None: a depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(arrows.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(arrows):
        if node not in state and (found := visit(node)):
            return found
    return None


def _explain(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in itertools.pairwise(cycle):
        for module in sorted(m for m in graph.modules if _package(m) == a):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                if _package(imported) == b:
                    for detail in graph.get_import_details(importer=module, imported=imported):
                        lines.append(f"  {module}:{detail['line_number']} imports {imported}")
    return "\n".join(lines)


def test_the_graph_is_of_this_checkout() -> None:
    """grimp and this test import the same meshkit (PYTHONPATH over an editable install elsewhere)."""
    graph = grimp.build_graph("meshkit", cache_dir=None)
    assert "meshkit.discovery.backends" in graph.modules, f"grimp analysed another meshkit than {SRC}"


def test_packages_import_each_other_without_a_cycle() -> None:
    graph, arrows = _package_graph()
    cycle = _find_cycle(arrows)
    assert cycle is None, "import cycle between meshkit's packages:\n" + _explain(graph, cycle)


def _names_in_code(source: Path) -> set[str]:
    """Modules a file imports and the strings it holds (where ``import_module`` or an entry point
    reference would name a module), docstrings left out."""
    tree = ast.parse(source.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.add(node.value)
    return names


def test_discovery_does_not_name_the_layers_above_it() -> None:
    """Discovery sits below rpc: it must not import, not even by a string, a package that uses rpc
    (the built-in registry declares its own ``meshkit://`` backend instead)."""
    above = ("meshkit.rpc", "meshkit.registry", "meshkit.observe", "meshkit.gateway", "meshkit.cli")
    for source in sorted((SRC / "discovery").glob("*.py")):
        named = sorted(name for name in _names_in_code(source) if name.startswith(above))
        assert not named, f"{source.relative_to(SRC.parent)} names {', '.join(named)}"


def test_the_name_check_sees_a_module_named_by_a_string(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        '"""Docs may say meshkit.registry."""\nimport importlib\nimportlib.import_module("meshkit.registry.backend")\n'
    )
    assert "meshkit.registry.backend" in _names_in_code(source)
    assert "Docs may say meshkit.registry." not in _names_in_code(source)


def test_the_cycle_search_finds_a_cycle_and_only_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None

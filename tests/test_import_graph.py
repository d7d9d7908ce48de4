"""The import graph of ``stlm_core`` has no cycle.

Edges are every ``import stlm_core...`` / ``from stlm_core... import`` (and relative imports) anywhere in a module,
at module level or inside functions, so a function-level import cannot hide a circle. ``from pkg import name``
points at ``pkg.name`` when that is a module, else at ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = "stlm_core"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Modules of ``modules`` that one import statement imports."""

    def known(name: str) -> str | None:  # the longest prefix of ``name`` that is a module of the package
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        return [m for m in (known(a.name) for a in node.names) if m]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
        return []
    targets = []
    for alias in node.names:
        target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else known(source)
        if target:
            targets.append(target)
    return targets


def import_graph() -> dict[str, set[str]]:
    """module -> modules of ``stlm_core`` it imports (module-level and function-level imports)."""
    modules = _modules()
    names = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = {t for node in ast.walk(tree) for t in _imported(node, name, is_package, names)}
        edges.discard(name)
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components with more than one module (each holds at least one cycle), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle inside a strongly connected ``component``, as ``[a, b, ..., a]``."""
    members = set(component)
    start = component[0]
    parents = {start: None}
    frontier = [start]
    while frontier:  # breadth-first from start until an edge leads back to it
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return component  # pragma: no cover - a strongly connected component always has a cycle


def _describe(graph: dict[str, set[str]], components: list[list[str]]) -> str:
    return "\n".join(f"import cycle: {' -> '.join(a_cycle(graph, c))} (component: {', '.join(c)})"
                     for c in components)


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "stlm_core.data.mvtec" in graph["stlm_core.data.registry"]
    assert "stlm_core.data.transforms" in graph["stlm_core.stlm.training"]  # imported inside a function
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycle_in_stlm_core():
    graph = import_graph()
    components = strongly_connected(graph)
    assert not components, _describe(graph, components)


def test_no_import_cycle_through_stlm_core_data():
    graph = import_graph()
    in_data = [c for c in strongly_connected(graph)
               if any(m == "stlm_core.data" or m.startswith("stlm_core.data.") for m in c)]
    assert not in_data, _describe(graph, in_data)

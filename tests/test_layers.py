"""The package's layering: no import cycle among flipnet_rt's modules, and modules stay readable.

The import graph is read from the source (module-level and function-level imports alike), so a
cycle hidden in a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flipnet_rt

ROOT = Path(flipnet_rt.__file__).parent
# Modules allowed over ~500 lines, each with the reason written at its top.
LONG_MODULES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name}
    # importing a.b.c runs a/__init__ and a/b/__init__ first: not an edge of the design, so dropped
    return {k: {m for m in v if not k.startswith(m + ".")} for k, v in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "flipnet_rt.restorer" in graph and "flipnet_rt.core" in graph["flipnet_rt.restorer"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_under_500_lines():
    long = {_module_name(p): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    long = {k: v for k, v in long.items() if v > 500 and k not in LONG_MODULES}
    assert not long, f"split these modules or write the reason at their top and list them here: {long}"

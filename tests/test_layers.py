"""The package's layering: no import cycle among flipnet_rt's modules or its folders, and modules stay readable.

The import graph is read from the source (module-level and function-level imports alike), so a
cycle hidden in a lazy import counts too. ``train/`` and ``export/`` are part of it under the names
they install as (``flipnet_rt.train``, ``flipnet_rt.export``: pyproject.toml).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import flipnet_rt

ROOT = Path(flipnet_rt.__file__).parent
REPO = ROOT.parent
#: Folders of the repository that install as subpackages of flipnet_rt.
INSTALLED_AS = {"train": "flipnet_rt.train", "export": "flipnet_rt.export"}
#: A module longer than this starts with the line ``# Long module: <why it stays one module>``.
MAX_LINES = 450
LONG_MARK = "# Long module: "
#: Modules allowed directly in flipnet_rt/ besides __init__ and __main__ (the rest live in subpackages).
MAX_LOOSE = 5


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("").parts
    if rel[0] in INSTALLED_AS:
        rel = (*INSTALLED_AS[rel[0]].split("."), *rel[1:])
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _sources() -> list[Path]:
    found = [p for p in ROOT.rglob("*.py") if not any(part in INSTALLED_AS for part in p.relative_to(ROOT).parts[:1])]
    for folder in INSTALLED_AS:
        found += list((REPO / folder).rglob("*.py"))
    return found


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
    modules = {_module_name(p): p for p in _sources()}
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
                return stack[stack.index(nxt) :] + [nxt]
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
    assert "flipnet_rt.runtime.restorer" in graph and "flipnet_rt.runtime.core" in graph["flipnet_rt.runtime.restorer"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between folders: a module stands for its package; a package's __init__ for itself."""
    packages = {name for name in graph if any(other.startswith(name + ".") for other in graph)}

    def folder(name: str) -> str:
        return name if name in packages else name.rpartition(".")[0]

    folders: dict[str, set[str]] = {}
    for name, deps in graph.items():
        edges = folders.setdefault(folder(name), set())
        edges |= {folder(d) for d in deps if folder(d) != folder(name) and not folder(name).startswith(folder(d) + ".")}
    for deps in list(folders.values()):
        for d in deps:
            folders.setdefault(d, set())
    return folders


def test_the_folders_import_each_other_without_a_cycle():
    folders = folder_graph(import_graph())
    assert "flipnet_rt.runtime" in folders["flipnet_rt.faces"]
    cycle = find_cycle(folders)
    assert cycle is None, "folder-level cycle: " + " -> ".join(cycle)


def test_the_folder_graph_sees_folder_cycles():
    graph = {"p.a.x": {"p.b.y"}, "p.b.y": {"p.a.z"}, "p.a.z": set()}
    assert find_cycle(folder_graph(graph)) == ["p.a", "p.b", "p.a"]


def test_long_modules_say_why_at_their_top():
    long = {}
    for path in _sources():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES and not lines[0].startswith(LONG_MARK):
            long[_module_name(path)] = len(lines)
    assert not long, f"split these modules or start them with '{LONG_MARK}<why>': {long}"


def test_the_package_root_holds_few_loose_modules():
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(loose) <= MAX_LOOSE, f"move into a subpackage by layer: {loose}"


def test_engine_directories_are_read_only_by_the_engine_package():
    readers = [
        str(p.relative_to(REPO))
        for p in _sources()
        if "Manifest.load(" in p.read_text() and p.parent != ROOT / "engine"
    ]
    assert not readers, f"open engine directories with flipnet_rt.engine.artifacts instead: {readers}"


def test_faces_and_video_use_the_restorer_seams_not_getattr():
    pattern = re.compile(r"getattr\(\s*(?:self\.)?_?(?:restorer|backend|core)\b")
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for folder in ("faces", "video")
        for p in (ROOT / folder).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"use the typed seams (RestorerLike, Backend attributes, DiffusionCore): {found}"

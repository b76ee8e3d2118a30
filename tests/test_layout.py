"""The package's import graph: no cycles among modules or among folders, and no room importing one above it.

Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` ones included: a lazy import hides a
cycle from Python's start-up but not from the next engineer who has to follow the data. The rooms and their
order below are the layout drawn in the README; a new module or folder must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audiorep"

# Lowest first. A room may import its own room and any room on an earlier line, never a later one.
LAYERS = [
    {"errors", "version", "validate", "fileio", "locking", "optional", "safe_pickle", "tensorfile", "config",
     "ownership", "network",
     "plotting"},
    {"audio", "features"},
    {"kernels", "layers"},
    {"registry"},
    {"models"},
    {"weights"},
    {"__init__"},  # the public facade: load, list_models, read_audio
    {"data"},
    {"train"},
    {"scoring"},
    {"pretrain", "probe"},
    {"multimodal"},
    {"commands", "cli"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (a ``from pkg import name`` of a submodule names the submodule)."""
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                name = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{name}.{alias.name}"
                    if full in modules:
                        targets.add(full)
                    elif name in modules:
                        targets.add(name)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
        targets.discard(mod)
        graph[mod] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


GRAPH = _imports(_modules())


def test_the_checker_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_modules():
    assert _cycles(GRAPH) == []


def test_no_import_cycle_among_folders():
    rooms: dict[str, set[str]] = {}
    for mod, targets in GRAPH.items():
        rooms.setdefault(_room(mod), set()).update(_room(t) for t in targets if _room(t) != _room(mod))
    assert _cycles(rooms) == []


def test_every_room_has_a_place_in_the_layers():
    assert {_room(m) for m in GRAPH} - set(RANK) == set()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_room_above_its_own(module):
    upward = sorted(t for t in GRAPH[module] if RANK[_room(t)] > RANK[_room(module)])
    assert upward == [], f"{module} imports a higher room: {upward}"

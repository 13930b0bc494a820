"""The project's import graph, read from the source with `ast`: every edge counts,
including imports under `TYPE_CHECKING` and inside functions.

`python -m tests.import_graph` prints each import cycle among our modules (nothing when
there is none) and, with `--rooms`, which room imports which.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "consumers", "contracts", "storage")


def modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its `__init__`)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, here: str, is_package: bool, known: dict[str, Path]) -> Iterator[str]:
    """What `node` imports: `from a import b` is `a.b` when that is a module, else `a`."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = here.split(".")[: len(here.split(".")) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def edges() -> dict[str, set[str]]:
    """Module → the modules of ours it imports."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py", known):
                if target in known and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
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

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room(module: str) -> str:
    """`ingest.delivery.relay` → `ingest.delivery`; a top-level module is its own room."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ingest" and len(parts) > 2 else parts[0]


def room_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for source, targets in graph.items():
        here = room(source)
        rooms.setdefault(here, set()).update(room(t) for t in targets if room(t) != here)
    return rooms


def main() -> int:
    graph = edges()
    if "--rooms" in sys.argv:
        for source, targets in sorted(room_edges(graph).items()):
            print(f"{source} -> {', '.join(sorted(targets)) or '(nothing of ours)'}")
    found = cycles(graph)
    for component in found:
        print("cycle:", " ↔ ".join(component))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())

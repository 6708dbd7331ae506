"""The layers hold: a contract over the import graph of ``cvat_ray``.

Dependency direction (DESIGN.md): ``serve_apps -> actors -> storage, iam, analytics ->
cluster``; among the middle three only ``storage -> iam`` (services call ``authorize``).
``cvat_ray.cli`` is the composition root: it may import every layer and nothing imports it.
No two modules of the project import each other, directly or round a longer loop. Every
``import`` statement counts, those inside functions and under ``TYPE_CHECKING`` too: a
deferred import is still a dependency.

``python -m tests.test_layers`` prints the graph between layers (edges counted per import
statement), the edges the contract forbids, and the module cycles.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cvat_ray"
LAYERS = ("cluster", "storage", "iam", "analytics", "actors", "serve_apps")
CLI = "cli"

# What each layer may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "cluster": frozenset(),
    "iam": frozenset({"cluster"}),
    "analytics": frozenset({"cluster"}),
    "storage": frozenset({"iam", "cluster"}),
    "actors": frozenset({"storage", "iam", "analytics", "cluster"}),
    "serve_apps": frozenset({"actors", "storage", "iam", "analytics", "cluster"}),
    CLI: frozenset(LAYERS),
    "": frozenset(),  # cvat_ray/__init__.py
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the deepest project module the statement names)
    line: int

    @property
    def layers(self) -> tuple[str, str]:
        return layer_of(self.source), layer_of(self.target)

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}"


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def project_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package (the layer folders are linked
    into ``cvat_ray/``; they are read from the repository root)."""
    files = {PACKAGE: ROOT / PACKAGE / "__init__.py", f"{PACKAGE}.{CLI}": ROOT / PACKAGE / "cli.py"}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join([PACKAGE, *parts])] = path
    return files


def _imports(module: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(base module, imported names, line) of every import statement of a file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [a.name for a in node.names], node.lineno


def import_graph() -> list[Edge]:
    files = project_files()
    edges: list[Edge] = []
    for module, path in files.items():
        for base, names, line in _imports(module, path):
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in files] or [base]
            for target in targets:
                while target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    edges.append(Edge(module, target, line))
    return edges


def forbidden(edges: list[Edge]) -> list[Edge]:
    bad = []
    for edge in edges:
        source, target = edge.layers
        if target == CLI or (source != target and target not in ALLOWED[source]):
            bad.append(edge)
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


IAM_STORAGE = ("iam", "storage")


def test_layers_only_import_downwards() -> None:
    bad = [
        str(e) for e in forbidden(import_graph()) if e.layers != IAM_STORAGE and e.layers[1] != CLI
    ]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_iam_does_not_import_storage() -> None:
    bad = [str(e) for e in import_graph() if e.layers == IAM_STORAGE]
    assert not bad, "iam imports storage:\n" + "\n".join(bad)


def test_nothing_imports_the_cli() -> None:
    bad = [str(e) for e in import_graph() if e.layers[1] == CLI]
    assert not bad, "the CLI is the composition root; nothing imports it:\n" + "\n".join(bad)


def test_no_module_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other:\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_the_graph_sees_deferred_imports() -> None:
    """The contract reads imports inside functions too (the CLI imports layers lazily)."""
    edges = [e for e in import_graph() if e.source == f"{PACKAGE}.{CLI}"]
    assert {e.layers[1] for e in edges} >= {"cluster", "storage", "actors", "serve_apps"}


def report() -> str:
    edges = import_graph()
    counts = Counter(e.layers for e in edges if e.layers[0] != e.layers[1])
    order = ["", CLI, "serve_apps", "actors", "storage", "iam", "analytics", "cluster"]
    lines = ["layer -> layer edges (import statements):"]
    for (source, target), n in sorted(
        counts.items(), key=lambda kv: (order.index(kv[0][0]), order.index(kv[0][1]))
    ):
        mark = ""
        if target == CLI or target not in ALLOWED[source]:
            mark = "   FORBIDDEN"
        lines.append(f"  {source or PACKAGE:>10} -> {target:<10} {n:4d}{mark}")
    bad = forbidden(edges)
    lines.append(f"forbidden edges: {len(bad)}")
    lines.extend(f"  {e}" for e in bad)
    found = cycles(edges)
    lines.append(f"module cycles: {len(found)}")
    lines.extend("  " + " <-> ".join(c) for c in found)
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

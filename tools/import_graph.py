"""The import graph of the ``rsgen`` package, and a check that its arrows only point down.

    python tools/import_graph.py            # violations (exit 1 if any) + layer summary
    python tools/import_graph.py --mermaid  # the package-level graph for docs/architecture.md

Every ``import`` counts, also those inside functions (a lazy import still couples two modules).
Layers, top to bottom: a module may import its own package and any lower layer, never a higher
or a same-layer sibling package; no two modules may import each other through any chain.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rsgen"

#: Layer of each top-level part of the package (higher imports lower). Modules directly under
#: ``rsgen/`` that are not listed are the core layer (errors, config, checkpoint, device, ...).
LAYERS: dict[str, int] = {
    "cli": 7,  # the command line launches everything, the browser app included (`rsgen serve`)
    "web": 6,
    "pipelines": 5,
    "train": 4,
    "metrics": 3,
    "models": 2,
    "diffusion": 2,
    "data": 2,
    "io": 1,
}
CORE = 0
ENTRY_POINTS = {"rsgen.__main__": 8, "rsgen": 8}  # `python -m rsgen`, lazy top-level API


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """``rsgen.models.rs_clip`` -> ``models``; ``rsgen.checkpoint`` -> ``core``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "core"


def layer_of(module: str) -> int:
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    return LAYERS.get(part_of(module), CORE)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """rsgen modules imported by ``path`` (``from pkg import name`` resolves to ``pkg.name``
    when that is a module)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "rsgen")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rsgen":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m != me}


def build_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {}
    for path in files:
        graph[module_name(path)] = {m for m in imports_of(path, modules) if m in modules}
    return graph


def upward_or_sideways(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer or sideways into a sibling package."""
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            if src in ENTRY_POINTS or part_of(src) == part_of(dst) and dst not in ENTRY_POINTS:
                continue
            if dst in ENTRY_POINTS:
                bad.append(f"{src} -> {dst} (the package root is for users: import the module itself)")
            elif layer_of(dst) >= layer_of(src):
                bad.append(f"{src} -> {dst} ({part_of(src)} may not import {part_of(dst)})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
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
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        if src in ENTRY_POINTS:
            continue
        for dst in targets:
            a, b = part_of(src), part_of(dst)
            if a != b and dst not in ENTRY_POINTS:
                edges[a].add(b)
    return edges


def mermaid(graph: dict[str, set[str]]) -> str:
    lines = ["graph TD"]

    def top_down(part: str) -> tuple[int, str]:
        return -LAYERS.get(part, CORE), part

    for src, targets in sorted(package_edges(graph).items(), key=lambda kv: top_down(kv[0])):
        for dst in sorted(targets, key=top_down):
            lines.append(f"    {src} --> {dst}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mermaid", action="store_true", help="print the package graph as Mermaid")
    args = parser.parse_args()
    graph = build_graph()
    if args.mermaid:
        print(mermaid(graph))
        return 0
    bad = upward_or_sideways(graph)
    loops = cycles(graph)
    for line in bad:
        print("arrow:", line)
    for component in loops:
        print("cycle:", " <-> ".join(component))
    edges = sum(len(t) for t in graph.values())
    print(f"{len(graph)} modules, {edges} imports, {len(bad)} bad arrows, {len(loops)} cycles")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main())

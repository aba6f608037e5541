"""An import-direction checker: every import (module level or inside a function) read from the
source with ast, each module placed in a layer, and what breaks the order reported."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages under root (a package's
    __init__.py is the package itself)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The known modules that module `name` imports: `from a.b import c` is a.b.c where that is
    a module, else a.b; relative imports are resolved; other packages' modules are left out."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets += [f"{base}.{alias.name}" for alias in node.names]
    found = set()
    for target in targets:
        while target and target not in known:  # the longest known module it names
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def layer_of(name: str, path: Path, layers: Sequence[Sequence[str]]) -> int | None:
    """The index of the layer by longest matching prefix: an entry covers itself and its
    submodules, except `pkg.__init__`, which covers only package pkg's own __init__.py."""
    best, best_len = None, -1
    for index, entries in enumerate(layers):
        for entry in entries:
            if entry.endswith(".__init__"):
                hit = path.name == "__init__.py" and name == entry.removesuffix(".__init__")
            else:
                hit = name == entry or name.startswith(entry + ".")
            if hit and len(entry) > best_len:
                best, best_len = index, len(entry)
    return best


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every import cycle (Tarjan's strongly connected components of two or more modules); a
    package importing its own submodules is no edge of a cycle."""
    edges = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while not component or component[-1] != m:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    return sorted(found)


def violations(root: Path, packages: Iterable[str], layers: Sequence[Sequence[str]]) -> set[str]:
    """`unmapped: m`, `upward: m -> n` (m imports a higher layer) and `cycle: a, b, ...`."""
    found_modules = modules(root, packages)
    graph = {m: imports(m, p, found_modules) for m, p in found_modules.items()}
    layer = {m: layer_of(m, p, layers) for m, p in found_modules.items()}
    found = {f"unmapped: {m}" for m, n in layer.items() if n is None}
    for m, targets in graph.items():
        for t in targets:
            if None not in (layer[m], layer[t]) and layer[t] > layer[m]:
                found.add(f"upward: {m} -> {t}")
    found |= {"cycle: " + ", ".join(c) for c in cycles(graph)}
    return found


def importers(root: Path, packages: Iterable[str], target: str) -> set[str]:
    """The modules that import `target` or a module under it (anywhere in the module)."""
    found_modules = modules(root, packages)
    return {
        m
        for m, p in found_modules.items()
        if any(t == target or t.startswith(target + ".") for t in imports(m, p, found_modules))
        and not (m == target or m.startswith(target + "."))
    }

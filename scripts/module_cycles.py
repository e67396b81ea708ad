#!/usr/bin/env python3
"""Fails when, in any crate of the workspace, a top-level module (a file or
folder directly under src/) imports one that imports it back.

Usage: python3 scripts/module_cycles.py [CRATE ...]   (default: every crate)

Imports are read as text (`crate::name` and `use crate::{a, b}`); test
modules (`#[cfg(test)]` onwards) may reach anywhere and are not read. Each
crate's allowed direction is written in its lib.rs crate doc.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def imports_of(src: pathlib.Path) -> dict:
    graph = {}
    for path in src.rglob("*.rs"):
        top = path.relative_to(src).parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        text = text.split("#[cfg(test)]")[0]
        names = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            names |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
        graph.setdefault(top, set()).update(names - {top})
    return {m: {n for n in uses if n in graph} for m, uses in graph.items()}


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module."""
    order, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(module):
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for used in sorted(graph[module]):
            if used not in order:
                visit(used)
                low[module] = min(low[module], low[used])
            elif used in on_stack:
                low[module] = min(low[module], order[used])
        if low[module] == order[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def main() -> int:
    crates = sys.argv[1:] or sorted(p.parent.name for p in ROOT.glob("*/src"))
    circles = 0
    for crate in crates:
        graph = imports_of(ROOT / crate / "src")
        found = cycles(graph)
        circles += len(found)
        for component in found:
            print(f"{crate}: circle {' <-> '.join(component)}")
        print(f"{crate}: {len(graph)} top-level modules, {len(found)} circles")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main())

"""The layout keeps its promises (docs/architecture.md): no circle of imports, each package
imports only the layers below it, no private name crosses a module. (What a page may import
and how long it may be: tests/pages/test_page_rules.py.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A package may import itself and the packages before it, never one after it.
LAYERS: list[str] = [
    "db",
    "loyalty.errors",
    "loyalty.periods",
    "loyalty.formatting",
    "loyalty.figures",
    "loyalty.records",
    "loyalty.access",
    "loyalty.settings",
    "loyalty.bounds",
    "loyalty.events",
    "loyalty.analytics",
    "loyalty.program",
    "loyalty.ledger",
    "loyalty.integrations",
    "loyalty.insights",
    "loyalty.engagement",
    "loyalty.decisions",
    "loyalty.evaluation",
    "loyalty.demo",
    "loyalty.bootstrap",
    "loyalty.devtools",
    "loyalty.ui",
    "loyalty.cli",
    "loyalty.__main__",
    "loyalty",
]
# Known exceptions, each with its reason. Keep this list short.
ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("loyalty/**/*.py"), *ROOT.glob("db/**/*.py")]):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}", [], node.lineno
                else:
                    yield base, [alias.name], node.lineno


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    best = max((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), key=len)
    return LAYERS.index(best)


def test_no_module_imports_itself_through_others():
    graph, cycles = _graph(), []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_each_package_imports_only_the_layers_below_it():
    wrong = [
        f"{name} imports {dep} (line {line})"
        for name, path in MODULES.items()
        for dep, _, line in _imports(name, path)
        if dep in MODULES and _layer(dep) > _layer(name) and (name, dep) not in ALLOWED
    ]
    assert not wrong, "imports that go up a layer:\n" + "\n".join(sorted(wrong))


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        f"{name} line {line}: {dep}.{taken}"
        for name, path in MODULES.items()
        for dep, names, line in _imports(name, path)
        for taken in names
        if taken.startswith("_") and not taken.startswith("__") and dep != name
    ]
    wrong += [
        f"{name}: imports private module {dep}"
        for name, path in MODULES.items()
        for dep, _, _ in _imports(name, path)
        if any(part.startswith("_") and not part.startswith("__") for part in dep.split("."))
    ]
    assert not wrong, "private names used across modules:\n" + "\n".join(sorted(wrong))


def test_at_most_twelve_modules_directly_under_loyalty():
    modules = sorted(p.name for p in (ROOT / "loyalty").glob("*.py"))
    assert len(modules) <= 12, modules

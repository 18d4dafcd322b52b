"""Which way the exporter's imports go: no cycle, a collector only downwards, and nothing
outside exporter/collectors/ names a collector."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exporter"
# What sits above the collectors: it may use the registry, never one collector's code.
ABOVE = {
    "exporter.workspace",
    "exporter.metrics",
    "exporter.exposition",
    "exporter.scheduling",
    "exporter.server",
    "exporter.cli",
    "exporter.statefile",
    "exporter.config",
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    """Modules imported when the module runs (not those only under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        imported = _imports(ast.parse(path.read_text()))
        edges[name] = {m for m in imported if m in modules and m != name}
    return edges


def test_the_exporter_has_no_import_cycle():
    edges = graph()
    # A package's __init__ importing its own submodules is how Python packages work, not a
    # cycle: a submodule importing its package's __init__ back is (checked below).
    done: set[str] = set()
    path: list[str] = []

    def walk(node: str) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(edges[node]):
            if not node.startswith(nxt + "."):  # a submodule reading its package's registry
                walk(nxt)
        path.pop()
        done.add(node)

    for node in sorted(edges):
        walk(node)
    assert len(edges) > 30  # every module was read


def test_collectors_import_only_downwards_and_nothing_names_one():
    edges = graph()
    collectors = {m for m in edges if m.startswith("exporter.collectors.")}
    assert {"exporter.collectors.runs", "exporter.collectors.pools"} <= collectors
    for module in collectors:
        upward = edges[module] & ABOVE
        assert not upward, f"{module} imports {upward}"
        folder = module.split(".")[2]
        others = {
            m
            for m in edges[module]
            if m.startswith("exporter.collectors.") and m.split(".")[2] != folder
        }
        assert not others, f"{module} imports another collector: {others}"
    for module, imported in edges.items():
        if module.startswith("exporter.collectors"):
            continue
        named = {m for m in imported if m.startswith("exporter.collectors.")}
        assert not named, f"{module} names a collector: {named}"
    # The API client is transport: it knows no collector, not even the registry.
    assert not {m for m in edges["exporter.client"] if m.startswith("exporter.collectors")}


def _imports_of(package: str) -> dict[str, set[str]]:
    return {_module(p): _imports(ast.parse(p.read_text())) for p in (ROOT / package).rglob("*.py")}


def test_the_simulator_is_a_package_of_its_own_that_imports_no_exporter_code():
    simulator = _imports_of("databricks_simulator")
    assert {
        "databricks_simulator.world",
        "databricks_simulator.api",
        "databricks_simulator.truth",
    } <= set(simulator)
    for module, imported in simulator.items():
        assert not {m for m in imported if m.split(".")[0] == "exporter"}, module
    # The exporter imports it only for --simulate (the demo), and only when asked.
    users = {
        module
        for module, imported in _imports_of("exporter").items()
        if any(m.split(".")[0] == "databricks_simulator" for m in imported)
    }
    assert users == {"exporter.cli"}
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    top_level = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in cli.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in top_level if m and m.startswith("databricks_simulator")}

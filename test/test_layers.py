"""The import graph follows the layers of CONTRIBUTING.md: no circles, and no module imports from a higher layer.

Every import counts, also the ones inside functions: a lazy import that goes up a layer is the same
tangle, only discovered later. A new top-level module or package must be placed in a layer here
(and in CONTRIBUTING.md's table) before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "surround_depth_ros"

# Lowest first. A module may import its own layer and the ones below it.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("base", frozenset({"base"})),
    ("sensors", frozenset({"sensors"})),
    ("evaluation", frozenset({"evaluation"})),
    ("model", frozenset({"network", "losses", "teachers", "inference"})),
    ("conversion", frozenset({"conversion"})),
    ("core", frozenset({"core"})),
    ("bag", frozenset({"bag"})),
    ("data", frozenset({"datasets", "training"})),
    ("ros", frozenset({"ros"})),
    ("tools", frozenset({"tools"})),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports}, with `from pkg import name` resolved to the submodule when it is one."""
    paths = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            for name in names:
                while name not in paths and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in paths and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module} is in no layer: add {top!r} to LAYERS here and to CONTRIBUTING.md's layout")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_of_every_form():
    graph = import_graph()
    assert "surround_depth_ros.core.sync" in graph["surround_depth_ros.core.assembler"]  # from a.b import C
    assert "surround_depth_ros.base.geometry" in graph["surround_depth_ros.sensors.rig"]  # from a import module
    assert "surround_depth_ros.ros.replayer" in graph["surround_depth_ros.tools.replay_bag"]  # inside run()


def test_every_module_has_a_layer():
    for module in import_graph():
        if module != PACKAGE:
            layer_of(module)


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items()
        if module != PACKAGE
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_contributing_lists_the_same_layers():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for name, members in LAYERS:
        row = next((line for line in text.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, f"CONTRIBUTING.md's layout has no row for layer {name!r}"
        for member in members:
            assert f"`{member}" in row, f"CONTRIBUTING.md: layer {name!r} does not list {member}"


MAX_CLASS_LINES = 300


def test_no_class_is_over_300_lines():
    """A class that size holds several jobs (the node once held wiring, input checks, bookkeeping and the process)."""
    over = [
        f"{path.relative_to(ROOT)}: {node.name} has {node.end_lineno - node.lineno + 1} lines"
        for path in (ROOT / PACKAGE).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert over == []


def test_the_node_module_is_wiring_only():
    assert len((ROOT / PACKAGE / "ros" / "node.py").read_text().splitlines()) <= MAX_CLASS_LINES

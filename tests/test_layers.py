"""The package's layers, as the README's architecture section draws them: a module imports only from its own
package or from a lower layer, and no two modules import each other, directly or around a circle. Read from
the source (every `import`, also those inside functions; typing-only imports under TYPE_CHECKING are not
imports at run time and are skipped), so a new upward import fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xgrid"

# Bottom first. Packages on one line are siblings: neither may import the other.
LAYERS = [
    ["xgrid", "xgrid.tracking_schema", "xgrid.redaction", "xgrid.folder_state", "xgrid.nodes"],
    ["xgrid.config"],
    ["xgrid.data", "xgrid.metrics", "xgrid.spaces", "xgrid.statistics"],
    ["xgrid.models"],  # the tiny model's tokenizer is trained on the micro-benchmark's vocabulary
    ["xgrid.formats"],
    ["xgrid.tasks"],
    ["xgrid.training"],
    ["xgrid.planning"],
    ["xgrid.running", "xgrid.events", "xgrid.provenance"],
    ["xgrid.tracking"],
    ["xgrid.search", "xgrid.compare"],
    ["xgrid.cli"],
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: its top-level subpackage or module under xgrid."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """Every xgrid module a file imports (absolute names), at module level or inside functions."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from xgrid.tasks import hub` imports the submodule xgrid.tasks.hub
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).with_suffix(".py").is_file()
                      or (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).is_dir()}
    return {name for name in found if name == "xgrid" or name.startswith("xgrid.")}


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_layer():
    assert {unit_of(m) for m in MODULES} <= set(RANK), "add the new package to LAYERS (and the README's diagram)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_or_sibling_layer(module):
    here = unit_of(module)
    wrong = sorted(name for name in MODULES[module]
                   if unit_of(name) != here and RANK[unit_of(name)] >= RANK[here])
    assert not wrong, f"{module} (layer {RANK[here]}) imports {wrong}"


def test_no_import_circles_between_modules():
    # Module-level graph: a package's __init__ counts as the package.
    graph = {m: {n for n in deps if n in MODULES and n != m} for m, deps in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a formats module importing the task registry is caught."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from xgrid.tasks.spec import TaskSpec\n"
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from xgrid.cli import app\n")
    found = imports_of(path)
    assert found == {"xgrid.tasks.spec"}  # the lazy import counts, the typing-only one does not
    assert RANK[unit_of("xgrid.tasks.spec")] > RANK["xgrid.formats"]


def _readme_diagram() -> list[list[str]]:
    """The README's layer diagram, top line first: the folders and modules each line names."""
    text = (PACKAGE.parent / "README.md").read_text()
    block = text.split("## Architecture", 1)[1].split("```", 2)[1]
    lines = []
    for line in block.strip().splitlines():
        names = []
        for word in line.split():
            if not (word.endswith("/") or word.endswith(".py")):
                break
            names.append("xgrid." + word.removesuffix("/").removesuffix(".py"))
        if names:  # a continuation line explains the one above
            lines.append(names)
    return lines


def test_the_readme_diagram_names_every_layer_in_order():
    diagram = _readme_diagram()
    drawn = [name for line in diagram for name in line]
    assert sorted(drawn) == sorted(u for u in RANK if u != "xgrid"), "README diagram and LAYERS disagree"
    ranks = [max(RANK[name] for name in line) for line in diagram]
    assert ranks == sorted(ranks, reverse=True), "the README draws the layers top down"

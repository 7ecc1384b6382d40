"""The layers import downwards only: space → measure → predict → search → report/demo → cli.

Checked on each module's top-level imports (the package's ``__init__`` re-exports the public
API from several layers, so importing a module at run time loads more than it needs)."""

import ast
from pathlib import Path

import pytest

import lenna

ROOT = Path(lenna.__file__).parent
ABOVE = {
    "space": ("measure", "predict", "search", "report", "demo", "cli"),
    "measure": ("predict", "search", "report", "demo", "cli"),
    "predict": ("search", "report", "demo", "cli"),
    "search": ("report", "demo", "cli"),
    "report": ("search", "demo", "cli"),
}


def top_level_imports(path: Path) -> set[str]:
    """``lenna.*`` modules imported at a file's top level (``TYPE_CHECKING`` blocks aside)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("lenna.")}


@pytest.mark.parametrize("layer", ABOVE)
def test_a_layer_does_not_import_the_layers_above_it(layer):
    bad = []
    for path in sorted((ROOT / layer).glob("*.py")):
        for name in top_level_imports(path):
            if name.split(".")[1] in ABOVE[layer]:
                bad.append(f"{path.name} imports {name}")
    assert not bad, bad


def all_imports(path: Path) -> set[str]:
    """``lenna.*`` modules a file imports anywhere (in functions too), ``TYPE_CHECKING`` aside."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("lenna.")}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_module_of_measure_imports_itself_in_a_circle():
    """e.g. bench → reference → config → rules → bench, cut by the rules' own protocol."""
    graph = {
        module_name(p): {n for n in all_imports(p) if n.startswith("lenna.measure.")}
        for p in (ROOT / "measure").glob("*.py")
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(" → ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])

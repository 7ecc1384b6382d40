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

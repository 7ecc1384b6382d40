"""The console script: `import lenna` is cheap, and a Ctrl-C while the command line loads
(seconds, torch) is one line and exit 130, not an import traceback."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from lenna import entry


class Interrupting(types.ModuleType):
    """Stands for ``lenna.cli`` while it loads: the Ctrl-C lands there."""

    def __getattr__(self, name):
        raise KeyboardInterrupt


def test_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lenna.cli", Interrupting("lenna.cli"))
    with pytest.raises(SystemExit) as e:
        entry.main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "lenna: error: interrupted\n"


def test_importing_lenna_loads_neither_torch_nor_the_cli():
    code = "import sys, lenna; print('torch' in sys.modules, 'lenna.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_the_public_names_load_on_first_use():
    import lenna

    assert lenna.get_space("lenna").name == "lenna"
    assert set(lenna.__all__) <= set(dir(lenna))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        lenna.nothing_here  # noqa: B018

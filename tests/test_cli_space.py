"""`lenna space ...` and the CLI's error policy: one line on stderr, exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from measure_helpers import all_text, one_line_error
from typer.testing import CliRunner

from lenna import __version__
from lenna.cli import app

runner = CliRunner()


def test_space_list_shows_both_spaces():
    result = runner.invoke(app, ["space", "list"])
    assert result.exit_code == 0, all_text(result)
    assert "lenna" in result.output
    assert "darts" in result.output


def test_space_show_lenna_json():
    result = runner.invoke(app, ["space", "show", "lenna", "--json"])
    assert result.exit_code == 0, all_text(result)
    info = json.loads(result.stdout)
    assert info["name"] == "lenna"
    assert info["num_edges"] == 15
    assert info["num_features"] == 168
    assert len(info["ops"]["normal"]) == 11
    assert len(info["ops"]["downsampling"]) == 10


def test_space_show_darts_json():
    result = runner.invoke(app, ["space", "show", "darts", "--json"])
    assert result.exit_code == 0, all_text(result)
    info = json.loads(result.stdout)
    assert info["num_edges"] == 14
    assert len(info["ops"]["normal"]) == 8
    assert info["num_features"] == 2 + 14 * 8 + 1


def test_space_show_human_readable():
    result = runner.invoke(app, ["space", "show", "darts"])
    assert result.exit_code == 0, all_text(result)
    assert "sep_conv_3x3" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lenna {__version__}"


def test_unknown_space_is_one_line_and_exit_2():
    result = runner.invoke(app, ["space", "show", "nope"])
    assert result.exit_code == 2
    one_line_error(result, "nope")


@pytest.mark.parametrize("args,needle", [(["space", "show"], "name"), (["space", "shw"], "shw")])
def test_usage_errors_are_one_line_and_exit_2(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    one_line_error(result, needle)


@pytest.mark.slow
def test_console_script_unknown_space():
    script = Path(sys.executable).parent / "lenna"
    proc = subprocess.run(
        [str(script), "space", "show", "nope"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "nope" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [[], ["space"]], ids=["lenna", "lenna-space"])
def test_bare_group_shows_help(args):
    # app.py: "bare `lenna` / `lenna space`: show help"
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert "Usage" in result.output

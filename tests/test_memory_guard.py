"""Sizes that cannot fit are refused in one line before anything is allocated or written
(issue 25, D3)."""

import json

import pytest
import search_helpers as sh
from measure_helpers import one_line_error, tiny_config
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure.runner import run_measurement
from lenna.memory import block_bytes, check_fits
from lenna.search.network import NetConfig
from lenna.space import get_space


def test_a_block_too_large_for_memory_is_refused_and_leaves_no_file(tmp_path):
    db = tmp_path / "h.db"
    with pytest.raises(InputError, match=r"needs about .* of memory"):
        run_measurement(db, tiny_config(channels=(8, 99_999_999)), 1)
    assert not db.exists()  # the corrected command starts clean
    run_measurement(db, tiny_config(), 1)  # and works


def test_the_cli_says_it_in_one_line(tmp_path):
    args = ["measure", "--space", "lenna", "--channels", "8:99999999", "--resolutions", "8"]
    result = CliRunner().invoke(app, [*args, "-n", "1", "--out", str(tmp_path / "h.db")])
    one_line_error(result, "choose smaller sizes")
    assert not (tmp_path / "h.db").exists()


def test_estimates_grow_with_size_and_ordinary_sizes_fit():
    space = get_space("darts")
    small = block_bytes(space, "normal", 16, 16)
    assert small < block_bytes(space, "normal", 64, 16) < block_bytes(space, "normal", 64, 32)
    check_fits("a small block", small)  # no error


def test_a_search_network_too_large_is_refused_before_the_folder_is_written(tmp_path):
    out = tmp_path / "x"
    cfg = sh.tiny_config(net=NetConfig(channels=1_000_000, cells=2))
    with pytest.raises(InputError, match=r"the search network .* needs about"):
        sh.run(cfg, out)
    assert not out.exists()


def test_a_genotype_too_large_is_refused_before_it_is_built(tmp_path):
    g = sh.cheap_genotype()
    path = g.save(tmp_path / "g.json")
    d = json.loads(path.read_text())
    d["net"]["channels"] = 10_000_000
    path.write_text(json.dumps(d))
    args = ["evaluate-arch", str(path), "--data", "synthetic", "--epochs", "0"]
    result = CliRunner().invoke(app, args)
    one_line_error(result, "the derived network")


def test_measure_ops_names_the_resolution_it_was_given(tmp_path):
    args = ["measure-ops", "--space", "lenna", "--channels", "8:99999999", "--resolutions", "8"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "h.db")])
    line = one_line_error(result, "choose smaller sizes")
    assert "at 8×8" in line and "32×32" not in line

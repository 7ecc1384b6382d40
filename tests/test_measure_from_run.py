"""`lenna measure --from-run`: a finished search's derived cells and late α become rows, at
the cells' own shapes; adding them twice adds nothing; -n still counts sampled rows only."""

import numpy as np
import pytest
import search_helpers as sh
from measure_helpers import one_line_error, tiny_config
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure.extra_rows import ExtraBlock, add_blocks, block_index
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset
from lenna.search.network import cell_specs
from lenna.search.run_cells import run_cells
from lenna.space import cell_alphas, derive, get_space

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    sh.run(sh.tiny_config("darts", epochs=3, lam=0.0, predictor=None), out)
    return out


def test_run_cells_are_the_derived_cells_and_late_alphas_at_their_shapes(run_dir):
    name, cells = run_cells(run_dir)
    assert name == "darts"
    space = get_space("darts")
    from lenna.search.genotype import Genotype

    g = Genotype.load(run_dir / "genotype.json")
    shapes = {(s.block_type, s.channels, s.resolution) for s in cell_specs(space, g.net)}
    derived = [c for c in cells if c.regime == "run_derived"]
    assert {(c.block_type, c.channels, c.resolution) for c in derived} == shapes
    for c in derived:
        assert derive(space, c.block_type, c.alphas) == g.cells[c.block_type]
    snaps = [c for c in cells if c.regime == "run_alpha"]
    assert len(snaps) == 2 * len(shapes)  # 3 epochs: the later half is epochs 2 and 3
    assert not any(np.all(np.abs(c.alphas) < 1e-12) for c in snaps)


@pytest.mark.slow
def test_adding_twice_adds_nothing_and_n_counts_sampled_rows(tmp_path, run_dir):
    db = tmp_path / "d.db"
    cfg = tiny_config(space="darts", channels=(4, 8), resolutions=(8, 16))
    run_measurement(db, cfg, 2)
    _, cells = run_cells(run_dir)
    blocks = [ExtraBlock(c.block_type, c.channels, c.resolution, c.alphas, c.regime) for c in cells]
    added, skipped = add_blocks(db, cfg, blocks)
    assert (added, skipped) == (len(blocks), 0)
    assert add_blocks(db, cfg, blocks) == (0, len(blocks))
    with Dataset.open(db) as ds:
        df = ds.samples()
    extra = df[df["sample_index"] < 0]
    assert sorted(extra["regime"].unique()) == ["run_alpha", "run_derived"]
    assert set(extra["sample_index"]) == {
        block_index(b.block_type, b.channels, b.resolution, b.alphas) for b in blocks
    }
    assert (extra["latency_ms"] > 0).all()
    # -n still means sampled rows: 3 sampled rows, not "3 rows in all"
    run_measurement(db, cfg, 3)
    with Dataset.open(db) as ds:
        assert sorted(i for i in ds.indices() if i >= 0) == [0, 1, 2]


def test_block_index_is_a_function_of_the_block():
    a = cell_alphas(get_space("lenna"), "normal", ["3x3_Conv"] * 15)
    assert block_index("normal", 8, 16, a) == block_index("normal", 8, 16, a.copy())
    assert block_index("normal", 8, 16, a) != block_index("normal", 9, 16, a)
    assert block_index("normal", 8, 16, a) < 0


def test_cli_from_run_twice_adds_nothing(tmp_path, run_dir):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(space="darts", channels=(4, 8), resolutions=(8, 16)), 0)
    runner = CliRunner()
    first = runner.invoke(app, ["measure", "--out", str(db), "--from-run", str(run_dir)])
    assert first.exit_code == 0, first.output
    assert "rows added" in first.output
    second = runner.invoke(app, ["measure", "--out", str(db), "--from-run", str(run_dir)])
    assert second.exit_code == 0, second.output
    assert "0 rows added" in second.output and "already there" in second.output


def test_cli_from_run_of_another_space_is_one_line(tmp_path, run_dir):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 0)  # a lenna file
    result = CliRunner().invoke(app, ["measure", "--out", str(db), "--from-run", str(run_dir)])
    one_line_error(result, "searched space 'darts'")


def test_cli_needs_n_or_from_run(tmp_path):
    result = CliRunner().invoke(app, ["measure", "--out", str(tmp_path / "x.db")])
    one_line_error(result, "give -n N")


def test_cli_from_run_of_a_missing_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["measure", "--out", str(tmp_path / "x.db"), "--from-run", str(tmp_path / "nope")]
    )
    one_line_error(result, "no such run folder")

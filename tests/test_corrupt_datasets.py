"""A dataset whose stored data does not parse ends in one line naming the file, the row (or
meta key) and the field, for every command that reads it (issue 25, D1): a table of
mutations × commands."""

import sqlite3

import pytest
from measure_helpers import one_line_error
from predict_helpers import copy_db, synthetic_db
from typer.testing import CliRunner

from lenna.cli import app

runner = CliRunner()

ROW = 4
MUTATIONS = {  # name: (SQL, params, what the line must say)
    "alphas not JSON": (
        "UPDATE samples SET alphas = 'not json' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: field alphas is not valid JSON",
    ),
    "alphas ragged": (
        "UPDATE samples SET alphas = '[[1,2],[3]]' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: field alphas must be a table",
    ),
    "alphas wrong shape": (
        "UPDATE samples SET alphas = '[[1,2],[3,4]]' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: alphas for space 'lenna' must have shape",
    ),
    "alphas a string": (
        "UPDATE samples SET alphas = '\"abc\"' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: field alphas must be a table",
    ),
    "latency text": (
        "UPDATE samples SET latency_ms = 'abc' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: field latency_ms is not a number",
    ),
    "trace not JSON": (
        "UPDATE samples SET trace = '{oops' WHERE sample_index = ?",
        (ROW,),
        f"sample {ROW}: field trace is not valid JSON",
    ),
    "config not JSON": (
        "UPDATE meta SET value = '{garbage' WHERE key = 'config'",
        (),
        "meta field 'config' is not valid JSON",
    ),
    "space missing": ("DELETE FROM meta WHERE key = 'space'", (), "meta field 'space' is missing"),
    "space a number": (
        "UPDATE meta SET value = '42' WHERE key = 'space'",
        (),
        "meta field 'space' must be a space name",
    ),
    "config without measure": (
        "UPDATE meta SET value = '{}' WHERE key = 'config'",
        (),
        "meta field 'config' has no 'measure' object",
    ),
    "reference_ms text": (
        "INSERT OR REPLACE INTO meta VALUES ('reference_ms', '\"x\"')",
        (),
        "meta field 'reference_ms' must be a number",
    ),
    "fingerprint a list": (
        "UPDATE meta SET value = '[1]' WHERE key = 'fingerprint'",
        (),
        "meta field 'fingerprint' must be an object",
    ),
}
COMMANDS = {
    "info": lambda db, tmp: ["dataset", "info", str(db)],
    "info --json": lambda db, tmp: ["dataset", "info", str(db), "--json"],
    "export": lambda db, tmp: ["dataset", "export", str(db), str(tmp / "x.csv")],
    "train": lambda db, tmp: ["train", str(db), "--model", "elasticnet", "--out", str(tmp / "m")],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_corrupt_dataset_is_one_line_naming_file_row_and_field(tmp_path, mutation, command):
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    sql, params, needle = MUTATIONS[mutation]
    con = sqlite3.connect(db)
    with con:
        con.execute(sql, params)
    con.close()
    result = runner.invoke(app, COMMANDS[command](db, tmp_path))
    line = one_line_error(result, needle)
    assert str(db) in line


def test_a_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    import pandas as pd

    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    dest = tmp_path / "x.csv"
    dest.write_text("the previous export\n")

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    result = runner.invoke(app, ["dataset", "export", str(db), str(dest)])
    one_line_error(result, "No space left on device")
    assert dest.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

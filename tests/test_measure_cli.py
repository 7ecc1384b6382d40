"""`lenna measure`, `measure-ops`, `dataset` and `plot`: one-line errors, tiny happy paths.

Datasets are created through the API with the fast rule; the CLI then resumes them, taking
its options (rule parameters included) from the file.
"""

import json
import shutil
import sqlite3
import subprocess
from types import SimpleNamespace

import pytest
from measure_helpers import (
    LENNA_SCRIPT,
    all_text,
    count_rows,
    make_dataset,
    one_line_error,
    tiny_config,
)
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure import runner as runner_mod
from lenna.measure.runner import run_measurement

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A tiny dataset with 2 rows measured without --trace (do not modify: copy it)."""
    return make_dataset(tmp_path_factory.mktemp("cli") / "d.db", 2)


@pytest.fixture
def measured_copy(measured, tmp_path):
    dest = tmp_path / "d.db"
    shutil.copy(measured, dest)
    return dest


# ---- bad values: exit 2, one line on stderr, no traceback ---------------------------------
TINY = ["--channels", "2:4", "--resolutions", "8", "--threads", "1", "--drift-every", "0"]


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--space", "lenna", "--channels", "0:10"], "--channels"),
        (["--space", "lenna", "--channels", "10:5"], "--channels"),
        (["--space", "lenna", "--channels", "abc"], "--channels"),
        (["--space", "lenna", "--device", "tpu"], "tpu"),
        (["--space", "nope"], "nope"),
        (["--space", "lenna", "--rule", "nope"], "nope"),
        (["--space", "lenna", "--resolutions", "8,x"], "--resolutions"),
        (["--space", "lenna", "--block-types", "normal,huge"], "huge"),
        (["--space", "lenna", "--threads", "0"], "threads"),
        (["--space", "lenna", "--batch", "0"], "batch"),
        (["--space", "lenna", "-n", "-1"], "-n"),
        ([], "--space"),  # a new file needs --space
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_measure_bad_values(tmp_path, extra, needle):
    db = tmp_path / "new.db"
    args = ["measure", "--out", str(db)]
    if "-n" not in extra:
        args += ["-n", "1"]
    result = runner.invoke(app, [*args, *extra])
    one_line_error(result, needle)
    assert not db.exists()  # nothing created by a refused command


def test_measure_resume_with_other_settings_is_one_line(measured_copy):
    result = runner.invoke(
        app, ["measure", "--out", str(measured_copy), "-n", "3", "--channels", "2:8"]
    )
    one_line_error(result, "channels")
    assert count_rows(measured_copy) == 2


def test_measure_resume_on_a_non_dataset_is_one_line(tmp_path):
    p = tmp_path / "notes.db"
    p.write_text("not a database\n" * 10)
    result = runner.invoke(app, ["measure", "--out", str(p), "-n", "1"])
    one_line_error(result, "not a LENNA dataset")


def test_dataset_info_on_a_non_dataset(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not a database\n" * 10)
    one_line_error(runner.invoke(app, ["dataset", "info", str(p)]), "not a LENNA dataset")
    missing = tmp_path / "missing.db"
    one_line_error(runner.invoke(app, ["dataset", "info", str(missing)]), "no dataset")


def test_dataset_export_bad_extension(measured, tmp_path):
    dest = tmp_path / "out.xlsx"
    result = runner.invoke(app, ["dataset", "export", str(measured), str(dest)])
    one_line_error(result, "out.xlsx")
    assert not dest.exists()


def test_plot_convergence_without_trace_is_one_line(measured, tmp_path):
    out = tmp_path / "f.png"
    result = runner.invoke(
        app, ["plot", "convergence", str(measured), "--sample", "0", "--out", str(out)]
    )
    one_line_error(result, "--trace")
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needle",
    [(["--sample", "99", "--out", "f.png"], "99"), (["--sample", "0", "--out", "f.gif"], "f.gif")],
)
def test_plot_convergence_other_errors(measured, tmp_path, args, needle):
    args = [a if a not in ("f.png", "f.gif") else str(tmp_path / a) for a in args]
    result = runner.invoke(app, ["plot", "convergence", str(measured), *args])
    one_line_error(result, needle)


# ---- happy paths ---------------------------------------------------------------------------
def test_dataset_info_json(measured):
    result = runner.invoke(app, ["dataset", "info", str(measured), "--json"])
    assert result.exit_code == 0, all_text(result)
    info = json.loads(result.stdout)
    assert {"rows", "space", "fingerprint", "config"} <= set(info)
    assert info["rows"] == 2
    assert info["space"] == "lenna"
    assert len(info["fingerprint"]["hash"]) == 12
    assert info["fingerprints"] == [info["fingerprint"]["hash"]]
    assert info["config"]["channels"] == [2, 4]
    assert info["config"]["measure"]["rule"] == "ci"
    assert info["config"]["measure"]["threads"] == 1
    assert info["op_table_rows"] == 0
    assert info["latency_ms"]["min"] > 0
    assert info["config"]["measure"]["normalise"] is True
    assert info["reference_ms"] > 0  # the calibrated time every label is normalised to
    assert info["drift_checks"] is None  # measured with the drift guard off


def test_dataset_info_human(measured):
    result = runner.invoke(app, ["dataset", "info", str(measured)])
    assert result.exit_code == 0, all_text(result)
    assert "2 rows" in result.stdout
    assert "rule ci" in result.stdout and "torch backend" in result.stdout
    fp = json.loads(runner.invoke(app, ["dataset", "info", str(measured), "--json"]).stdout)
    machine = next(ln for ln in result.stdout.splitlines() if ln.startswith("machine: "))
    assert machine.endswith(f"[{fp['fingerprint']['hash']}]")  # one line, hash not eaten as markup


def test_dataset_info_sums_up_the_drift_guard(tmp_path, monkeypatch):
    """The control's moves from its first value are the file's own test-retest figure."""
    controls = iter([1.0, 1.02, 0.95, 1.01])  # the first value, then +2 %, -5 % (flags), +1 %
    monkeypatch.setattr(
        runner_mod,
        "control_measurement",
        lambda space, cfg, calibration=None: SimpleNamespace(latency_ms=next(controls)),
    )
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(drift_every=1), 3, on_warning=lambda m: None)
    result = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert result.exit_code == 0, all_text(result)
    checks = json.loads(result.stdout)["drift_checks"]
    assert checks == {
        "checks": 3,
        "median_abs_change": pytest.approx(0.02),
        "max_abs_change": pytest.approx(0.05),
        "flagged_checks": 1,
    }
    human = " ".join(runner.invoke(app, ["dataset", "info", str(db)]).stdout.split())  # unwrap
    assert "measured again 3 times" in human and "median 2.0%" in human
    assert "at most 5.0%" in human and "1 of the checks flagged rows" in human


def test_dataset_export_csv(measured, tmp_path):
    dest = tmp_path / "out.csv"
    result = runner.invoke(app, ["dataset", "export", str(measured), str(dest)])
    assert result.exit_code == 0, all_text(result)
    assert dest.stat().st_size > 0
    assert "2 rows" in all_text(result)


def test_measure_resumes_a_file_with_its_own_options(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "2"])
    assert result.exit_code == 0, all_text(result)
    assert count_rows(db) == 2
    assert "2 rows in" in all_text(result)
    # the full option set that matches the file is accepted too
    full = ["--space", "lenna", *TINY, "--rule", "ci"]
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "3", *full])
    assert result.exit_code == 0, all_text(result)
    assert count_rows(db) == 3


@pytest.mark.slow
def test_plot_convergence_on_a_traced_sample_writes_a_png(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "1", "--trace"])
    assert result.exit_code == 0, all_text(result)
    out = tmp_path / "f.png"
    result = runner.invoke(
        app, ["plot", "convergence", str(db), "--sample", "0", "--out", str(out)]
    )
    assert result.exit_code == 0, all_text(result)
    data = out.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_measure_ops_adds_op_table_rows(measured_copy):
    result = runner.invoke(
        app,
        ["measure-ops", "--out", str(measured_copy), "--channels", "2:4", "--resolutions", "8"],
    )
    assert result.exit_code == 0, all_text(result)
    info = json.loads(runner.invoke(app, ["dataset", "info", str(measured_copy), "--json"]).stdout)
    # lenna: normal 11 ops (one edge kind), reduction 10 down ops + 11 ops; channels 2 and 4
    assert info["op_table_rows"] == 2 * (11 + 10 + 11)
    assert info["rows"] == 2  # samples untouched
    con = sqlite3.connect(measured_copy)
    try:
        kinds = dict(con.execute("SELECT edge_kind, COUNT(*) FROM op_table GROUP BY edge_kind"))
        bad = con.execute("SELECT COUNT(*) FROM op_table WHERE latency_ms <= 0").fetchone()[0]
    finally:
        con.close()
    assert kinds == {"down": 2 * 10, "same": 2 * (11 + 11)}
    assert bad == 0


def test_measure_ops_bad_passes(measured_copy):
    result = runner.invoke(app, ["measure-ops", "--out", str(measured_copy), "--passes", "0"])
    one_line_error(result, "--passes")


BAD = ["--channels", "0:10"]


@pytest.mark.slow
def test_console_script_bad_channels(tmp_path):
    db = tmp_path / "d.db"
    proc = subprocess.run(
        [str(LENNA_SCRIPT), "measure", "--space", "lenna", "--out", str(db), "-n", "1", *BAD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--channels" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not db.exists()


def test_recalibrate_on_an_existing_file_says_the_file_keeps_its_scale(tmp_path):
    db = make_dataset(tmp_path / "d.db", 1)
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "1", "--recalibrate"])
    assert result.exit_code == 0, all_text(result)
    assert "keeps its own calibration" in all_text(result)

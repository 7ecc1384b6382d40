"""Each row keeps the machine's load while it was measured; older files still read and resume.

Load = the median time of a row's reference passes over the reference's calibrated time.
Schema 1 had no load column, schema 2 no device column in the drift table, schema 3 none in
the samples table.
"""

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from measure_helpers import all_text, make_dataset, tiny_config
from typer.testing import CliRunner

import lenna.measure.runner as runner_mod
from lenna.cli import app
from lenna.cli.dataset import _device_counts
from lenna.measure.config import MeasureConfig
from lenna.measure.rules import Estimate
from lenna.measure.runner import run_measurement
from lenna.measure.store import DRIFT_COLUMNS, SAMPLE_COLUMNS, SCHEMA_VERSION, Dataset

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()


def _estimate(**kw) -> Estimate:
    return Estimate(
        latency_ms=1.0, rule="cv", resets=3, passes=9, ci_half_width_ms=0.01, converged=True, **kw
    )


def test_load_is_median_reference_time_over_calibrated():
    e = _estimate(reference_ms=2.0, references_ms=[2.0, 2.4, 3.0, 9.0, 2.2])
    assert e.load == pytest.approx(2.4 / 2.0)
    assert _estimate().load is None  # not normalised: nothing to compare with
    assert _estimate(reference_ms=2.0).load is None


def _user_version(db) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def test_measured_rows_store_their_load_and_info_sums_it_up(tmp_path):
    db = make_dataset(tmp_path / "d.db", 3)
    assert _user_version(db) == SCHEMA_VERSION == 4
    with Dataset.open(db) as ds:
        load = ds.samples()["load"].to_numpy()
        one = ds.sample(1)
    assert load.shape == (3,) and np.all(np.isfinite(load)) and np.all(load > 0)
    assert one["load"] == pytest.approx(load[1])
    assert one["device"] is None  # a local run names no device
    result = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert result.exit_code == 0, all_text(result)
    info = json.loads(result.stdout)["load"]
    assert info["rows"] == 3
    assert info["p10"] <= info["median"] <= info["p90"]
    assert info["median"] == pytest.approx(float(np.median(load)))
    human = runner.invoke(app, ["dataset", "info", str(db)])
    assert "machine load while measuring" in human.stdout


def test_rows_of_the_seed_rule_have_no_load(tmp_path):
    seed_rule = MeasureConfig(rule="seed", rule_params={"n": 2, "k": 1, "max_resets": 3})
    db = tmp_path / "s.db"
    run_measurement(db, tiny_config(measure=seed_rule), 2)
    with Dataset.open(db) as ds:
        assert ds.samples()["load"].isna().all()
        assert ds.sample(0)["load"] is None
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert info["load"] is None


def _as_schema_1(db) -> None:
    """Make ``db`` what LENNA wrote before the load column existed."""
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE samples DROP COLUMN load")
    con.execute("ALTER TABLE samples DROP COLUMN device")
    con.execute("ALTER TABLE drift DROP COLUMN device")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()


def _columns(db, table: str = "samples") -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
    finally:
        con.close()


def test_a_schema_1_file_reads_without_being_changed(tmp_path):
    db = make_dataset(tmp_path / "old.db", 2)
    _as_schema_1(db)
    with Dataset.open(db) as ds:
        df = ds.samples()
        row = ds.sample(0)
    assert len(df) == 2 and df["load"].isna().all() and row["load"] is None
    result = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert result.exit_code == 0, all_text(result)
    assert json.loads(result.stdout)["load"] is None
    export = runner.invoke(app, ["dataset", "export", str(db), str(tmp_path / "old.csv")])
    assert export.exit_code == 0, all_text(export)
    assert run_measurement(db, tiny_config(), 2) == 2  # nothing to add: nothing written
    # reading (or a resume with nothing to do) never upgrades a file an older LENNA shares
    assert _user_version(db) == 1 and not {"load", "device"} & _columns(db)
    assert "device" not in _columns(db, "drift")


def test_resuming_a_schema_1_file_upgrades_it_and_keeps_its_rows(tmp_path):
    db = make_dataset(tmp_path / "old.db", 2)
    _as_schema_1(db)
    with Dataset.open(db) as ds:
        before = ds.samples()["latency_ms"].tolist()
    assert run_measurement(db, tiny_config(), 3) == 3
    assert _user_version(db) == SCHEMA_VERSION
    assert "device" in _columns(db, "drift") and "device" in _columns(db)
    with Dataset.open(db) as ds:
        df = ds.samples()
    assert df["latency_ms"].tolist()[:2] == before
    assert df["device"].tolist() == [None] * 3  # a local run names no device
    assert df["load"].isna().tolist() == [True, True, False]  # old rows: unknown, not invented
    assert list(df.columns) == [*SAMPLE_COLUMNS, "created_at"]  # as a new file's, load included
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert info["load"]["rows"] == 1 and info["load"]["median"] == pytest.approx(df["load"][2])


def test_a_half_upgraded_file_finishes_its_upgrade(tmp_path):
    """After a crash between adding the column and setting the version, resuming finishes."""
    db = make_dataset(tmp_path / "half.db", 1)
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 1")  # the column is there, the version is not
    con.commit()
    con.close()
    assert run_measurement(db, tiny_config(), 2) == 2
    assert _user_version(db) == SCHEMA_VERSION
    with Dataset.open(db) as ds:
        assert ds.samples()["load"].notna().all()


def _as_schema_2(db) -> None:
    """Make ``db`` what LENNA wrote before the drift table named its device."""
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE samples DROP COLUMN device")
    con.execute("ALTER TABLE drift DROP COLUMN device")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()


@pytest.fixture
def quick_control(monkeypatch):
    """The drift guard's control sample, replaced by a fixed value (no real measurement)."""
    monkeypatch.setattr(
        runner_mod,
        "control_measurement",
        lambda space, cfg, z0=None, ratios=None: SimpleNamespace(latency_ms=1.0),
    )


def test_a_schema_2_file_reads_and_resumes_with_its_old_controls_deviceless(
    tmp_path, quick_control
):
    db = tmp_path / "v2.db"
    run_measurement(db, tiny_config(drift_every=1), 1)  # one row, one control
    _as_schema_2(db)
    with Dataset.open(db) as ds:
        old = ds.drift()
    assert list(old.columns) == [*DRIFT_COLUMNS, "created_at"] and list(old["device"]) == [None]
    assert _user_version(db) == 2 and "device" not in _columns(db, "drift")  # read, unchanged
    assert run_measurement(db, tiny_config(drift_every=1), 2) == 2
    assert _user_version(db) == SCHEMA_VERSION and "device" in _columns(db, "drift")
    with Dataset.open(db) as ds:
        drift = ds.drift()
    assert list(drift["after_samples"]) == [1, 2]
    assert list(drift["device"]) == [None, None]  # a local run's controls name no device


def test_a_control_added_first_upgrades_a_schema_2_file(tmp_path):
    """A fleet device's control can be the first thing written to a resumed file."""
    db = make_dataset(tmp_path / "v2.db", 1)
    _as_schema_2(db)
    with Dataset.open(db) as ds:
        ds.add_drift(1, 1.0, 0.0, [], "device 0")
        assert list(ds.drift()["device"]) == ["device 0"]
    assert _user_version(db) == SCHEMA_VERSION


def _as_schema_3(db) -> None:
    """Make ``db`` what LENNA wrote before a sample row named its device."""
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE samples DROP COLUMN device")
    con.execute("PRAGMA user_version = 3")
    con.commit()
    con.close()


def test_a_schema_3_file_reads_unchanged_and_a_fleet_row_upgrades_it(tmp_path):
    db = make_dataset(tmp_path / "v3.db", 2)
    _as_schema_3(db)
    with Dataset.open(db) as ds:
        df, row = ds.samples(), ds.sample(0)
        new = {**row, "sample_index": 2, "device": "device 1"}
    assert list(df.columns) == [*SAMPLE_COLUMNS, "created_at"]
    assert df["device"].tolist() == [None, None] and row["device"] is None
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert info["devices"] is None
    assert _user_version(db) == 3 and "device" not in _columns(db)  # read, unchanged
    with Dataset.open(db) as ds:
        ds.add_sample(new)  # as the fleet's driver writes a row
        assert ds.sample(2)["device"] == "device 1"
        assert ds.samples()["device"].tolist() == [None, None, "device 1"]
    assert _user_version(db) == SCHEMA_VERSION and "device" in _columns(db)
    result = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert json.loads(result.stdout)["devices"] == {"device 1": 1}
    human = runner.invoke(app, ["dataset", "info", str(db)]).stdout
    assert "rows per fleet device: device 1: 1 (2 measured locally)" in human
    for out in ("v3.csv", "v3.parquet"):  # exported with the device, as text in both formats
        assert (
            runner.invoke(app, ["dataset", "export", str(db), str(tmp_path / out)]).exit_code == 0
        )
    csv = pd.read_csv(tmp_path / "v3.csv")
    assert csv["device"].isna().tolist() == [True, True, False] and csv["device"][2] == "device 1"
    schema = pq.read_schema(tmp_path / "v3.parquet")
    assert schema.field("device").type == schema.field("block_type").type  # text, like the rest


def test_a_local_file_exports_its_empty_device_column_as_text(tmp_path):
    """One Parquet schema for local and fleet files: no all-None column typed ``null``."""
    db = make_dataset(tmp_path / "d.db", 2)
    runner.invoke(app, ["dataset", "export", str(db), str(tmp_path / "d.parquet")])
    schema = pq.read_schema(tmp_path / "d.parquet")
    assert schema.field("device").type == schema.field("block_type").type


def test_rows_per_device_are_counted_in_the_devices_order():
    names = ["device 10", "device 2", None, "device 2", "device 0"]
    counts = _device_counts(pd.DataFrame({"device": names}))
    assert list(counts.items()) == [("device 0", 1), ("device 2", 2), ("device 10", 1)]
    assert _device_counts(pd.DataFrame({"device": [None, None]})) is None  # a local file

"""The dataset file: resume, crashes and signals, refusals, export, drift guard.

Real measurements here are tiny (C 2–4, resolution 8, one thread, 3–5 resets per sample).
The crash tests run ``lenna measure`` in a subprocess on a file created beforehand with the
fast rule, so each sample takes a fraction of a second.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from measure_helpers import (
    LENNA_SCRIPT,
    count_rows,
    fast_measure,
    make_dataset,
    rows,
    tiny_config,
)

from lenna.errors import InputError
from lenna.measure import runner as runner_mod
from lenna.measure.export import export, to_frame
from lenna.measure.fingerprint import fingerprint
from lenna.measure.runner import run_measurement
from lenna.measure.store import APPLICATION_ID, Dataset
from lenna.space import encode, get_space, probabilities

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- resume --------------------------------------------------------------------------------
def test_resume_completes_to_n_without_duplicates(tmp_path, monkeypatch):
    db = tmp_path / "d.db"
    cfg = tiny_config()
    assert run_measurement(db, cfg, 3) == 3
    first = rows(db)
    assert set(first) == {0, 1, 2}
    assert run_measurement(db, cfg, 5) == 5
    after = rows(db)
    assert set(after) == {0, 1, 2, 3, 4}
    assert {i: after[i] for i in first} == first  # earlier rows untouched

    # already complete: nothing is measured at all
    def no_measuring(*a, **k):
        raise AssertionError("measured although the file already holds n rows")

    monkeypatch.setattr(runner_mod, "measure_block", no_measuring)  # the control sample
    monkeypatch.setattr(runner_mod, "measure_spec", no_measuring)  # every sampled row
    assert run_measurement(db, cfg, 5) == 5
    assert run_measurement(db, cfg, 2) == 5  # rows beyond n are kept
    assert rows(db) == after
    with Dataset.open(db) as ds:
        assert ds.count() == 5
        df = ds.samples()
    assert list(df["sample_index"]) == [0, 1, 2, 3, 4]
    assert (df["batch"] == 1).all()
    assert set(df["channels"]) <= {2, 3, 4}
    assert (df["resolution"] == 8).all()
    assert (df["rule"] == "ci").all()
    assert ((df["resets"] >= 3) & (df["resets"] <= 5)).all()
    assert (df["passes"] == df["resets"] * cfg.measure.make_rule().passes).all()
    assert (df["latency_ms"] > 0).all()


def test_resumed_rows_are_the_samples_an_uninterrupted_run_measures(tmp_path):
    cfg = tiny_config()
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run_measurement(a, cfg, 2)
    run_measurement(a, cfg, 4)
    run_measurement(b, cfg, 4)
    with Dataset.open(a) as da, Dataset.open(b) as dbb:
        sa, sb = da.samples(), dbb.samples()
    cols = ["sample_index", "block_type", "channels", "resolution", "regime"]
    pd.testing.assert_frame_equal(sa[cols], sb[cols])
    assert list(sa["alphas"]) == list(sb["alphas"])


def test_negative_n_refused(tmp_path):
    with pytest.raises(InputError, match="-n"):
        run_measurement(tmp_path / "d.db", tiny_config(), -1)
    assert not (tmp_path / "d.db").exists()


# ---- crashes and signals (real subprocesses) -----------------------------------------------
MEASURE_ARGS = [
    "measure",
    "--space",
    "lenna",
    "--channels",
    "2:4",
    "--resolutions",
    "8",
    "--threads",
    "1",
    "--rule",
    "ci",
    "--drift-every",
    "0",
]


def start_measuring(db: Path, n: int = 10_000) -> subprocess.Popen:
    """``lenna measure`` resuming a file made with the fast rule (its options come from it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.Popen(
        [str(LENNA_SCRIPT), *MEASURE_ARGS, "--out", str(db), "-n", str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_rows(proc: subprocess.Popen, db: Path, at_least: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"lenna measure ended early ({proc.returncode}): {err[-2000:]}")
        try:
            n = count_rows(db)
        except sqlite3.OperationalError:  # locked for a moment
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    pytest.fail(f"no {at_least} rows within {timeout} s")


@pytest.fixture
def fresh_db(tmp_path):
    """A file with the tiny fast config and no rows yet."""
    return make_dataset(tmp_path / "d.db", 0)


@pytest.mark.slow  # real measuring subprocesses, killed and resumed
def test_sigkill_mid_run_then_resume_completes_exactly(fresh_db):
    proc = start_measuring(fresh_db)
    try:
        wait_for_rows(proc, fresh_db, 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = rows(fresh_db)
    assert len(before) >= 2
    assert set(before) == set(range(len(before)))
    target = len(before) + 3
    assert run_measurement(fresh_db, tiny_config(), target) == target
    after = rows(fresh_db)
    assert set(after) == set(range(target))
    con = sqlite3.connect(fresh_db)
    try:
        total, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT sample_index) FROM samples"
        ).fetchone()
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert total == distinct == target
    assert {i: after[i] for i in before} == before  # committed rows unchanged


@pytest.mark.slow  # real measuring subprocesses, interrupted
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_between_commits_and_says_how_many_rows(fresh_db, sig, code):
    proc = start_measuring(fresh_db)
    try:
        wait_for_rows(proc, fresh_db, 2)
        os.kill(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            said = [ln for ln in err.splitlines() if "xception" in ln or "rror" in ln]
            pytest.fail(f"still measuring 60 s after the signal; {said[:20]}; {err[-1500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "rows stored" in ln]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("lenna: error: interrupted:")
    stored = rows(fresh_db)
    said = int(lines[0].split("interrupted:")[1].split()[0])
    assert 2 <= said <= len(stored)  # the message never claims more than the file holds
    assert set(stored) == set(range(len(stored)))
    # and the run resumes from there
    before = dict(stored)
    assert run_measurement(fresh_db, tiny_config(), len(stored) + 1) == len(stored) + 1
    assert {i: rows(fresh_db)[i] for i in before} == before


# ---- refusals ------------------------------------------------------------------------------
def test_fingerprint_mismatch_refused_unless_allow_mixed(tmp_path):
    db = tmp_path / "d.db"
    cfg = tiny_config()
    m = cfg.measure
    real = fingerprint(m.device, m.threads, m.dtype, m.batch)
    other = {**real, "cpu_model": "Other CPU", "hash": "0123456789ab"}
    assert other["hash"] != real["hash"]
    run_measurement(db, cfg, 1, fp=other)
    with pytest.raises(InputError, match="--allow-mixed") as exc:
        run_measurement(db, cfg, 2)
    assert "0123456789ab" in str(exc.value)
    assert "differs in: cpu_model)" in str(exc.value)  # what differs, not just two hashes
    assert count_rows(db) == 1
    assert run_measurement(db, cfg, 2, allow_mixed=True) == 2
    with Dataset.open(db) as ds:
        assert set(ds.fingerprints()) == {other["hash"], real["hash"]}
        df = ds.samples()
        assert ds.meta["fingerprint"]["hash"] == other["hash"]  # the file's first machine
    assert list(df["fingerprint"]) == [other["hash"], real["hash"]]
    # once this machine is in the file, no flag is needed any more
    assert run_measurement(db, cfg, 2) == 2


def test_text_file_refused(tmp_path):
    p = tmp_path / "notes.db"
    p.write_text("hello, this is not a database\n" * 20)
    with pytest.raises(InputError, match="not a LENNA dataset"):
        Dataset.open(p)
    with pytest.raises(InputError, match="not a LENNA dataset"):
        run_measurement(p, tiny_config(), 1)
    assert p.read_text().startswith("hello")


def foreign_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE samples (x INTEGER)")
    con.execute("INSERT INTO samples VALUES (1)")
    con.commit()
    con.close()
    return path


def test_sqlite_file_without_application_id_refused(tmp_path):
    p = foreign_sqlite(tmp_path / "other.db")
    with pytest.raises(InputError, match="not a LENNA dataset"):
        Dataset.open(p)
    with pytest.raises(InputError, match="not a LENNA dataset"):
        run_measurement(p, tiny_config(), 1)
    con = sqlite3.connect(p)
    assert con.execute("SELECT * FROM samples").fetchall() == [(1,)]
    con.close()


def test_refusing_a_foreign_sqlite_file_leaves_it_unchanged(tmp_path):
    # A refused file is not ours: opening it to look must not rewrite it (journal mode, header).
    p = foreign_sqlite(tmp_path / "other.db")
    before = p.read_bytes()
    with pytest.raises(InputError):
        Dataset.open(p)
    con = sqlite3.connect(p)
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    assert mode == "delete"
    assert p.read_bytes() == before


def test_newer_schema_refused(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer"):
        Dataset.open(db)
    with pytest.raises(InputError, match="newer"):
        run_measurement(db, tiny_config(), 1)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no dataset"):
        Dataset.open(tmp_path / "missing.db")
    with pytest.raises(InputError, match="does not exist"):
        run_measurement(tmp_path / "no" / "such" / "d.db", tiny_config(), 1)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"channels": (2, 8)}, "channels"),
        ({"resolutions": (4,)}, "resolutions"),
        ({"seed": 1}, "seed"),
        ({"block_types": ("normal",)}, "block_types"),
        ({"space": "darts"}, "darts"),
    ],
)
def test_resume_with_other_settings_refused(tmp_path, change, needle):
    db = make_dataset(tmp_path / "d.db", 0)
    with pytest.raises(InputError, match=needle):
        run_measurement(db, tiny_config(**change), 1)
    assert count_rows(db) == 0


def test_resume_with_other_measure_settings_refused(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    with pytest.raises(InputError, match="measure"):
        run_measurement(db, tiny_config(measure=fast_measure(batch=2)), 1)


# ---- export --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("export") / "d.db", 3)


def _read_csv_exactly(path: Path) -> pd.DataFrame:
    """A CSV's numbers as written: Python's correctly rounded ``float`` of each field, not
    pandas' fast parser, whose last bit differs between pandas versions (2.x vs 3.x)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in df.columns:
        if col == "latency_ms" or col.startswith("f:"):
            df[col] = [float(v) for v in df[col]]
    df["sample_index"] = [int(v) for v in df["sample_index"]]
    return df


@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_export_round_trip(small_db, tmp_path, ext):
    dest = tmp_path / f"out{ext}"
    with Dataset.open(small_db) as ds:
        assert export(ds, dest) == 3
        stored = ds.samples()
        meta = ds.meta
    df = pd.read_parquet(dest) if ext == ".parquet" else _read_csv_exactly(dest)
    assert len(df) == 3
    assert list(df["sample_index"]) == list(stored["sample_index"])
    np.testing.assert_array_equal(df["latency_ms"].to_numpy(), stored["latency_ms"].to_numpy())
    space = get_space("lenna")
    fcols = [c for c in df.columns if c.startswith("f:")]
    assert fcols == [f"f:{n}" for n in space.feature_names()]
    assert "trace" not in df.columns
    for (_, row), (_, srow) in zip(df.iterrows(), stored.iterrows(), strict=True):
        alphas = np.array(json.loads(row["alphas"]))
        np.testing.assert_array_equal(alphas, np.array(srow["alphas"]))
        want = encode(space, srow["block_type"], srow["channels"], srow["resolution"], alphas)
        np.testing.assert_allclose(row[fcols].to_numpy(dtype=float), want, rtol=1e-15, atol=0)
    if ext == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(dest).metadata
        assert json.loads(md[b"lenna"])["config"] == meta["config"]


def test_to_frame_of_an_empty_dataset(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    with Dataset.open(db) as ds:
        df = to_frame(ds)
    assert len(df) == 0
    assert "f:resolution" in df.columns


@pytest.mark.parametrize("name", ["out.xlsx", "out", "out.parquet.bak"])
def test_export_bad_extension(small_db, tmp_path, name):
    with Dataset.open(small_db) as ds, pytest.raises(InputError, match=r"\.parquet or \.csv"):
        export(ds, tmp_path / name)
    assert not (tmp_path / name).exists()


# ---- drift guard ---------------------------------------------------------------------------
def test_drift_guard_flags_the_window_after_a_shift(tmp_path, monkeypatch):
    controls = iter([1.0, 1.0, 1.10])  # baseline, after 2 rows, after 4 rows
    calls = []

    def fake_control(space, cfg, calibration=None):
        calls.append(cfg.drift_every)
        return SimpleNamespace(latency_ms=next(controls))

    monkeypatch.setattr(runner_mod, "control_measurement", fake_control)
    warnings = []
    db = tmp_path / "d.db"
    n = run_measurement(db, tiny_config(drift_every=2), 4, on_warning=warnings.append)
    assert n == 4
    assert len(calls) == 3
    with Dataset.open(db) as ds:
        drift = ds.drift()
        flags = dict(zip(ds.samples()["sample_index"], ds.samples()["drift_flag"], strict=True))
        assert ds.meta["drift_baseline_ms"] == 1.0
    assert list(drift["after_samples"]) == [2, 4]
    assert list(drift["flagged"]) == [0, 1]
    assert list(drift["device"]) == [None, None]  # a local run: no fleet device
    np.testing.assert_allclose(drift["latency_ms"], [1.0, 1.10])
    np.testing.assert_allclose(drift["rel_change"], [0.0, 0.10], atol=1e-12)
    assert flags == {0: 0, 1: 0, 2: 1, 3: 1}
    assert len(warnings) == 1
    assert "drift" in warnings[0] and "+10.0%" in warnings[0]


def test_drift_guard_within_tolerance_flags_nothing(tmp_path, monkeypatch):
    controls = iter([2.0, 2.05, 1.95])  # ±2.5 %: inside the 3 % tolerance
    monkeypatch.setattr(
        runner_mod,
        "control_measurement",
        lambda space, cfg, z0=None, ratios=None: SimpleNamespace(latency_ms=next(controls)),
    )
    warnings = []
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(drift_every=2), 4, on_warning=warnings.append)
    with Dataset.open(db) as ds:
        assert list(ds.drift()["flagged"]) == [0, 0]
        assert ds.samples()["drift_flag"].sum() == 0
    assert warnings == []


def test_control_measurement_is_a_one_hot_conv_block(monkeypatch):
    seen = {}

    def fake_measure(space, bt, channels, res, alphas, config, seed, **kw):
        seen.update(bt=bt, channels=channels, res=res, alphas=alphas)
        return SimpleNamespace(latency_ms=1.0)

    monkeypatch.setattr(runner_mod, "measure_block", fake_measure)
    space = get_space("lenna")
    runner_mod.control_measurement(space, tiny_config(channels=(2, 8), resolutions=(4, 8)))
    assert seen["bt"] == "normal" and seen["channels"] == 4 and seen["res"] == 8
    p = probabilities(space, "normal", seen["alphas"])
    assert (p[:, 0] == 1.0).all()


# ---- one writer at a time (issue 25, D6) ----------------------------------------------------
def test_a_second_writer_is_refused_in_one_line_and_the_first_goes_on(tmp_path):
    from lenna.measure.runner import open_dataset

    db = tmp_path / "d.db"
    cfg = tiny_config()
    fp = fingerprint("cpu", 1)
    first = open_dataset(db, cfg, fp, False)
    try:
        with pytest.raises(InputError, match="being written by another process"):
            open_dataset(db, cfg, fp, False)
        first.set_meta("probe", 1)  # the first writer is unaffected
    finally:
        first.close()
    with open_dataset(db, cfg, fp, False) as again:  # released on close
        assert again.meta["probe"] == 1


def test_creating_a_dataset_that_appeared_meanwhile_opens_it(tmp_path, monkeypatch):
    from lenna.measure.store import DatasetExists

    db = tmp_path / "d.db"
    make_dataset(db, 0)
    with pytest.raises(DatasetExists):
        Dataset.create(db, {"space": "lenna"})  # the existence check first
    # the race: the file appears between the check and the link
    other, rival = tmp_path / "e.db", make_dataset(tmp_path / "rival.db", 1)
    real_link = os.link

    def link_after_rival(src, dst):
        shutil.copy(rival, dst)  # the rival wins
        return real_link(src, dst)

    monkeypatch.setattr("lenna.measure.store.os.link", link_after_rival)
    with pytest.raises(DatasetExists):
        Dataset.create(other, {"space": "lenna"})
    monkeypatch.undo()
    assert count_rows(other) == 1  # the rival's file is intact
    assert not list(tmp_path.glob("*.creating-*"))  # nothing left behind


# ---- read-only files (issue 25, D7) ---------------------------------------------------------
def test_readers_fall_back_to_immutable_where_no_shm_can_be_made(tmp_path, monkeypatch):
    import lenna.measure.store as store_mod

    db = make_dataset(tmp_path / "d.db", 2)
    real = sqlite3.connect
    seen = []

    def connect(target, *a, **k):
        seen.append(str(target))
        con = real(target, *a, **k)
        if "mode=ro" in str(target) and "immutable" not in str(target):
            con.close()  # as in a folder this user cannot write: the -shm cannot be made
            con = real(":memory:")
            con.execute("PRAGMA query_only = 1")
            return _Failing(con)
        return con

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    with Dataset.open(db, readonly=True) as ds:
        assert ds.count() == 2
    assert any("immutable=1" in s for s in seen)
    # but never past a write-ahead log holding rows not yet in the file: they would be missed
    (tmp_path / "d.db-wal").write_bytes(b"x" * 64)
    with pytest.raises(InputError, match=r"cannot read it .*unable to open"):
        Dataset.open(db, readonly=True)


class _Failing:
    """A connection whose every read fails the way SQLite's does in a read-only folder."""

    def __init__(self, con):
        self.con = con

    def execute(self, *a, **k):
        raise sqlite3.OperationalError("unable to open database file")

    def close(self):
        self.con.close()


def test_a_writer_that_cannot_write_says_what_happened(tmp_path, monkeypatch):
    import lenna.measure.store as store_mod

    db = make_dataset(tmp_path / "d.db", 1)

    def readonly(path):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store_mod, "_connect", readonly)
    with pytest.raises(InputError, match=r"cannot open it for writing .*readonly database"):
        Dataset.open(db)


# ---- one file at rest -----------------------------------------------------------------------
def _journal_mode(p: Path) -> str:
    con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_a_file_its_writer_closed_is_read_without_leaving_files_beside_it(tmp_path):
    db = make_dataset(tmp_path / "d.db", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.db"]
    assert _journal_mode(db) == "delete"
    with Dataset.open(db, readonly=True) as ds:
        assert ds.count() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.db"]


def test_a_writer_runs_in_wal_mode_and_a_reader_open_meanwhile_keeps_it_there(tmp_path):
    db = make_dataset(tmp_path / "d.db", 2)
    writer = Dataset.open(db)
    assert writer.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader = Dataset.open(db, readonly=True)
    assert reader.count() == 2
    writer.set_meta("note", "kept")
    writer.close()  # the reader still has it open: the switch is refused at once, no error
    assert reader.meta["note"] == "kept"
    reader.close()
    with Dataset.open(db, readonly=True) as ds:
        assert ds.count() == 2 and ds.meta["note"] == "kept"
    with Dataset.open(db):
        pass  # the last writer to close puts it back
    assert _journal_mode(db) == "delete"


def test_a_writer_closing_while_another_writer_has_the_file_leaves_it_in_wal_mode(tmp_path):
    db = make_dataset(tmp_path / "d.db", 1)
    first, second = Dataset.open(db), Dataset.open(db)
    first.set_meta("a", 1)
    first.close()  # the other still has it open: no error, no switch
    assert second.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second.set_meta("b", 2)
    second.close()
    assert _journal_mode(db) == "delete"
    with Dataset.open(db, readonly=True) as ds:
        assert ds.meta["a"] == 1 and ds.meta["b"] == 2


def test_close_unlocks_the_file_whatever_interrupts_it(tmp_path, monkeypatch):
    import lenna.measure.store as store_mod

    db = make_dataset(tmp_path / "d.db", 1)
    ds = Dataset.open(db)
    ds.lock_for_writing()

    def interrupted(con, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod, "_leave_one_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ds.close()
    monkeypatch.undo()
    with Dataset.open(db) as again:
        again.lock_for_writing()  # the first writer's lock went with it


def test_a_folder_that_cannot_be_written_is_named_not_a_temporary(tmp_path, monkeypatch):
    """On a read-only mount the clean-up's own error named `x.db.creating-PID-…`."""
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    with pytest.raises(InputError, match=r"cannot create .*d\.db: its folder is not writable"):
        Dataset.create(tmp_path / "d.db", {"config": {}})
    monkeypatch.setattr(os, "access", real_access)

    def unwritable(*a, **k):
        raise sqlite3.OperationalError("unable to open database file")

    def unlink(self, missing_ok=False):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Dataset, "_create_at", classmethod(lambda cls, *a: unwritable()))
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(InputError, match=r"cannot create .*d\.db \(unable to open database"):
        Dataset.create(tmp_path / "d.db", {"config": {}})


class _Con:
    """A connection whose switch back to one file fails as SQLite says it."""

    def __init__(self, message: str, name: str) -> None:
        self.message, self.name = message, name

    def execute(self, sql: str) -> object:
        if "journal_mode" in sql:
            e = sqlite3.OperationalError(self.message)
            e.sqlite_errorname = self.name
            raise e
        return self


@pytest.mark.parametrize(
    ("message", "name", "when"),
    [
        ("database or disk is full", "SQLITE_FULL", "once there is space"),
        ("disk I/O error", "SQLITE_IOERR_WRITE", "once the disk works again"),
    ],
)
def test_a_log_that_cannot_be_folded_in_is_said_with_what_to_keep(tmp_path, message, name, when):
    from lenna.measure.store import _leave_one_file

    with pytest.warns(
        UserWarning, match=rf"d\.db-wal beside it: keep the two files together \({when}"
    ):
        _leave_one_file(_Con(message, name), tmp_path / "d.db")


def test_another_open_connection_is_no_reason_to_warn(tmp_path, recwarn):
    from lenna.measure.store import _leave_one_file

    _leave_one_file(_Con("database is locked", "SQLITE_BUSY"), tmp_path / "d.db")
    assert not recwarn.list


def test_a_second_close_is_silent_and_leaves_one_file(tmp_path, recwarn):
    db = make_dataset(tmp_path / "d.db", 1)
    with Dataset.open(db) as ds:
        ds.close()  # and the `with` closes it again
    assert not recwarn.list
    assert _journal_mode(db) == "delete"


def test_a_folder_given_as_a_dataset_is_named_a_folder(tmp_path):
    with pytest.raises(InputError, match=r"is a folder, not a dataset file"):
        Dataset.open(tmp_path, readonly=True)


def test_an_sqlite_file_cut_short_is_damaged_not_foreign(tmp_path):
    db = make_dataset(tmp_path / "d.db", 3)
    data = db.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[:100] + b"\0" * 50)  # the header, then nothing of its pages
    with pytest.raises(InputError, match=r"is damaged \(SQLite: .*\.recover"):
        Dataset.open(cut, readonly=True)
    other = tmp_path / "text.db"
    other.write_bytes(b"not sqlite at all, but long enough to have a header" * 4)
    with pytest.raises(InputError, match="not an SQLite file"):
        Dataset.open(other, readonly=True)

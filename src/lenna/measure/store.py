"""The dataset file: one SQLite database per (machine, measurement config).

Crash safety comes from SQLite itself: WAL journal, one transaction per sample, the sampler's
stable ``sample_index`` as primary key (a retried sample can never become a duplicate row).
Values that are not plain numbers are stored as JSON text, never pickled.

Schema 2 added ``samples.load``, schema 3 ``drift.device`` (which device of a fleet measured
a control; empty for a local run), schema 4 ``samples.device`` (the same for a row). An older
file is read as it is (a missing ``load`` reads as NaN, a missing ``device`` as None) and
upgraded only when rows are added to it (:meth:`Dataset.upgrade`), so reading a shared file
never makes it unreadable to an older LENNA.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np
import pandas as pd

from lenna.atomic import missing_folder
from lenna.errors import InputError
from lenna.space import get_space

SCHEMA_VERSION = 4
APPLICATION_ID = 0x4C454E4E  # "LENN": marks the file as a LENNA dataset

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fingerprints (hash TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE samples (
    sample_index INTEGER PRIMARY KEY,
    block_type TEXT NOT NULL,
    channels INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    regime TEXT NOT NULL,
    alphas TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    rule TEXT NOT NULL,
    resets INTEGER NOT NULL,
    passes INTEGER NOT NULL,
    ci_half_width_ms REAL,
    converged INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    fingerprint TEXT NOT NULL REFERENCES fingerprints(hash),
    drift_flag INTEGER NOT NULL DEFAULT 0,
    trace TEXT,
    load REAL,
    device TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE op_table (
    op TEXT NOT NULL,
    block_type TEXT NOT NULL,
    edge_kind TEXT NOT NULL,
    channels INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    c_in INTEGER NOT NULL,
    c_out INTEGER NOT NULL,
    stride INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    spread_ms REAL NOT NULL,
    passes INTEGER NOT NULL,
    fingerprint TEXT NOT NULL REFERENCES fingerprints(hash),
    PRIMARY KEY (op, block_type, edge_kind, channels, resolution, batch, fingerprint)
);
CREATE TABLE drift (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    after_samples INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    rel_change REAL NOT NULL,
    flagged INTEGER NOT NULL,
    device TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

DRIFT_COLUMNS = ("id", "after_samples", "latency_ms", "rel_change", "flagged", "device")
SAMPLE_COLUMNS = (
    "sample_index block_type channels resolution batch regime alphas latency_ms rule resets "
    "passes ci_half_width_ms converged wall_s fingerprint drift_flag trace load device"
).split()
# sample fields that must read as numbers (NULL allowed where the schema allows it)
NUMERIC_COLUMNS = ("latency_ms", "wall_s", "resets", "passes", "ci_half_width_ms", "load")
OP_COLUMNS = (
    "op block_type edge_kind channels resolution batch c_in c_out stride latency_ms spread_ms "
    "passes fingerprint"
).split()


class DatasetExists(InputError):
    """:meth:`Dataset.create` found the file there (another process may just have made it)."""


class Dataset:
    """An open LENNA dataset. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, path: Path, con: sqlite3.Connection) -> None:
        self.path, self.con = path, con
        self._upgraded = False
        self._lock: int | None = None
        self._readonly = False

    def lock_for_writing(self) -> None:
        """Be the file's only writer until :meth:`close`, or refuse in one line.

        Why: two runs measuring into one file would each calibrate and store their own
        reference and collide on the same sample ids; one writer at a time keeps every row and
        the file's metadata one measurement. SQLite's own locks serialise transactions, not
        runs, so the run holds an advisory ``flock`` on the file itself (released by the OS
        if the process dies)."""
        if self._lock is not None:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"{self.path} is being written by another process (another `lenna measure`?); "
                "wait for it to finish, or write to another file"
            ) from None
        self._lock = fd

    # ---- opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: dict, fingerprint: dict | None = None) -> Dataset:
        """A new file with schema, metadata and (optionally) its first fingerprint.

        Built under a temporary name and renamed into place, so an interrupted creation
        leaves no half-made dataset behind.
        """
        path = Path(path)
        if path.exists():
            raise DatasetExists(f"{path} already exists")
        if not path.parent.is_dir():
            raise InputError(missing_folder(path.parent))
        # a name of its own, then a link that fails if the file appeared meanwhile: two
        # processes creating one dataset at once make exactly one of them
        if not os.access(path.parent, os.W_OK):  # read-only mount or permissions
            raise InputError(f"cannot create {path}: its folder is not writable")
        tmp = path.with_name(f"{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            return cls._create_at(tmp, path, meta, fingerprint)
        except sqlite3.OperationalError as e:  # a folder SQLite cannot write in
            raise InputError(f"cannot create {path} ({e})") from None
        finally:
            with suppress(OSError):  # never hide the error that got us here
                tmp.unlink(missing_ok=True)  # whatever failed, no half-made file is left

    @classmethod
    def _create_at(cls, tmp: Path, path: Path, meta: dict, fingerprint: dict | None) -> Dataset:
        con = sqlite3.connect(tmp)
        try:
            con.executescript(
                "BEGIN;\n"
                + _SCHEMA
                + f"PRAGMA application_id = {APPLICATION_ID};\n"
                + f"PRAGMA user_version = {SCHEMA_VERSION};\n"
            )
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
            )
            if fingerprint is not None:
                con.execute(
                    "INSERT INTO fingerprints VALUES (?, ?)",
                    (fingerprint["hash"], json.dumps(fingerprint)),
                )
            con.commit()
        finally:
            con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise DatasetExists(f"{path} already exists") from None
        except OSError:  # a file system without hard links: exclusive create, then rename
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise DatasetExists(f"{path} already exists") from None
            os.replace(tmp, path)
        return cls(path, _connect(path))

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False) -> Dataset:
        """Open an existing dataset; refuses a missing file, a non-LENNA file, a newer schema.

        ``readonly`` (every command that only reads): never writes to the file, and works
        on a file in a folder this user cannot write to."""
        path = Path(path)
        if not path.is_file():
            if path.is_dir():
                raise InputError(f"{path} is a folder, not a dataset file")
            raise InputError(f"no dataset at {path}")
        _check_header(path)
        try:
            con = _connect_ro(path) if readonly else _connect(path)
        except sqlite3.OperationalError as e:
            raise InputError(f"{path}: cannot open it for writing ({e})") from None
        ds = cls(path, con)
        ds._readonly = readonly
        try:
            _check_meta(path, ds.meta)
        except InputError:
            ds.close()
            raise
        except sqlite3.DatabaseError as e:  # a damaged page under the metadata
            ds.close()
            if "malformed" not in str(e):  # a lock, an I/O error: not the file's fault
                raise
            raise damaged(path, e) from None
        return ds

    def close(self) -> None:
        if getattr(self, "_closed", False):  # a second close (a `with` around a close)
            return
        self._closed = True
        try:
            if not self._readonly:
                _leave_one_file(self.con, self.path)
        finally:  # whatever interrupts the switch (Ctrl-C), the file is closed and unlocked
            try:
                self.con.close()
            finally:
                if self._lock is not None:
                    os.close(self._lock)  # releases the flock
                    self._lock = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- metadata ----------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        out = {}
        for k, v in self.con.execute("SELECT key, value FROM meta"):
            try:
                out[k] = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                raise InputError(f"{self.path}: meta field {k!r} is not valid JSON") from None
        return out

    def set_meta(self, key: str, value: object) -> None:
        with self.con:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_fingerprint(self, fp: dict) -> None:
        with self.con:
            self.con.execute(
                "INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", (fp["hash"], json.dumps(fp))
            )

    def fingerprints(self) -> dict[str, dict]:
        rows = self.con.execute("SELECT hash, info FROM fingerprints")
        return {h: json.loads(info) for h, info in rows}

    def upgrade(self) -> None:
        """Bring an older file to this schema: the ``load`` column (schema 2), the drift
        table's ``device`` (schema 3) and the samples' (schema 4), empty for the rows the file
        already holds. Called by :meth:`add_sample` and :meth:`add_drift`, so only adding
        rows changes a file. One write transaction that re-checks inside it, so a crash or a
        second process resuming the same file at once leaves it either old or fully upgraded."""
        if self._upgraded:
            return
        try:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                if self.con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    if "load" not in self._columns("samples"):
                        self.con.execute("ALTER TABLE samples ADD COLUMN load REAL")
                    if "device" not in self._columns("drift"):
                        self.con.execute("ALTER TABLE drift ADD COLUMN device TEXT")
                    if "device" not in self._columns("samples"):
                        self.con.execute("ALTER TABLE samples ADD COLUMN device TEXT")
                    self.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.con.commit()
            except BaseException:
                self.con.rollback()
                raise
        except sqlite3.OperationalError as e:
            raise InputError(
                f"cannot upgrade {self.path} to dataset schema {SCHEMA_VERSION}: {e}"
            ) from None
        self._upgraded = True

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.con.execute(f"PRAGMA table_info({table})")}

    # ---- samples -----------------------------------------------------------------------
    def add_sample(self, row: dict) -> None:
        """Insert one sample and commit it at once (a crash loses at most the one in flight)."""
        self.upgrade()
        values = [_cell(row.get(c)) for c in SAMPLE_COLUMNS]
        with self.con:
            self.con.execute(
                f"INSERT INTO samples ({', '.join(SAMPLE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(SAMPLE_COLUMNS))})",
                values,
            )

    def replace_label(self, sample_index: int, row: dict) -> None:
        """Put a new measurement of an existing row in place of its label (what was measured
        and how: latency, rule, resets, passes, interval, wall time, load, trace, device,
        time), in one transaction; the block (type, shape, α, fingerprint) and its drift flag
        stay as they are."""
        self.upgrade()
        cols = ("latency_ms", "rule", "resets", "passes", "ci_half_width_ms", "converged")
        cols += ("wall_s", "load", "trace", "device")
        with self.con:
            done = self.con.execute(
                f"UPDATE samples SET {', '.join(f'{c} = ?' for c in cols)}, "
                "created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE sample_index = ?",
                [*(_cell(row.get(c)) for c in cols), int(sample_index)],
            ).rowcount
        if done != 1:
            raise InputError(f"{self.path} has no row {sample_index} to replace")

    def count(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def indices(self) -> set[int]:
        return {r[0] for r in self.con.execute("SELECT sample_index FROM samples")}

    def samples(self) -> pd.DataFrame:
        """All samples, ``alphas``/``trace`` decoded from JSON, ordered by index; ``device``
        None for a local run's rows (and in a file from before schema 4)."""
        try:
            df = pd.read_sql_query("SELECT * FROM samples ORDER BY sample_index", self.con)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
            if "malformed" not in str(e):
                raise
            raise damaged(self.path, e) from None
        # one column order for new and upgraded files; an older file's missing load is NaN
        df = df.reindex(columns=[*SAMPLE_COLUMNS, "created_at"])
        for col in NUMERIC_COLUMNS:
            df[col] = self._numbers(df, col)
        for col in ("resets", "passes"):  # counts stay integers (exports keep their types)
            df[col] = df[col].astype("Int64")
        df["device"] = _none_for_missing(df["device"])
        shape = get_space(self.meta["space"]).alpha_shape
        df["alphas"] = [
            self._alphas(i, a, shape) for i, a in zip(df["sample_index"], df["alphas"], strict=True)
        ]
        df["trace"] = [
            self._json(i, "trace", t) if isinstance(t, str) else None
            for i, t in zip(df["sample_index"], df["trace"], strict=True)
        ]
        return df

    # ---- validation of stored rows: one line naming the file, the row and the field --------
    def _numbers(self, df: pd.DataFrame, col: str) -> pd.Series:
        values = pd.to_numeric(df[col], errors="coerce").astype(float)
        bad = values.isna() & df[col].notna()
        if bad.any():
            i, v = df.loc[bad, "sample_index"].iloc[0], df.loc[bad, col].iloc[0]
            raise InputError(f"{self.path}, sample {i}: field {col} is not a number ({v!r})")
        return values

    def _json(self, index: object, field: str, text: object) -> object:
        try:
            return json.loads(text)  # type: ignore[arg-type]
        except (json.JSONDecodeError, TypeError):
            raise InputError(
                f"{self.path}, sample {index}: field {field} is not valid JSON"
            ) from None

    def _alphas(self, index: object, text: object, shape: tuple[int, int]) -> list:
        a = self._json(index, "alphas", text)
        try:
            arr = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 2 or not np.isfinite(arr).all():
            raise InputError(
                f"{self.path}, sample {index}: field alphas must be a table (edges × ops) of "
                "finite numbers"
            )
        if arr.shape != shape:
            raise InputError(
                f"{self.path}, sample {index}: alphas for space {self.meta['space']!r} must "
                f"have shape {shape} (edges × ops), got {arr.shape}"
            )
        return a

    def sample(self, index: int) -> dict:
        """One sample as a dict (``load`` is None where unknown; NaN in :meth:`samples`)."""
        df = pd.read_sql_query(
            "SELECT * FROM samples WHERE sample_index = ?", self.con, params=(index,)
        )
        if df.empty:
            raise InputError(f"no sample with id {index} in {self.path}")
        row = df.iloc[0].to_dict()
        load = row.get("load")
        row["load"] = None if load is None or np.isnan(load) else float(load)
        row["device"] = row.get("device")  # a file from before schema 4 has none
        row["alphas"] = self._json(index, "alphas", row["alphas"])
        row["trace"] = (
            self._json(index, "trace", row["trace"]) if isinstance(row["trace"], str) else None
        )
        return row

    # ---- op table and drift ------------------------------------------------------------
    def add_ops(self, rows: list[dict]) -> None:
        """Insert (or replace) op-table rows in one transaction."""
        with self.con:
            self.con.executemany(
                f"INSERT OR REPLACE INTO op_table ({', '.join(OP_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(OP_COLUMNS))})",
                [[_cell(r[c]) for c in OP_COLUMNS] for r in rows],
            )

    def op_table(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM op_table", self.con)

    def add_drift(
        self,
        after_samples: int,
        latency_ms: float,
        rel: float,
        flag: list[int],
        device: str | None = None,
    ) -> None:
        """Record a control measurement (``device``: the fleet device that measured it, None
        for a local run) and flag ``flag`` (sample ids) in one transaction."""
        self.upgrade()
        with self.con:
            self.con.execute(
                "INSERT INTO drift (after_samples, latency_ms, rel_change, flagged, device) "
                "VALUES (?, ?, ?, ?, ?)",
                (after_samples, latency_ms, rel, int(bool(flag)), device),
            )
            self.con.executemany(
                "UPDATE samples SET drift_flag = 1 WHERE sample_index = ?", [(i,) for i in flag]
            )

    def drift(self) -> pd.DataFrame:
        """The control measurements, oldest first; ``device`` None for a local run's (and in
        a file from before schema 3)."""
        df = pd.read_sql_query("SELECT * FROM drift ORDER BY id", self.con)
        df = df.reindex(columns=[*DRIFT_COLUMNS, "created_at"])
        df["device"] = _none_for_missing(df["device"])
        return df


def _none_for_missing(col: pd.Series) -> pd.Series:
    """A text column with None, not NaN, where a value is missing (as in :meth:`sample`)."""
    return col.astype(object).where(col.notna(), None)


def _check_meta(path: Path, meta: dict) -> None:
    """The metadata every reader relies on, with the types it relies on."""
    for key, kind, what in (
        ("space", str, "a space name"),
        ("config", dict, "an object"),
        ("fingerprint", dict, "an object"),
    ):
        if key not in meta:
            raise InputError(f"{path}: meta field {key!r} is missing")
        if not isinstance(meta[key], kind):
            raise InputError(f"{path}: meta field {key!r} must be {what}")
    if not isinstance(meta["config"].get("measure"), dict):
        raise InputError(f"{path}: meta field 'config' has no 'measure' object")
    for key in ("reference_ms", "drift_baseline_ms"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise InputError(f"{path}: meta field {key!r} must be a number")
    ratios = meta.get("reference_ratios")
    if ratios is not None and not (
        isinstance(ratios, dict) and all(isinstance(v, int | float) for v in ratios.values())
    ):
        raise InputError(f"{path}: meta field 'reference_ratios' must map anchors to numbers")
    rechecks = meta.get("label_rechecks")  # lenna dataset recheck's summaries
    if rechecks is not None and not (
        isinstance(rechecks, list)
        and all(isinstance(c, dict) and set(c) >= _RECHECK_FIELDS for c in rechecks)
    ):
        raise InputError(f"{path}: meta field 'label_rechecks' must be a list of recheck summaries")


_RECHECK_FIELDS = {"rows", "median_abs_change", "max_abs_change", "median_change", "time"}


def damaged(path: Path, e: Exception) -> InputError:
    """One line for a file SQLite reads as malformed, naming it and a way to save its rows."""
    reason = str(e).rsplit(": ", 1)[-1]  # SQLite's words, without the query
    return InputError(
        f"{path} is damaged (SQLite: {reason}); `sqlite3 {path} .recover` may save its rows"
    )


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection. SQLite reads a WAL file through its ``-shm`` beside it; where
    that cannot be made (a folder this user cannot write) and no write-ahead log holds rows
    not yet in the file, the file is read as immutable (it then holds every row). Any other
    failure is said as it is."""
    uri = path.resolve().as_uri()
    try:
        con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return con
    except sqlite3.OperationalError as e:
        wal = path.with_name(path.name + "-wal")
        if "unable to open" not in str(e) or (wal.exists() and wal.stat().st_size > 0):
            raise
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)


def _check_header(path: Path) -> None:
    """Refuse a non-LENNA file or a newer schema without changing the file in any way."""
    try:
        con = _connect_ro(path)
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e) or "malformed" in str(e):
            if _sqlite_magic(path):  # an SQLite file cut short or broken, not another kind
                raise damaged(path, e) from None
            raise InputError(f"{path} is not a LENNA dataset (not an SQLite file)") from None
        raise InputError(f"{path}: cannot read it ({e})") from None
    if app_id != APPLICATION_ID:
        raise InputError(f"{path} is not a LENNA dataset")
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path} has dataset schema {version}, newer than this LENNA's "
            f"{SCHEMA_VERSION}; upgrade lenna to read it"
        )


def _sqlite_magic(path: Path) -> bool:
    """Whether ``path`` begins as every SQLite file does."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _leave_one_file(con: sqlite3.Connection, path: Path) -> None:
    """Put a file its writer is done with back into SQLite's rollback-journal mode. Why: a
    file left in WAL mode makes every later reader, even a read-only ``dataset info``, create
    ``-wal`` and ``-shm`` files beside it that it cannot remove; in rollback mode a reader
    leaves the folder as it was. Writers switch to WAL again when they open it. Where another
    connection still has the file open the switch is refused at once and the file stays in
    WAL mode; its content is the same either way. Where it fails otherwise (a full disk) the
    newest rows are only in the ``-wal`` file beside it, which is said: a copy of the ``.db``
    alone would lose them."""
    try:
        con.execute("PRAGMA busy_timeout = 0")
        con.execute("PRAGMA journal_mode = DELETE").fetchall()
    except sqlite3.Error as e:
        name = getattr(e, "sqlite_errorname", "")
        if name != "SQLITE_FULL" and not name.startswith("SQLITE_IOERR"):
            return  # another connection (busy, locked): it folds the log when it is done
        when = "once there is space" if name == "SQLITE_FULL" else "once the disk works again"
        warnings.warn(
            f"{path}: its write-ahead log could not be folded into it ({e}); every row is "
            f"safe in {path.name}-wal beside it: keep the two files together ({when}, any "
            "`lenna measure` of the file folds them)",
            stacklevel=2,
        )


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    return con


def _cell(v: object) -> object:
    """SQLite-ready value: arrays/lists/dicts as JSON, numpy scalars as Python numbers."""
    if v is None or isinstance(v, str | int | float):
        return v
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v

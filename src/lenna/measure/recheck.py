"""Measure a dataset's rows again, now, and compare with their stored labels.

Why: a label is only as good as the machine's state while it was measured, and on a shared
host that state changes by the hour in ways one reference does not cancel. Re-measured
hours later, 8×8 rows of ``lenna-v2.db`` came back a median 4 % above their stored labels
(5 of 12 by 7–11 %), while 16×16 and 32×32 rows moved a median 0.8 % and 1.4 %, and the
drift guard's 32×32 control had flagged none of them. Before trusting a file (after a long
measurement, a reboot, a driver or VM change), re-measuring a seeded handful of its rows
says how far its labels now are from this machine, row by row. Each row is measured as the
file measured it (its config and rule settings, the same gate seed, the file's calibrated
speed), so a change is the machine's, not the method's. The summary is kept in the file
(``label_rechecks``, listed by ``lenna dataset info``).
"""

from __future__ import annotations

import math
import sqlite3
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenna.errors import InputError
from lenna.measure.block_measure import Measurement
from lenna.measure.dataset_open import CPU_IDS, max_load_now, recorded_machine
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.reference import MATCHED, Calibration
from lenna.measure.run_config import LABEL_VERSION, RunConfig, stored_config, upgrade_config
from lenna.measure.sampler import SampleSpec
from lenna.measure.store import Dataset
from lenna.signals import stop_if_signalled
from lenna.space import get_space

RECHECKS_KEY = "label_rechecks"
MAX_ROWS = 1000


@dataclass
class RecheckedRow:
    sample_index: int
    block_type: str
    channels: int
    resolution: int
    stored_ms: float
    again_ms: float
    hours_since: float | None  # since the row was stored (None: no time in the file)
    stored_load: float | None = None  # the machine's load when each was measured
    again_load: float | None = None
    replaced: bool = False  # the new label now stands in the file in place of the old

    @property
    def change(self) -> float:
        """(again − stored) / stored."""
        return self.again_ms / self.stored_ms - 1


def recheck(
    path: str | Path,
    rows: list[int] | None = None,
    n: int = 20,
    seed: int = 0,
    on_row: Callable[[RecheckedRow, int, int], None] | None = None,
    measure: Callable[..., Measurement] | None = None,
    on_start: Callable[[int], None] | None = None,
    above_load: float | None = None,
    replace_labels: bool = False,
) -> list[RecheckedRow]:
    """Measure ``rows`` of the dataset at ``path`` (default: ``n`` seeded random ones; with
    ``above_load``, every row stored at a higher load) again on this machine and return them
    beside their stored labels; the summary is appended to the file's ``label_rechecks``.

    ``replace_labels`` (with ``above_load`` only): where the new measurement ran at a lower
    load than the stored one, it replaces the row's label, and the new one is measured with
    the load guard at ``above_load`` (:attr:`MeasureConfig.max_load`). Why: labels measured
    under load can read low (ONNX Runtime: 4–30 %), and only those rows are worth replacing;
    a row measured at ordinary load hours ago is as good as one measured now.

    The file is locked as its one writer meanwhile (not while ``lenna measure`` adds to it:
    that would time both on shared cores). ``measure`` is
    :func:`lenna.measure.runner.measure_sample` unless given (tests pass a fake).
    ``on_start(rows)`` once every check has passed, ``on_row(row, done, rows)`` per row."""
    if measure is None:
        from lenna.measure.runner import measure_sample as measure
    if not 1 <= n <= MAX_ROWS:
        raise InputError(f"the number of rows must be in 1..{MAX_ROWS}, got {n}")
    if seed < 0:
        raise InputError(f"the seed must be >= 0, got {seed}")
    if replace_labels and above_load is None:
        raise InputError("replacing labels needs --above-load: only loaded rows are replaced")
    if above_load is not None and (rows or not 1.0 <= above_load <= 100.0):
        raise InputError(
            "--above-load takes a slowdown from 1 to 100 (1.15: rows measured 15 % slower "
            f"than at calibration) and picks the rows itself, got {above_load!r}"
            + (" with --rows" if rows else "")
        )
    path = Path(path)
    with Dataset.open(path) as ds:
        ds.lock_for_writing()
        meta, df = ds.meta, ds.samples()
        cfg, cal = _settings(path, meta)
        if replace_labels:  # the guard is how a label is taken, not what it means
            own = max_load_now(meta)
            bound = min(own, above_load) if own else above_load  # never looser than the file's
            cfg = replace(cfg, measure=replace(cfg.measure, max_load=bound))
        # this machine, as the file records it (_settings checked it is this one)
        here = meta["fingerprint"]["hash"]
        plan = _plan(path, cfg, df, rows, n, seed, here, above_load)
        space, now, out = get_space(cfg.space), pd.Timestamp.now(tz="UTC"), []
        if on_start:
            on_start(len(plan))
        finished, done = False, []  # done: rows replaced, noted as each is committed
        try:
            for k, (i, spec, row) in enumerate(plan):
                stop_if_signalled()  # a handler's raise lost in a callback stops here
                keep = done if replace_labels else None
                r = _again(ds, space, cfg, cal, spec, i, row, now, here, measure, out, keep)
                if on_row:
                    on_row(r, k + 1, len(plan))
            finished = True
        finally:  # an interrupted replacement still says which rows it replaced
            if (finished and out) or done:  # a replaced row is in `out` before it is done
                entry = summary(out) | {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seed": None if rows or above_load is not None else seed,
                    "sample_indices": [r.sample_index for r in out],
                    "fingerprint": here,
                }
                if above_load is not None:
                    entry |= {"above_load": above_load, "replaced": len(done)}
                    entry |= {"replaced_indices": list(done)}
                if not finished:
                    entry["interrupted"] = True
                try:
                    ds.set_meta(RECHECKS_KEY, [*meta.get(RECHECKS_KEY, []), entry])
                except (sqlite3.Error, OSError) as e:  # the measurements are still the caller's
                    warnings.warn(
                        f"the recheck's summary could not be kept in {path} ({e})", stacklevel=2
                    )
    return out


def _again(
    ds: Dataset,
    space: Any,
    cfg: RunConfig,
    cal: Calibration,
    spec: SampleSpec,
    i: int,
    row: pd.Series,
    now: pd.Timestamp,
    here: str,
    measure: Callable[..., Measurement],
    out: list[RecheckedRow],
    done: list[int] | None,
) -> RecheckedRow:
    """Row ``i`` measured again and appended to ``out``; where ``done`` is a list (replacing
    labels) and the new measurement ran at a lower load than the stored one, its label is then
    kept in the file and ``i`` appended to ``done`` as soon as that is committed."""
    m = measure(space, cfg, spec, i, cal)
    made = pd.to_datetime(row["created_at"], utc=True, errors="coerce")
    hours = None if pd.isna(made) else float((now - made).total_seconds() / 3600)
    old_load = _finite(row["load"])
    new_load = _finite(m.estimate.load)
    lower = new_load is not None and (old_load is None or new_load < old_load)
    replaced = done is not None and lower
    r = RecheckedRow(
        i,
        spec.block_type,
        int(spec.channels),
        int(spec.resolution),
        float(row["latency_ms"]),
        float(m.latency_ms),
        hours,
        old_load,
        new_load,
        replaced,
    )
    out.append(r)
    if replaced:
        from lenna.measure.runner import sample_row

        traced = row.get("trace") is not None and not _missing(row.get("trace"))
        new = sample_row(m, i, spec.regime, cfg.measure.batch, here, traced)
        ds.replace_label(i, new | {"device": None})  # measured here, by this process
        done.append(i)
    return r


def _finite(v: object) -> float | None:
    """A load as a number, or None where it is unknown (missing, NaN)."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _missing(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _settings(path: Path, meta: dict) -> tuple[RunConfig, Calibration]:
    """The file's own settings and calibrated speed, or a one-line refusal: measured
    otherwise, a row would differ by the method, not by the machine."""
    cfg = RunConfig.from_dict(upgrade_config(stored_config(meta) or {}))
    space = get_space(cfg.space)
    if meta.get("space_hash") != space.definition_hash():
        raise InputError(f"{path} was measured on another definition of space {cfg.space!r}")
    if cfg.label_version != LABEL_VERSION:
        raise InputError(
            f"{path} holds labels of version {cfg.label_version}; this LENNA measures version "
            f"{LABEL_VERSION}, so its rows cannot be measured again as they were"
        )
    here, stored = config_fingerprint(cfg.measure), meta["fingerprint"]
    if recorded_machine([stored], meta.get(CPU_IDS) or {}, here) is None:
        raise InputError(
            f"{path} was measured on another machine or setting (fingerprint "
            f"{stored.get('hash')}, here {here['hash']}): its rows can only be measured again "
            "where they were measured"
        )
    cal = Calibration.of(meta)
    matched = cfg.measure.reference in MATCHED
    if cfg.measure.normalise and (cal.z0_ms is None or (matched and cal.ratios is None)):
        raise InputError(
            f"{path} has normalised labels but no stored calibration (reference_ms"
            f"{', reference_ratios' if matched else ''}): a recheck would measure at another "
            "scale"
        )
    return cfg, cal


def _plan(
    path: Path,
    cfg: RunConfig,
    df: pd.DataFrame,
    rows: list[int] | None,
    n: int,
    seed: int,
    here: str,
    above_load: float | None = None,
) -> list[tuple[int, SampleSpec, pd.Series]]:
    """Which rows, each with the block its sampler draws (checked against the stored row)."""
    if df.empty:
        raise InputError(f"{path} holds no samples; nothing to measure again")
    ours = (df["sample_index"] >= 0) & (df["fingerprint"] == here)
    by_index = df.set_index("sample_index")
    if above_load is not None:
        rows = sorted(int(i) for i in df.loc[ours & (df["load"] > above_load), "sample_index"])
        if not rows:
            raise InputError(f"{path} has no rows sampled here above load {above_load}")
        if len(rows) > MAX_ROWS:
            raise InputError(
                f"{path} has {len(rows)} rows above load {above_load}, more than {MAX_ROWS} "
                "at once; give a higher --above-load"
            )
    if rows:
        rows = sorted(set(rows))
        missing = [i for i in rows if i not in by_index.index]
        if missing:
            raise InputError(f"{path} has no rows {missing[:5]}")
        foreign = [i for i in rows if i not in set(df.loc[ours, "sample_index"])]
        if foreign:
            raise InputError(
                f"rows {foreign[:5]} of {path} were not sampled on this machine's fingerprint "
                "(added from a run, or measured elsewhere)"
            )
    else:
        pool = df.loc[ours & (df["drift_flag"] == 0), "sample_index"].to_numpy()
        if not len(pool):
            raise InputError(f"{path} has no unflagged rows sampled on this machine")
        rng = np.random.default_rng(seed)
        rows = sorted(int(i) for i in rng.choice(pool, size=min(n, len(pool)), replace=False))
    sampler, plan = cfg.sampler(), []
    for i in rows:
        spec, row = sampler(i), by_index.loc[i]
        if not float(row["latency_ms"]) > 0:
            raise InputError(f"{path}: row {i} has no positive label to compare with")
        same = (spec.block_type, spec.channels, spec.resolution) == (
            row["block_type"],
            row["channels"],
            row["resolution"],
        ) and np.allclose(spec.alphas, np.asarray(row["alphas"], dtype=float), equal_nan=True)
        if not same:
            raise InputError(
                f"{path}: row {i} is not the block its sampler draws; it cannot be measured "
                "again as it was"
            )
        plan.append((i, spec, row))
    return plan


def summary(rows: list[RecheckedRow]) -> dict:
    """Median and largest |change|, the median signed change, the share within ±2 % and ±5 %,
    and the median |change| per resolution: the shape of a drift matters, not only its size."""
    change = np.array([r.change for r in rows])
    res = np.array([r.resolution for r in rows])
    hours = [r.hours_since for r in rows if r.hours_since is not None]
    return {
        "rows": len(rows),
        "median_abs_change": float(np.median(np.abs(change))),
        "max_abs_change": float(np.max(np.abs(change))),
        "median_change": float(np.median(change)),
        "within_2": float(np.mean(np.abs(change) <= 0.02)),
        "within_5": float(np.mean(np.abs(change) <= 0.05)),
        "by_resolution": {
            str(int(h)): float(np.median(np.abs(change[res == h]))) for h in sorted(set(res))
        },
        "median_hours_since": float(np.median(hours)) if hours else None,
    }


def as_dicts(rows: list[RecheckedRow]) -> list[dict]:
    return [asdict(r) | {"change": r.change} for r in rows]

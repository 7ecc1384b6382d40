"""One calibration per machine and setting, shared by every dataset measured there.

Why: a label reaches milliseconds as (path / reference) × ``Z0``, with ``Z0`` the reference's
calibrated time. When each file calibrated its own ``Z0`` (and its anchors' ratios), two files
of the same blocks measured minutes apart differed by a median 0.8–4.9 %, almost all of it
the per-file scale, while the rows themselves repeated to about 1 % (docs/measurement.md).
So the scale is calibrated once per (machine fingerprint, space, device, dtype, threads), more
carefully than one file could afford (the fastest of :data:`REPEATS` independent
calibrations: interference only adds time, and a calibration run while the machine is busy
reads slow), kept in the user's cache folder and copied into each new dataset: two files
of one machine then mean the same milliseconds, and a file still carries its own scale when
it travels. ``lenna measure --recalibrate`` replaces the machine's entry (after a hardware or
software change the fingerprint changes, and a new entry is made anyway).

The cache is JSON, written atomically under a lock, so concurrent runs calibrate once.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lenna.atomic import write_text
from lenna.errors import InputError
from lenna.measure.fingerprint import fingerprint, same_machine
from lenna.measure.reference import Calibrate, anchor_key, anchor_label
from lenna.space import SearchSpace

FORMAT = 1
REPEATS = 3  # independent calibrations per value; the fastest is kept
SPREAD_WARNING = 0.05  # repeats further apart than this: the machine was busy; say so
FILE = "calibration.json"


def cache_dir() -> Path:
    """``$LENNA_CACHE_DIR``, else ``$XDG_CACHE_HOME/lenna``, else ``~/.cache/lenna``."""
    if os.environ.get("LENNA_CACHE_DIR"):
        return Path(os.environ["LENNA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lenna"


def machine_key(
    space: SearchSpace, device: str, dtype: str, threads: int, backend: str = "torch"
) -> tuple[str, dict]:
    """The entry's key and the fingerprint it stands for (the backend's facts included: an
    ONNX Runtime reference has its own speed). Batch is left out on purpose: the reference
    blocks always run at batch 1, so files of any batch share one scale."""
    fp = fingerprint(device, threads, dtype, 1, backend=backend)
    return f"{space.name}:{space.definition_hash()}:{fp['hash']}", fp


def _entry_for(entries: dict[str, dict], key: str, fp: dict) -> dict:
    """This machine's entry: under its key, or one made before newer fingerprint keys
    existed (same space, :func:`same_machine`), so an upgrade keeps the machine's scale."""
    if key in entries:
        return entries[key]
    space = key.rsplit(":", 1)[0]
    for k, e in entries.items():
        if k.rsplit(":", 1)[0] == space and same_machine(e.get("fingerprint") or {}, fp):
            return e
    return {}


def read_entries(path: Path | None = None) -> dict[str, dict]:
    """The cache's entries (empty when there is no cache); a malformed file is one line."""
    path = path or cache_dir() / FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        entries = doc["entries"]
        if not isinstance(entries, dict) or int(doc["format"]) > FORMAT:
            raise ValueError("unknown format")
        for e in entries.values():
            if e.get("reference_ms") is not None:  # an entry may hold only anchor ratios
                float(e["reference_ms"])
            {k: float(v) for k, v in (e.get("reference_ratios") or {}).items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(
            f"{path} is not a LENNA calibration cache ({exc.__class__.__name__}: {exc}); "
            "delete it or run `lenna measure --recalibrate`"
        ) from None
    return entries


def _write(path: Path, entries: dict[str, dict]) -> None:
    """Beside, fsync, rename: a failure leaves the previous cache."""
    write_text(path, json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True))


@contextmanager
def _locked() -> Iterator[Path]:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / (FILE + ".lock"), "w")  # noqa: SIM115 (held for the block)
    except OSError as e:
        raise InputError(f"cannot use the calibration cache {folder}: {e.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder / FILE
    finally:
        lock.close()


def machine_calibrate(
    space: SearchSpace,
    device: str,
    dtype: str,
    threads: int,
    calibrate: Calibrate,
    *,
    repeats: int | None = None,
    fresh: bool = False,
    on_calibrate: Callable[[], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    backend: str = "torch",
) -> Calibrate:
    """A :data:`Calibrate` that answers from this machine's cache entry and calibrates (with
    ``calibrate``, ``repeats`` times (default :data:`REPEATS`), the fastest kept) only what
    the entry lacks; ``fresh`` replaces the entry's values on first use. ``on_calibrate()``
    is called before a real calibration (it takes tens of seconds), ``on_warning(message)``
    when its repeats disagree (a busy machine)."""
    key, fp = machine_key(space, device, dtype, threads, backend)
    state = {"fresh": fresh}

    def answer(need_z0: bool, anchors: list[tuple[int, int]]) -> tuple:
        with _locked() as path:
            try:
                entries = read_entries(path)
            except InputError:
                if not state["fresh"]:
                    raise
                entries = {}  # --recalibrate replaces a cache that cannot be read
            entry = {} if state["fresh"] else dict(_entry_for(entries, key, fp))
            ratios = dict(entry.get("reference_ratios") or {})
            want_z0 = need_z0 and entry.get("reference_ms") is None
            missing = [a for a in anchors if anchor_key(a) not in ratios]
            if want_z0 or missing or state["fresh"]:
                if on_calibrate:
                    on_calibrate()
                z0s, runs = [], []
                for _ in range(repeats or REPEATS):
                    z0, r = calibrate(want_z0 or state["fresh"], missing)
                    z0s.append(z0)
                    runs.append(r)
                if want_z0 or state["fresh"]:
                    entry["reference_ms"] = float(min(z0s))
                    entry["reference_ms_runs"] = [float(z) for z in z0s]
                    _warn_spread(z0s, "the reference time", "the fastest", on_warning)
                for a in missing:
                    # a ratio of two calibrated times: no side is "only slower", so the median
                    values = [r[anchor_key(a)] for r in runs]
                    ratios[anchor_key(a)] = float(np.median(values))
                    what = f"anchor {anchor_label(anchor_key(a))}'s ratio"
                    _warn_spread(values, what, "the median", on_warning)
                entry.update(
                    reference_ratios=ratios,
                    fingerprint=fp,
                    time=datetime.now(UTC).isoformat(timespec="seconds"),
                )
                entries[key] = entry
                _write(path, entries)
                state["fresh"] = False
        z0 = entry.get("reference_ms") if need_z0 else None
        return z0, {anchor_key(a): ratios[anchor_key(a)] for a in anchors}

    return answer


def _warn_spread(
    values: list[float], what: str, kept: str, on_warning: Callable[[str], None] | None
) -> None:
    lo, hi = min(values), max(values)
    if on_warning and hi > lo * (1 + SPREAD_WARNING):
        on_warning(
            f"this machine's calibrations of {what} differed by {hi / lo - 1:.0%} (busy?); "
            f"{kept} is kept; in a quiet moment run `lenna measure --recalibrate` on a "
            "new file to make it again"
        )

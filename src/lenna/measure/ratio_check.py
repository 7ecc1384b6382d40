"""The drift guard's end-of-run check of a dataset's anchor ratios.

Why: with matched references a label reaches milliseconds through its anchor's ratio to the
primary, calibrated once for the machine, so every row timed alongside that anchor shares the
ratio's error. One calibration can be far off: ``benchmarks/diagnostics/anchor_calibration.py``
found six calibrations in one process within 1–4 % of each other, but one process's 32×32
ratio 9–16 % above every other, which would set a whole band of block sizes off its
neighbours. Calibrating again once a run has added ``--drift-every`` rows or more (2 anchors:
4–40 s, each until two 1-s windows agree) says whether the stored ratios still hold. Stored
labels are left as they are, since which calibration was right cannot be told;
every check is kept in the file, so ``lenna dataset info`` shows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lenna.measure.reference import ANCHORS, Calibrate, anchor_key, anchor_label

if TYPE_CHECKING:
    from lenna.measure.store import Dataset

# above the 1–4 % that one process's calibrations differ by, below the outlier's 9–16 %
RATIO_TOLERANCE = 0.05
CHECKS_KEY = "reference_ratio_checks"


def anchors_due(
    ds: Dataset, anchors: list[tuple[int, int]], every: int, fp_hash: str
) -> list[tuple[int, int]]:
    """Which of ``anchors`` to check now: those with a valid stored ratio (not the primary,
    whose ratio is 1 by definition), once ``every`` rows or more were added since the last
    check, and only on the machine that calibrated them (another machine's ratios differ by
    design, not by error). Empty when none is due."""
    meta = ds.meta
    if every <= 0 or (meta.get("fingerprint") or {}).get("hash") != fp_hash:
        return []
    checks = meta.get(CHECKS_KEY) or []
    if ds.count() - (checks[-1]["rows"] if checks else 0) < every:
        return []
    stored = meta.get("reference_ratios") or {}
    return [
        tuple(a) for a in anchors if tuple(a) != ANCHORS[0] and _valid(stored.get(anchor_key(a)))
    ]


def check_ratios(
    ds: Dataset, calibrate: Calibrate, anchors: list[tuple[int, int]], fp_hash: str
) -> list[tuple[str, float, float]]:
    """Calibrate ``anchors``' ratios again and keep the result in ``ds``; returns
    ``(anchor, stored, now)`` for each that moved more than :data:`RATIO_TOLERANCE`."""
    if not anchors:
        return []
    stored = ds.meta.get("reference_ratios") or {}
    _, now = calibrate(False, list(anchors))
    entry = {
        "rows": ds.count(),
        "ratios": now,
        "fingerprint": fp_hash,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ds.set_meta(CHECKS_KEY, [*(ds.meta.get(CHECKS_KEY) or []), entry])
    return [
        (key, float(stored[key]), float(r))
        for key, r in now.items()
        if abs(relative_change(stored.get(key), r)) > RATIO_TOLERANCE
    ]


def check_if_due(
    ds: Dataset,
    anchors: list[tuple[int, int]],
    every: int,
    calibrate: Calibrate,
    fp_hash: str,
    on_check: Callable[[], None] | None = None,
) -> list[str]:
    """The end-of-run check, local or on a fleet: if any of ``anchors`` is due, call
    ``on_check()`` (the check takes seconds), calibrate and keep the result; returns one
    warning per ratio that moved."""
    due = anchors_due(ds, anchors, every, fp_hash)
    if due and on_check:
        on_check()
    return [ratio_warning(*moved) for moved in check_ratios(ds, calibrate, due, fp_hash)]


def relative_change(stored: object, now: float) -> float:
    """``now`` against a stored ratio; NaN when the stored one is missing or not positive."""
    return now / float(stored) - 1 if _valid(stored) else math.nan


def ratio_warning(key: str, stored: float, now: float) -> str:
    """One line for a ratio that moved: what it means for the stored labels."""
    return (
        f"anchor {anchor_label(key)}: ratio to the primary now ×{now:.3f}, stored ×{stored:.3f} "
        f"({now / stored - 1:+.1%}); labels of blocks timed alongside this anchor may be off "
        "by about that much relative to other anchors' blocks. Labels are unchanged; "
        "`lenna dataset info` lists every check."
    )


def _valid(ratio: object) -> bool:
    return isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0

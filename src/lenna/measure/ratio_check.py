"""The drift guard's end-of-run check of a dataset's anchor ratios.

Why: with matched references a label reaches milliseconds through its anchor's ratio to the
primary, calibrated once when the dataset began, so every row timed alongside that anchor
shares the ratio's error. One calibration in a noisy spell can be several % off
(``benchmarks/anchor_calibration.py``: the 32×32 ratio spread 3–4 % over six calibrations, and
one process's was 9–16 % above all others), which would set a whole band of block sizes off
its neighbours. Calibrating again after a long run costs seconds and says whether the stored
ratios still hold. Stored labels are left as they are (which calibration was right cannot be
told); the checks are kept in the file, so ``lenna dataset info`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable

from lenna.measure.reference import ANCHORS, anchor_key
from lenna.measure.store import Dataset

RATIO_TOLERANCE = 0.03
CHECKS_KEY = "reference_ratio_checks"

Calibrate = Callable[[bool, list[tuple[int, int]]], tuple[float | None, dict[str, float]]]


def check_ratios(
    ds: Dataset, calibrate: Calibrate, anchors: list[tuple[int, int]], rows: int
) -> list[tuple[str, float, float]]:
    """Calibrate ``anchors``' ratios again and keep the result in ``ds`` (after ``rows``
    rows); returns ``(anchor, stored, now)`` for each that moved more than
    :data:`RATIO_TOLERANCE`. The primary (ratio 1 by definition) and anchors without a stored
    ratio are skipped."""
    stored = ds.meta.get("reference_ratios") or {}
    todo = [tuple(a) for a in anchors if tuple(a) != ANCHORS[0] and anchor_key(a) in stored]
    if not todo:
        return []
    _, now = calibrate(False, todo)
    ds.set_meta(CHECKS_KEY, [*ds.meta.get(CHECKS_KEY, []), {"rows": rows, "ratios": now}])
    return [
        (key, float(stored[key]), float(r))
        for key, r in now.items()
        if abs(r / stored[key] - 1) > RATIO_TOLERANCE
    ]


def ratio_warning(key: str, stored: float, now: float) -> str:
    """One line for a ratio that moved: what it means for the stored labels."""
    return (
        f"anchor check: the {key} anchor's ratio is now ×{now:.3f}, stored ×{stored:.3f} "
        f"({now / stored - 1:+.1%}); rows timed alongside it may sit up to that far off other "
        "sizes' (a calibration in a noisy spell; `lenna dataset info` lists every check)"
    )

"""The drift guard: a fixed control sample measured every ``drift_every`` rows of a device and
compared with the dataset's one first value, so rows measured while the machine ran slower or
faster than when the file began are flagged rather than silently mixed in (docs/measurement.md).

Why per device: on a fleet each device drifts on its own, so a control covers only the rows of
the device that measured it; a local run is the one-device case of the same bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

from lenna.measure.store import Dataset

DRIFT_TOLERANCE = 0.03


def drift_baseline(ds: Dataset, measure: Callable[[], float]) -> float:
    """The control sample's first value: stored in the file, so a resumed run (and every
    device of a fleet) compares its controls with the same one; ``measure()`` if none yet."""
    base = ds.meta.get("drift_baseline_ms")
    if base is None:
        base = measure()
        ds.set_meta("drift_baseline_ms", base)
    return float(base)


def record_control(
    ds: Dataset, base: float, ctrl_ms: float, since: list[int], device: str | None = None
) -> str | None:
    """Store one control measurement; if it moved more than :data:`DRIFT_TOLERANCE` from
    ``base``, flag rows ``since`` (measured since the last control; on ``device`` of a
    fleet, None for a local run) and return the warning to show."""
    rel = (ctrl_ms - base) / base
    flagged = abs(rel) > DRIFT_TOLERANCE
    ds.add_drift(ds.count(), ctrl_ms, rel, since if flagged else [], device)
    if not flagged:
        return None
    where = f" on {device}" if device else ""
    return (
        f"drift{where}: the control sample moved {rel:+.1%} from its first value "
        f"({ctrl_ms:.3f} vs {base:.3f} ms); the last {len(since)} rows{where} "
        "are flagged (drift_flag = 1)"
    )


class DriftGuard:
    """Which rows each guarded device measured since its last control, and when its next
    control is due. Devices are the measuring loop's numbers; unguarded ones (simulated, or
    every device when the guard is off) are never due and keep no rows."""

    def __init__(self, ds: Dataset, every: int, base: float | None, guarded: set[int]) -> None:
        self.ds, self.every, self.base = ds, every, base
        self.since: dict[int, list[int]] = {d: [] for d in guarded} if base is not None else {}

    def note(self, device: int, index: int) -> None:
        """Row ``index`` was stored from ``device``."""
        if device in self.since:
            self.since[device].append(index)

    def due(self, device: int) -> bool:
        """Should ``device`` measure the control before its next sample?"""
        return device in self.since and len(self.since[device]) >= self.every

    def record(self, device: int, ctrl_ms: float, name: str | None) -> str | None:
        """Store ``device``'s control and start its next window; returns the warning, if any."""
        assert self.base is not None  # a control is only ever asked of a guarded device
        message = record_control(self.ds, self.base, ctrl_ms, self.since[device], name)
        self.since[device] = []
        return message

    def drop(self, device: int) -> list[int]:
        """``device`` stopped: forget it; returns its rows no control checked."""
        return self.since.pop(device, [])

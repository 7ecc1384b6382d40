"""What the measuring loop measures with: this process, or a pool of a fleet's Ray actors.

Why a protocol: the loop's rules (which sample next, when a control is due, what a row holds,
what is stored and flagged, what a lost device means) are the same for one machine and for a
fleet; only how a job reaches a device and comes back differs. Devices are numbered ``0 ..
len(names) - 1`` in a fixed order (the first real one calibrates a new dataset).
"""

from __future__ import annotations

from typing import Protocol

from lenna.measure.reference import Calibrate, Calibration

# A job is a sample index, or CONTROL: the drift guard's control sample.
Job = int | None
CONTROL: Job = None


class DeviceLost(Exception):
    """``device`` stopped (its actor died); what it was doing is lost, committed rows are not."""

    def __init__(self, device: int) -> None:
        super().__init__(device)
        self.device = device


class Devices(Protocol):
    """A set of devices that each measure one job at a time.

    ``names[d]`` is what rows and controls of device ``d`` are stored as (None: a local run,
    whose rows name no device); ``hashes[d]`` its fingerprint's hash; ``real[d]`` whether it
    really measures (a simulated device runs no drift guard and calibrates nothing)."""

    names: list[str | None]
    hashes: list[str]
    real: list[bool]

    def submit(self, device: int, job: Job, calibration: Calibration) -> None:
        """Start ``job`` on ``device`` (idle until now) at the dataset's ``calibration``."""
        ...

    def wait(self) -> tuple[int, object]:
        """The next finished job: ``(device, result)``, the result a row (a dict made by
        :func:`lenna.measure.runner.sample_row`) or a control's milliseconds. Raises
        :class:`DeviceLost` when the device stopped instead."""
        ...

    def calibrator(self, device: int, shared: bool) -> Calibrate:
        """Calibration on ``device``: its machine's (``shared``, what sets a new dataset's
        scale) or one of this moment (the anchor check). Raises :class:`DeviceLost`."""
        ...

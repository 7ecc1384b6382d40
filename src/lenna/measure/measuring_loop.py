"""The one loop over a dataset's missing samples, for a local run and a fleet alike.

Why one: resume semantics, the dataset's calibration, the drift guard's cadence and flags,
what a stored row holds, what a lost device means and the end-of-run anchor check must not
differ between ``lenna measure`` and ``lenna measure --ray``. What differs (a job run in this
process, or sent to a Ray actor and waited for) is behind :class:`~lenna.measure.devices.Devices`.

Each row is committed as it arrives, so an interruption (Ctrl-C, SIGTERM, a crash) loses at
most the jobs in flight; sample ``i`` is the same block wherever it is measured, so running
the same command again completes the same dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lenna.errors import InputError
from lenna.measure.calibration import dataset_calibration
from lenna.measure.devices import CONTROL, DeviceLost, Devices, Job
from lenna.measure.drift_guard import DriftGuard, drift_baseline
from lenna.measure.ratio_check import check_if_due
from lenna.measure.reference import Calibration, anchors_in_range
from lenna.measure.run_config import RunConfig
from lenna.measure.store import Dataset
from lenna.signals import stop_if_signalled

# on_row(row, sampled rows stored, device name or None): after each sample comes back
OnRow = Callable[[dict, int, str | None], None]


def missing_indices(have: set[int], n: int) -> list[int]:
    """The first ``n - len(have)`` indices not yet stored (rows beyond ``n`` are kept).
    Only sampled rows count (indices from 0 up; added blocks have negative ones)."""
    have = {i for i in have if i >= 0}
    out, i = [], 0
    while len(have) + len(out) < n:
        if i not in have:
            out.append(i)
        i += 1
    return out


class MeasuringLoop:
    """One run's bookkeeping: the work queue, each device's job, the drift guard, the live
    devices. The loop is the only writer of ``ds``."""

    def __init__(
        self, ds: Dataset, cfg: RunConfig, devices: Devices, warn: Callable[[str], None]
    ) -> None:
        self.ds, self.cfg, self.devices, self.warn = ds, cfg, devices, warn
        self.live = list(range(len(devices.names)))
        self.have = set(ds.indices())
        self.sampled = sum(i >= 0 for i in self.have)
        self.calibration = Calibration.of(ds.meta)
        self.guard = DriftGuard(ds, cfg.drift_every, None, set())  # off until calibrate()
        self.queue: list[int] = []
        self.jobs: dict[int, Job] = {}  # device -> its job in flight
        self.driver_s = 0.0  # the loop's own seconds (commit + dispatch): a fleet driver's cost

    def measure_to(
        self,
        n: int,
        on_row: OnRow | None = None,
        on_check: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> dict:
        """Measure until ``ds`` holds ``n`` sampled rows, then run the anchor check if due
        (``on_check()`` first: it takes seconds). ``on_ready()`` once calibrated, before the
        first sample. Returns ``rows`` (measured now) and ``measure_s`` (the loop's wall
        time)."""
        todo = missing_indices(self.have, n)
        if todo and any(self.devices.real):
            self.calibrate()
        if on_ready:
            on_ready()
        t0 = time.perf_counter()
        self.run(todo, on_row)
        took = time.perf_counter() - t0
        # a check cut short (Ctrl-C) is still due when the same command is run again
        self.check_anchors(on_check)
        return {"rows": len(todo), "measure_s": took}

    def calibrate(self) -> None:
        """``Z0``, the anchors' ratios and the drift baseline: stored, or measured on the
        first real device and stored, so every row, resumed run and device shares them."""
        first = self.devices.real.index(True)
        try:
            self.calibration = dataset_calibration(
                self.ds, self.cfg, self.devices.calibrator(first, shared=True)
            )
            if self.cfg.drift_every:
                base = drift_baseline(self.ds, lambda: self._control_now(first))
                real = {d for d in self.live if self.devices.real[d]}
                self.guard = DriftGuard(self.ds, self.cfg.drift_every, base, real)
        except DeviceLost:
            raise InputError(
                "the measuring actor died while calibrating; committed rows are kept, "
                "run the same command again"
            ) from None

    def _control_now(self, device: int) -> float:
        """The control sample on ``device``, waited for (nothing else is in flight yet)."""
        self.devices.submit(device, CONTROL, self.calibration)
        _, ms = self.devices.wait()
        return float(ms)

    def run(self, todo: list[int], on_row: OnRow | None = None) -> None:
        """Measure samples ``todo`` (in that order as devices free up), each stored as it
        arrives, each device's control run when due."""
        self.queue = list(reversed(todo))
        for d in self.live:
            self._next(d)
        while self.jobs:
            stop_if_signalled()  # a handler's raise lost in a callback stops the run here
            try:
                device, result = self.devices.wait()
            except DeviceLost as lost:
                self._lost(lost.device, self.jobs.pop(lost.device))
                continue
            job = self.jobs.pop(device)
            t0 = time.perf_counter()
            name = self.devices.names[device]
            if job is CONTROL:
                message = self.guard.record(device, float(result), name)
                if message:
                    self.warn(message)
            elif job not in self.have:  # a retried item never becomes a second row
                self._store(device, job, result, name)
            self._next(device)
            self.driver_s += time.perf_counter() - t0
            if job is not CONTROL and on_row:
                on_row(result, self.sampled, name)

    def _store(self, device: int, index: int, row: dict, name: str | None) -> None:
        row["alphas"] = np.asarray(row["alphas"])
        if name is not None:
            row["device"] = name  # which of this run's devices measured the row
        self.ds.add_sample(row)
        self.have.add(index)
        self.sampled += index >= 0
        self.guard.note(device, index)

    def _next(self, device: int) -> None:
        """Give ``device`` its control if it is due one, else the next sample (if any)."""
        if self.guard.due(device):
            job: Job = CONTROL
        elif self.queue:
            job = self.queue.pop()
        else:
            return
        self.jobs[device] = job
        self.devices.submit(device, job, self.calibration)

    def _lost(self, device: int, job: Job) -> None:
        """A device stopped: re-queue its sample, go on with the others (or stop if none
        is left)."""
        if job is not CONTROL:
            self.queue.append(job)  # measured again elsewhere
        unchecked = self.guard.drop(device)
        if unchecked:
            self.warn(
                f"{self.devices.names[device]} stopped; its last {len(unchecked)} rows were "
                "not checked by a control (they are kept, unflagged)"
            )
        self.live.remove(device)
        if not self.live:
            raise InputError(
                "every measuring actor died; committed rows are kept, "
                "run the same command again to resume"
            )
        for d in self.live:  # a free device may be idle now
            if d not in self.jobs:
                self._next(d)

    def check_anchors(self, on_check: Callable[[], None] | None = None) -> None:
        """The anchor check, if due, on the first live real device of the fingerprint that
        created the file (another machine's ratios differ by design, not by error)."""
        creator = (self.ds.meta.get("fingerprint") or {}).get("hash")
        devices = self.devices
        checker = next(
            (d for d in self.live if devices.real[d] and devices.hashes[d] == creator), None
        )
        if checker is None:
            return
        cfg = self.cfg
        anchors = anchors_in_range(cfg.channels, cfg.resolutions, cfg.measure.reference)
        calibrate = devices.calibrator(checker, shared=False)
        try:
            messages = check_if_due(self.ds, anchors, cfg.drift_every, calibrate, creator, on_check)
        except DeviceLost:
            messages = [
                f"{devices.names[checker]} stopped during the anchor check; it runs when the "
                "same command is run again"
            ]
        for message in messages:
            self.warn(message)

"""A fleet's Ray actors as the measuring loop's devices: jobs sent to them, results waited
for in the order they finish, a dead actor reported as lost.

Why only this: everything a run decides (what to measure next, controls, flags, what is
stored, what a lost device means) is the shared :mod:`lenna.measure.measuring_loop`; the
driver stays the file's only writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lenna.measure.devices import CONTROL, DeviceLost, Job
from lenna.measure.measuring_loop import MeasuringLoop
from lenna.measure.reference import Calibrate, Calibration
from lenna.measure.run_config import RunConfig
from lenna.measure.store import Dataset


class RayActors:
    """Actors of :class:`~lenna.measure.fleet_actor.Measurer`, named ``device 0 ..`` in the
    order given; ``real`` (those not simulated) run the drift guard, ``hashes`` their
    fingerprints' (default: each the dataset's)."""

    def __init__(self, ray: Any, actors: list, real: list, hashes: list[str]) -> None:
        self.ray, self.actors = ray, list(actors)
        self.names: list[str | None] = [f"device {i}" for i in range(len(actors))]
        self.real = [any(a is r for r in real) for a in actors]
        self.hashes = list(hashes)
        self.in_flight: dict[Any, int] = {}  # object ref -> device

    def submit(self, device: int, job: Job, calibration: Calibration) -> None:
        actor = self.actors[device]
        if job is CONTROL:
            ref = actor.control.remote(calibration)
        else:
            ref = actor.measure.remote(job, calibration)
        self.in_flight[ref] = device

    def wait(self) -> tuple[int, object]:
        done, _ = self.ray.wait(list(self.in_flight), num_returns=1)
        device = self.in_flight.pop(done[0])
        try:
            return device, self.ray.get(done[0])
        except self.ray.exceptions.RayActorError:
            raise DeviceLost(device) from None

    def calibrator(self, device: int, shared: bool) -> Calibrate:
        actor = self.actors[device]

        def calibrate(need_z0: bool, anchors: list[tuple[int, int]]) -> tuple:
            try:
                return self.ray.get(actor.calibrate.remote(need_z0, anchors, shared))
            except self.ray.exceptions.RayActorError:
                raise DeviceLost(device) from None

        return calibrate


class _Fleet(MeasuringLoop):
    """The measuring loop of one fleet run, on its actors."""

    def __init__(
        self,
        ray: Any,
        ds: Dataset,
        cfg: RunConfig,
        actors: list,
        real: list,
        warn: Callable[[str], None],
        hashes: list[str] | None = None,
    ) -> None:
        creator = (ds.meta.get("fingerprint") or {}).get("hash")
        hashes = hashes or [creator] * len(actors)
        super().__init__(ds, cfg, RayActors(ray, actors, real, hashes), warn)

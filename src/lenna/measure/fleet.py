"""Measure one dataset on a fleet of target devices with Ray (``lenna measure --ray``).

One measuring actor per device, placed by the custom resource ``lenna_device`` that each
target node advertises (``ray start ... --resources='{"lenna_device": 1}'``), so two
measurements never share a device. The driver is the only writer of the SQLite file. Work
items are sample indices of the seeded sampler: sample *i* is the same block wherever it is
measured, so a retried item can never become a duplicate row. An actor that dies has its
item re-queued; the others go on.

The drift guard runs per device: after every ``drift_every`` rows of its own, a device
measures the control sample, which is compared with the dataset's one baseline (normalised,
as every label is, to the calibrated speed), and only that device's rows since its last
control are flagged. The anchor check runs at the end on the first live device whose
fingerprint created the file.

``simulate_s`` replaces the timer with a calibrated sleep (for scaling benchmarks on a small
machine); such rows carry a fingerprint marked ``simulated``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lenna.errors import InputError
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.ratio_check import check_if_due
from lenna.measure.reference import Calibration, anchors_in_range
from lenna.measure.runner import (
    RunConfig,
    _missing_indices,
    control_measurement,
    dataset_calibration,
    drift_baseline,
    local_calibrate,
    measure_sample,
    open_dataset,
    record_control,
    sample_row,
)
from lenna.measure.store import Dataset
from lenna.space import get_space

RESOURCE = "lenna_device"
INSTALL = "Ray is not installed; install it with: pip install 'lenna[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL) from None
    return ray


def loopback_only(ray: Any) -> None:
    """Make a cluster started here listen on 127.0.0.1 only.

    Ray binds its servers (GCS, raylet, workers; no authentication) to the node's address,
    which on Linux is the machine's network address. A cluster that only this machine uses has
    no reason to be reachable from the network, so its node address is the loopback one: Ray's
    own switch for that (the setting it uses on laptops) is read from the environment by the
    processes it starts and from its constants module by this one."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def connect(address: str, devices: int | None = None) -> Any:
    """Join a cluster: ``auto`` (a running one), ``local`` (start one here, ``devices``
    simulated device slots, default 2), or ``HOST:PORT``."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address not in ("auto", "local"):
        check_reachable(address)
    try:
        if address == "local":
            n = devices or 2
            loopback_only(ray)
            ray.init(
                resources={RESOURCE: n},
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(f"cannot join the Ray cluster at {address!r}: {e}") from None
    return ray


REACH_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse in one line, within ``timeout_s``, an address no cluster answers at: Ray itself
    retries an unreachable head for minutes, printing warnings (issue 25, D8)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--ray takes auto, local or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        reason = e.strerror or e.__class__.__name__
        raise InputError(f"cannot reach a Ray cluster at {address!r}: {reason}") from None


class Measurer:
    """The actor's body: measures samples of one dataset config on its device."""

    def __init__(self, cfg: dict, simulate_s: float | None = None) -> None:
        self.cfg = RunConfig.from_dict(cfg)
        self.simulate_s = simulate_s
        m = self.cfg.measure
        self.fp = config_fingerprint(m, simulated=bool(simulate_s))

    def fingerprint(self) -> dict:
        return self.fp

    def calibrate(
        self, need_z0: bool, anchors: list[tuple[int, int]], shared: bool = True
    ) -> tuple:
        """This device's reference time ``Z0`` (if ``need_z0``) and the ratios of
        ``anchors`` (the dataset stores the first device's): its machine's calibration
        (``shared``) or one of this moment (the anchor check)."""
        m = self.cfg.measure
        return local_calibrate(get_space(self.cfg.space), m, shared)(need_z0, anchors)

    def control(self, calibration: Calibration | None = None) -> float:
        """The drift guard's control sample, measured on this device (ms)."""
        cfg = self.cfg
        return control_measurement(get_space(cfg.space), cfg, calibration).latency_ms

    def measure(
        self,
        index: int,
        calibration: Calibration | None = None,
    ) -> dict:
        cfg, m = self.cfg, self.cfg.measure
        spec = cfg.sampler()(index)
        if self.simulate_s:
            return _simulated_row(spec, index, m.batch, self.fp["hash"], self.simulate_s)
        meas = measure_sample(get_space(cfg.space), cfg, spec, index, calibration)
        return sample_row(meas, index, spec.regime, m.batch, self.fp["hash"], trace=False)


def _simulated_row(spec: Any, index: int, batch: int, fp_hash: str, sleep_s: float) -> dict:
    """A row whose "latency" is a deterministic function of the block, after a sleep."""
    t0 = time.perf_counter()
    time.sleep(sleep_s)
    ms = (
        0.05
        * spec.channels
        * (spec.resolution / 8) ** 2
        * (1.5 if spec.block_type == "reduction" else 1)
    )
    return {
        "sample_index": index,
        "block_type": spec.block_type,
        "channels": spec.channels,
        "resolution": spec.resolution,
        "batch": batch,
        "regime": spec.regime,
        "alphas": spec.alphas,
        "latency_ms": float(ms),
        "rule": "simulated",
        "resets": 0,
        "passes": 0,
        "ci_half_width_ms": None,
        "converged": 1,
        "wall_s": time.perf_counter() - t0,
        "fingerprint": fp_hash,
        "drift_flag": 0,
        "load": None,
        "trace": None,
    }


def run_fleet_measurement(
    path: str | Path,
    cfg: RunConfig,
    n: int,
    address: str = "local",
    *,
    devices: int | None = None,
    allow_mixed: bool = False,
    simulate_s: float | list[float | None] | None = None,
    on_sample: Callable[[dict, int, str], None] | None = None,
    on_start: Callable[[list], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_check: Callable[[], None] | None = None,
    stats: dict | None = None,
) -> int:
    """Measure until ``path`` holds ``n`` samples, one actor per ``lenna_device`` slot.

    ``on_sample(row, count, device)`` after each commit; ``on_start(actors)`` once the actors
    are up; ``on_warning(message)`` for the drift guard; ``on_check()`` before the anchor
    check (it takes seconds). ``simulate_s``: a sleep instead of the timer, one value for all
    actors or one per actor (simulated devices run no drift guard). ``stats`` (if given)
    receives the driver's own seconds (dispatch + commit) and the measuring wall time, for the
    scaling benchmark.
    The dataset's reference time ``Z0`` and the drift guard's baseline are measured once (on
    the first real device) and every device uses them: a device slower or faster than the
    first reports at the dataset's speed, as far as block and reference scale alike on both
    (true for identical machines; an assumption across different hardware, which needs
    ``--allow-mixed``), and a device on which they do not is flagged by its controls. With
    matched references the anchors' ratios are calibrated and stored alongside ``Z0`` and
    every device uses them.
    """
    if n < 0:
        raise InputError(f"-n must be >= 0, got {n}")
    ray = connect(address, devices)
    slots = int(ray.cluster_resources().get(RESOURCE, 0))
    if slots < 1:
        raise InputError(
            f"no node of this Ray cluster advertises the {RESOURCE!r} resource; start each "
            f"target device with: ray start --address=... --resources='{{\"{RESOURCE}\": 1}}'"
        )
    n_actors = min(slots, devices) if devices else slots
    actor_cls = ray.remote(resources={RESOURCE: 1}, num_cpus=0, max_restarts=0)(Measurer)
    given = simulate_s if isinstance(simulate_s, list) else [simulate_s]
    sims = [given[i % len(given)] for i in range(n_actors)]  # one per actor
    # the rule's every setting, so each device runs the driver's, whatever its own defaults
    sent = cfg.to_dict()
    sent["measure"]["rule_params"] = cfg.measure.rule_settings()
    actors = [actor_cls.remote(sent, sim) for sim in sims]
    warn = on_warning or (lambda message: None)
    try:
        fps = ray.get([a.fingerprint.remote() for a in actors])
        hashes = {fp["hash"] for fp in fps}
        if len(hashes) > 1 and not allow_mixed:
            raise InputError(
                f"the fleet's devices differ ({len(hashes)} fingerprints: "
                f"{', '.join(sorted(hashes))}); "
                "pass --allow-mixed to measure one dataset on all of them"
            )
        with open_dataset(path, cfg, fps[0], allow_mixed) as ds:
            for fp in fps[1:]:
                ds.add_fingerprint(fp)
            real = [
                (a, fp["hash"]) for a, fp, sim in zip(actors, fps, sims, strict=True) if not sim
            ]
            fleet = _Fleet(ray, ds, cfg, actors, [a for a, _ in real], warn)
            todo = _missing_indices(fleet.have, n)
            if todo and real:
                fleet.calibrate()
            if on_start:
                on_start(list(actors))
            t_start = time.perf_counter()
            fleet.run(todo, on_sample)
            if stats is not None:
                stats.update(
                    driver_s=fleet.driver_s,
                    actors=n_actors,
                    measure_s=time.perf_counter() - t_start,
                    rows=len(todo),
                )
            creator = ds.meta["fingerprint"]["hash"]
            checker = [a for a, h in real if h == creator and any(a is b for b in fleet.live)]
            if checker:
                fleet.check_anchors(checker[0], creator, on_check)
            return ds.count()
    finally:
        for a in actors:
            ray.kill(a)


class _Fleet:
    """The driver's bookkeeping for one run: the work queue, what each device has in flight,
    and each device's rows since its last control."""

    def __init__(
        self,
        ray: Any,
        ds: Dataset,
        cfg: RunConfig,
        actors: list,
        real: list,
        warn: Callable[[str], None],
    ) -> None:
        self.ray, self.ds, self.cfg, self.real, self.warn = ray, ds, cfg, real, warn
        self.live = list(actors)
        self.names = {id(a): f"device {i}" for i, a in enumerate(actors)}
        self.have = set(ds.indices())
        self.calibration = Calibration.of(ds.meta)
        self.base: float | None = None  # the drift guard's baseline; None: no guard
        self.since: dict[int, list[int]] = {id(a): [] for a in actors}
        self.queue: list[int] = []
        self.in_flight: dict[Any, tuple[Any, int | None]] = {}  # index None: a control
        self.driver_s = 0.0

    def _on_first(self, method: str, *args: Any) -> Any:
        try:
            return self.ray.get(getattr(self.real[0], method).remote(*args))
        except self.ray.exceptions.RayActorError:
            raise InputError(
                "the measuring actor died while calibrating; committed rows are kept, "
                "run the same command again"
            ) from None

    def calibrate(self) -> None:
        """``Z0``, the anchors' ratios and the drift baseline: stored, or measured on the
        first real device."""

        def on_first_device(need_z0: bool, anchors: list) -> tuple:
            return self._on_first("calibrate", need_z0, anchors)

        self.calibration = dataset_calibration(self.ds, self.cfg, on_first_device)
        if self.cfg.drift_every:
            self.base = drift_baseline(self.ds, lambda: self._on_first("control", self.calibration))

    def _guarded(self, actor: Any) -> bool:
        """Does ``actor`` run the drift guard (a real device, with the guard on)?"""
        return self.base is not None and any(actor is a for a in self.real)

    def _next(self, actor: Any) -> None:
        """Give ``actor`` its control if it is due one, else the next sample (if any)."""
        if self._guarded(actor) and len(self.since[id(actor)]) >= self.cfg.drift_every:
            self.in_flight[actor.control.remote(self.calibration)] = (actor, None)
        elif self.queue:
            index = self.queue.pop()
            self.in_flight[actor.measure.remote(index, self.calibration)] = (actor, index)

    def run(self, todo: list[int], on_sample: Callable[[dict, int, str], None] | None) -> None:
        ray = self.ray
        self.queue = list(reversed(todo))
        for a in self.live:
            self._next(a)
        while self.in_flight:
            done, _ = ray.wait(list(self.in_flight), num_returns=1)
            actor, index = self.in_flight.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayActorError:
                self._lost(actor, index)
                continue
            t0 = time.perf_counter()
            name = self.names[id(actor)]
            if index is None:
                message = record_control(self.ds, self.base, result, self.since[id(actor)], name)
                self.since[id(actor)] = []
                if message:
                    self.warn(message)
            elif index not in self.have:  # a retried item never becomes a second row
                result["alphas"] = np.asarray(result["alphas"])
                result["device"] = name  # which of this run's devices measured the row
                self.ds.add_sample(result)
                self.have.add(index)
                if self._guarded(actor):
                    self.since[id(actor)].append(index)
            self._next(actor)
            self.driver_s += time.perf_counter() - t0
            if index is not None and on_sample:
                on_sample(result, sum(i >= 0 for i in self.have), name)

    def _lost(self, actor: Any, index: int | None) -> None:
        """An actor died: re-queue its sample, go on with the others (or stop if none is
        left)."""
        if index is not None:
            self.queue.append(index)  # measured again elsewhere
        unchecked = self.since.pop(id(actor), [])
        if unchecked:
            self.warn(
                f"{self.names[id(actor)]} stopped; its last {len(unchecked)} rows were not "
                "checked by a control (they are kept, unflagged)"
            )
        self.live = [a for a in self.live if a is not actor]
        if not self.live:
            raise InputError(
                "every measuring actor died; committed rows are kept, "
                "run the same command again to resume"
            ) from None
        for a in self.live:  # a free actor may be idle now
            if not any(v[0] is a for v in self.in_flight.values()):
                self._next(a)

    def check_anchors(self, actor: Any, fp_hash: str, on_check: Callable[[], None] | None) -> None:
        """The anchor check (as a local run ends), on ``actor``, if it is due."""
        cfg = self.cfg

        def on_device(need_z0: bool, anchors: list) -> tuple:
            return self.ray.get(actor.calibrate.remote(need_z0, anchors, False))

        anchors = anchors_in_range(cfg.channels, cfg.resolutions)
        try:
            messages = check_if_due(self.ds, anchors, cfg.drift_every, on_device, fp_hash, on_check)
        except self.ray.exceptions.RayActorError:
            messages = [
                f"{self.names[id(actor)]} stopped during the anchor check; it runs when the "
                "same command is run again"
            ]
        for message in messages:
            self.warn(message)

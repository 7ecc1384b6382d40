"""Measure one dataset on a fleet of target devices with Ray (``lenna measure --ray``).

One measuring actor per device, placed by the custom resource ``lenna_device`` that each
target node advertises (``ray start ... --resources='{"lenna_device": 1}'``), so two
measurements never share a device. The driver is the only writer of the SQLite file. Work
items are sample indices of the seeded sampler: sample *i* is the same block wherever it is
measured, so a retried item can never become a duplicate row. An actor that dies has its
item re-queued; the others go on.

``simulate_s`` replaces the timer with a calibrated sleep (for scaling benchmarks on a small
machine); such rows carry a fingerprint marked ``simulated``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lenna.errors import InputError
from lenna.measure.fingerprint import fingerprint
from lenna.measure.runner import (
    RunConfig,
    _missing_indices,
    dataset_calibration,
    local_calibrate,
    measure_sample,
    open_dataset,
    sample_row,
)
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


def connect(address: str, devices: int | None = None) -> Any:
    """Join a cluster: ``auto`` (a running one), ``local`` (start one here, ``devices``
    simulated device slots, default 2), or ``HOST:PORT``."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            n = devices or 2
            ray.init(resources={RESOURCE: n}, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(f"cannot join the Ray cluster at {address!r}: {e}") from None
    return ray


class Measurer:
    """The actor's body: measures samples of one dataset config on its device."""

    def __init__(self, cfg: dict, simulate_s: float | None = None) -> None:
        self.cfg = RunConfig.from_dict(cfg)
        self.simulate_s = simulate_s
        m = self.cfg.measure
        self.fp = fingerprint(m.device, m.threads, m.dtype, m.batch, simulated=bool(simulate_s))

    def fingerprint(self) -> dict:
        return self.fp

    def calibrate(self, need_z0: bool, anchors: list[tuple[int, int]]) -> tuple:
        """This device's reference time ``Z0`` (if ``need_z0``) and the ratios of
        ``anchors`` (the dataset stores the first device's)."""
        m = self.cfg.measure
        return local_calibrate(get_space(self.cfg.space), m)(need_z0, anchors)

    def measure(
        self,
        index: int,
        reference_ms: float | None = None,
        reference_ratios: dict[str, float] | None = None,
    ) -> dict:
        cfg, m = self.cfg, self.cfg.measure
        spec = cfg.sampler()(index)
        if self.simulate_s:
            return _simulated_row(spec, index, m.batch, self.fp["hash"], self.simulate_s)
        meas = measure_sample(
            get_space(cfg.space), cfg, spec, index, reference_ms, reference_ratios
        )
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
    stats: dict | None = None,
) -> int:
    """Measure until ``path`` holds ``n`` samples, one actor per ``lenna_device`` slot.

    ``on_sample(row, count, device)`` after each commit; ``on_start(actors)`` once the actors
    are up. ``simulate_s``: a sleep instead of the timer, one value for all actors or one per
    actor. ``stats`` (if given) receives the driver's own seconds (dispatch + commit) and the
    measuring wall time, for the scaling benchmark.
    The drift guard is not run on a fleet (each device would need its own control). The
    dataset's reference time ``Z0`` is calibrated once (on the first real device) and every
    device normalises its labels to it: a device slower or faster than the first reports at
    the dataset's speed, as far as block and reference scale alike on both (true for identical
    machines; an assumption across different hardware, which needs ``--allow-mixed``). With
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
    sims = simulate_s if isinstance(simulate_s, list) else [simulate_s] * n_actors
    actors = [actor_cls.remote(cfg.to_dict(), sims[i % len(sims)]) for i in range(n_actors)]
    fps = ray.get([a.fingerprint.remote() for a in actors])
    hashes = {fp["hash"] for fp in fps}
    if len(hashes) > 1 and not allow_mixed:
        for a in actors:
            ray.kill(a)
        raise InputError(
            f"the fleet's devices differ ({len(hashes)} fingerprints: "
            f"{', '.join(sorted(hashes))}); "
            "pass --allow-mixed to measure one dataset on all of them"
        )
    driver_s = 0.0
    with open_dataset(path, cfg, fps[0], allow_mixed) as ds:
        for fp in fps[1:]:
            ds.add_fingerprint(fp)
        have = set(ds.indices())
        todo = _missing_indices(have, n)
        real = [a for a, s in zip(actors, sims * n_actors, strict=False) if not s]
        z0, ratios = ds.meta.get("reference_ms"), ds.meta.get("reference_ratios")
        if todo and real:

            def on_first_device(need_z0: bool, anchors: list) -> tuple:
                return ray.get(real[0].calibrate.remote(need_z0, anchors))

            try:
                z0, ratios = dataset_calibration(ds, cfg, on_first_device)
            except ray.exceptions.RayActorError:
                raise InputError(
                    "the measuring actor died while calibrating the reference block; "
                    "run the same command again"
                ) from None
        queue = list(reversed(todo))
        in_flight: dict[Any, tuple[Any, int, str]] = {}
        names = {id(a): f"device {i}" for i, a in enumerate(actors)}
        live = list(actors)

        def dispatch(actor: Any) -> None:
            if queue:
                index = queue.pop()
                ref = actor.measure.remote(index, z0, ratios)
                in_flight[ref] = (actor, index, names[id(actor)])

        if on_start:
            on_start(list(actors))
        t_start = time.perf_counter()
        try:
            for a in live:
                dispatch(a)
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                ref = done[0]
                actor, index, name = in_flight.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayActorError:
                    queue.append(index)  # re-queued: measured again elsewhere
                    live.remove(actor)
                    if not live:
                        raise InputError(
                            "every measuring actor died; committed rows are kept, "
                            "run the same command again to resume"
                        ) from None
                    for a in live:  # a free actor may be idle now
                        if not any(v[0] is a for v in in_flight.values()):
                            dispatch(a)
                    continue
                t0 = time.perf_counter()
                if index not in have:  # a retried item never becomes a second row
                    row["alphas"] = np.asarray(row["alphas"])
                    ds.add_sample(row)
                    have.add(index)
                dispatch(actor)
                driver_s += time.perf_counter() - t0
                if on_sample:
                    on_sample(row, len(have), name)
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            for a in actors:
                ray.kill(a)
        if stats is not None:
            stats.update(
                driver_s=driver_s,
                actors=n_actors,
                measure_s=time.perf_counter() - t_start,
                rows=len(todo),
            )
        return ds.count()

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

The loop (and so all of the above) is the one a local run uses,
:mod:`lenna.measure.measuring_loop`; here are the cluster, the actors' start and the run's
sequence. The actor's body is :mod:`lenna.measure.fleet_actor` (``simulate_s`` there: a sleep
instead of the timer), the actors as the loop's devices :mod:`lenna.measure.fleet_pool`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lenna.errors import InputError
from lenna.measure.dataset_open import open_dataset, run_fingerprint
from lenna.measure.fleet_actor import Measurer
from lenna.measure.fleet_pool import _Fleet
from lenna.measure.run_config import RunConfig
from lenna.signals import keep_handlers

# Measurer: the actor class, imported from here by callers
__all__ = [
    "INSTALL",
    "RESOURCE",
    "Measurer",
    "check_reachable",
    "connect",
    "loopback_only",
    "require_ray",
    "run_fleet_measurement",
]

RESOURCE = "lenna_device"
INSTALL = "Ray is not installed; install it with: pip install -e '.[ray]' in the LENNA checkout"


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
        with keep_handlers():  # ray.init replaces the SIGTERM handler
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
        distinct = {fp["hash"] for fp in fps}
        if len(distinct) > 1 and not allow_mixed:
            raise InputError(
                f"the fleet's devices differ ({len(distinct)} fingerprints: "
                f"{', '.join(sorted(distinct))}); "
                "pass --allow-mixed to measure one dataset on all of them"
            )
        with open_dataset(path, cfg, fps[0], allow_mixed) as ds:
            # a device of the machine that began the file, before newer fingerprint keys,
            # writes its rows under the file's record of that machine (as a local run does)
            adopted = [run_fingerprint(ds, fp) for fp in fps]
            changed = [(a, f) for a, f, fp in zip(actors, adopted, fps, strict=True) if f is not fp]
            ray.get([a.adopt.remote(f) for a, f in changed])
            fps = adopted
            for fp in fps[1:]:
                ds.add_fingerprint(fp)
            real = [a for a, sim in zip(actors, sims, strict=True) if not sim]
            fleet = _Fleet(ray, ds, cfg, actors, real, warn, [fp["hash"] for fp in fps])
            ready = (lambda: on_start(list(actors))) if on_start else None
            done = fleet.measure_to(n, on_sample, on_check, ready)
            if stats is not None:
                stats.update(driver_s=fleet.driver_s, actors=n_actors, **done)
            return ds.count()
    finally:
        for a in actors:
            ray.kill(a)

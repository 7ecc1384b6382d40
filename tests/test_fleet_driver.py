"""The fleet driver's bookkeeping (``_Fleet``) without Ray: scripted devices that finish in a
chosen order and die on cue, so which rows each device's control covers is exact, not up to
the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from measure_helpers import tiny_config

from lenna.errors import InputError
from lenna.measure.fleet_actor import _simulated_row
from lenna.measure.fleet_pool import _Fleet
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset


class ActorDied(Exception):
    pass


class Ref:
    def __init__(self, actor: FakeActor, run: Callable[[], object]) -> None:
        self.actor, self.run = actor, run


class Method:
    def __init__(self, actor: FakeActor, fn: Callable) -> None:
        self.actor, self.fn = actor, fn

    def remote(self, *args: object) -> Ref:
        return Ref(self.actor, lambda: self.fn(*args))


class FakeActor:
    """A device: ``measure`` gives a simulated row, ``control`` a fixed value (far from the
    test's baseline, so every control flags); it dies when asked for result ``die_at``."""

    def __init__(self, cfg, fp_hash: str, die_at: int | None = None) -> None:
        sampler = cfg.sampler()
        self.rows: list[int] = []
        self.results, self.die_at = 0, die_at

        def measure(index: int, calibration: object) -> dict:
            self.rows.append(index)
            return _simulated_row(sampler(index), index, cfg.measure.batch, fp_hash, 0.0)

        self.measure = Method(self, measure)
        self.control = Method(self, lambda calibration: 1.0)


class FakeRay:
    """``wait`` returns the in-flight work of the device earliest in ``priority`` first."""

    class exceptions:
        RayActorError = ActorDied

    def __init__(self, priority: list[FakeActor]) -> None:
        self.priority = priority

    def wait(self, refs: list[Ref], num_returns: int = 1) -> tuple[list, list]:
        first = min(refs, key=lambda r: self.priority.index(r.actor))
        return [first], [r for r in refs if r is not first]

    def get(self, ref: Ref) -> object:
        actor = ref.actor
        actor.results += 1
        if actor.die_at is not None and actor.results >= actor.die_at:
            raise ActorDied
        return ref.run()


def driver(tmp_path, every: int, die_at=(None, None), first: int = 0):
    """Two devices on a dataset whose calibration and (far-off) drift baseline are stored."""
    cfg = tiny_config(drift_every=every)
    db = tmp_path / "d.db"
    run_measurement(db, cfg, 0)
    ds = Dataset.open(db)
    ds.set_meta("reference_ms", 1.0)
    ds.set_meta("reference_ratios", {"16x16": 1.0})
    ds.set_meta("drift_baseline_ms", 1e6)
    actors = [FakeActor(cfg, ds.meta["fingerprint"]["hash"], d) for d in die_at]
    ray = FakeRay(actors if first == 0 else actors[::-1])
    warnings: list[str] = []
    fleet = _Fleet(ray, ds, cfg, actors, list(actors), warnings.append)
    fleet.calibrate()  # all stored: nothing is asked of a device
    return fleet, ds, actors, warnings


def flagged(ds: Dataset) -> list[int]:
    sql = "SELECT sample_index FROM samples WHERE drift_flag"
    return sorted(i for (i,) in ds.con.execute(sql))


def devices(ds: Dataset) -> dict[int, str]:
    """Which device the file says measured each row."""
    df = ds.samples()
    return dict(zip(df["sample_index"], df["device"], strict=True))


def test_each_control_flags_only_its_own_devices_rows(tmp_path):
    """Device 0 always finishes first, so it measures 7 of 8 rows and device 1 one; a guard
    over the whole fleet (every 2 rows committed) would flag all 8, not device 0's first 6."""
    fleet, ds, (d0, d1), warnings = driver(tmp_path, every=2)
    fleet.run(list(range(8)), None)
    assert d1.rows == [1] and d0.rows == [0, 2, 3, 4, 5, 6, 7]
    assert flagged(ds) == [0, 2, 3, 4, 5, 6]  # controls after d0's 2nd, 4th and 6th rows
    assert len(ds.drift()) == 3 and len(warnings) == 3
    assert all("on device 0" in w for w in warnings)
    assert list(ds.drift()["device"]) == ["device 0"] * 3  # the file names it too
    assert devices(ds) == {1: "device 1"} | dict.fromkeys(d0.rows, "device 0")  # and each row's
    ds.close()


def test_a_device_that_dies_says_how_many_of_its_rows_went_unchecked(tmp_path):
    fleet, ds, (d0, d1), warnings = driver(tmp_path, every=3, die_at=(None, 3), first=1)
    fleet.run(list(range(6)), None)  # device 1: rows 1 and 2, then dies holding row 3
    assert d1.rows[:2] == [1, 2] and sorted(d0.rows) == [0, 3, 4, 5] and ds.count() == 6
    assert any("device 1 stopped; its last 2 rows were not checked" in w for w in warnings)
    assert flagged(ds) == [0, 3, 4]  # device 0's control after its 3rd row; row 5 is after
    # the lost row 3 is stored once, as measured by the device that finished it
    assert devices(ds) == {1: "device 1", 2: "device 1"} | dict.fromkeys((0, 3, 4, 5), "device 0")
    ds.close()


def test_a_device_dying_during_its_control_leaves_its_rows_unflagged(tmp_path):
    fleet, ds, (d0, d1), warnings = driver(tmp_path, every=2, die_at=(3, None))
    fleet.run(list(range(5)), None)  # device 0: rows 0 and 2, then dies in its control
    assert d0.rows == [0, 2] and d1.rows == [1, 3, 4] and ds.count() == 5
    assert any("device 0 stopped; its last 2 rows were not checked" in w for w in warnings)
    assert flagged(ds) == [1, 3]  # only device 1's control ran
    ds.close()


# ---- an address no cluster answers at (issue 25, D8) ---------------------------------------
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free again once closed: nothing listens there


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        (None, "cannot reach a Ray cluster at"),
        ("nohost.invalid:6379", "cannot reach a Ray cluster at"),
        ("no-port-here", "--ray takes auto, local or HOST:PORT"),
        ("host:http", "--ray takes auto, local or HOST:PORT"),
    ],
)
def test_an_unreachable_address_is_one_line_before_ray_starts(address, needle, monkeypatch):
    from lenna.measure import fleet

    address = address or f"127.0.0.1:{_closed_port()}"
    started = []
    monkeypatch.setattr(fleet, "require_ray", lambda: _FakeRay(started))
    with pytest.raises(InputError, match=needle):
        fleet.connect(address)
    assert started == []  # refused before ray.init


class _FakeRay:
    def __init__(self, started):
        self.started = started

    def is_initialized(self):
        return False

    def init(self, *a, **k):
        self.started.append((a, k))

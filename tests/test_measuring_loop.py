"""A local run and a fleet run share one measuring loop: driven by the same fake measurement,
``run_measurement`` and ``run_fleet_measurement`` (on Ray's API in this process, the real
actor body) store the same rows, controls, flags and anchor checks, warn alike, and leave the
same file when interrupted.
"""

from __future__ import annotations

import math
import signal
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
from inprocess_ray import InProcessRay
from measure_helpers import tiny_config

from lenna.measure import fleet as fleet_mod
from lenna.measure import fleet_actor
from lenna.measure import runner as runner_mod
from lenna.measure.block_measure import Measurement
from lenna.measure.measuring_loop import MeasuringLoop, missing_indices
from lenna.measure.ratio_check import CHECKS_KEY
from lenna.measure.rules import Estimate
from lenna.measure.runner import Interrupted, run_measurement
from lenna.measure.store import Dataset


def fake_spec(space, spec, config=None, seed=0, calibration=None) -> Measurement:
    """A label from the block, its seed and the dataset's Z0: equal only if all three are."""
    z0 = calibration.z0_ms if calibration and calibration.z0_ms else math.nan
    ms = (spec.channels * spec.resolution + seed % 97) * z0 / 100
    est = Estimate(ms, "fake", 1, 1, math.nan, True)
    return Measurement(
        spec.block_type, spec.channels, spec.resolution, np.asarray(spec.alphas), est, 0.0
    )


class Script:
    """The control sample's values, in order, for one run; ``interrupt_at``: the sample whose
    measurement is cut short by Ctrl-C."""

    def __init__(self, controls: list[float], interrupt_at: int | None = None) -> None:
        self.controls, self.interrupt_at = list(controls), interrupt_at

    def control(self, space, cfg, calibration=None) -> SimpleNamespace:
        return SimpleNamespace(latency_ms=self.controls.pop(0))

    def spec(self, space, spec, config=None, seed=0, calibration=None) -> Measurement:
        if spec.index == self.interrupt_at:
            raise Interrupted(signal.SIGINT)
        return fake_spec(space, spec, config, seed, calibration)


@pytest.fixture
def script(monkeypatch):
    """Install a :class:`Script` where both paths measure (``script(controls, ...)``)."""

    def install(controls: list[float], interrupt_at: int | None = None) -> Script:
        s = Script(controls, interrupt_at)
        monkeypatch.setattr(runner_mod, "measure_spec", s.spec)  # every sampled row, both paths
        monkeypatch.setattr(runner_mod, "control_measurement", s.control)  # this process
        monkeypatch.setattr(fleet_actor, "control_measurement", s.control)  # a fleet's actor
        return s

    return install


@pytest.fixture
def ray(monkeypatch):
    fake = InProcessRay(fleet_mod.RESOURCE, slots=2)
    monkeypatch.setattr(fleet_mod, "require_ray", lambda: fake)
    return fake


def local(db, cfg, n, **kw):
    """``run_measurement``; returns (progress calls, warnings)."""
    seen, warnings = [], []
    run_measurement(
        db,
        cfg,
        n,
        on_sample=lambda row, count: seen.append((row["sample_index"], count)),
        on_warning=warnings.append,
        **kw,
    )
    return seen, warnings


def fleet(db, cfg, n, devices=1, **kw):
    """``run_fleet_measurement`` on the in-process Ray; returns (progress calls, warnings)."""
    seen, warnings = [], []
    fleet_mod.run_fleet_measurement(
        db,
        cfg,
        n,
        "local",
        devices=devices,
        on_sample=lambda row, count, device: seen.append((row["sample_index"], count)),
        on_warning=warnings.append,
        **kw,
    )
    return seen, warnings


def table(db, name: str, drop: tuple[str, ...]) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in con.execute(f"SELECT * FROM {name} ORDER BY 1")]
    finally:
        con.close()
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def devices_named(db) -> set:
    return {r["device"] for r in table(db, "samples", ())}


def same_file(a, b) -> None:
    """Rows and controls equal but for the device each names (None in a local run)."""
    assert table(a, "samples", ("created_at", "device")) == table(
        b, "samples", ("created_at", "device")
    )
    assert table(a, "drift", ("id", "created_at", "device")) == table(
        b, "drift", ("id", "created_at", "device")
    )
    with Dataset.open(a) as da, Dataset.open(b) as db_:
        for key in ("reference_ms", "reference_ratios", "drift_baseline_ms", "fingerprint"):
            assert da.meta.get(key) == db_.meta.get(key), key
        checks = [[c["rows"] for c in d.meta.get(CHECKS_KEY) or []] for d in (da, db_)]
    assert checks[0] == checks[1]


def test_both_paths_run_the_one_loop_with_the_same_rows_controls_and_checks(
    tmp_path, script, ray, monkeypatch, tiny_anchor
):
    ran_on = []
    run = MeasuringLoop.run

    def spy(self, todo, on_row=None):
        ran_on.append(type(self.devices).__name__)
        return run(self, todo, on_row)

    monkeypatch.setattr(MeasuringLoop, "run", spy)
    cfg = tiny_config(drift_every=2)
    controls = [1.0, 1.0, 1.10, 1.0]  # the baseline, then one per 2 rows: the 2nd moved +10 %
    a, b = tmp_path / "local.db", tmp_path / "fleet.db"
    checked = []
    script(controls)
    seen_a, warn_a = local(a, cfg, 7, on_check=lambda: checked.append("local"))
    script(controls)
    seen_b, warn_b = fleet(b, cfg, 7, on_check=lambda: checked.append("fleet"))

    assert ran_on == ["_ThisProcess", "RayActors"]
    same_file(a, b)
    assert seen_a == seen_b == [(i, i + 1) for i in range(7)]
    flags = [r["drift_flag"] for r in table(a, "samples", ())]
    assert flags == [0, 0, 1, 1, 0, 0, 0]  # the control after rows 2 and 3 moved
    assert devices_named(a) == {None} and devices_named(b) == {"device 0"}
    assert [d["device"] for d in table(b, "drift", ())] == ["device 0"] * 3
    drift = [w for w in warn_a if w.startswith("drift")]
    assert len(drift) == 1 and drift == [
        w.replace(" on device 0", "") for w in warn_b if w.startswith("drift")
    ]
    # the end-of-run anchor check: due, run once on each, its warning alike
    assert checked == ["local", "fleet"]
    anchors = [[w.split(":")[0] for w in ws if w.startswith("anchor")] for ws in (warn_a, warn_b)]
    assert anchors[0] == anchors[1] == ["anchor 3 ch 8×8"]


def test_two_fleet_devices_store_the_rows_a_local_run_stores(tmp_path, script, ray):
    a, b = tmp_path / "local.db", tmp_path / "fleet.db"
    script([])
    local(a, tiny_config(), 6)
    seen, _ = fleet(b, tiny_config(), 6, devices=2)
    same_file(a, b)
    assert devices_named(b) == {"device 0", "device 1"}
    assert [count for _, count in seen] == list(range(1, 7))


def test_ctrl_c_mid_sample_keeps_every_committed_row_and_both_paths_resume_alike(
    tmp_path, script, ray
):
    """Interrupted while sample 3 is measured: rows 0–2 and the control after rows 0–1 are in
    the file; the same command completes it to the rows a run never interrupted stores."""
    cfg = tiny_config(drift_every=2)
    whole = tmp_path / "whole.db"
    script([1.0, 1.0, 1.0, 1.0])
    local(whole, cfg, 6)
    files = {}
    for path in (local, fleet):
        db = files[path] = tmp_path / f"{path.__name__}.db"
        script([1.0, 1.0], interrupt_at=3)
        with pytest.raises(Interrupted):
            path(db, cfg, 6)
        assert [r["sample_index"] for r in table(db, "samples", ())] == [0, 1, 2]
        assert [r["after_samples"] for r in table(db, "drift", ())] == [2]
        script([1.2])  # the resumed run's one control (after rows 3–4), against the stored 1.0
        path(db, cfg, 6)
    same_file(files[local], files[fleet])
    assert len(ray.killed) == 2  # each fleet run ended its actor, the interrupted one too
    assert [r["drift_flag"] for r in table(files[local], "samples", ())] == [0, 0, 0, 1, 1, 0]
    rows = ("created_at", "device", "drift_flag")
    assert table(files[local], "samples", rows) == table(whole, "samples", rows)


def test_a_complete_file_measures_nothing_on_either_path(tmp_path, script, ray, monkeypatch):
    db = tmp_path / "d.db"
    cfg = tiny_config(drift_every=1)
    script([1.0] * 4)
    local(db, cfg, 3)
    script([])  # no control value left: a control would fail

    def no_measuring(*a, **k):
        raise AssertionError("measured although the file already holds n rows")

    monkeypatch.setattr(runner_mod, "measure_spec", no_measuring)
    assert local(db, cfg, 3) == ([], []) and fleet(db, cfg, 2) == ([], [])
    assert len(table(db, "samples", ())) == 3 and len(table(db, "drift", ())) == 3


def test_missing_indices_count_only_sampled_rows():
    assert missing_indices({0, 2, -1, -2}, 4) == [1, 3]
    assert missing_indices({0, 1, 2}, 2) == []

"""Ray scale-out: a local cluster started here, two measuring actors, one writer.

Bounded in time: simulated devices (a short sleep) where the point is the bookkeeping, real
measurement (the fast rule, tiny blocks) where the point is that real rows come back.
"""

from __future__ import annotations

import builtins
import re
import signal
import sqlite3
from collections import Counter

import pytest
from measure_helpers import all_text, one_line_error, tiny_config
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure.fleet import INSTALL, RESOURCE, require_ray, run_fleet_measurement
from lenna.measure.ratio_check import CHECKS_KEY
from lenna.measure.runner import Interrupted, run_measurement
from lenna.measure.store import Dataset

ray = pytest.importorskip(
    "ray", reason="Ray is an optional extra: pip install -e '.[ray]' in the LENNA checkout"
)
pytestmark = pytest.mark.slow  # a real Ray cluster: `make test-slow`
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """A local cluster with two device slots (shared by the tests of this file)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        resources={RESOURCE: 2},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def indices(path) -> list[int]:
    con = sqlite3.connect(path)
    try:
        return sorted(i for (i,) in con.execute("SELECT sample_index FROM samples"))
    finally:
        con.close()


def test_two_actors_measure_to_the_exact_count(cluster, tmp_path):
    db = tmp_path / "d.db"
    seen: dict[str, int] = {}
    total = run_fleet_measurement(
        db,
        tiny_config(),
        6,
        "local",
        on_sample=lambda row, n, dev: seen.__setitem__(dev, seen.get(dev, 0) + 1),
    )
    assert total == 6 and indices(db) == list(range(6))
    assert set(seen) == {"device 0", "device 1"}  # both devices measured
    with Dataset.open(db) as ds:  # calibrated once, on the first device, and stored
        named = ds.samples()["device"]  # each row names the device that measured it
        assert set(named) <= {"device 0", "device 1"} and named.notna().all()
        assert ds.meta["reference_ms"] > 0
        assert ds.meta["reference_ratios"] == {"16x16": 1.0}  # C 2–4 at 8×8: the primary
    # resume: the same call completes a larger count, still without duplicates
    assert run_fleet_measurement(db, tiny_config(), 9, "local") == 9
    assert indices(db) == list(range(9))


def test_the_same_rows_as_one_machine_would_measure(cluster, tmp_path):
    """Sample i is the same block wherever it is measured."""
    fleet, local = tmp_path / "f.db", tmp_path / "l.db"
    run_fleet_measurement(fleet, tiny_config(), 4, "local", simulate_s=0.0)
    run_measurement(local, tiny_config(), 4)
    cols = "sample_index, block_type, channels, resolution, regime"
    rows = [
        sqlite3.connect(p).execute(f"SELECT {cols} FROM samples ORDER BY 1").fetchall()
        for p in (fleet, local)
    ]
    assert rows[0] == rows[1]


def test_a_killed_actor_loses_nothing(cluster, tmp_path):
    db = tmp_path / "d.db"
    actors: list = []
    killed = []

    def on_sample(row, n, dev):
        if n == 3 and not killed:
            ray.kill(actors[0], no_restart=True)
            killed.append(dev)

    total = run_fleet_measurement(
        db,
        tiny_config(),
        12,
        "local",
        simulate_s=0.2,
        on_start=actors.extend,
        on_sample=on_sample,
    )
    assert killed and total == 12
    assert indices(db) == list(range(12))


def per_device_run(db, n, cfg, **kw):
    """A fleet run of ``n`` rows; returns (sample indices per device, warnings)."""
    per_device: dict[str, list[int]] = {}
    warnings: list[str] = []
    run_fleet_measurement(
        db,
        cfg,
        n,
        "local",
        on_sample=lambda row, count, dev: per_device.setdefault(dev, []).append(
            row["sample_index"]
        ),
        on_warning=warnings.append,
        **kw,
    )
    return per_device, warnings


def drift_rows(db) -> tuple[list[tuple], list[int]]:
    con = sqlite3.connect(db)
    try:
        sql = "SELECT after_samples, rel_change, flagged, device FROM drift"
        checks = con.execute(sql).fetchall()
        flagged = [i for (i,) in con.execute("SELECT sample_index FROM samples WHERE drift_flag")]
        return checks, sorted(flagged)
    finally:
        con.close()


def far_baseline(db, cfg) -> None:
    """The file alone, its drift baseline set so far off that every control is flagged."""
    run_measurement(db, cfg, 0)
    with Dataset.open(db) as ds:
        ds.set_meta("drift_baseline_ms", 1e6)


def test_each_device_runs_the_drift_guard_on_its_own_rows(cluster, tmp_path):
    db = tmp_path / "d.db"
    per_device, warnings = per_device_run(db, 7, tiny_config(drift_every=2))
    with Dataset.open(db) as ds:
        assert ds.meta["drift_baseline_ms"] > 0  # measured once, on the first device
    checks, flagged = drift_rows(db)
    # a control after every 2 rows *of one device*: 7 rows on 2 devices give 3 controls
    counts = [len(v) for v in per_device.values()]
    assert sum(counts) == 7 and len(checks) == sum(k // 2 for k in counts) == 3
    assert len(flagged) == 2 * sum(f for _, _, f, _ in checks) == 2 * len(warnings)
    # each control names the device that measured it: one per 2 rows of that device
    assert Counter(d for *_, d in checks) == {
        k: len(v) // 2 for k, v in per_device.items() if len(v) > 1
    }


def test_a_control_far_from_the_baseline_flags_that_devices_rows(cluster, tmp_path):
    db = tmp_path / "d.db"
    cfg = tiny_config(drift_every=2)
    far_baseline(db, cfg)
    per_device, warnings = per_device_run(db, 5, cfg)
    checks, flagged = drift_rows(db)
    assert len(checks) == 2  # 5 rows: 4 + 1 or 3 + 2, so two controls
    assert all(f == 1 and rel < -0.99 for _, rel, f, _ in checks)
    # each control flags the 2 rows its device measured before it, no other device's
    covered = sorted(i for rows in per_device.values() for i in rows[: len(rows) // 2 * 2])
    assert flagged == covered and len(flagged) == 4
    assert len(warnings) == 2
    assert all(re.search(r"on device \d: .*the last 2 rows on device \d", w) for w in warnings)
    assert sorted(f"drift on {d}:" for *_, d in checks) == sorted(
        w.split(" the")[0] for w in warnings
    )
    with Dataset.open(db) as ds:  # the stored baseline was used, not replaced
        assert ds.meta["drift_baseline_ms"] == 1e6


def test_only_real_devices_of_a_mixed_fleet_run_the_drift_guard(cluster, tmp_path):
    db = tmp_path / "d.db"
    cfg = tiny_config(drift_every=2)
    far_baseline(db, cfg)
    # the simulated device sleeps 1.5 s a row, so the real one (tiny blocks) measures most
    per_device, warnings = per_device_run(db, 6, cfg, simulate_s=[None, 1.5], allow_mixed=True)
    real = per_device.get("device 0", [])
    checks, flagged = drift_rows(db)
    assert len(real) >= 2 and len(per_device["device 1"]) >= 1
    assert len(checks) == len(real) // 2 and flagged == sorted(real[: len(real) // 2 * 2])
    assert all("device 0" in w for w in warnings) and len(warnings) == len(checks)
    assert all(d == "device 0" for *_, d in checks)


def test_the_fleet_ends_with_the_anchor_check_on_a_device(cluster, tmp_path, monkeypatch):
    """With a second anchor in range and its stored ratio far off, the check (on a real
    device, after the rows) keeps its calibration and warns."""
    import lenna.measure.reference as reference_mod

    db = tmp_path / "d.db"
    cfg = tiny_config(drift_every=2)
    run_measurement(db, cfg, 0)
    monkeypatch.setattr(reference_mod, "ANCHORS", ((16, 16), (3, 8)))  # on the driver only
    with Dataset.open(db) as ds:
        ds.set_meta("reference_ms", 1.0)
        ds.set_meta("reference_ratios", {"16x16": 1.0, "3x8": 1000.0})
    checked: list[int] = []
    warnings: list[str] = []
    run_fleet_measurement(
        db,
        cfg,
        2,
        "local",
        on_warning=warnings.append,
        on_check=lambda: checked.append(1),
    )
    with Dataset.open(db) as ds:
        (entry,) = ds.meta[CHECKS_KEY]
        assert entry["rows"] == 2 and entry["fingerprint"] == ds.meta["fingerprint"]["hash"]
        assert 0 < entry["ratios"]["3x8"] < 1000.0
        assert ds.meta["reference_ratios"]["3x8"] == 1000.0  # labels' ratio is not changed
    assert checked == [1]
    assert any(w.startswith("anchor 3 ch 8×8: ratio to the primary now") for w in warnings)


def test_ctrl_c_on_the_driver_keeps_the_rows_and_resumes(cluster, tmp_path):
    """Interrupted reaches the caller as itself (the CLI prints how to resume), with work
    still in flight on the other device."""
    db = tmp_path / "d.db"

    def on_sample(row, n, dev):
        if n == 2:
            raise Interrupted(signal.SIGINT)

    with pytest.raises(Interrupted):
        run_fleet_measurement(db, tiny_config(), 6, "local", simulate_s=0.2, on_sample=on_sample)
    assert len(indices(db)) == 2
    assert run_fleet_measurement(db, tiny_config(), 6, "local", simulate_s=0.01) == 6
    assert indices(db) == list(range(6))


def test_devices_with_different_fingerprints_are_refused(cluster, tmp_path):
    with pytest.raises(InputError, match="fleet's devices differ"):
        run_fleet_measurement(tmp_path / "d.db", tiny_config(), 2, "local", simulate_s=[None, 0.01])
    assert not (tmp_path / "d.db").exists()
    total = run_fleet_measurement(
        tmp_path / "d.db", tiny_config(), 2, "local", simulate_s=[None, 0.01], allow_mixed=True
    )
    assert total == 2


def test_a_file_of_another_machine_is_refused(cluster, tmp_path):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 1)  # this machine, real timer
    with pytest.raises(InputError, match="another machine"):
        run_fleet_measurement(db, tiny_config(), 3, "local", simulate_s=0.01)


def test_cli_measure_on_the_fleet(cluster, tmp_path):
    db = tmp_path / "d.db"
    args = ["measure", "--space", "lenna", "--out", str(db), "-n", "3", "--channels", "2:4"]
    result = runner.invoke(app, [*args, "--resolutions", "8", "--ray", "local"])
    assert result.exit_code == 0, all_text(result)
    assert indices(db) == [0, 1, 2]
    assert "throw-away --out" in all_text(result)  # two actors on one machine: not labels


def test_without_ray_the_cli_says_how_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match="pip install -e '\\.\\[ray\\]'"):
        require_ray()
    result = runner.invoke(
        app,
        [
            "measure",
            "--space",
            "lenna",
            "--out",
            str(tmp_path / "d.db"),
            "-n",
            "1",
            "--ray",
            "auto",
        ],
    )
    assert one_line_error(result, "pip install") == f"lenna: error: {INSTALL}"
    result = runner.invoke(
        app,
        ["sweep", "--out", str(tmp_path / "s"), "--predictor", "m", "--ray", "local"],
    )
    one_line_error(result, "pip install")


def test_sweep_runs_each_lambda_as_a_ray_task(cluster, tmp_path):
    from search_helpers import predictor_folder

    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--out",
        str(out),
        "--lams",
        "0,1",
        "--predictor",
        str(predictor_folder("lenna")),
        "--data",
        "synthetic",
        "--limit",
        "32",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--mode",
        "gated",
        "--eval-epochs",
        "0",
        "--ray",
        "local",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    lines = (out / "sweep.csv").read_text().splitlines()
    assert len(lines) == 3
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_a_file_from_before_cpu_ids_resumes_on_the_fleet_under_its_own_hash(cluster, tmp_path):
    """The fleet's devices of the machine that began a file before fingerprints had a
    ``cpu_id`` write their rows under the file's record of it, as a local run does."""
    from lenna.measure.fingerprint import LATER_KEYS, _hash, config_fingerprint

    db = tmp_path / "d.db"
    cfg = tiny_config()
    fp = config_fingerprint(cfg.measure)
    info = {k: v for k, v in fp.items() if k not in LATER_KEYS and k != "hash"}
    old = {**info, "hash": _hash(info)}
    run_measurement(db, cfg, 1, fp=old)
    assert run_fleet_measurement(db, cfg, 3, "local") == 3
    with Dataset.open(db) as ds:
        assert list(ds.fingerprints()) == [old["hash"]]
        assert set(ds.samples()["fingerprint"]) == {old["hash"]}

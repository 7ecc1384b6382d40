"""Ray scale-out: a local cluster started here, two measuring actors, one writer.

Bounded in time: simulated devices (a short sleep) where the point is the bookkeeping, real
measurement (the fast rule, tiny blocks) where the point is that real rows come back.
"""

from __future__ import annotations

import builtins
import sqlite3

import pytest
from measure_helpers import all_text, one_line_error, tiny_config
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure.fleet import INSTALL, RESOURCE, require_ray, run_fleet_measurement
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'lenna[ray]'")
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


def test_without_ray_the_cli_says_how_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match="pip install 'lenna\\[ray\\]'"):
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

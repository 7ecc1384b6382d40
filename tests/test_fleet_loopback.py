"""Issue 25, D9: a Ray cluster LENNA starts for itself listens on the loopback address only."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from lenna.measure.fleet import connect

ray = pytest.importorskip(
    "ray", reason="Ray is an optional extra: pip install -e '.[ray]' in the LENNA checkout"
)
pytestmark = pytest.mark.slow  # a real Ray cluster: `make test-slow`


def listening(pids: set[int]) -> list[str]:
    """Local addresses the given processes listen on (TCP), from ``ss``."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            found.append(line.split()[3].rsplit(":", 1)[0].strip("[]"))
    return found


def is_loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host.removeprefix("::ffff:"))
    return ip.is_loopback


def test_a_local_cluster_listens_on_loopback_only(monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")  # restored after the test
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    if ray.is_initialized():
        ray.shutdown()
    connect("local", devices=1)
    try:
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        if shutil.which("ss") is None:
            return
        ps = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True).stdout
        pids = {
            int(p)
            for p, name in (ln.split(None, 1) for ln in ps.splitlines() if ln.strip())
            if name.strip() in ("gcs_server", "raylet")
        }
        addresses = listening(pids)
        assert addresses, "the cluster's servers were not found listening"
        assert all(is_loopback(a) for a in addresses), addresses
    finally:
        ray.shutdown()

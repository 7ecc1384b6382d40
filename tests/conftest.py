"""Shared fixtures."""

import os

import pytest
import torch

import lenna.measure.machine_calibration as machine_calibration
import lenna.measure.reference as reference_mod

FAKE_Z0_MS = 1.0
FAKE_RATIO = 3.0


@pytest.fixture(autouse=True)
def quick_calibration(request, monkeypatch, tmp_path_factory):
    """A real calibration takes 2–20 s (1-s windows until two agree); every new dataset runs
    one. Tests get a fixed Z0 unless marked ``real_calibration``; the reference block itself
    is still built and timed alongside every reset. Each test has its own, empty machine
    calibration cache (never the user's)."""
    monkeypatch.setenv("LENNA_CACHE_DIR", str(tmp_path_factory.mktemp("lenna-cache")))
    monkeypatch.setattr(machine_calibration, "REPEATS", 1)  # test_machine_calibration: 3
    if request.node.get_closest_marker("real_calibration") is None:
        monkeypatch.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: FAKE_Z0_MS)
        monkeypatch.setattr(reference_mod, "_Z0", {})
        monkeypatch.setattr(reference_mod, "calibrate_ratio", lambda a, p, *x, **k: FAKE_RATIO)
        monkeypatch.setattr(reference_mod, "_RATIOS", {})


@pytest.fixture
def single_thread():
    """Tiny tensors run fastest on one thread; two threads spin badly on a busy 2-core box.

    Opt-in (``pytestmark = pytest.mark.usefixtures("single_thread")``) so timing tests that
    care about the thread count are not affected when pytest runs in one process (under
    pytest-xdist, as ``make test`` runs it, every worker has one thread anyway).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_anchor(monkeypatch):
    """A second anchor the tiny test blocks (C 2–4 at 8×8) are nearest to, with its own fake
    ratio, so matched-reference code paths run on fast blocks."""
    monkeypatch.setattr(reference_mod, "ANCHORS", ((16, 16), (3, 8)))
    calls = []

    def fake_ratio(anchor, primary, *a, **k):
        calls.append(anchor.size)
        return 0.5 + len(calls)

    monkeypatch.setattr(reference_mod, "calibrate_ratio", fake_ratio)
    return calls


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(config, items):
    """Real calibrations (seconds each) run with the slow tests (`make test-slow`)."""
    for item in items:
        if item.get_closest_marker("real_calibration") is not None:
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    """Under pytest-xdist each worker is one process per core: torch's default of one thread
    per core would put two spinning threads on every core, which made the suite slower in
    parallel than alone. One thread per worker."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)

"""Shared fixtures."""

import os

import pytest
import torch

import lenna.measure.machine_calibration as machine_calibration
import lenna.measure.reference as reference_mod

FAKE_Z0_MS = 1.0
FAKE_RATIO = 3.0


REAL_CALIBRATE = reference_mod.Reference.calibrate
REAL_CALIBRATE_RATIO = reference_mod.calibrate_ratio


def fake_calibration(mp: pytest.MonkeyPatch, cache_dir: str) -> None:
    """A fixed Z0 and anchor ratio, fresh in-process caches, ``cache_dir`` as the machine
    calibration cache (never the user's), one repeat per calibration."""
    mp.setenv("LENNA_CACHE_DIR", cache_dir)
    mp.setattr(machine_calibration, "REPEATS", 1)  # test_machine_calibration: 3
    mp.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: FAKE_Z0_MS)
    mp.setattr(reference_mod, "_Z0", {})
    mp.setattr(reference_mod, "calibrate_ratio", lambda a, p, *x, **k: FAKE_RATIO)
    mp.setattr(reference_mod, "_RATIOS", {})


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory):
    """The fake calibration for the whole session, so fixtures of module scope (set up before
    any test's own fixtures) neither calibrate for real nor write the user's calibration
    cache: a calibration made under the test suite's load would become this machine's."""
    mp = pytest.MonkeyPatch()
    fake_calibration(mp, str(tmp_path_factory.mktemp("lenna-cache-session")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def quick_calibration(request, monkeypatch, tmp_path_factory):
    """A real calibration takes 2–20 s (1-s windows until two agree); every new dataset runs
    one. Tests get a fixed Z0 unless marked ``real_calibration``; the reference block itself
    is still built and timed alongside every reset. Each test has its own, empty machine
    calibration cache (never the user's)."""
    fake_calibration(monkeypatch, str(tmp_path_factory.mktemp("lenna-cache")))
    if request.node.get_closest_marker("real_calibration") is not None:
        monkeypatch.setattr(reference_mod.Reference, "calibrate", REAL_CALIBRATE)
        monkeypatch.setattr(reference_mod, "calibrate_ratio", REAL_CALIBRATE_RATIO)


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

"""In the test process nothing calibrates for real (outside tests marked ``real_calibration``)
and nothing writes the user's machine calibration cache, even from fixtures of module scope,
which pytest sets up before a test's own fixtures: a calibration made under the suite's load
would otherwise become this machine's Z0. (``lenna`` subprocesses and Ray workers inherit the
temporary cache folder, not the fake calibration.)"""

from __future__ import annotations

import pytest

import lenna.measure.machine_calibration as machine_calibration
import lenna.measure.reference as reference_mod

FAKE_Z0_MS = 1.0  # conftest's


@pytest.fixture(scope="module")
def seen_by_a_module_fixture(tmp_path_factory):
    z0 = reference_mod.Reference.calibrate(None)  # the fake ignores its block
    return machine_calibration.cache_dir(), z0, tmp_path_factory.getbasetemp()


def test_a_module_fixture_sees_the_fake_calibration_and_a_temporary_cache(
    seen_by_a_module_fixture,
):
    cache, z0, base = seen_by_a_module_fixture
    assert z0 == FAKE_Z0_MS
    assert base in cache.parents  # under pytest's temporary folder, not the user's cache

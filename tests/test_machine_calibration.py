"""One calibration per machine and setting: files of one machine share one scale."""

import json

import pytest
from measure_helpers import tiny_config

import lenna.measure.machine_calibration as machine_calibration
import lenna.measure.reference as reference_mod
from lenna.errors import InputError
from lenna.measure.machine_calibration import cache_dir, machine_calibrate, read_entries
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset
from lenna.space import get_space


@pytest.fixture(autouse=True)
def three_repeats(monkeypatch):
    monkeypatch.setattr(machine_calibration, "REPEATS", 3)  # the default (conftest sets 1)


def counting_calibrate(values):
    """A Calibrate that returns the next of ``values`` for Z0 and ratio 2 + that, counting."""
    calls = []

    def calibrate(need_z0, anchors):
        v = values[len(calls) % len(values)]
        calls.append((need_z0, list(anchors)))
        return (v if need_z0 else None), {f"{a[0]}x{a[1]}": 2.0 + v for a in anchors}

    return calibrate, calls


def test_first_use_calibrates_repeatedly_keeps_the_fastest_and_caches_it():
    space = get_space("lenna")
    cal, calls = counting_calibrate([2.0, 5.0, 1.0])
    warnings = []
    calibrate = machine_calibrate(space, "cpu", "float32", 1, cal, on_warning=warnings.append)
    z0, ratios = calibrate(True, [(32, 32)])
    assert len(calls) == 3
    assert z0 == 1.0  # the fastest: interference only adds time
    assert ratios == {"32x32": 4.0}  # a ratio: the median (2 + 2.0)
    assert len(warnings) == 2 and "differed by 400%" in warnings[0]  # and by 75 % (ratios)
    # a second dataset (another process, even) asks again: answered from the cache
    cal2, calls2 = counting_calibrate([9.0])
    assert machine_calibrate(space, "cpu", "float32", 1, cal2)(True, [(32, 32)]) == (
        1.0,
        {"32x32": 4.0},
    )
    assert calls2 == []
    (entry,) = read_entries().values()
    assert entry["reference_ms_runs"] == [2.0, 5.0, 1.0]


def test_only_missing_anchors_are_calibrated_and_fresh_replaces():
    space = get_space("lenna")
    cal, _ = counting_calibrate([1.0])
    machine_calibrate(space, "cpu", "float32", 1, cal)(True, [])
    cal2, calls2 = counting_calibrate([3.0])
    z0, ratios = machine_calibrate(space, "cpu", "float32", 1, cal2)(True, [(64, 32)])
    assert z0 == 1.0 and ratios == {"64x32": 5.0}
    assert calls2 == [(False, [(64, 32)])] * 3
    cal3, calls3 = counting_calibrate([7.0])
    z0, _ = machine_calibrate(space, "cpu", "float32", 1, cal3, fresh=True)(True, [])
    assert z0 == 7.0 and len(calls3) == 3


def test_settings_have_their_own_entries():
    space = get_space("lenna")
    cal, _ = counting_calibrate([1.0])
    machine_calibrate(space, "cpu", "float32", 1, cal)(True, [])
    cal2, _ = counting_calibrate([4.0])
    assert machine_calibrate(space, "cpu", "float32", 2, cal2)(True, [])[0] == 4.0
    assert machine_calibrate(get_space("darts"), "cpu", "float32", 1, cal2)(True, [])[0] == 4.0
    assert len(read_entries()) == 3


@pytest.mark.parametrize(
    "text", ["{garbage", '{"format": 1}', '{"format": 1, "entries": {"k": {"reference_ms": "x"}}}']
)
def test_a_malformed_cache_is_one_line_naming_the_file(text):
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "calibration.json").write_text(text)
    cal, _ = counting_calibrate([1.0])
    with pytest.raises(InputError, match=r"calibration\.json is not a LENNA calibration cache"):
        machine_calibrate(get_space("lenna"), "cpu", "float32", 1, cal)(True, [])


def test_two_files_of_one_machine_share_one_scale(tmp_path, monkeypatch):
    values = iter([1.0, 1.3, 0.9, 1.7, 1.1, 0.8])  # every calibration would differ
    monkeypatch.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: next(values))
    run_measurement(tmp_path / "a.db", tiny_config(), 1)
    run_measurement(tmp_path / "b.db", tiny_config(), 1)
    run_measurement(tmp_path / "c.db", tiny_config(), 1, recalibrate=True)
    z = {}
    for name in "abc":
        with Dataset.open(tmp_path / f"{name}.db") as ds:
            z[name] = ds.meta["reference_ms"]
    assert z["a"] == z["b"] == 0.9  # the fastest of 1.0, 1.3, 0.9
    assert z["c"] == 0.8  # the fastest of 1.7, 1.1, 0.8: made anew
    doc = json.loads((cache_dir() / "calibration.json").read_text())
    assert [e["reference_ms"] for e in doc["entries"].values()] == [0.8]


def test_an_entry_of_anchor_ratios_only_keeps_the_cache_readable():
    """A file that already has Z0 asks the machine only for a missing anchor."""
    space = get_space("lenna")
    cal, _ = counting_calibrate([1.0])
    z0, ratios = machine_calibrate(space, "cpu", "float32", 1, cal)(False, [(32, 32)])
    assert z0 is None and ratios == {"32x32": 3.0}
    assert len(read_entries()) == 1  # readable, with no reference_ms yet
    z0, _ = machine_calibrate(space, "cpu", "float32", 1, cal)(True, [(32, 32)])
    assert z0 == 1.0


def test_recalibrate_replaces_a_cache_that_cannot_be_read():
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "calibration.json").write_text("{garbage")
    cal, _ = counting_calibrate([2.0])
    z0, _ = machine_calibrate(get_space("lenna"), "cpu", "float32", 1, cal, fresh=True)(True, [])
    assert z0 == 2.0 and len(read_entries()) == 1

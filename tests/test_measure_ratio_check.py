"""The end-of-run anchor check: a long matched-reference run calibrates the anchors' ratios
again, keeps the result in the file and warns when one moved; stored labels stay as they are."""

import json

import pytest
from measure_helpers import fast_measure, rows, tiny_config
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure.fingerprint import fingerprint
from lenna.measure.ratio_check import CHECKS_KEY, check_ratios
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset

pytestmark = pytest.mark.usefixtures("single_thread")

STORED = {"16x16": 1.0, "32x32": 2.0, "64x32": 4.0}


def _dataset(path, ratios):
    ds = Dataset.create(path, {"space": "lenna"}, fingerprint("cpu", 1, "float32", 1))
    if ratios is not None:
        ds.set_meta("reference_ratios", ratios)
    return ds


def _calibrate(now, calls):
    def calibrate(need_z0, anchors):
        calls.append((need_z0, list(anchors)))
        return None, {f"{c}x{h}": now[f"{c}x{h}"] for c, h in anchors}

    return calibrate


def test_check_keeps_every_calibration_and_returns_the_anchors_that_moved(tmp_path):
    calls = []
    with _dataset(tmp_path / "d.db", STORED) as ds:
        anchors = [(16, 16), (32, 32), (64, 32)]
        moved = check_ratios(ds, _calibrate({"32x32": 2.02, "64x32": 4.4}, calls), anchors, 7)
        assert moved == [("64x32", 4.0, 4.4)]  # +1 % is within 3 %, +10 % is not
        assert calls == [(False, [(32, 32), (64, 32)])]  # no Z0, not the primary
        assert check_ratios(ds, _calibrate({"32x32": 1.9, "64x32": 4.0}, calls), anchors, 9) == [
            ("32x32", 2.0, 1.9)
        ]
        assert ds.meta[CHECKS_KEY] == [
            {"rows": 7, "ratios": {"32x32": 2.02, "64x32": 4.4}},
            {"rows": 9, "ratios": {"32x32": 1.9, "64x32": 4.0}},
        ]
        assert ds.meta["reference_ratios"] == STORED  # the stored ratios are not touched


@pytest.mark.parametrize("ratios", [None, {"16x16": 1.0}, {"16x16": 1.0, "64x32": 4.0}])
def test_check_calibrates_nothing_without_a_stored_non_primary_anchor(tmp_path, ratios):
    calls = []
    with _dataset(tmp_path / "d.db", ratios) as ds:
        assert check_ratios(ds, _calibrate({}, calls), [(16, 16), (32, 32)], 3) == []
        assert calls == [] and CHECKS_KEY not in ds.meta


def test_a_long_matched_run_ends_with_a_check_and_warns_when_a_ratio_moved(
    tmp_path, tiny_anchor
):
    db, warnings = tmp_path / "d.db", []
    cfg = tiny_config(drift_every=2)
    assert run_measurement(db, cfg, 2, on_warning=warnings.append) == 2
    # the fixture's fake ratio is 1.5 at the start, 2.5 at the check
    assert tiny_anchor == [(3, 8), (3, 8)]
    with Dataset.open(db) as ds:
        assert ds.meta["reference_ratios"] == {"3x8": 1.5}
        assert ds.meta[CHECKS_KEY] == [{"rows": 2, "ratios": {"3x8": 2.5}}]
    assert len(warnings) == 1 and "3x8" in warnings[0] and "+66.7%" in warnings[0]
    labels = rows(db)
    # a resume shorter than the drift interval: no check, and stored labels unchanged
    assert run_measurement(db, cfg, 3, on_warning=warnings.append) == 3
    assert tiny_anchor == [(3, 8), (3, 8)] and len(warnings) == 1
    assert {i: v for i, v in rows(db).items() if i in labels} == labels


@pytest.mark.parametrize(
    "cfg",
    [
        tiny_config(),  # drift guard off
        tiny_config(drift_every=2, measure=fast_measure(reference="single")),
        tiny_config(drift_every=3),  # fewer rows than the drift interval
    ],
    ids=["guard-off", "single", "short-run"],
)
def test_no_check_when_the_guard_is_off_the_reference_single_or_the_run_short(
    tmp_path, tiny_anchor, cfg
):
    warnings = []
    run_measurement(tmp_path / "d.db", cfg, 2, on_warning=warnings.append)
    with Dataset.open(tmp_path / "d.db") as ds:
        assert CHECKS_KEY not in ds.meta
    assert len(tiny_anchor) <= 1 and warnings == []


def test_dataset_info_shows_the_checks(tmp_path, tiny_anchor):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(drift_every=2), 2)
    runner = CliRunner()
    out = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["reference_ratio_checks"] == [
        {"rows": 2, "ratios": {"3x8": 2.5}}
    ]
    out = runner.invoke(app, ["dataset", "info", str(db)])
    assert out.exit_code == 0, out.output
    assert "anchor check after 2 rows: 3x8 ×2.500 (+66.7%)" in out.stdout

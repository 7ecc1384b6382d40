"""The end-of-run anchor check: once a matched-reference file has grown by ``drift_every``
rows, the run calibrates the anchors' ratios again, keeps the result in the file and warns
when one moved; stored ratios and labels stay as they are."""

import json

import pytest
from measure_helpers import fast_measure, tiny_config
from typer.testing import CliRunner

import lenna.measure.ratio_check as ratio_check_mod
import lenna.measure.reference as reference_mod
from lenna.cli import app
from lenna.measure.fingerprint import fingerprint
from lenna.measure.ratio_check import CHECKS_KEY, anchors_due, check_ratios
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset

pytestmark = pytest.mark.usefixtures("single_thread")

STORED = {"16x16": 1.0, "32x32": 2.0, "64x32": 4.0}
ALL = [(16, 16), (32, 32), (64, 32)]
FP = fingerprint("cpu", 1, "float32", 1)


def _row(index):
    """A stored sample's required columns (values do not matter here)."""
    return {
        **dict(sample_index=index, block_type="normal", channels=8, resolution=8, batch=1),
        **dict(regime="uniform", alphas=[[0.0]], latency_ms=1.0, rule="cv", resets=3),
        **dict(passes=3, converged=1, wall_s=0.1, fingerprint=FP["hash"], drift_flag=0),
    }


def _dataset(path, ratios, rows=0):
    ds = Dataset.create(path, {"space": "lenna"}, FP)
    ds.set_meta("fingerprint", FP)
    if ratios is not None:
        ds.set_meta("reference_ratios", ratios)
    for i in range(rows):
        ds.add_sample(_row(i))
    return ds


def _anchor(warnings):
    """The anchor check's warnings (the drift guard's own may come with real timings)."""
    return [w for w in warnings if w.startswith("anchor ")]


def _calibrate(now, calls):
    def calibrate(need_z0, anchors):
        calls.append((need_z0, list(anchors)))
        return None, {f"{c}x{h}": now[f"{c}x{h}"] for c, h in anchors}

    return calibrate


def test_check_keeps_every_calibration_and_returns_the_anchors_that_moved(tmp_path):
    calls = []
    with _dataset(tmp_path / "d.db", STORED) as ds:
        anchors = [(32, 32), (64, 32)]
        moved = check_ratios(ds, _calibrate({"32x32": 2.08, "64x32": 4.4}, calls), anchors, "h")
        assert moved == [("64x32", 4.0, 4.4)]  # +4 % is within 5 %, +10 % is not
        assert calls == [(False, anchors)]  # no new Z0
        now = {"32x32": 1.8, "64x32": 4.0}
        assert check_ratios(ds, _calibrate(now, calls), anchors, "h") == [("32x32", 2.0, 1.8)]
        checks = ds.meta[CHECKS_KEY]
        assert [(c["rows"], c["ratios"], c["fingerprint"]) for c in checks] == [
            (0, {"32x32": 2.08, "64x32": 4.4}, "h"),
            (0, now, "h"),
        ]
        assert all(c["time"].endswith("+00:00") for c in checks)
        assert ds.meta["reference_ratios"] == STORED  # the stored ratios are not touched
        assert check_ratios(ds, _calibrate({}, calls), [], "h") == [] and len(calls) == 2


@pytest.mark.parametrize(
    ("ratios", "every", "fp_hash", "due"),
    [
        (STORED, 3, FP["hash"], [(32, 32), (64, 32)]),  # never the primary
        (STORED, 4, FP["hash"], []),  # 3 rows since the start: not yet
        (STORED, 0, FP["hash"], []),  # drift guard off
        (STORED, 3, "another-machine", []),  # not the machine that calibrated them
        (None, 3, FP["hash"], []),  # not matched: no ratios stored
        ({"16x16": 1.0, "64x32": 4.0}, 3, FP["hash"], [(64, 32)]),  # only stored ones
        ({"16x16": 1.0, "32x32": 0.0, "64x32": None}, 3, FP["hash"], []),  # corrupt values
    ],
)
def test_which_anchors_are_due(tmp_path, ratios, every, fp_hash, due):
    with _dataset(tmp_path / "d.db", ratios, rows=3) as ds:
        assert anchors_due(ds, ALL, every, fp_hash) == due


def test_due_counts_rows_since_the_last_check(tmp_path):
    with _dataset(tmp_path / "d.db", STORED, rows=3) as ds:
        check_ratios(ds, _calibrate({"64x32": 4.0}, []), [(64, 32)], FP["hash"])
        assert anchors_due(ds, ALL, 1, FP["hash"]) == []  # checked at 3 rows
        ds.add_sample(_row(3))
        assert anchors_due(ds, ALL, 1, FP["hash"]) == [(32, 32), (64, 32)]
        assert anchors_due(ds, ALL, 2, FP["hash"]) == []


def test_a_long_matched_run_ends_with_a_check_and_warns_when_a_ratio_moved(tmp_path, tiny_anchor):
    db, warnings, started = tmp_path / "d.db", [], []
    cfg = tiny_config(drift_every=2)
    n = run_measurement(
        db, cfg, 2, trace=True, on_warning=warnings.append, on_check=lambda: started.append(1)
    )
    assert n == 2 and started == [1]
    # the fixture's fake ratio is 1.5 at the start, 2.5 at the check
    assert tiny_anchor == [(3, 8), (3, 8)]
    with Dataset.open(db) as ds:
        assert ds.meta["reference_ratios"] == {"3x8": 1.5}
        assert [(c["rows"], c["ratios"]) for c in ds.meta[CHECKS_KEY]] == [(2, {"3x8": 2.5})]
        z0 = ds.meta["reference_ms"]
    (warning,) = _anchor(warnings)
    assert "anchor 3 ch 8×8" in warning and "+66.7%" in warning
    # one more row: not due (1 < 2), and it is normalised with the stored ratio, not the check's
    assert run_measurement(db, cfg, 3, trace=True, on_warning=warnings.append) == 3
    assert tiny_anchor == [(3, 8), (3, 8)] and len(_anchor(warnings)) == 1
    with Dataset.open(db) as ds:
        assert ds.sample(2)["trace"]["reference_ms"] == pytest.approx(z0 * 1.5)
    # a fourth row: 2 rows since the check, so a second one
    run_measurement(db, cfg, 4, on_warning=warnings.append)
    assert tiny_anchor == [(3, 8)] * 3 and "+133.3%" in _anchor(warnings)[1]


def test_a_check_within_tolerance_is_kept_without_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(reference_mod, "ANCHORS", ((16, 16), (3, 8)))
    values = iter([1.5, 1.53])  # +2 %
    monkeypatch.setattr(reference_mod, "calibrate_ratio", lambda *a, **k: next(values))
    warnings = []
    run_measurement(tmp_path / "d.db", tiny_config(drift_every=2), 2, on_warning=warnings.append)
    with Dataset.open(tmp_path / "d.db") as ds:
        assert [c["ratios"] for c in ds.meta[CHECKS_KEY]] == [{"3x8": 1.53}]
    assert _anchor(warnings) == []


def test_a_check_cut_short_runs_when_the_command_is_run_again(tmp_path, tiny_anchor, monkeypatch):
    db, cfg = tmp_path / "d.db", tiny_config(drift_every=2)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(ratio_check_mod, "check_ratios", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_measurement(db, cfg, 2)
    with Dataset.open(db) as ds:
        assert ds.count() == 2 and CHECKS_KEY not in ds.meta
    assert run_measurement(db, cfg, 2) == 2  # nothing to measure, the check still due
    with Dataset.open(db) as ds:
        assert [c["rows"] for c in ds.meta[CHECKS_KEY]] == [2]
    run_measurement(db, cfg, 2)  # done: no second check
    assert len(tiny_anchor) == 2


def test_only_the_anchors_of_this_runs_range_are_checked(tmp_path, tiny_anchor):
    db, cfg = tmp_path / "d.db", tiny_config(drift_every=1)
    run_measurement(db, cfg, 1)
    with Dataset.open(db) as ds:  # as if an op table of a wider range had stored another
        ds.set_meta("reference_ratios", {**ds.meta["reference_ratios"], "64x32": 4.0})
    run_measurement(db, cfg, 2)
    with Dataset.open(db) as ds:
        assert [list(c["ratios"]) for c in ds.meta[CHECKS_KEY]] == [["3x8"], ["3x8"]]
    assert tiny_anchor == [(3, 8)] * 3


@pytest.mark.parametrize(
    ("cfg", "calls"),
    [
        (tiny_config(), 1),  # drift guard off
        (tiny_config(drift_every=2, measure=fast_measure(reference="single")), 0),
        (tiny_config(drift_every=3), 1),  # fewer rows than the drift interval
    ],
    ids=["guard-off", "single", "short-run"],
)
def test_no_check_when_the_guard_is_off_the_reference_single_or_the_run_short(
    tmp_path, tiny_anchor, cfg, calls
):
    warnings = []
    run_measurement(tmp_path / "d.db", cfg, 2, on_warning=warnings.append)
    with Dataset.open(tmp_path / "d.db") as ds:
        assert CHECKS_KEY not in ds.meta
    assert len(tiny_anchor) == calls and _anchor(warnings) == []


def test_dataset_info_shows_the_checks(tmp_path, tiny_anchor):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(drift_every=2), 2)
    runner = CliRunner()
    out = runner.invoke(app, ["dataset", "info", str(db), "--json"])
    assert out.exit_code == 0, out.output
    (check,) = json.loads(out.stdout)["reference_ratio_checks"]
    assert check["rows"] == 2 and check["ratios"] == {"3x8": 2.5}
    out = runner.invoke(app, ["dataset", "info", str(db)])
    assert out.exit_code == 0, out.output
    assert "anchor check with 2 rows in the file: 3 ch 8×8 ×2.500 (+66.7% vs stored)" in out.stdout

"""Reference normalisation: a fixed block timed alongside every reset divides the machine's
drift out of a label; a dataset calibrates its reference time once and keeps it."""

import numpy as np
import pytest
import torch
from measure_helpers import FakeBench, fast_measure, tiny_config
from typer.testing import CliRunner

import lenna.measure.reference as reference_mod
from lenna.cli import app
from lenna.errors import InputError
from lenna.measure import measure_block
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import fingerprint
from lenna.measure.reference import Calibration
from lenna.measure.rules import CIRule, SeedRule
from lenna.measure.runner import RunConfig, open_dataset, run_measurement, upgrade_config
from lenna.measure.store import Dataset
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")


class DriftingBench(FakeBench):
    """Reset ``r`` runs at machine speed factor ``speed[r]``: the path takes
    ``values_ms[r] * speed[r]`` and the reference ``ref_ms * speed[r]``."""

    def __init__(self, values_ms, speed, ref_ms=2.0, **kw):
        super().__init__(values_ms, **kw)
        self.speed, self.ref_ms = list(speed), ref_ms

    def passes(self, n):
        return super().passes(n) * self.speed[self.resets - 1]

    def paired(self, n):
        s = self.speed[self.resets - 1]
        return self.passes(n), np.full(n, self.ref_ms * s / 1e3)


def test_normalised_ci_rule_cancels_a_drift_the_raw_one_reports():
    speed = np.linspace(1.0, 1.3, 40)  # the machine slows down by 30 % during the sample
    rule = CIRule(control=False, reject=0.0, passes=2, q=0.0, min_resets=5, max_resets=40)
    raw = rule.run(DriftingBench([4.0] * 40, speed))
    norm = rule.run(DriftingBench([4.0] * 40, speed), z0_ms=2.0)
    assert norm.latency_ms == pytest.approx(4.0, rel=1e-12)  # at the calibrated speed
    assert norm.resets == 5 and norm.converged
    assert norm.reference_ms == 2.0
    np.testing.assert_allclose(norm.references_ms, 2.0 * speed[:5])
    assert raw.latency_ms > 4.0 * 1.02  # the raw label carries the slow-down
    assert raw.reference_ms is None and raw.references_ms == []


def test_normalised_label_is_in_units_of_the_calibrated_reference():
    # the reference ran at 2.5 ms when calibrated; now it takes 2.0: the machine is faster by
    # 1.25 than at calibration, so the label is scaled up to the calibrated speed
    rule = CIRule(control=False, reject=0.0, passes=1, min_resets=3, max_resets=3)
    est = rule.run(DriftingBench([4.0] * 3, [1.0] * 3, ref_ms=2.0), z0_ms=2.5)
    assert est.latency_ms == pytest.approx(5.0)


def test_cv_rule_normalised_stays_exact_with_its_control():
    from test_measure_rules import cv_problem

    costs, probs, paths, c_ms, expected_c = cv_problem()
    y = 2.0 * c_ms + 1.0
    speed = 1.0 + 0.2 * np.sin(np.arange(len(y)))
    bench = DriftingBench(y, speed, ref_ms=3.0, paths=paths)
    rule = CIRule(control=True, passes=1, q=0.5, min_resets=6, max_resets=12, rel=0.01)
    est = rule.run(bench, costs, probs, z0_ms=3.0)
    assert est.latency_ms == pytest.approx(2 * expected_c + 1, abs=1e-9)


def test_seed_rule_ignores_the_reference():
    bench = DriftingBench([3.0] * 30, [1.0] * 30)
    est = SeedRule(n=1, k=2, max_resets=30).run(bench, z0_ms=10.0)
    assert est.latency_ms == pytest.approx(3.0)
    assert est.reference_ms is None


def test_seed_rule_config_is_never_normalised():
    assert MeasureConfig(rule="seed", threads=1).normalise is False
    assert MeasureConfig(rule="cv", threads=1).normalise is True
    assert MeasureConfig(rule="ci", threads=1, normalise=False).normalise is False
    with pytest.raises(InputError, match="seed rule"):
        MeasureConfig(rule="seed", threads=1, normalise=True)


@pytest.mark.real_calibration
def test_calibrate_waits_for_two_windows_that_agree(monkeypatch):
    ref = reference_mod.reference_for(get_space("lenna"))
    times = iter([3e-3] * 10 + [2e-3] * 1000)  # the first window runs slow
    monkeypatch.setattr(ref, "time_s", lambda: next(times))
    z0 = ref.calibrate(passes=1, window_s=0.0)  # each window: 10 values
    assert z0 == pytest.approx(2.0)


@pytest.mark.real_calibration
def test_calibrate_gives_up_after_max_windows_with_their_median(monkeypatch):
    ref = reference_mod.reference_for(get_space("lenna"))
    values = iter(np.repeat(1e-3 * 1.1 ** np.arange(10), 10))  # never settles
    monkeypatch.setattr(ref, "time_s", lambda: next(values))
    z0 = ref.calibrate(passes=1, window_s=0.0, max_windows=4)
    assert z0 == pytest.approx(np.median(1.1 ** np.arange(4)))
    with pytest.raises(ValueError):
        ref.calibrate(max_windows=0)


@pytest.mark.real_calibration
def test_real_calibration_of_the_real_block_restores_threads():
    torch.set_num_threads(1)
    z0 = reference_mod.calibrated_ms(get_space("darts"), threads=2)
    assert 0 < z0 < 1000
    assert torch.get_num_threads() == 1


def test_real_reference_block_and_paired_passes():
    space = get_space("lenna")
    ref = reference_mod.reference_for(space)
    assert ref is reference_mod.reference_for(space)  # one per process and setting
    assert 0 < ref.time_s() < 5
    cfg = fast_measure(rule_params={"min_resets": 3, "max_resets": 3, "rel": 0.5, "passes": 2})
    alphas = np.random.default_rng(0).normal(size=space.alpha_shape)
    m = measure_block(space, "normal", 2, 8, alphas, cfg, seed=3, calibration=Calibration(1.5))
    est = m.estimate
    assert est.reference_ms == 1.5
    assert len(est.references_ms) == est.resets == 3
    assert all(z > 0 for z in est.references_ms)
    raw = measure_block(space, "normal", 2, 8, alphas, fast_measure(normalise=False), seed=3)
    assert raw.estimate.reference_ms is None and raw.estimate.references_ms == []


def test_bench_without_reference_refuses_paired():
    from lenna.measure.bench import GatedBench
    from lenna.measure.timer import Timer
    from lenna.space import Block

    space = get_space("lenna")
    block = Block(space, "normal", 2, "gated", np.zeros(space.alpha_shape))
    x = tuple(torch.randn(1, 2, 8, 8) for _ in range(space.num_inputs))
    bench = GatedBench(block, x, Timer(), torch.Generator().manual_seed(0))
    bench.reset()
    with pytest.raises(RuntimeError, match="no reference"):
        bench.paired(2)


# ---- datasets ----------------------------------------------------------------------------------
def test_dataset_calibrates_once_and_resume_reuses_it(tmp_path, monkeypatch):
    calls = []

    def fake_calibrate(self, *a, **kw):
        calls.append(1)
        return 1.25 * len(calls)

    monkeypatch.setattr(reference_mod.Reference, "calibrate", fake_calibrate)
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 1, trace=True)
    run_measurement(db, tiny_config(), 2, trace=True)  # a resume: same Z0, no calibration
    assert calls == [1]
    with Dataset.open(db) as ds:
        assert ds.meta["reference_ms"] == 1.25
        trace = ds.sample(1)["trace"]
    assert len(trace["references_ms"]) == len(trace["values_ms"]) > 0


def test_unnormalised_dataset_stores_no_reference(tmp_path):
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(measure=fast_measure(normalise=False)), 1)
    with Dataset.open(db) as ds:
        assert "reference_ms" not in ds.meta
        assert ds.meta["config"]["measure"]["normalise"] is False


def test_files_from_before_normalisation_read_as_unnormalised(tmp_path):
    cfg = tiny_config()
    old = cfg.to_dict()
    del old["measure"]["normalise"]
    assert RunConfig.from_dict(old).measure.normalise is False
    assert upgrade_config(old)["measure"]["normalise"] is False
    # such a file resumes with normalisation off, and refuses it on
    db = tmp_path / "old.db"
    fp = fingerprint("cpu", 1)
    off = tiny_config(measure=fast_measure(normalise=False))
    with open_dataset(db, off, fp, False) as ds:
        meta = ds.meta["config"]
        del meta["measure"]["normalise"]
        ds.set_meta("config", meta)
    open_dataset(db, off, fp, False).close()
    with pytest.raises(Exception, match="other settings"):
        open_dataset(db, cfg, fp, False)


def test_cli_no_normalise_is_stored(tmp_path):
    db = tmp_path / "d.db"
    args = ["measure", "--out", str(db), "-n", "0", "--space", "lenna", "--no-normalise"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with Dataset.open(db) as ds:
        assert ds.meta["config"]["measure"]["normalise"] is False


def test_op_times_are_scaled_to_the_calibrated_speed():
    from types import SimpleNamespace

    from lenna.measure.bench import GatedBench
    from lenna.space import Block

    space = get_space("lenna")
    block = Block(space, "normal", 2, "gated", np.zeros(space.alpha_shape))
    x = tuple(torch.randn(1, 2, 8, 8) for _ in range(space.num_inputs))
    ref = SimpleNamespace(time_s=lambda: 2e-3)  # the machine runs the reference at 2 ms now

    def timer(fn):
        fn()
        return 4e-3

    bench = GatedBench(block, x, timer, torch.Generator().manual_seed(0), ref)
    raw = bench.time_ops(3)
    scaled = bench.time_ops(3, z0_ms=1.0)  # calibrated at 1 ms: the machine is 2× slow now
    assert all(t == 4e-3 for r in raw for t in r["times"])
    assert all(t == pytest.approx(2e-3) for r in scaled for t in r["times"])


def test_op_table_is_normalised_with_the_datasets_reference(tmp_path, monkeypatch):
    from lenna.measure.runner import run_op_table

    # a Z0 of 1000 ms scales every op to ~1000 × (op / reference): far above any raw time
    monkeypatch.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: 1000.0)
    norm, raw = tmp_path / "n.db", tmp_path / "r.db"
    run_op_table(norm, tiny_config(), channels=(2, 2), resolutions=(8,), passes=2)
    off = tiny_config(measure=fast_measure(normalise=False))
    run_op_table(raw, off, channels=(2, 2), resolutions=(8,), passes=2)
    with Dataset.open(norm) as ds:
        assert ds.meta["reference_ms"] == 1000.0
        n = ds.op_table()
    with Dataset.open(raw) as ds:
        assert "reference_ms" not in ds.meta
        r = ds.op_table()
    assert len(n) == len(r) > 0
    assert n["latency_ms"].median() > 20 * r["latency_ms"].median()


def test_fixed_module_is_normalised_when_given_its_space():
    from lenna.measure.fixed import measure_module

    space = get_space("lenna")
    module = torch.nn.Conv2d(2, 2, 3, padding=1)
    x = (torch.randn(1, 2, 8, 8),)
    cfg = fast_measure(rule_params={"min_resets": 3, "max_resets": 3, "rel": 0.5, "passes": 1})
    est = measure_module(module, x, cfg, space=space, calibration=Calibration(0.7))
    assert est.reference_ms == 0.7 and len(est.references_ms) == 3
    assert measure_module(module, x, cfg).reference_ms is None  # no space: nothing to time
    off = measure_module(module, x, fast_measure(normalise=False), space=space)
    assert off.reference_ms is None


def test_predictor_records_its_datasets_reference(tmp_path, monkeypatch):
    from lenna.predict.data import load_data

    monkeypatch.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: 0.9)
    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 2)
    assert load_data(db).reference_ms == 0.9
    assert load_data(db).subset(np.array([True, False])).reference_ms == 0.9


# ---- matched references (anchors) ---------------------------------------------------------------
def test_anchor_is_the_nearest_in_log_size():
    anchor_for = reference_mod.anchor_for
    assert reference_mod.ANCHORS[0] == (reference_mod.CHANNELS, reference_mod.RESOLUTION)
    assert anchor_for(8, 8) == anchor_for(16, 16) == anchor_for(2, 8) == (16, 16)
    assert anchor_for(32, 32) == anchor_for(64, 16) == (32, 32)
    assert anchor_for(128, 32) == anchor_for(64, 32) == (64, 32)
    # every anchor is its own nearest, and a size between two goes to the nearer one
    assert all(anchor_for(*a) == a for a in reference_mod.ANCHORS)
    assert anchor_for(22, 32) == (32, 32) and anchor_for(23, 16) == (16, 16)


def test_narrow_references_time_narrow_blocks_beside_an_8_channel_anchor():
    anchor_for = reference_mod.anchor_for
    # below 16 channels: the 8-channel anchor nearest in resolution
    assert anchor_for(8, 8, "narrow") == (8, 8) and anchor_for(15, 16, "narrow") == (8, 16)
    assert anchor_for(12, 32, "narrow") == (8, 32) and anchor_for(2, 4, "narrow") == (8, 8)
    # from 16 channels on, exactly as matched; matched itself is unchanged
    for c, h in [(16, 8), (16, 16), (24, 8), (64, 16), (128, 32)]:
        assert anchor_for(c, h, "narrow") == anchor_for(c, h) in reference_mod.ANCHORS
    assert anchor_for(8, 8) == (16, 16)
    assert reference_mod.anchors_of("narrow")[: len(reference_mod.ANCHORS)] == (
        reference_mod.ANCHORS
    )  # the primary (Z0) stays first
    assert all(anchor_for(*a, "narrow") == a for a in reference_mod.anchors_of("narrow"))


def test_narrow_anchors_in_range():
    in_range = reference_mod.anchors_in_range
    assert in_range((8, 128), (32, 16, 8), "narrow") == [
        (16, 16), (32, 32), (64, 32), (8, 8), (8, 16), (8, 32)
    ]  # fmt: skip
    assert in_range((8, 12), (8,), "narrow") == [(8, 8)]  # no wide block at all
    assert in_range((8, 16), (32,), "narrow") == [(16, 16), (8, 32)]
    assert in_range((16, 128), (32,), "narrow") == in_range((16, 128), (32,))


def test_narrow_normalisation_and_the_onnxruntime_default():
    from conftest import FAKE_RATIO

    space = get_space("lenna")
    narrow = MeasureConfig(threads=1, reference="narrow")
    ref, z0 = reference_mod.normalisation(space, narrow, Calibration(2.0), (8, 8))
    assert ref.size == (8, 8) and z0 == pytest.approx(2.0 * FAKE_RATIO)
    ref, z0 = reference_mod.normalisation(space, narrow, Calibration(2.0), (16, 16))
    assert ref.size == (16, 16) and z0 == 2.0
    with pytest.raises(InputError, match="no calibrated ratio for reference anchor 8 ch 16×16"):
        reference_mod.normalisation(space, narrow, Calibration(2.0, {"16x16": 1.0}), (9, 16))
    assert MeasureConfig(threads=1).reference == "matched"  # eager: unchanged
    assert MeasureConfig(threads=1, normalise=False, backend="torch").reference == "single"
    pytest.importorskip("onnxruntime")
    assert MeasureConfig(threads=1, backend="onnxruntime").reference == "narrow"
    assert MeasureConfig(threads=1, backend="onnxruntime", reference="matched").reference == (
        "matched"
    )


def test_matched_normalisation_times_the_anchor_at_z0_times_its_ratio():
    from conftest import FAKE_RATIO

    space = get_space("lenna")
    matched, single = MeasureConfig(threads=1), MeasureConfig(threads=1, reference="single")
    assert matched.reference == "matched"
    ref, z0 = reference_mod.normalisation(space, matched, Calibration(2.0), (128, 32))
    assert ref.size == (64, 32) and z0 == pytest.approx(2.0 * FAKE_RATIO)
    ref, z0 = reference_mod.normalisation(space, matched, Calibration(2.0), (8, 8))
    assert ref.size == (16, 16) and z0 == 2.0  # the primary: Z0 itself
    ref, z0 = reference_mod.normalisation(space, single, Calibration(2.0), (128, 32))
    assert ref.size == (16, 16) and z0 == 2.0
    ref, z0 = reference_mod.normalisation(
        space, matched, Calibration(2.0)
    )  # no size (a whole network)
    assert ref.size == (16, 16) and z0 == 2.0
    assert reference_mod.normalisation(
        space, fast_measure(normalise=False), Calibration(2.0), (64, 32)
    ) == (
        None,
        None,
    )
    with pytest.raises(InputError, match="unknown reference"):
        MeasureConfig(threads=1, reference="nearest")


@pytest.mark.real_calibration
def test_ratio_calibration_waits_for_two_windows_that_agree():
    from types import SimpleNamespace

    anchor_times = iter([9e-3] * 10 + [4e-3] * 1000)  # the first window runs slow
    anchor = SimpleNamespace(time_s=lambda: next(anchor_times))
    primary = SimpleNamespace(time_s=lambda: 2e-3)
    ratio = reference_mod.calibrate_ratio(anchor, primary, passes=1, window_s=0.0)
    assert ratio == pytest.approx(2.0)
    drifting = iter(np.repeat(1e-3 * 1.1 ** np.arange(10), 10))  # never settles
    anchor = SimpleNamespace(time_s=lambda: next(drifting))
    primary = SimpleNamespace(time_s=lambda: 1e-3)
    ratio = reference_mod.calibrate_ratio(anchor, primary, passes=1, window_s=0.0, max_windows=4)
    assert ratio == pytest.approx(np.median(1.1 ** np.arange(4)))
    with pytest.raises(ValueError):
        reference_mod.calibrate_ratio(anchor, primary, max_windows=0)


@pytest.mark.real_calibration
def test_real_anchor_ratios_are_calibrated_once_and_restore_threads(monkeypatch):
    monkeypatch.setattr(reference_mod, "_RATIOS", {})
    monkeypatch.setattr(reference_mod.Reference, "calibrate", lambda self, *a, **k: 1.0)
    calls = []
    real = reference_mod.calibrate_ratio

    def counted(anchor, primary, *a, **k):
        calls.append(anchor.size)
        return real(anchor, primary, window_s=0.05)

    monkeypatch.setattr(reference_mod, "calibrate_ratio", counted)
    torch.set_num_threads(1)
    cfg = MeasureConfig(threads=2)
    ratios = reference_mod.anchor_ratios(get_space("lenna"), cfg)
    assert set(ratios) == {"16x16", "32x32", "64x32"} and ratios["16x16"] == 1.0
    assert all(np.isfinite(v) and v > 0 for v in ratios.values())
    assert reference_mod.anchor_ratios(get_space("lenna"), cfg) == ratios
    assert calls == [(32, 32), (64, 32)]  # calibrated once per process and setting
    assert reference_mod.calibrate_ratios(get_space("lenna"), cfg, [(16, 16)]) == {"16x16": 1.0}
    assert len(calls) == 2  # the primary's ratio is 1 by definition
    assert torch.get_num_threads() == 1


def test_anchors_in_range_are_the_ones_a_config_can_reach():
    in_range = reference_mod.anchors_in_range
    assert in_range((2, 4), (8,)) == [(16, 16)]
    assert in_range((8, 128), (32, 16, 8)) == [(16, 16), (32, 32), (64, 32)]
    assert in_range((8, 16), (32,)) == [(16, 16)]  # C·H ≤ 512: the primary only
    assert in_range((40, 128), (32,)) == [(32, 32), (64, 32)]


def test_dataset_stores_anchor_ratios_and_every_row_uses_them(tmp_path, tiny_anchor):
    from lenna.measure.runner import control_measurement

    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 1, trace=True)
    with Dataset.open(db) as ds:
        stored = ds.meta["reference_ratios"]
        z0 = ds.meta["reference_ms"]
        first = ds.sample(0)["trace"]["reference_ms"]
    assert stored == {"3x8": 1.5} and tiny_anchor == [(3, 8)]  # only what C 2–4 reaches
    assert first == pytest.approx(z0 * 1.5)  # timed alongside the tiny anchor
    # a resume (a new process: empty caches) uses the stored ratio, not a new calibration
    reference_mod._RATIOS.clear()
    run_measurement(db, tiny_config(), 2, trace=True)
    assert tiny_anchor == [(3, 8)]
    with Dataset.open(db) as ds:
        assert ds.sample(1)["trace"]["reference_ms"] == pytest.approx(z0 * 1.5)
    # the drift guard's control is normalised the same way
    ctrl = control_measurement(get_space("lenna"), tiny_config(), Calibration(z0, stored))
    assert ctrl.estimate.reference_ms == pytest.approx(z0 * 1.5)
    # single: the primary only, no ratios stored
    single = tiny_config(measure=fast_measure(reference="single"))
    run_measurement(tmp_path / "s.db", single, 1, trace=True)
    with Dataset.open(tmp_path / "s.db") as ds:
        assert "reference_ratios" not in ds.meta
        assert ds.sample(0)["trace"]["reference_ms"] == ds.meta["reference_ms"] == 1.0
    assert tiny_anchor == [(3, 8)]


def test_op_table_calibrates_only_the_anchors_its_grid_reaches(tmp_path, tiny_anchor):
    from lenna.measure.runner import run_op_table

    db = tmp_path / "o.db"
    wide = tiny_config(channels=(2, 64))
    run_op_table(db, wide, channels=(2, 2), resolutions=(8,), passes=2)
    with Dataset.open(db) as ds:
        assert ds.meta["reference_ratios"] == {"3x8": 1.5}
    # samples of a wider range later: the missing anchor (the primary: ratio 1) is added
    run_measurement(db, wide, 1)
    with Dataset.open(db) as ds:
        assert ds.meta["reference_ratios"] == {"3x8": 1.5, "16x16": 1.0}
    assert tiny_anchor == [(3, 8)]


def test_normalisation_refuses_a_ratio_the_dataset_lacks(tiny_anchor):
    space = get_space("lenna")
    with pytest.raises(InputError, match="no calibrated ratio for reference anchor 3 ch 8×8"):
        reference_mod.normalisation(space, fast_measure(), Calibration(1.0, {"16x16": 1.0}), (3, 8))


def test_files_from_before_anchors_resume_with_the_single_reference(tmp_path):
    cfg = tiny_config()
    old = cfg.to_dict()
    del old["measure"]["reference"]
    assert RunConfig.from_dict(old).measure.reference == "single"
    db = tmp_path / "old.db"
    run_measurement(db, RunConfig.from_dict(old), 1)
    with Dataset.open(db) as ds:
        meta = ds.meta["config"]
        del meta["measure"]["reference"]
        ds.set_meta("config", meta)
    # the CLI's defaults resume it as it was measured, and refuse to switch it over
    args = ["measure", "--out", str(db), "-n", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with Dataset.open(db) as ds:
        assert ds.count() == 2 and "reference_ratios" not in ds.meta
    result = CliRunner().invoke(app, [*args, "--reference", "matched"])
    assert result.exit_code == 2 and "other settings" in result.output


def test_cli_reference_option(tmp_path):
    db = tmp_path / "d.db"
    base = ["measure", "--out", str(db), "-n", "0", "--space", "lenna"]
    result = CliRunner().invoke(app, [*base, "--reference", "single"])
    assert result.exit_code == 0, result.output
    with Dataset.open(db) as ds:
        assert ds.meta["config"]["measure"]["reference"] == "single"
    result = CliRunner().invoke(
        app, [*base[:2], str(tmp_path / "e.db"), *base[3:], "--reference", "x"]
    )
    assert result.exit_code == 2 and "unknown reference" in result.output

"""Verifying a derived network (measure, train, compare) and the λ sweep built on it."""

import csv
import json
import math
import shutil

import pytest
import torch
from search_helpers import (
    FAST_RULE,
    PNG_MAGIC,
    cheap_genotype,
    one_thread,
    predictor_folder,
    tiny_config,
    tiny_data,
)
from torch import nn

from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.measure.fixed import measure_module
from lenna.search.folder import NETWORK_WEIGHTS
from lenna.search.genotype import Genotype
from lenna.search.run import run_search
from lenna.search.sweep import TABLE_FIELDS, check_lams, lam_folder, run_sweep
from lenna.search.verify import build, cell_inputs, evaluate_arch, measure_network

pytestmark = pytest.mark.usefixtures("single_thread")

RESULT_KEYS = {
    "space",
    "lam",
    "measured_ms",
    "measured_ci_ms",
    "measured_cells_ms",
    "measured_per_cell_ms",
    "backend",
    "device",
    "fingerprint",
    "predicted_ms",
    "predicted_per_cell_ms",
    "prediction_error",
    "predicted_fixed_ms",
    "predicted_gap_ms",
    "predicted_network_ms",
    "network_prediction_error",
    "budget_ms",
    "within_budget",
    "accuracy",
    "train_s",
    "amp_used",
    "cuda_graph_used",
    "weights",
    "epochs",
    "params",
    "data",
    "net",
    "train",
}


def fast(**kw) -> MeasureConfig:
    return MeasureConfig(rule="ci", rule_params=dict(FAST_RULE), threads=1, **kw)


# ---- measure_module ---------------------------------------------------------------------
class ThreadProbe(nn.Module):
    """A conv that records thread count, grad mode and train mode of every call, in a list
    shared by its copies (measure_module times a copy)."""

    log: list[tuple[int, bool, bool]] = []  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        ThreadProbe.log.clear()

    @property
    def seen(self) -> list[tuple[int, bool, bool]]:
        return ThreadProbe.log

    def forward(self, x):
        ThreadProbe.log.append((torch.get_num_threads(), torch.is_grad_enabled(), self.training))
        return self.conv(x)


def test_measure_module_times_in_eval_mode_on_the_configured_threads():
    m = ThreadProbe().train()
    torch.set_num_threads(2)  # the single_thread fixture restores 1 afterwards
    est = measure_module(m, (torch.randn(1, 2, 8, 8),), fast())
    assert torch.get_num_threads() == 2  # restored
    assert math.isfinite(est.latency_ms) and est.latency_ms > 0
    assert est.rule == "ci" and 3 <= est.resets <= 5
    assert len(est.values_ms) == est.resets
    assert m.training  # the caller's module is untouched: a copy is timed
    assert m.seen and all(s == (1, False, False) for s in m.seen)


def test_measure_module_accepts_a_cv_config_without_op_costs():
    params = {**FAST_RULE, "control": True}
    est = measure_module(nn.ReLU(), (torch.randn(1, 2, 4, 4),), MeasureConfig(rule_params=params))
    assert est.rule == "ci" and est.latency_ms > 0


# ---- measure_network / evaluate_arch ----------------------------------------------------
@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_cell_inputs_are_what_each_cell_receives(space):
    net = build(cheap_genotype(space))
    seen = cell_inputs(net, torch.randn(2, 1, 32, 32))
    n_in = 1 if space == "lenna" else 2
    assert [len(s) for s in seen] == [n_in, n_in]
    assert seen[0][-1].shape == (2, 8, 16, 16)  # after the stride-2 stem
    assert seen[1][-1].shape[2:] == (16, 16)  # the reduction cell's input


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_measure_network_reports_the_whole_and_each_cell(space):
    net = build(cheap_genotype(space))
    res = measure_network(net, fast())
    assert len(res["measured_per_cell_ms"]) == 2
    assert res["measured_cells_ms"] == pytest.approx(sum(res["measured_per_cell_ms"]))
    assert all(v > 0 for v in res["measured_per_cell_ms"])
    assert res["measured_ms"] > 0 and res["measured_ci_ms"] >= 0
    assert res["fingerprint"]["threads"] == 1 and res["fingerprint"]["batch"] == 1


def _recorded_sizes(monkeypatch):
    """Patch verify's measure_module to record (size, calibration) per call."""
    import lenna.search.verify as verify_mod
    from lenna.measure.rules import Estimate

    calls = []

    def fake(module, inputs, config, space=None, calibration=None, size=None):
        calls.append((size, calibration))
        return Estimate(1.0, "ci", resets=1, passes=1, ci_half_width_ms=0.0, converged=True)

    monkeypatch.setattr(verify_mod, "measure_module", fake)
    return calls


def test_each_cell_is_timed_beside_its_labels_anchor_at_the_stored_ratios(monkeypatch):
    """A derived cell is measured as its label was: beside the anchor its (C, H) maps to, at
    the dataset's stored ratios (not ones calibrated again now); the network beside the
    primary."""
    from lenna.measure.reference import Calibration
    from lenna.search.network import cell_specs

    calls = _recorded_sizes(monkeypatch)
    net = build(cheap_genotype("lenna"))
    stored = Calibration(0.2, {"16x16": 1.0, "8x8": 0.3, "8x16": 0.75, "32x32": 11.0})
    measure_network(net, fast(normalise=True, reference="narrow"), stored)
    specs = cell_specs(net.space, net.net)
    assert [c[0] for c in calls] == [(s.channels, s.resolution) for s in specs] + [None]
    assert all(c[1] is stored for c in calls)  # every anchor it needs is stored: used as is


def test_anchors_a_dataset_lacks_are_calibrated_and_stored_ones_kept(monkeypatch):
    """A network resized beyond its dataset's range needs anchors the file never stored:
    those are calibrated once, the stored ratios win where both exist."""
    import lenna.search.verify as verify_mod
    from lenna.measure.reference import Calibration

    calls = _recorded_sizes(monkeypatch)
    fresh = {"16x16": 1.0, "8x8": 0.9, "8x16": 0.9, "32x32": 9.0, "64x32": 40.0}
    asked = []
    monkeypatch.setattr(verify_mod, "anchor_ratios", lambda *a: asked.append(1) or dict(fresh))
    net = build(cheap_genotype("lenna"))
    stored = Calibration(0.2, {"16x16": 1.0})  # a file of 16-channel blocks only
    measure_network(net, fast(normalise=True, reference="narrow"), stored)
    assert asked == [1]
    used = calls[0][1]
    assert used.z0_ms == 0.2 and used.ratios == {**fresh, "16x16": 1.0}
    calls.clear()
    measure_network(net, fast(normalise=False), stored)  # raw: nothing to calibrate
    assert asked == [1] and calls[0][1] is stored


def test_a_predictors_stored_ratios_reach_verification(tmp_path):
    """The predictor keeps its dataset's anchor ratios, and evaluate-arch's calibration is
    built from them and its Z0."""
    from measure_helpers import tiny_config as tiny_run

    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset
    from lenna.predict import load_data, train_predictor
    from lenna.search.timing import calibration_from, measure_config_from, measured_as

    db = tmp_path / "d.db"
    run_measurement(db, tiny_run(), 8)
    with Dataset.open(db) as ds:
        meta = ds.meta
    model = train_predictor(load_data(db), "elasticnet", seed=0)
    rec = measured_as(model)
    assert rec["reference_ratios"] == meta["reference_ratios"]
    cal = calibration_from(rec, measure_config_from(rec))
    assert cal.z0_ms == meta["reference_ms"] and dict(cal.ratios) == meta["reference_ratios"]
    assert calibration_from(rec, fast(normalise=False)).z0_ms is None


def test_evaluate_arch_measures_trains_and_compares():
    g = cheap_genotype("lenna")
    g.predicted_ms, g.predicted_cells_ms = 0.5, [0.3, 0.2]
    stages = []
    epochs = []
    res = evaluate_arch(
        g,
        tiny_data(),
        epochs=1,
        seed=0,
        measure=fast(),
        on_stage=stages.append,
        on_epoch=lambda *a: epochs.append(a),
    )
    assert set(res) == RESULT_KEYS
    assert res["measured_cells_ms"] == pytest.approx(sum(res["measured_per_cell_ms"]))
    assert len(res["measured_per_cell_ms"]) == 2
    assert 0.0 <= res["accuracy"] <= 1.0
    assert res["params"] == sum(p.numel() for p in build(g).parameters()) > 0
    assert res["predicted_ms"] == 0.5 and res["predicted_per_cell_ms"] == [0.3, 0.2]
    cells = res["measured_cells_ms"]
    assert res["prediction_error"] == pytest.approx((0.5 - cells) / cells)
    assert res["predicted_network_ms"] is None and res["within_budget"] is None  # no fixed part
    assert (res["space"], res["lam"], res["epochs"], res["data"]) == ("lenna", 0.5, 1, "synthetic")
    assert stages == ["measuring latency", "training 1 epochs"]
    assert len(epochs) == 1 and epochs[0][0] == 1
    json.dumps(res)


def test_evaluate_arch_compares_the_whole_network_with_its_budget():
    g = cheap_genotype("lenna")
    g.predicted_ms, g.predicted_cells_ms, g.predicted_fixed_ms = 0.5, [0.3, 0.2], 0.1
    for budget, within in ((1e6, True), (1e-6, False)):
        g.budget_ms = budget
        res = evaluate_arch(g, tiny_data(), epochs=0, measure=fast())
        whole = res["measured_ms"]
        assert res["predicted_network_ms"] == pytest.approx(0.6)
        assert res["network_prediction_error"] == pytest.approx((0.6 - whole) / whole)
        assert res["budget_ms"] == budget and res["within_budget"] is within
    g.predicted_gap_ms = -0.05  # a search under ONNX Runtime: its parts less the whole
    res = evaluate_arch(g, tiny_data(), epochs=0, measure=fast())
    assert res["predicted_gap_ms"] == -0.05
    assert res["predicted_network_ms"] == pytest.approx(0.55)


def test_evaluate_arch_is_reproducible_and_skips_training_at_zero_epochs():
    g = cheap_genotype("darts")
    a = evaluate_arch(g, tiny_data(), epochs=1, seed=3, measure=fast())
    b = evaluate_arch(g, tiny_data(), epochs=1, seed=3, measure=fast())
    assert a["accuracy"] == b["accuracy"]
    z = evaluate_arch(g, "synthetic", epochs=0, limit=8, measure=fast())
    assert math.isnan(z["accuracy"]) and z["train_s"] == 0.0
    assert z["predicted_ms"] is None and z["prediction_error"] is None


def test_evaluate_arch_trains_after_measuring_in_another_dtype():
    """Measuring moves the network to the measurement's dtype (or device: --device cuda);
    training and testing afterwards must still work on the data's float32 CPU tensors."""
    res = evaluate_arch(
        cheap_genotype("lenna"), tiny_data(), epochs=1, measure=fast(dtype="bfloat16")
    )
    assert 0.0 <= res["accuracy"] <= 1.0
    assert res["measured_ms"] > 0


def test_evaluate_arch_refuses_data_the_network_was_not_built_for():
    g = cheap_genotype("lenna", num_classes=10)
    with pytest.raises(InputError, match="takes 1×32² images in 10 classes"):
        evaluate_arch(g, tiny_data(), epochs=0, measure=fast())


# ---- the sweep --------------------------------------------------------------------------
LAMS = [0.5, 5.0]


def sweep_base(**kw):
    return tiny_config(mode="gated", lam=0.0, **kw)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished sweep over :data:`LAMS` (read-only)."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    events = []
    with one_thread():
        rows = run_sweep(sweep_base(), LAMS, out, 1, fast(), on_event=lambda k, i: events.append(k))
    return out, rows, events


def test_sweep_writes_a_table_a_pareto_figure_and_a_folder_per_lambda(sweep):
    out, rows, events = sweep
    assert [r["lam"] for r in rows] == LAMS
    with (out / "sweep.csv").open() as f:
        reader = csv.DictReader(f)
        table = list(reader)
    assert reader.fieldnames == list(TABLE_FIELDS)
    assert [float(r["lam"]) for r in table] == LAMS
    assert json.loads((out / "sweep.json").read_text()) == rows
    for png in ("pareto.png", "search_curves.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    for lam, r in zip(LAMS, rows, strict=True):
        folder = lam_folder(out, lam)
        assert r["run"] == str(folder)
        stored = json.loads((folder / "result.json").read_text())
        assert stored == {**r, "run": folder.name}  # stored relative to the sweep folder
        assert (folder / NETWORK_WEIGHTS).is_file()  # the trained network, for `lenna export`
        g = Genotype.load(folder / "genotype.json")
        assert g.lam == lam
        assert r["predicted_ms"] == pytest.approx(g.predicted_ms)
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["measured_cells_ms"] > 0 and r["params"] > 0
    assert {p.name for p in out.iterdir()} == {
        "lam_0.5",
        "lam_5",
        "sweep.csv",
        "sweep.json",
        "pareto.png",
        "search_curves.png",
    }
    assert events.count("point") == 2 and events.count("epoch") == 2 and "step" in events


def test_a_finished_sweep_is_skipped_when_run_again(sweep, tmp_path):
    src, rows, _ = sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)
    results = [lam_folder(out, lam) / "result.json" for lam in LAMS]
    before = [p.stat().st_mtime_ns for p in results]
    events = []
    again = run_sweep(
        sweep_base(),
        LAMS,
        out,
        eval_epochs=1,
        measure=fast(),
        on_event=lambda k, i: events.append(k),
    )
    assert [p.stat().st_mtime_ns for p in results] == before
    assert events == ["point", "point"]  # no search step, no epoch
    assert [{k: v for k, v in r.items() if k != "run"} for r in again] == [
        {k: v for k, v in r.items() if k != "run"} for r in rows
    ]


@pytest.mark.slow
def test_a_sweep_resumes_a_stopped_search(tmp_path):
    class Stop(Exception):
        pass

    def stop(row):
        raise Stop

    out = tmp_path / "s"
    out.mkdir()
    base = sweep_base(epochs=2)
    with pytest.raises(Stop):
        run_search(
            tiny_config(mode="gated", lam=1.0, epochs=2), lam_folder(out, 1.0), on_epoch=stop
        )
    (row,) = run_sweep(base, [1.0], out, eval_epochs=0, measure=fast())
    whole = run_search(
        tiny_config(mode="gated", lam=1.0, epochs=2), tmp_path / "whole", figures=False
    )
    assert Genotype.load(lam_folder(out, 1.0) / "genotype.json") == whole.genotype
    assert row["predicted_ms"] == pytest.approx(whole.genotype.predicted_ms)
    assert not (lam_folder(out, 1.0) / NETWORK_WEIGHTS).exists()  # not trained: none saved


@pytest.mark.parametrize(
    ("lams", "needle"),
    [
        ([], "give at least one λ"),
        ([0.5, -1.0], r"λ must be finite numbers >= 0, got \[-1.0\]"),
        ([math.nan], "λ must be finite numbers >= 0"),
        ([math.inf, 1.0], "λ must be finite numbers >= 0"),
        ([1.0, 1.0], "each λ once"),
    ],
)
def test_check_lams_refuses(lams, needle):
    with pytest.raises(InputError, match=needle):
        check_lams(lams)


def test_check_lams_keeps_the_order():
    assert check_lams([2.0, 0.0, 0.5]) == [2.0, 0.0, 0.5]


def test_run_sweep_refuses_bad_lams_and_a_file_as_folder(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(InputError, match="λ must be finite"):
        run_sweep(sweep_base(), [-2.0], out, eval_epochs=0, measure=fast())
    assert not out.exists()
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        run_sweep(sweep_base(), [1.0], f, eval_epochs=0, measure=fast())


@pytest.mark.parametrize("limit", [0, -3])
def test_a_bad_eval_limit_is_refused_before_any_search(tmp_path, limit):  # issue 25, D12
    out = tmp_path / "s"
    with pytest.raises(InputError, match="--eval-limit must be at least 1"):
        run_sweep(sweep_base(), [0.0, 1.0], out, 1, fast(), eval_limit=limit)
    assert not out.exists()  # nothing searched, nothing written


def test_a_sweep_of_another_space_predictor_is_refused(tmp_path):
    base = sweep_base(predictor=str(predictor_folder("darts")))
    with pytest.raises(InputError, match="model of space 'darts', not 'lenna'"):
        run_sweep(base, [1.0], tmp_path / "s", eval_epochs=0, measure=fast())


@pytest.mark.slow
def test_a_sweep_with_a_lambda_zero_baseline(tmp_path):
    """`lenna sweep`'s default λ list starts at 0: plain DARTS with the predictor reporting E."""
    rows = run_sweep(sweep_base(), [0.0, 1.0], tmp_path / "s", eval_epochs=0, measure=fast())
    assert [r["lam"] for r in rows] == [0.0, 1.0]
    assert all(math.isfinite(r["predicted_ms"]) for r in rows)


def test_verification_is_normalised_only_to_a_known_matching_reference(monkeypatch):
    import lenna.search.verify as verify_mod
    from lenna.search.verify import measure_config_for

    g = cheap_genotype("lenna")
    rec = {"device": "cpu", "threads": 1, "batch": 1, "dtype": "float32"}
    g.info["measured_as"] = {**rec, "reference_ms": None}  # raw labels: measure raw
    assert measure_config_for(g).normalise is False
    g.info["measured_as"] = {**rec, "reference_ms": 2.5}
    assert measure_config_for(g).normalise is True
    assert measure_config_for(g, threads=2).normalise is False  # Z0 of another setting
    assert measure_config_for(g, device="cpu", threads=1).normalise is True
    seen = []

    def fake_measure(net, cfg, cal):
        seen.append((cfg.normalise, cal.z0_ms))
        return {
            "measured_ms": 1.0,
            "measured_ci_ms": 0.0,
            "measured_cells_ms": 1.0,
            "measured_per_cell_ms": [0.5, 0.5],
            "fingerprint": {},
        }

    monkeypatch.setattr(verify_mod, "measure_network", fake_measure)
    evaluate_arch(g, tiny_data(), epochs=0)
    evaluate_arch(g, tiny_data(), epochs=0, measure=fast())  # the caller's config decides
    assert seen == [(True, 2.5), (fast().normalise, 2.5 if fast().normalise else None)]


def test_a_file_from_before_anchors_has_its_cells_timed_beside_the_primary(tmp_path):
    """A normalised file that records no reference was measured with the single one: its
    predictor's derived cells are timed beside the primary, as its labels were."""
    from measure_helpers import tiny_config as tiny_run

    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset
    from lenna.predict import load_data, train_predictor
    from lenna.search.timing import measure_config_from, measured_as

    db = tmp_path / "old.db"
    run_measurement(db, tiny_run(), 8)
    with Dataset.open(db) as ds:
        cfg = ds.meta["config"]
        del cfg["measure"]["reference"]
        ds.set_meta("config", cfg)
    data = load_data(db)
    assert data.reference == "single"
    rec = measured_as(train_predictor(data, "elasticnet", seed=0))
    assert measure_config_from(rec).reference == "single"


def test_measure_module_times_a_sized_block_beside_its_anchor():
    """``size`` reaches the normalisation: a block of 64×32 needs the 64x32 anchor's ratio."""
    from lenna.measure.reference import Calibration
    from lenna.space import get_space

    block = nn.Conv2d(4, 4, 1)
    cal = Calibration(0.2, {"16x16": 1.0})
    cfg = fast(normalise=True, reference="matched")
    with pytest.raises(InputError, match="no calibrated ratio for reference anchor 64 ch 32×32"):
        measure_module(block, (torch.randn(1, 4, 8, 8),), cfg, get_space("lenna"), cal, (64, 32))


def test_cells_of_a_predictor_without_stored_ratios_are_timed_beside_the_primary(monkeypatch):
    """A predictor from before ratios were kept: its cells are timed as they always were."""
    import lenna.search.verify as verify_mod
    from lenna.measure.reference import Calibration

    calls = _recorded_sizes(monkeypatch)
    monkeypatch.setattr(verify_mod, "anchor_ratios", lambda *a: pytest.fail("calibrated"))
    net = build(cheap_genotype("lenna"))
    measure_network(net, fast(normalise=True, reference="narrow"), Calibration(0.2))
    measure_network(net, fast(normalise=True, reference="single"), Calibration(0.2, {}))
    assert all(size is None for size, _ in calls[:3])  # the first network: no ratios
    assert calls[3][1].ratios == {}  # single: nothing to complete


def test_stored_ratios_serve_only_their_own_reference_mode():
    from lenna.search.timing import calibration_from

    rec = {"reference_ms": 0.2, "reference": "matched", "reference_ratios": {"32x32": 11.0}}
    assert calibration_from(rec, fast(normalise=True, reference="matched")).ratios == {
        "32x32": 11.0
    }
    assert calibration_from(rec, fast(normalise=True, reference="narrow")).ratios is None

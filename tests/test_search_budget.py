"""A whole-network latency budget: the multiplier, the walk over derivable cells, the fixed
part, refusal before training, and a budget met by the derived network."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from search_helpers import (
    Stop,
    assert_same_run,
    run,
    stop_after,
    term_for,
    tiny_config,
    tiny_net,
)

import lenna.search.run as run_mod
from lenna.errors import InputError
from lenna.search.budget import (
    Multiplier,
    check_budget,
    derived_cells,
    extreme_network,
    fit_to_budget,
    network_ms,
    type_ms,
)
from lenna.search.checkpoint import load_checkpoint
from lenna.search.config import SearchConfig
from lenna.search.fixed_part import skeleton
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig, Network
from lenna.space import cell_alphas, derive, get_space, neighbours, random_cell

pytestmark = pytest.mark.usefixtures("single_thread")


def budget_term(space: str = "lenna", fixed_ms: float = 0.05):
    net = tiny_net(space)
    return net, term_for(net, space, budget_ms=1.0, fixed_ms=fixed_ms)


# ---- the multiplier --------------------------------------------------------------------------
def test_the_multiplier_rises_while_over_and_falls_back_to_zero_not_below():
    m = Multiplier(budget_ms=10.0, lr=0.5)
    seen = [m.update(12.0) for _ in range(4)]  # 20 % over
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4])
    seen = [m.update(8.0) for _ in range(4)]  # 20 % under
    assert seen == pytest.approx([0.3, 0.2, 0.1, 0.0], abs=1e-12)
    assert m.update(1.0) == 0.0  # never below 0
    assert m.update(10.0) == 0.0  # exactly on budget: unchanged


def test_with_the_multiplier_at_zero_the_budget_moves_nothing():
    _, term = budget_term()
    ce = torch.tensor(1.3, requires_grad=True)
    e = torch.tensor(2.0, requires_grad=True)
    assert not term.active
    assert float(term.loss(ce, e).detach()) == pytest.approx(1.3)
    term.multiplier = 0.5
    assert term.active
    loss = term.loss(ce, e)  # the Lagrangian: CE + μ (E + fixed − T) / T
    assert float(loss.detach()) == pytest.approx(1.3 + 0.5 * (2.0 + 0.05 - 1.0) / 1.0)
    (g,) = torch.autograd.grad(loss, [e])
    assert float(g) == pytest.approx(0.5)


# ---- derivable cells -------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_every_neighbour_is_derivable_and_one_change_away(space):
    sp = get_space(space)
    rng = np.random.default_rng(0)
    for bt in ("normal", "reduction"):
        cell = random_cell(sp, bt, rng)
        near = neighbours(sp, bt, cell)
        assert near and all(c != cell for c in near)
        for c in near:
            assert derive(sp, bt, cell_alphas(sp, bt, c)) == c  # derivable
            changed = sum(a != b for a, b in zip(c, cell, strict=True))
            assert changed in ((1,) if sp.derive_rule == "edge_argmax" else (1, 2))


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_the_fastest_and_slowest_networks_bound_random_derivable_ones(space):
    _, term = budget_term(space)
    fast_cells, fastest = extreme_network(term, fastest=True)
    _, slowest = extreme_network(term, fastest=False)
    assert fastest < slowest
    assert fastest == pytest.approx(network_ms(term, fast_cells))
    rng = np.random.default_rng(1)
    sp = get_space(space)
    for _ in range(20):
        cells = {bt: random_cell(sp, bt, rng) for bt in fast_cells}
        ms = network_ms(term, cells)
        assert fastest <= ms + 1e-9 and ms <= slowest + 1e-9


def test_the_network_latency_is_its_cells_and_the_fixed_part():
    net, term = budget_term("darts", fixed_ms=0.25)
    cells = derived_cells(term, dict(net.alphas.items()))
    onehot = Genotype("darts", cells, net.net, 0.0).onehot_alphas()
    assert network_ms(term, cells) == pytest.approx(sum(term.per_cell_ms(onehot)) + 0.25)
    batch = type_ms(term, "normal", [cells["normal"], cells["normal"]])
    assert batch[0] == batch[1]


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_fit_to_budget_reaches_a_derivable_network_under_the_budget(space):
    net, term = budget_term(space)
    alphas = dict(net.alphas.items())
    derived = network_ms(term, derived_cells(term, alphas))
    _, fastest = extreme_network(term)
    budget = (derived + fastest) / 2
    cells, ms, changes = fit_to_budget(term, alphas, budget)
    assert ms <= budget and changes >= 1
    sp = get_space(space)
    for bt, c in cells.items():
        assert derive(sp, bt, cell_alphas(sp, bt, c)) == c
    same, same_ms, none = fit_to_budget(term, alphas, derived * 1.01)
    assert none == 0 and same == derived_cells(term, alphas) and same_ms == derived


def test_an_impossible_budget_is_refused_and_a_loose_one_does_not_bind():
    _, term = budget_term()
    _, fastest = extreme_network(term)
    _, slowest = extreme_network(term, fastest=False)
    with pytest.raises(InputError, match="no derivable network meets"):
        check_budget(term, fastest * 0.9)
    assert "does not bind" in check_budget(term, slowest * 1.1)
    assert check_budget(term, (fastest + slowest) / 2) is None


# ---- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"budget_ms": 3.0}, "needs a latency predictor"),
        ({"budget_ms": 3.0, "predictor": "m", "lam": 1.0}, "replaces --lam"),
        ({"budget_ms": 3.0, "predictor": "m", "target_ms": 2.0}, "replaces --lam"),
        ({"budget_ms": 3.0, "predictor": "m", "form": "log"}, "own loss"),
        ({"budget_ms": 0.0, "predictor": "m"}, "ms > 0"),
        ({"budget_ms": math.nan, "predictor": "m"}, "number of ms"),
        ({"budget_ms": 3.0, "predictor": "m", "budget_lr": 0.0}, "budget_lr"),
        ({"fixed_ms": -1.0}, "number of ms"),
    ],
)
def test_bad_budget_settings_are_refused(kw, match):
    with pytest.raises(InputError, match=match):
        SearchConfig(**kw)


# ---- the fixed part ----------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_the_skeleton_computes_what_the_network_computes_without_its_cells(space):
    sp = get_space(space)
    net_cfg = NetConfig(channels=8, cells=3)
    model, inputs = skeleton(sp, net_cfg, batch=2)
    x = inputs[0]
    torch.manual_seed(0)
    zeros = torch.zeros(sp.alpha_shape, dtype=torch.float64)
    full = Network(
        sp, net_cfg, "fixed", {bt: derive(sp, bt, zeros) for bt in ("normal", "reduction")}
    )
    with torch.inference_mode():
        assert torch.allclose(model(*inputs)[0], full.eval()(x))  # same stem, norms, classifier
        cells = model.net.cells
        assert not any(isinstance(m, torch.nn.Conv2d) for c in cells for m in c.modules())
    assert len(inputs) == 1 + net_cfg.cells  # each cell's output is an input, not a constant


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_the_skeleton_runs_in_onnx_runtime_as_in_torch(space):
    pytest.importorskip("onnxruntime", reason="the onnx extra")
    from lenna.measure.backend import session
    from lenna.measure.onnx_pieces import export_module
    from lenna.measure.ort_path import module_call

    model, inputs = skeleton(get_space(space), NetConfig(channels=8, cells=3), batch=1)
    sess = session(export_module(model, inputs).SerializeToString(), 1)
    assert len(sess.get_inputs()) == len(inputs)  # every recorded cell output is read
    got = sess.run(None, {f"in{i}": x.numpy() for i, x in enumerate(inputs)})
    with torch.inference_mode():
        want = [t.numpy() for t in model(*inputs)]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and abs(g - w).max() < 1e-4
    module_call(model, inputs)()  # the timed pass: outputs into buffers bound once


@pytest.mark.slow
def test_a_search_measures_the_fixed_part_once_and_a_resume_keeps_it(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an eager search measured the whole-network gap")

    monkeypatch.setattr(run_mod, "measure_network_gap", refuse)
    cfg = tiny_config(epochs=2, fixed_ms=None)
    out = tmp_path / "run"
    with pytest.raises(Stop):
        run(cfg, out, on_epoch=stop_after(1))
    stored = json.loads((out / "fixed_part.json").read_text())
    assert stored["fixed_ms"] > 0 and stored["fingerprint"]["threads"] == 1
    res = run(cfg, out, resume=True)
    assert res.genotype.predicted_fixed_ms == stored["fixed_ms"]
    assert stored["gap_ms"] == 0.0 and stored["gap_measured_on"] is None  # eager: none
    assert res.genotype.predicted_gap_ms == 0.0
    assert res.genotype.predicted_network_ms == pytest.approx(
        res.genotype.predicted_ms + stored["fixed_ms"] + stored["gap_ms"]
    )
    saved = json.loads((out / "genotype.json").read_text())
    assert saved["predicted_network_ms"] == pytest.approx(res.genotype.predicted_network_ms)


# ---- searches with a budget ----------------------------------------------------------------
def midway_budget(space: str = "lenna") -> float:
    _, term = budget_term(space)
    _, fastest = extreme_network(term)
    derived = network_ms(term, derived_cells(term, dict(tiny_net(space).alphas.items())))
    return fastest + 0.5 * (derived - fastest)


def test_an_impossible_budget_is_refused_before_any_training(tmp_path):
    steps = []
    with pytest.raises(InputError, match="no derivable network meets"):
        run(
            tiny_config(lam=0.0, budget_ms=1e-4),
            tmp_path / "run",
            on_step=lambda *a: steps.append(a),
        )
    assert steps == [] and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_budget_that_cannot_bind_is_said(tmp_path):
    with pytest.warns(UserWarning, match="does not bind"):
        run(tiny_config(lam=0.0, budget_ms=1e6), tmp_path / "run")


@pytest.mark.parametrize("space", ["lenna", "darts"])
@pytest.mark.slow
def test_the_derived_network_meets_a_budget(tmp_path, space):
    budget = midway_budget(space)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this budget binds: no warning
        warnings.filterwarnings("ignore", "with --fixed-ms")  # the tiny runs give it
        res = run(tiny_config(space, lam=0.0, budget_ms=budget, epochs=2), tmp_path / "run")
    g = res.genotype
    assert g.budget_ms == budget and g.predicted_network_ms <= budget + 1e-9
    assert set(g.info["budget"]) == {"multiplier", "derived_ms", "changes_to_fit"}
    rows = res.metrics
    assert all(r["multiplier"] >= 0 for r in rows)
    assert all(r["derived_ms"] > 0 and r["expected_network_ms"] > 0 for r in rows)
    assert rows[0]["multiplier"] > 0  # started over budget: μ rose


@pytest.mark.slow
def test_a_resumed_budget_search_keeps_its_multiplier(tmp_path):
    budget = midway_budget()
    cfg = tiny_config(lam=0.0, budget_ms=budget, epochs=2)
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run(cfg, a)
    with pytest.raises(Stop):
        run(cfg, b, on_epoch=stop_after(1))
    mu = load_checkpoint(b)[1]["multiplier"]
    assert mu > 0
    rb = run(cfg, b, resume=True)
    assert_same_run(a, b, ra, rb)

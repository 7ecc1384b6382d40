"""The gap between the whole network and its parts timed alone: measured once before a search,
kept by the run folder, added to every whole-network prediction (the budget's included)."""

import json
import math

import pytest
import torch
from search_helpers import Stop, run, stop_after, term_for, tiny_config, tiny_net

import lenna.search.network_gap as gap_mod
import lenna.search.run as run_mod
from lenna.cli.search import derived_line
from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.search.budget import check_budget, derived_cells, extreme_network, network_ms
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.space import derive, get_space

pytestmark = pytest.mark.usefixtures("single_thread")

GAP = -0.0375


def fake_gap(calls: list):
    def fake(space, net, fixed_ms, config=None, calibration=None):
        calls.append((space.name, net, fixed_ms))
        cells = 1.0 - fixed_ms - GAP
        return {"gap_ms": GAP, "gaps_ms": [GAP], "network_ms": 1.0, "cells_ms": cells, "cells": {}}

    return fake


# ---- the measurement -----------------------------------------------------------------------
def test_the_gap_is_the_whole_network_less_its_cells_and_fixed_part(monkeypatch):
    seen = []

    wholes = iter([2.0, 2.5, 1.9])  # the cells always 1.75 ms: gaps −0.25, +0.25, −0.35

    def fake_measure(net, config, calibration):
        seen.append(net)
        return {"measured_ms": next(wholes), "measured_cells_ms": 1.75}

    monkeypatch.setattr(gap_mod, "measure_network", fake_measure)
    space, shape = get_space("darts"), NetConfig(channels=4, cells=3, stem_multiplier=3)
    got = gap_mod.measure_network_gap(space, shape, 0.5)
    assert got["gaps_ms"] == pytest.approx([-0.25, 0.25, -0.35])
    assert got["gap_ms"] == pytest.approx(2.0 - 1.75 - 0.5)  # the median repeat, with its times
    assert (got["network_ms"], got["cells_ms"]) == (2.0, 1.75)
    # timed on the network the fixed part is timed on: the cells derived from uniform α
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]
    net = seen[0]
    assert net.net == shape and not net.training
    for bt in ("normal", "reduction"):
        assert got["cells"][bt] == derive(space, bt, zeros)
    assert len(net.cells) == 3


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_the_gap_measured_for_real_closes_the_sum(backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    quick = {"min_resets": 3, "max_resets": 5, "rel": 0.5}
    cfg = MeasureConfig(threads=1, backend=backend, rule_params=quick)
    net = NetConfig(channels=8, cells=2)
    got = gap_mod.measure_network_gap(get_space("lenna"), net, 0.01, cfg, repeats=1)
    assert got["network_ms"] > 0 and got["cells_ms"] > 0 and math.isfinite(got["gap_ms"])
    assert got["cells_ms"] + 0.01 + got["gap_ms"] == pytest.approx(got["network_ms"])


# ---- the prediction ------------------------------------------------------------------------
def test_the_gap_moves_the_network_prediction_and_the_budget_loss_not_the_cells():
    net = tiny_net("darts")
    term = term_for(net, "darts", budget_ms=1.0, fixed_ms=0.25)
    alphas = dict(net.alphas.items())
    cells = derived_cells(term, alphas)
    before, cells_ms = network_ms(term, cells), term.per_cell_ms(alphas)
    term.multiplier = 2.0
    e, ce = torch.tensor(0.5), torch.tensor(1.0)
    loss_before = float(term.loss(ce, e))
    term.gap_ms = GAP
    assert term.outside_ms == pytest.approx(0.25 + GAP)
    assert network_ms(term, cells) == pytest.approx(before + GAP)
    assert term.per_cell_ms(alphas) == cells_ms
    assert float(term.loss(ce, e)) == pytest.approx(loss_before + 2.0 * GAP / 1.0)


def test_a_genotype_keeps_its_gap_and_one_from_before_has_none(tmp_path):
    net = NetConfig(channels=8, cells=2)
    sp = get_space("lenna")
    cells = {bt: derive(sp, bt, torch.zeros(sp.alpha_shape)) for bt in ("normal", "reduction")}
    g = Genotype("lenna", cells, net, 0.5, 1.0, [0.5, 0.5], predicted_fixed_ms=0.25)
    g.predicted_gap_ms = GAP
    assert g.predicted_network_ms == pytest.approx(1.25 + GAP)
    back = Genotype.load(g.save(tmp_path / "g.json"))
    assert back.predicted_gap_ms == GAP and back.predicted_network_ms == g.predicted_network_ms
    line = derived_line(back, tmp_path / "g.json")
    assert f"{1.25 + GAP:.3f} ms for the whole network" in line and "− 0.037 ms" in line
    old = json.loads((tmp_path / "g.json").read_text())
    del old["predicted_gap_ms"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    before = Genotype.load(tmp_path / "old.json")
    assert before.predicted_gap_ms is None and before.predicted_network_ms == pytest.approx(1.25)
    assert "whole-network gap" not in derived_line(before, tmp_path / "old.json")
    (tmp_path / "bad.json").write_text(json.dumps({**old, "predicted_gap_ms": "small"}))
    with pytest.raises(InputError, match="predicted_gap_ms must be a number of ms"):
        Genotype.load(tmp_path / "bad.json")


# ---- a search ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_search_measures_the_gap_once_a_resume_keeps_it_an_old_folder_has_none(
    tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(run_mod, "gap_applies", lambda config: True)  # as under ORT
    monkeypatch.setattr(run_mod, "measure_network_gap", fake_gap(calls))
    cfg = tiny_config("lenna", epochs=2, fixed_ms=None)
    out = tmp_path / "run"
    with pytest.raises(Stop):
        run(cfg, out, on_epoch=stop_after(1))
    stored = json.loads((out / "fixed_part.json").read_text())
    assert stored["gap_ms"] == GAP and len(calls) == 1
    assert calls[0][2] == stored["fixed_ms"]  # the gap is of the fixed part just measured
    assert stored["gap_measured_on"]["network_ms"] == 1.0
    res = run(cfg, out, resume=True)
    assert len(calls) == 1  # read back, not measured again
    g = res.genotype
    assert g.predicted_gap_ms == GAP
    assert g.predicted_network_ms == pytest.approx(g.predicted_ms + stored["fixed_ms"] + GAP)
    for row in res.metrics:
        assert row["expected_network_ms"] == pytest.approx(
            row["predicted_ms"] + stored["fixed_ms"] + GAP
        )
    saved = json.loads((out / "genotype.json").read_text())
    assert saved["predicted_gap_ms"] == GAP
    # a folder from before the gap resumes with none; a bad one is refused in one line
    path = out / "fixed_part.json"
    old = {k: v for k, v in stored.items() if k not in ("gap_ms", "gap_measured_on")}
    path.write_text(json.dumps(old))
    before = run(cfg, out, resume=True).genotype
    assert before.predicted_gap_ms == 0.0 and len(calls) == 1
    assert before.predicted_network_ms == pytest.approx(before.predicted_ms + stored["fixed_ms"])
    path.write_text(json.dumps({**old, "gap_ms": "NaN"}))
    with pytest.raises(InputError, match=r"fixed_part\.json is malformed"):
        run(cfg, out, resume=True)


def test_only_runtimes_with_a_per_call_cost_measure_the_gap():
    assert not gap_mod.gap_applies(MeasureConfig(backend="torch"))
    assert gap_mod.gap_applies(MeasureConfig(backend="onnxruntime"))


def test_a_budget_is_checked_with_the_gap_and_its_refusal_names_it():
    net = tiny_net("lenna")
    term = term_for(net, "lenna", budget_ms=1.0, fixed_ms=0.25)
    _, fastest = extreme_network(term)
    term.gap_ms = -0.125
    _, with_gap = extreme_network(term)
    assert with_gap == pytest.approx(fastest - 0.125)
    check_budget(term, fastest - 0.1)  # meetable only thanks to the gap
    with pytest.raises(
        InputError, match=r"0\.25 ms of it outside the cells, the whole-network gap -0\.125 ms"
    ):
        check_budget(term, with_gap - 0.01)

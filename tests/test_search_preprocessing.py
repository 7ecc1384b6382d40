"""A cell's input preprocessing as the network runs it: the offset per cell, measured once per
network shape, added to that cell's prediction, kept by the run folder."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from search_helpers import Stop, run, stop_after, term_for, tiny_config, tiny_net

import lenna.search.preprocessing as prep
import lenna.search.run as run_mod
from lenna.errors import InputError
from lenna.search.budget import derived_cells, network_ms, type_ms
from lenna.search.network import NetConfig, Network, cell_inputs, cell_specs
from lenna.space import Block, derive, get_space

pytestmark = pytest.mark.usefixtures("single_thread")

DARTS_NET = NetConfig(channels=4, cells=5, stem_multiplier=3)


def fake_timer(monkeypatch):
    """measure_module replaced by 'ms = Σ over the preprocessing's convs of in × out channels
    × output pixels / 1e6', so offsets are exact and known; records what was timed."""
    timed = []

    def fake(module, inputs, config=None, space=None, calibration=None):
        timed.append(tuple(x.shape[1] for x in inputs))
        with torch.no_grad():
            return SimpleNamespace(latency_ms=macs(module.mods, inputs))

    monkeypatch.setattr(prep, "measure_module", fake)
    return timed


def test_a_space_without_preprocessing_has_zero_offsets_and_times_nothing(monkeypatch):
    timed = fake_timer(monkeypatch)
    net = NetConfig(channels=8, cells=3)
    assert prep.preprocessing_offsets(get_space("lenna"), net) == [0.0, 0.0, 0.0]
    assert timed == []


def macs(mods, xs) -> float:
    total = 0
    for m, y in zip(mods, prep.Preprocess(mods)(*xs), strict=True):
        for conv in (c for c in m.modules() if isinstance(c, torch.nn.Conv2d)):
            total += conv.in_channels * conv.out_channels * y.shape[-1] * y.shape[-2]
    return total / 1e6


def test_offsets_are_the_networks_preprocessing_minus_the_labels(monkeypatch):
    timed = fake_timer(monkeypatch)
    space = get_space("darts")
    offsets = prep.preprocessing_offsets(space, DARTS_NET)
    specs = cell_specs(space, DARTS_NET)
    assert len(offsets) == len(specs)
    # by hand: each cell's preprocessing on the inputs the network gives it, less the same
    # cell standalone (both inputs of its own C channels)
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, DARTS_NET, "fixed", choices).eval()
    x = torch.randn(1, 1, 32, 32)
    for spec, cell, inputs, got in zip(
        specs, model.cells, cell_inputs(model, x), offsets, strict=True
    ):
        c, h = spec.channels, spec.resolution
        alone = [torch.randn(1, c, h, h) for _ in inputs]
        block = Block(space, spec.block_type, c, "fixed", choices=choices[spec.block_type])
        want = macs(cell.preprocess, inputs) - macs(block.preprocess, alone)
        assert got == pytest.approx(want)
    # the stem is 3C wide, so even the first cell differs; later cells read 4C-wide concats
    assert all(v > 0 for v in offsets)
    assert max(w for t in timed for w in t) == 4 * max(s.channels for s in specs)  # a concat


def test_a_cell_whose_inputs_are_the_labels_shape_gets_zero_without_timing(monkeypatch):
    timed = fake_timer(monkeypatch)
    net = NetConfig(channels=4, cells=1)  # stem multiplier 1: the one cell reads C and C
    assert prep.preprocessing_offsets(get_space("darts"), net) == [0.0]
    assert timed == []


def test_the_preprocess_module_computes_what_the_cell_computes_first():
    space = get_space("darts")
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, DARTS_NET, "fixed", choices).eval()
    cell = model.cells[3]  # after a reduction: a factorised reduce on the older input
    inputs = cell_inputs(model, torch.randn(1, 1, 32, 32))[3]
    seen = []  # what each preprocessing module gives inside the cell's own forward pass
    hooks = [m.register_forward_hook(lambda m, a, o: seen.append(o)) for m in cell.preprocess]
    try:
        with torch.no_grad():
            cell(*inputs)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        got = prep.Preprocess(cell.preprocess)(*inputs)
    assert len(seen) == len(got) == 2
    assert all(torch.equal(g, w) for g, w in zip(got, seen, strict=True))
    assert got[0].shape == got[1].shape  # the reduce brought the older input to the cell's size


def test_each_distinct_preprocessing_is_timed_once(monkeypatch):
    timed = fake_timer(monkeypatch)
    net = NetConfig(channels=4, cells=8, stem_multiplier=3)
    prep.preprocessing_offsets(get_space("darts"), net)
    space = get_space("darts")
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, net, "fixed", choices).eval()
    in_net, alone = set(), set()
    for spec, inputs in zip(
        model.specs, cell_inputs(model, torch.randn(1, 1, 32, 32)), strict=True
    ):
        shapes = tuple(tuple(t.shape) for t in inputs)
        if shapes != ((1, spec.channels, spec.resolution, spec.resolution),) * 2:
            in_net.add((spec.block_type, spec.channels, spec.resolution, shapes))
            alone.add((spec.block_type, spec.channels, spec.resolution))
    assert len(timed) == len(in_net) + len(alone) < 2 * net.cells  # repeats not timed again


# ---- the latency term ------------------------------------------------------------------------
def test_offsets_add_to_each_cells_prediction_and_leave_the_gradient_alone():
    net = tiny_net("darts")
    term = term_for(net, "darts")
    alphas = {k: v.detach().clone().requires_grad_(True) for k, v in net.alphas.items()}
    before = term.per_cell_ms(alphas)
    e0 = term.expected_ms(alphas)
    g0 = torch.autograd.grad(e0, list(alphas.values()))
    cells = derived_cells(term, alphas)
    n0 = network_ms(term, cells)
    t0 = {bt: type_ms(term, bt, [c])[0] for bt, c in cells.items()}
    ref0 = term.ref_ms
    offsets = [0.25 * (i + 1) for i in range(len(term.cells))]
    term.set_offsets(offsets)
    after = term.per_cell_ms(alphas)
    assert after == pytest.approx([b + o for b, o in zip(before, offsets, strict=True)])
    e1 = term.expected_ms(alphas)
    assert float(e1.detach()) == pytest.approx(float(e0.detach()) + sum(offsets))
    g1 = torch.autograd.grad(e1, list(alphas.values()))
    assert all(torch.allclose(a, b) for a, b in zip(g0, g1, strict=True))
    assert network_ms(term, cells) == pytest.approx(n0 + sum(offsets))
    for bt, c in cells.items():  # per type: the offsets of that type's cells
        own = sum(o for s, o in zip(term.cells, offsets, strict=True) if s.block_type == bt)
        assert type_ms(term, bt, [c])[0] == pytest.approx(t0[bt] + own)
    assert term.ref_ms == pytest.approx(ref0 + sum(offsets))  # E at uniform α, as the net runs


def test_a_given_reference_stays_and_bad_offsets_are_refused():
    net = tiny_net("darts")
    term = term_for(net, "darts", ref_ms=3.0)
    term.set_offsets([0.1] * len(term.cells))
    assert term.ref_ms == 3.0
    with pytest.raises(InputError, match=f"{len(term.cells)} cells; got 1"):
        term.set_offsets([0.1])
    plain = term_for(net, "darts")
    with pytest.raises(InputError, match="positive reference"):  # offsets below -E
        plain.set_offsets([-10.0 * plain.ref_ms] * len(plain.cells))
    with pytest.raises(InputError, match="not a finite number"):
        term.set_offsets([float("nan")] * len(term.cells))


# ---- a search ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_darts_search_measures_offsets_once_and_a_resume_keeps_them(tmp_path, monkeypatch):
    calls = []
    offsets = [0.125, 0.5]

    def fake(space, net, config=None, reference_ms=None, on_cell=None):
        calls.append(net)
        return offsets[: len(cell_specs(space, net))]

    monkeypatch.setattr(run_mod, "preprocessing_offsets", fake)
    cfg = tiny_config("darts", epochs=2, fixed_ms=None)
    out = tmp_path / "run"
    with pytest.raises(Stop):
        run(cfg, out, on_epoch=stop_after(1))
    stored = json.loads((out / "fixed_part.json").read_text())
    assert stored["cell_offsets_ms"] == offsets and len(calls) == 1
    res = run(cfg, out, resume=True)
    assert len(calls) == 1  # read back, not measured again
    g = res.genotype
    assert g.info["cell_offsets_ms"] == offsets
    term = term_for(tiny_net("darts"), "darts")  # the same predictor, no offsets
    plain = term.per_cell_ms(g.onehot_alphas())
    assert g.predicted_cells_ms == pytest.approx(
        [p + o for p, o in zip(plain, offsets, strict=True)]
    )
    assert g.predicted_ms == pytest.approx(sum(g.predicted_cells_ms))


@pytest.mark.slow
def test_a_run_folder_from_before_the_offsets_resumes_without_them(tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "preprocessing_offsets", lambda *a, **k: [0.5, 0.5])
    cfg = tiny_config("darts", epochs=2, fixed_ms=None)
    out = tmp_path / "run"
    with pytest.raises(Stop):
        run(cfg, out, on_epoch=stop_after(1))
    path = out / "fixed_part.json"
    old = json.loads(path.read_text())
    del old["cell_offsets_ms"]
    path.write_text(json.dumps(old))
    res = run(cfg, out, resume=True)
    assert "cell_offsets_ms" not in res.genotype.info
    path.write_text(json.dumps({**old, "cell_offsets_ms": [0.5]}))  # one number for two cells
    with pytest.raises(InputError, match=r"fixed_part\.json is malformed: .*2 cells; got 1"):
        run(cfg, out, resume=True)


def test_offsets_measured_for_real_are_finite_and_zero_where_the_shapes_match():
    from lenna.measure.config import MeasureConfig

    net = NetConfig(channels=4, cells=2)  # the first cell reads the stem twice: C and C
    cfg = MeasureConfig(threads=1, rule_params={"min_resets": 3, "max_resets": 5, "rel": 0.5})
    offsets = prep.preprocessing_offsets(get_space("darts"), net, cfg)
    assert offsets[0] == 0.0
    assert len(offsets) == 2 and math.isfinite(offsets[1]) and offsets[1] != 0.0  # timed


def test_a_given_fixed_part_measures_no_offsets_and_says_so(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("measured")

    monkeypatch.setattr(run_mod, "preprocessing_offsets", refuse)
    monkeypatch.setattr(run_mod, "measure_network_gap", refuse)  # nor the whole-network gap
    with pytest.warns(UserWarning, match="not added to its prediction"):
        res = run(tiny_config("darts", fixed_ms=0.05), tmp_path / "run")
    assert "cell_offsets_ms" not in res.genotype.info
    assert res.genotype.predicted_gap_ms == 0.0
    assert res.genotype.predicted_network_ms == pytest.approx(res.genotype.predicted_ms + 0.05)

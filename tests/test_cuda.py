"""The CUDA path on a real GPU; skipped where there is none (CI, this project's CPU machines).

``test_measure_timer.py`` checks with fakes that the CUDA timer brackets a pass with events
and synchronises; these check what fakes cannot: that the events time the GPU's work rather
than the launch, that work queued before a pass is not billed to it, that a label on the GPU
agrees with plain timing of the same fixed path, and that a dataset measured on the GPU says
so in its fingerprint. Run them on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from measure_helpers import one_line_error
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure.block_measure import measure_block, measure_spec
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import fingerprint
from lenna.measure.sampler import Sampler
from lenna.measure.timer import Timer
from lenna.space import Block, get_space

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CYCLES = 10_000_000  # torch.cuda._sleep spins this many GPU clock cycles: a few ms
runner = CliRunner()


def _median(timer: Timer, fn, n: int = 5) -> float:
    return float(np.median([timer(fn) for _ in range(n)]))


def test_events_time_the_gpu_work_not_its_launch():
    """Twice the GPU work reads as twice the time; a timer of the launch alone would read
    the same for both (a kernel launch returns at once)."""
    timer = Timer("cuda")
    for _ in range(3):  # let an idle GPU's clock ramp up: _sleep counts cycles, not time
        timer(lambda: torch.cuda._sleep(CYCLES))
    one = _median(timer, lambda: torch.cuda._sleep(CYCLES))
    two = _median(timer, lambda: torch.cuda._sleep(2 * CYCLES))
    assert 1.7 < two / one < 2.3


def test_work_queued_before_a_pass_is_not_billed_to_it():
    timer = Timer("cuda")
    alone = _median(timer, lambda: torch.cuda._sleep(CYCLES))
    queued = []
    for _ in range(5):
        torch.cuda._sleep(4 * CYCLES)  # earlier work, still running when the pass starts
        queued.append(timer(lambda: torch.cuda._sleep(CYCLES)))
    assert float(np.median(queued)) < 1.3 * alone


def test_timer_on_a_second_index_uses_that_device():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    timer = Timer("cuda:1")
    x = torch.ones(256, 256, device="cuda:1")
    assert timer(lambda: x @ x) > 0


def test_one_hot_label_agrees_with_plain_timing_of_the_same_path():
    """A derived (one-hot) block has one path: its label, without normalisation, must be the
    plain time of that path's forward pass on the GPU."""
    space = get_space("lenna")
    mask = space.op_mask("normal")
    alphas = np.full(space.alpha_shape, -1e4)  # exp(-1e4) == 0: exactly one-hot
    alphas[np.arange(len(mask)), mask.argmax(axis=1)] = 0.0  # each edge's first valid op
    cfg = MeasureConfig(device="cuda", rule="cv", normalise=False)
    m = measure_block(space, "normal", 32, 16, alphas, cfg, seed=0)
    block = Block(space, "normal", 32, "gated", m.alphas).to("cuda").eval()
    block.reset_gates(torch.Generator().manual_seed(0))
    x = tuple(torch.randn(1, 32, 16, 16, device="cuda") for _ in range(space.num_inputs))
    timer = Timer("cuda")
    with torch.inference_mode():
        for _ in range(5):
            block(*x)
        plain_ms = 1e3 * _median(timer, lambda: block(*x), n=51)
    assert m.latency_ms == pytest.approx(plain_ms, rel=0.15)
    assert m.estimate.converged


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_random_block_measures_on_the_gpu(dtype):
    space = get_space("lenna")
    spec = Sampler(space, channels=(8, 64), resolutions=(32,), seed=1)(0)
    m = measure_spec(space, spec, MeasureConfig(device="cuda", dtype=dtype), seed=0)
    assert np.isfinite(m.latency_ms) and m.latency_ms > 0
    assert m.estimate.resets >= 1 and m.estimate.references_ms


def test_fingerprint_names_the_gpu_and_cuda():
    fp = fingerprint("cuda", threads=1)
    assert fp["device"] == "cuda"
    assert fp["device_name"] == torch.cuda.get_device_name(0)
    assert fp["cuda"] == torch.version.cuda
    assert fp["hash"] != fingerprint("cpu", threads=1)["hash"]


def test_cli_measures_on_cuda_and_refuses_to_resume_on_cpu(tmp_path):
    db = tmp_path / "gpu.db"
    tiny = ["--space", "lenna", "--channels", "8:16", "--resolutions", "16", "--rule", "ci"]
    res = runner.invoke(
        app,
        ["measure", "--out", str(db), "-n", "3", "--device", "cuda", "--drift-every", "0", *tiny],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).output)
    assert info["rows"] == 3
    assert info["fingerprint"]["device"] == "cuda"
    assert info["fingerprint"]["cuda"] == torch.version.cuda
    res = runner.invoke(app, ["measure-ops", "--out", str(db), "--passes", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["measure", "--out", str(db), "-n", "4", "--device", "cpu"])
    one_line_error(res, "other settings")


# ---- searching and training on the GPU (the compute device) ------------------------------------
def test_a_preset_shaped_search_step_runs_on_cuda_in_bf16(tmp_path):
    from search_helpers import predictor_folder

    from lenna.search.config import SearchConfig
    from lenna.search.datasets import ImageData
    from lenna.search.network import NetConfig
    from lenna.search.presets import with_preset
    from lenna.search.run import Search

    given = {"epochs": 1, "batch": 8, "amp": "bf16", "lam": 1.0, "device": "cuda"}
    given["predictor"] = str(predictor_folder("darts", "mlp"))
    given["allow_extrapolation"] = True  # the test predictor knows 16×16 and 8×8 only
    given["net"] = {"channels": 8, "cells": 3}
    d = with_preset("darts-cifar10", given)
    cfg = SearchConfig(**{**d, "net": NetConfig(**d["net"])})
    x, y = torch.randn(48, 3, 32, 32), torch.randint(0, 10, (48,))
    s = Search(cfg, ImageData("c", x[:32], y[:32], x[32:], y[32:], 10))
    assert s.data.x_train.is_cuda and next(s.net.parameters()).is_cuda
    row = s.run_epoch()
    assert np.isfinite(row["w_loss"]) and np.isfinite(row["predicted_ms"])
    assert s.net.alphas["normal"].dtype == torch.float32


@pytest.mark.parametrize("kind", ["mlp", "additive", "lut+mlp", "elasticnet", "lut"])
def test_the_predictors_value_and_gradient_on_cuda_equal_the_cpus(kind):
    from search_helpers import predictor_folder

    from lenna.predict.io import load_predictor

    a = torch.randn(15, 11, dtype=torch.float64)
    out = {}
    for dev in ("cpu", "cuda"):
        model = load_predictor(predictor_folder("lenna", kind), space="lenna").to(dev)
        leaf = a.to(dev).requires_grad_(True)
        ms = model.predict(leaf, "normal", 16, 16)
        (g,) = torch.autograd.grad(ms, [leaf])
        out[dev] = (float(ms.detach()), g.cpu())
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-9)
    assert torch.allclose(out["cuda"][1], out["cpu"][1], rtol=1e-7, atol=1e-12)


def test_evaluate_arch_trains_on_cuda_and_times_on_the_labels_device(tmp_path):
    from search_helpers import cheap_genotype

    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout[result.stdout.index("{") :])
    assert res["device"].startswith("cuda") and res["fingerprint"]["device"] == "cpu"


def test_channels_last_bf16_training_runs_on_cuda_and_matches_contiguous():
    from train_helpers import mixed_genotype

    from lenna.search.datasets import ImageData
    from lenna.search.recipe import TrainRecipe
    from lenna.search.train import train_network
    from lenna.search.verify import build

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    data = ImageData("c", x[:48], y[:48], x[48:], y[48:], 10).to("cuda")
    curves = {}
    for last in (False, True):
        torch.manual_seed(0)
        net = build(mixed_genotype(channels=8, cells=3), 16).to("cuda")
        recipe = TrainRecipe(epochs=2, batch=16, amp="bf16", channels_last=last, augment=True)
        recipe = TrainRecipe(
            **{**recipe.to_dict(), "cutout": 8, "drop_path": 0.2, "aux_weight": 0.4}
        )
        rows = []
        res = train_network(net, data, recipe=recipe, on_epoch=lambda *r, rows=rows: rows.append(r))
        assert 0.0 <= res["accuracy"] <= 1.0 and net.stem[0].weight.is_contiguous()
        curves[last] = [loss for _, loss, _ in rows]
    assert all(np.isfinite(curves[True]))
    assert curves[True] == pytest.approx(curves[False], rel=0.05)  # bf16: loose


# ---- the search step as a CUDA graph (lenna.search.graphed) -------------------------------------
# One replay against the eager step from the same state: tests/test_search_graphed.py.
def _graph_config(**kw):
    from search_helpers import tiny_config

    # with _graph_data(), batch 8: 4 steps per epoch; the first captures after 3 eager steps
    return tiny_config(**{"device": "cuda", "amp": "off", "limit": 64, "epochs": 2, **kw})


def _graph_data():
    from lenna.search.datasets import load_data

    return load_data("synthetic", seed=0, limit=64)


def _alphas_close(a: dict, b: dict) -> bool:
    """α of two runs agree within 5 % of their scale: the runs' kernels differ in rounding
    (cuDNN's atomics), and Adam turns a rounding difference in a gradient near 0 into a
    difference up to its learning rate; a step that went wrong differs by far more."""
    return all(
        np.abs(np.asarray(a[k]) - np.asarray(b[k])).max() <= 0.05 * np.abs(np.asarray(b[k])).max()
        for k in ("normal", "reduction")
    )


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_a_graphed_search_takes_the_eager_searchs_steps(amp):
    """Same seed, graphs on and off, two epochs (the second captured again, at the new
    learning rate): the same losses and α within the runs' rounding; a graph was captured and
    replayed, and the latency term (a ``lut`` table indexed on the CPU) stayed outside it."""
    from lenna.search.run import Search

    runs = {}
    for on in (True, False):
        s = Search(_graph_config(cuda_graph=on, amp=amp), _graph_data())
        rows = [s.run_epoch(), s.run_epoch()]
        assert s.graphs is on and (True in s._warmed) is on
        runs[on] = (rows, {k: a.detach().cpu().numpy() for k, a in s.net.alphas.items()})
    for key in ("w_loss", "a_loss", "total_loss", "predicted_ms"):
        got = [r[key] for r in runs[True][0]]
        assert got == pytest.approx([r[key] for r in runs[False][0]], rel=2e-2), key
    assert _alphas_close(runs[True][1], runs[False][1])


def test_a_graphed_search_resumes_from_its_checkpoint(tmp_path):
    """Stopped after epoch 1 and resumed (Adam's step counts come back from the CPU onto the
    GPU, where a capturable Adam keeps them): the run an unstopped one reaches."""
    from search_helpers import Stop, read_alphas, stop_after

    from lenna.search.run import run_search

    cfg, data = _graph_config(epochs=3), _graph_data()
    full = run_search(cfg, tmp_path / "full", data=data, figures=False)
    with pytest.raises(Stop):
        run_search(cfg, tmp_path / "cut", data=data, figures=False, on_epoch=stop_after(1))
    resumed = run_search(cfg, tmp_path / "cut", resume=True, data=data, figures=False)
    assert len(resumed.metrics) == len(full.metrics) == 3
    assert [r["w_loss"] for r in resumed.metrics] == pytest.approx(
        [r["w_loss"] for r in full.metrics], rel=2e-2
    )
    assert _alphas_close(read_alphas(tmp_path / "cut")[-1], read_alphas(tmp_path / "full")[-1])


def test_a_graphed_budget_search_captures_and_moves_its_multiplier():
    """A budget's μ changes every step (dual ascent on the derived network's prediction); it
    is a buffer of the graph, so the search is graphed and μ still moves."""
    from lenna.search.run import Search

    s = Search(_graph_config(lam=0.0, budget_ms=1e-3), _graph_data())  # far under: μ rises
    rows = [s.run_epoch(), s.run_epoch()]
    assert s.graphs and True in s._warmed
    assert 0 < rows[0]["multiplier"] < rows[1]["multiplier"]


def test_a_diverged_graphed_search_stops_in_one_line_at_the_epochs_end():
    """On a GPU α are not checked at every pass (that would stall it): once an epoch."""
    from lenna.errors import InputError
    from lenna.search.run import Search

    s = Search(_graph_config(), _graph_data())
    with torch.no_grad():
        s.net.alphas["normal"][0, 0] = float("nan")
    with pytest.raises(InputError, match="diverged"):
        s.run_epoch()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_graphed_search_on_a_second_gpu_captures_there():
    """Streams and capture follow the search's device, not the current one (cuda:0): a graph
    captured on the wrong device would be empty and its replays would do nothing."""
    from lenna.search.run import Search

    s = Search(_graph_config(device="cuda:1"), _graph_data())
    start = {k: a.detach().clone() for k, a in s.net.alphas.items()}
    rows = [s.run_epoch(), s.run_epoch()]
    assert s.graphs and True in s._warmed and np.isfinite(rows[-1]["w_loss"])
    assert all(not torch.equal(start[k], a) for k, a in s.net.alphas.items())


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_the_graphed_steps_body_never_waits_for_the_gpu(amp):
    """Anything in the step that reads a value back to the host (``.item()``, a check of α, a
    copy from pageable memory) would stop its capture and, eagerly, stall every step; CUDA's
    sync debug mode raises at the first one."""
    from lenna.search.bilevel import latency_grad
    from lenna.search.graphed import GraphedStep
    from lenna.search.run import Search

    s = Search(_graph_config(amp=amp, lam=0.0, budget_ms=0.5), _graph_data())  # μ in the loss
    step = GraphedStep(s.net, s.term, s.w_opt, s.a_opt, 5.0, amp=s.amp, capture=False)
    w, a, _ = s.batches(0)
    d = s.data
    batch_w, batch_a = (d.x_train[w[0]], d.y_train[w[0]]), (d.x_train[a[0]], d.y_train[a[0]])
    step(batch_w, batch_a)  # a first step makes the optimisers' states
    e, e_grads, _ = latency_grad(s.term, dict(s.net.alphas.items()), always=True)
    inp = {"xw": batch_w[0], "yw": batch_w[1], "xa": batch_a[0], "ya": batch_a[1], "e": e}
    inp.update({f"de.{k}": v for k, v in e_grads.items()})
    inp["mu"] = torch.full((), 0.5, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = step._body(inp)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert stats.shape == (6,) and torch.isfinite(stats).all()


@pytest.mark.parametrize("kind", ["lut", "lut+mlp", "additive"])
def test_after_its_first_pass_the_latency_term_never_waits_for_the_gpu(kind):
    """The term runs eagerly, outside the graph, every step: after its first pass (which looks
    a ``lut`` table up on the CPU) its value and α-gradient read nothing back to the host."""
    from search_helpers import predictor

    from lenna.search.bilevel import latency_grad
    from lenna.search.latency import LatencyTerm
    from lenna.search.run import Search

    s = Search(_graph_config(), _graph_data())
    term = LatencyTerm(predictor("lenna", kind), s.space, s.net.specs, 1.0, device="cuda")
    alphas = dict(s.net.alphas.items())
    latency_grad(term, alphas)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        e, grads, _ = latency_grad(term, alphas, always=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(e) and set(grads) == set(alphas)


def test_a_graphed_channels_last_bf16_search_matches_the_eager_contiguous_one():
    """The graph holds the channels-last layout (NHWC views in each weighted edge) and bf16
    autocast: two epochs against the eager, default-layout search of the same seed."""
    from lenna.search.run import Search

    rows = {}
    for graphed in (True, False):
        cfg = _graph_config(amp="bf16", channels_last=graphed, cuda_graph=graphed)
        s = Search(cfg, _graph_data())
        rows[graphed] = [s.run_epoch(), s.run_epoch()]
        assert (True in s._warmed) is graphed
    for key in ("w_loss", "a_loss", "predicted_ms"):
        got = [r[key] for r in rows[True]]
        assert got == pytest.approx([r[key] for r in rows[False]], rel=5e-2), key


# ---- training a derived network as a CUDA graph (lenna.search.train_step; opt-in) -------------
def _train_data(n: int = 48):
    from lenna.search.datasets import ImageData

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n + 16, 3, 32, 32, generator=g), torch.randint(0, 10, (n + 16,), generator=g)
    return ImageData("c", x[:n], y[:n], x[n:], y[n:], 10).to("cuda")


def test_graphed_training_takes_the_eager_trainings_steps():
    """Without drop-path (its masks are random), graphed and eager training of the same seed
    reach the same per-epoch losses within the GPU's rounding; graphs were replayed."""
    from train_helpers import mixed_genotype

    from lenna.search.recipe import TrainRecipe
    from lenna.search.train import train_network
    from lenna.search.verify import build

    curves, used, weights = {}, {}, {}
    for graphed in (True, False):
        torch.manual_seed(0)
        net = build(mixed_genotype(channels=8, cells=3), 16).to("cuda")
        recipe = TrainRecipe(epochs=3, batch=8, amp="off", augment=True, cutout=8,
                             aux_weight=0.4, cuda_graph=graphed)  # fmt: skip
        rows = []
        res = train_network(
            net, _train_data(), recipe=recipe, on_epoch=lambda *r, rows=rows: rows.append(r)
        )
        curves[graphed], used[graphed] = [loss for _, loss, _ in rows], res["cuda_graph"]
        weights[graphed] = [p.detach().cpu() for p in net.parameters()]
    assert used == {True: True, False: False}
    assert curves[True] == pytest.approx(curves[False], rel=2e-2)
    for a, b in zip(weights[True], weights[False], strict=True):  # 3 epochs: 3 captures
        assert (a - b).abs().max() <= 0.05 * b.abs().max() + 1e-6


def test_graphed_training_with_drop_path_bf16_channels_last_runs():
    """Drop-path off in the first epoch, on later (a second graph, its masks drawn in it)."""
    from train_helpers import mixed_genotype

    from lenna.search.recipe import TrainRecipe
    from lenna.search.train import train_network
    from lenna.search.verify import build

    torch.manual_seed(0)
    net = build(mixed_genotype(channels=8, cells=3), 16).to("cuda")
    recipe = TrainRecipe(epochs=3, batch=8, amp="bf16", channels_last=True, augment=True,
                         cutout=8, drop_path=0.3, aux_weight=0.4, cuda_graph=True)  # fmt: skip
    rows = []
    res = train_network(net, _train_data(), recipe=recipe, on_epoch=lambda *r: rows.append(r))
    assert res["cuda_graph"] and all(np.isfinite(loss) for _, loss, _ in rows)
    assert 0.0 <= res["accuracy"] <= 1.0


def test_the_training_steps_body_never_waits_for_the_gpu():
    from train_helpers import mixed_genotype

    from lenna.search.drop_path import DropPath
    from lenna.search.recipe import TrainRecipe
    from lenna.search.train import optimiser, training_extras
    from lenna.search.train_step import TrainStep
    from lenna.search.verify import build

    torch.manual_seed(0)
    net = build(mixed_genotype(channels=8, cells=3), 16).to("cuda")
    d = _train_data()
    recipe = TrainRecipe(batch=8, aux_weight=0.4, drop_path=0.3)
    with training_extras(net, recipe) as (drop, aux):
        assert isinstance(drop, DropPath)
        drop.prob = 0.2
        params = [*net.parameters(), *aux.parameters()]
        opt, _ = optimiser(params, recipe)
        step = TrainStep(net, aux, opt, params, 0.4, 5.0, torch.bfloat16)
        net.train(), aux.train()
        step(d.x_train[:8], d.y_train[:8])  # a first step makes SGD's state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            stats = step._body({"x": d.x_train[8:16], "y": d.y_train[8:16]})
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert stats.shape == (2,) and torch.isfinite(stats).all()

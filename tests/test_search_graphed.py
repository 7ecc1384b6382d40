"""The search step a CUDA graph holds (``lenna.search.graphed``), checked on the CPU: its body,
run eagerly, takes exactly the eager step; where a graph does not apply the search is eager;
a failed capture falls back with a warning; the option round-trips. Capture and replay on a
GPU are checked in ``test_cuda.py``."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from search_helpers import batches, optimisers, run, term_for, tiny_config, tiny_net
from typer.testing import CliRunner

from lenna.cli import app
from lenna.search import graphed
from lenna.search.bilevel import search_step
from lenna.search.config import SearchConfig
from lenna.search.graphed import GraphedStep, graph_applies, set_capturable
from lenna.search.run import Search

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def _pair(lam: float | None, mu: float | None = None):
    """Two identical (network, term, optimisers) set-ups; ``mu``: a budget's term at that μ."""
    out = []
    for _ in range(2):
        net = tiny_net(seed=3)
        term = term_for(net, lam=lam) if lam is not None else None
        if mu is not None:
            term = term_for(net, budget_ms=0.5, fixed_ms=0.05)
            term.multiplier = mu
        out.append((net, term, *optimisers(net)))
    return out


def _state(net, w_opt, a_opt) -> list[torch.Tensor]:
    s = [p.detach().clone() for p in net.state_dict().values()]
    for opt in (w_opt, a_opt):
        for st in opt.state.values():
            s += [v.detach().clone() for v in st.values() if isinstance(v, torch.Tensor)]
    return s


@pytest.mark.parametrize(("lam", "arch"), [(1.0, True), (0.0, True), (None, True), (1.0, False)])
@pytest.mark.slow
def test_the_graph_body_takes_exactly_the_eager_step(lam, arch):
    """Three steps of the body (latency term outside, chain rule inside) against
    ``search_step``: the same weights, α, BN statistics, optimiser states and statistics."""
    (n1, t1, w1, a1), (n2, t2, w2, a2) = _pair(lam)
    step = GraphedStep(n2, t2, w2, a2, 5.0, arch=arch, capture=False)
    bw, ba = batches(8)
    for _ in range(3):
        want = search_step(n1, t1, w1, a1, bw, ba, 5.0, arch=arch)
        got = step(bw, ba)
        for f in ("w_loss", "w_correct", "a_loss", "a_correct", "total_loss"):
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-12), f
        if t1 is None:
            assert got.expected_ms != got.expected_ms  # nan: no term, nothing predicted
        else:
            assert got.expected_ms == pytest.approx(want.expected_ms, rel=1e-12)
        assert isinstance(got.w_correct, int) and got.batch == want.batch == 8
    s1, s2 = _state(n1, w1, a1), _state(n2, w2, a2)
    assert len(s1) == len(s2)
    assert all(torch.equal(x, y) for x, y in zip(s1, s2, strict=True))
    moved = not torch.equal(n1.alphas["normal"], tiny_net(seed=3).alphas["normal"])
    assert moved == arch  # the α step ran only where asked


@pytest.mark.parametrize("mu", [0.0, 0.7])
@pytest.mark.slow
def test_with_a_budget_the_body_takes_exactly_the_eager_step(mu):
    """A budget's μ is a buffer of the graph and its term is always in the graph's loss: at
    μ = 0 it adds exactly nothing (the eager step leaves the term out), above 0 it is the
    eager Lagrangian. μ changes between steps, as the search's dual ascent changes it."""
    (n1, t1, w1, a1), (n2, t2, w2, a2) = _pair(None, mu)
    step = GraphedStep(n2, t2, w2, a2, 5.0, capture=False)
    assert step.budget
    bw, ba = batches(8)
    for k in range(3):
        t1.multiplier = t2.multiplier = mu * k  # 0 first: the term off, then on
        want = search_step(n1, t1, w1, a1, bw, ba, 5.0)
        got = step(bw, ba)
        for f in ("w_loss", "a_loss", "total_loss", "expected_ms"):
            assert getattr(got, f) == getattr(want, f), (k, f)
    s1, s2 = _state(n1, w1, a1), _state(n2, w2, a2)
    assert all(torch.equal(x, y) for x, y in zip(s1, s2, strict=True))


@pytest.mark.slow
def test_a_failed_capture_warns_once_with_its_cause_and_steps_eagerly(monkeypatch):
    """Capture fails (as on an op that reads back to the host; CUDA then reports the end of
    capture failing "due to a previous error"): the warning names the first error, the step is
    still taken, eagerly and exactly, and later steps do not try again."""

    class Fake:
        def __init__(self, *a, **k):
            pass

    @contextlib.contextmanager
    def failing(_graph, stream=None):
        try:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        except RuntimeError:
            raise RuntimeError("operation failed due to a previous error during capture")  # noqa: B904
        yield

    monkeypatch.setattr(graphed.torch.cuda, "CUDAGraph", Fake)
    monkeypatch.setattr(graphed.torch.cuda, "Stream", Fake)
    monkeypatch.setattr(graphed.torch.cuda, "graph", failing)
    monkeypatch.setattr(graphed.torch.cuda, "synchronize", lambda *a: None)
    (n1, t1, w1, a1), (n2, t2, w2, a2) = _pair(1.0)
    step = GraphedStep(n2, t2, w2, a2, 5.0, capture=True, eager_steps=0)
    bw, ba = batches(8)
    with pytest.warns(UserWarning, match="could not be captured.*not permitted when") as rec:
        got = [step(bw, ba) for _ in range(3)]
    assert len(rec) == 1 and not step.capture and not step.captured
    want = [search_step(n1, t1, w1, a1, bw, ba, 5.0) for _ in range(3)]
    assert [g.w_loss for g in got] == pytest.approx([w.w_loss for w in want], rel=1e-12)
    assert torch.equal(n1.alphas["normal"], n2.alphas["normal"])


@pytest.mark.parametrize(
    ("device", "mode", "unrolled", "applies"),
    [
        ("cuda", "weighted", False, True),
        ("cuda:1", "weighted", False, True),
        ("cpu", "weighted", False, False),
        ("cuda", "gated", False, False),  # a new path each step
        ("cuda", "weighted", True, False),  # second order
    ],
)
def test_where_a_graph_applies(device, mode, unrolled, applies):
    assert graph_applies(torch.device(device), mode, unrolled) is applies


def test_a_search_on_the_cpu_is_eager_and_its_adam_is_not_capturable():
    s = Search(tiny_config(device="cpu"))  # on a GPU machine auto is CUDA
    assert s.cfg.cuda_graph and not s.graphs
    assert not s.a_opt.param_groups[0]["capturable"]
    assert not isinstance(s.stepper(True, torch.Generator()), GraphedStep)


@pytest.mark.parametrize("saved_capturable", [False, True])
def test_a_checkpoint_loads_into_the_adam_the_search_wants(saved_capturable):
    """A run folder written with or without graphs continues with or without them: after
    loading, Adam's flag is this search's and its step counts (the bias correction) are kept,
    as float32 where that flag wants them."""
    src = Search(tiny_config(device="cpu", epochs=2))
    src.run_epoch()
    set_capturable(src.a_opt, saved_capturable)  # as a GPU run would have saved it
    tensors, meta = src.state()
    want = [float(src.a_opt.state[p]["step"]) for p in src.net.alphas.values()]
    assert want[0] >= 1
    for graphs in (False, True):
        dst = Search(tiny_config(device="cpu", epochs=2))
        dst.graphs = graphs  # as on a GPU (a CPU search never captures)
        dst.load_state(tensors, meta)
        assert dst.a_opt.param_groups[0]["capturable"] is graphs
        steps = [dst.a_opt.state[p]["step"] for p in dst.net.alphas.values()]
        assert [float(t) for t in steps] == want
        assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in steps)


def test_each_kind_of_step_warms_up_fully_before_its_first_capture():
    """Weight warm-up epochs (no α step) and search epochs capture different graphs: each
    kind gets the full eager warm-up before its first capture, later ones one step."""
    s = Search(tiny_config(device="cpu"))
    s.graphs = True  # the bookkeeping of a GPU search
    g = torch.Generator()
    assert s.stepper(False, g).eager_left == graphed.FIRST_EAGER
    done = s.stepper(False, g)
    done.captured = True
    s._after_epoch(done)
    assert s.stepper(False, g).eager_left == graphed.LATER_EAGER
    assert s.stepper(True, g).eager_left == graphed.FIRST_EAGER  # the α step: not yet
    failed = s.stepper(True, g)
    failed.capture = False
    s._after_epoch(failed)
    assert not s.graphs and not s.a_opt.param_groups[0]["capturable"]
    assert not isinstance(s.stepper(True, g), GraphedStep)


def test_set_capturable_moves_adam_step_counts_and_sets_the_flag():
    net = tiny_net()
    _, a_opt = optimisers(net)
    for a in net.alphas.values():
        a.grad = torch.ones_like(a)
    a_opt.step()
    set_capturable(a_opt, True)
    assert a_opt.param_groups[0]["capturable"]
    steps = [a_opt.state[p]["step"] for p in net.alphas.values()]
    assert all(s.dtype == torch.float32 and float(s) == 1.0 for s in steps)
    set_capturable(a_opt, False)
    assert not a_opt.param_groups[0]["capturable"]
    assert all(a_opt.state[p]["step"].device.type == "cpu" for p in net.alphas.values())
    w_opt, _ = optimisers(net)
    set_capturable(w_opt, True)  # SGD has no such flag: left as it is
    assert "capturable" not in w_opt.param_groups[0]


@pytest.mark.slow
def test_the_option_round_trips_through_the_config_and_the_run_folder(tmp_path):
    cfg = tiny_config(cuda_graph=False, epochs=2)
    assert SearchConfig.from_dict(cfg.to_dict()).cuda_graph is False
    older = {k: v for k, v in cfg.to_dict().items() if k != "cuda_graph"}
    assert SearchConfig.from_dict(older).cuda_graph is True  # a folder from before: on
    run(cfg, tmp_path / "r")
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["cuda_graph"] is False


@pytest.mark.slow
def test_the_cli_records_no_cuda_graph_and_resumes_with_either(tmp_path):
    from search_helpers import predictor_folder

    out = tmp_path / "run"
    args = ["search", "--out", str(out), "--data", "synthetic", "--limit", "32", "--batch", "8",
            "--channels", "8", "--cells", "2", "--epochs", "1", "--predictor",
            str(predictor_folder()), "--lam", "0.5", "--fixed-ms", "0.05"]  # fmt: skip
    r = runner.invoke(app, [*args, "--no-cuda-graph"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["cuda_graph"] is False
    r = runner.invoke(app, ["search", "--out", str(out), "--resume", "--cuda-graph"])
    assert r.exit_code == 0, r.output  # a speed setting: not a different search
    r = runner.invoke(app, ["search", "--help"])
    assert "--cuda-graph" in r.output


def _tensors(s: Search) -> list[torch.Tensor]:
    """Every tensor a step changes: weights, α, BN statistics, both optimisers' states."""
    out = list(s.net.state_dict().values())
    for opt in (s.w_opt, s.a_opt):
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state.get(p, {})
                out += [st[k] for k in sorted(st) if isinstance(st[k], torch.Tensor)]
    return out


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
@pytest.mark.parametrize("budget", [False, True])
@pytest.mark.slow
def test_a_replayed_step_is_the_eager_step_from_the_same_state(device, budget):
    """An epoch's graph (three eager steps, then capture), then the next epoch's at a new
    learning rate (one eager step, then capture), and in it a step on new batches after α
    were moved in place: replayed (on the CPU: the body run eagerly) against the eager step
    taken from the same state, put back in place. On a GPU this shows a replay reads the new
    batches, the new α (through the latency term's buffers), the new rate and a budget's new μ
    (0 at capture, as at a search's start), not what it was captured with; the CPU run checks
    the comparison itself."""
    from search_helpers import tiny_config

    from lenna.search.datasets import load_data

    d = load_data("synthetic", seed=0, limit=96)
    kw = {"lam": 0.0, "budget_ms": 0.5} if budget else {}
    s = Search(tiny_config(device=device, amp="off", limit=96, **kw), d)
    w, a, _ = s.batches(0)

    def batch(i):
        return (s.data.x_train[w[i]], s.data.y_train[w[i]]), (
            s.data.x_train[a[i]],
            s.data.y_train[a[i]],
        )

    cuda = device == "cuda"
    first = GraphedStep(s.net, s.term, s.w_opt, s.a_opt, 5.0, amp=s.amp, capture=cuda)
    for i in range(4):
        first(*batch(i))
    assert first.captured is cuda
    for group in s.w_opt.param_groups:
        group["lr"] *= 0.3  # as the scheduler does between epochs
    step = GraphedStep(s.net, s.term, s.w_opt, s.a_opt, 5.0, amp=s.amp, capture=cuda, eager_steps=1)
    step(*batch(4))
    step(*batch(5))  # the capture
    with torch.no_grad():
        for alpha in s.net.alphas.values():
            alpha.add_(torch.linspace(-0.5, 0.5, alpha.numel(), device=device).view_as(alpha))
    if budget:
        assert step.budget and s.term.multiplier == 0.0
        s.term.multiplier = 0.7  # as the dual ascent moves it after a step
    before = [t.detach().clone() for t in _tensors(s)]
    got = step(*batch(0))
    replayed = [t.detach().clone() for t in _tensors(s)]
    with torch.no_grad():
        for t, b in zip(_tensors(s), before, strict=True):
            t.copy_(b)  # in place: the graph's tensors are these
    eager = GraphedStep(s.net, s.term, s.w_opt, s.a_opt, 5.0, amp=s.amp, capture=False)
    want = eager(*batch(0))
    rel, atol = (1e-4, 1e-6) if cuda else (0.0, 0.0)  # cuDNN's atomics round differently
    for f in ("w_loss", "a_loss", "total_loss", "expected_ms", "w_correct", "a_correct"):
        assert getattr(got, f) == pytest.approx(getattr(want, f), rel=rel, abs=atol), f
    now = _tensors(s)
    assert len(now) == len(replayed) > 2 * len(list(s.net.parameters()))
    for x, y in zip(replayed, now, strict=True):
        assert torch.allclose(x.double(), y.double(), rtol=rel, atol=atol)
    moved = [not torch.equal(x, b) for x, b in zip(replayed, before, strict=True)]
    assert sum(moved) > len(moved) // 2  # the step changed the state it was compared on


def test_the_derived_networks_latency_is_predicted_once_per_network(monkeypatch):
    """A budget asks for the derived network's predicted latency after every step; the
    derived cells rarely change, so each network is predicted once — again when its cells,
    or what the network adds outside them, change."""
    from lenna.search import run as run_module
    from lenna.search.budget import derived_cells, network_ms

    s = Search(tiny_config(device="cpu", lam=0.0, budget_ms=1.0))
    calls = []
    monkeypatch.setattr(
        run_module, "network_ms", lambda term, cells: calls.append(1) or network_ms(term, cells)
    )
    first = s.derived_ms()
    want = network_ms(s.term, derived_cells(s.term, dict(s.net.alphas.items())))
    assert first == s.derived_ms() == want and len(calls) == 1
    s.term.fixed_ms += 1.0
    assert s.derived_ms() == pytest.approx(first + 1.0) and len(calls) == 2
    with torch.no_grad():
        s.net.alphas["normal"].copy_(-s.net.alphas["normal"] * 1e3)  # another argmax
    assert s.derived_ms() != first + 1.0 and len(calls) == 3

"""The training step a CUDA graph can hold (``lenna.search.train_step``), checked on the CPU:
it is the step written out (forward with the auxiliary head, loss, backward, clipping, SGD);
a failed capture falls back with a warning to the same training; the option round-trips.
Capture and replay on a GPU are checked in ``test_cuda.py``."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
import torch.nn.functional as F
from search_helpers import cheap_genotype
from train_helpers import mixed_genotype
from typer.testing import CliRunner

from lenna.cli import app
from lenna.search.datasets import ImageData
from lenna.search.recipe import TrainRecipe
from lenna.search.train import optimiser, train_network, training_extras
from lenna.search.train_step import TrainStep
from lenna.search.verify import build

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def _data() -> ImageData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 32, 32, generator=g), torch.randint(0, 10, (48,), generator=g)
    return ImageData("c", x[:32], y[:32], x[32:], y[32:], 10)


def _net():
    torch.manual_seed(0)
    return build(mixed_genotype(channels=8, cells=3), 16)


def test_the_training_step_is_the_step_written_out():
    """Three steps of :class:`TrainStep` (with the auxiliary head) against the step written
    out by hand: the same losses, correct counts and weights, exactly."""
    recipe = TrainRecipe(batch=8, aux_weight=0.4)
    d = _data()
    nets = [_net(), _net()]
    got, want = [], []
    with contextlib.ExitStack() as stack:
        auxes = []
        for net in nets:
            torch.manual_seed(1)  # the same auxiliary head for both
            auxes.append(stack.enter_context(training_extras(net, recipe))[1])
        aux0, aux1 = auxes
        p0 = [*nets[0].parameters(), *aux0.parameters()]
        p1 = [*nets[1].parameters(), *aux1.parameters()]
        opt0, _ = optimiser(p0, recipe)
        opt1, _ = optimiser(p1, recipe)
        step = TrainStep(nets[0], aux0, opt0, p0, 0.4, recipe.grad_clip, None)
        for m in (*nets, aux0, aux1):
            m.train()
        for i in range(3):
            x, y = d.x_train[8 * i : 8 * i + 8], d.y_train[8 * i : 8 * i + 8]
            got.append(step(x, y))
            logits = nets[1](x)
            main = F.cross_entropy(logits, y)
            loss = main + 0.4 * F.cross_entropy(aux1.logits(), y)
            opt1.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(p1, recipe.grad_clip)
            opt1.step()
            want.append((float(main.detach()), int((logits.argmax(1) == y).sum())))
    assert got == want
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))


def test_a_failed_training_capture_warns_once_and_trains_as_eagerly(monkeypatch):
    """Capture fails on its first try: one warning naming the error, and the network trains
    to exactly the weights of a training that never tried."""
    from lenna.search import replay

    class Fake:
        def __init__(self, *a, **k):
            pass

    @contextlib.contextmanager
    def failing(_graph, stream=None):
        raise RuntimeError("operation not permitted when stream is capturing")
        yield

    results = {}
    for tries in (False, True):
        net, d = _net(), _data()
        recipe = TrainRecipe(batch=8, epochs=1, aux_weight=0.4)
        opt_net = [*net.parameters()]
        with training_extras(net, recipe) as (_, aux):
            params = [*opt_net, *aux.parameters()]
            opt, _ = optimiser(params, recipe)
            step = TrainStep(net, aux, opt, params, 0.4, 5.0, None, capture=tries, eager_steps=1)
            net.train(), aux.train()
            with monkeypatch.context() as m:
                m.setattr(replay.torch.cuda, "CUDAGraph", Fake)
                m.setattr(replay.torch.cuda, "Stream", Fake)
                m.setattr(replay.torch.cuda, "graph", failing)
                m.setattr(replay.torch.cuda, "synchronize", lambda *a: None)
                m.setattr(replay.torch.cuda, "current_stream", lambda *a: Fake())
                m.setattr(replay.torch.cuda, "stream", lambda s: contextlib.nullcontext())
                Fake.wait_stream = lambda self, other: None
                ctx = (
                    pytest.warns(UserWarning, match="training step could not be captured")
                    if tries
                    else contextlib.nullcontext()
                )
                with ctx as rec:
                    stats = [
                        step(d.x_train[8 * i : 8 * i + 8], d.y_train[8 * i : 8 * i + 8])
                        for i in range(4)
                    ]
            assert not step.captured
            assert not tries or len(rec) == 1  # once, not at every later step
        results[tries] = (stats, [p.detach().clone() for p in opt_net])
    assert results[True][0] == results[False][0]
    assert all(torch.equal(a, b) for a, b in zip(results[True][1], results[False][1], strict=True))


def test_on_the_cpu_no_graph_is_tried_and_the_result_says_so():
    res = train_network(_net(), _data(), recipe=TrainRecipe(batch=8, epochs=1, cuda_graph=True))
    assert res["cuda_graph"] is False and 0.0 <= res["accuracy"] <= 1.0


def test_the_option_round_trips_and_defaults_off():
    assert TrainRecipe().cuda_graph is False  # opt-in until it has run on a GPU
    r = TrainRecipe(cuda_graph=True)
    assert TrainRecipe.from_dict(r.to_dict()) == r
    older = {k: v for k, v in r.to_dict().items() if k != "cuda_graph"}
    assert TrainRecipe.from_dict(older).cuda_graph is False


def test_evaluate_arch_takes_cuda_graph_and_records_it(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    r = runner.invoke(app, [*args, "--cuda-graph", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{") :])
    assert res["train"]["cuda_graph"] is True and res["cuda_graph_used"] is False


def _tensors(net, aux, opt) -> list[torch.Tensor]:
    """Every tensor a training step changes: the network's, the head's, SGD's momenta."""
    out = [*net.state_dict().values(), *aux.state_dict().values()]
    for st in opt.state.values():
        out += [v for v in st.values() if isinstance(v, torch.Tensor)]
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
def test_a_replayed_training_step_is_the_eager_step_from_the_same_state(device):
    """Four steps (three eager, then capture on a GPU), then a fifth on a new batch: replayed
    (on the CPU: run eagerly) against the eager step from the same state, put back in place.
    No drop-path (its masks are random); the auxiliary head on. On a GPU this shows a replay
    reads the new batch and the weights as they are now; the CPU run checks the comparison."""
    cuda = device == "cuda"
    net, d = _net().to(device), _data().to(device)
    recipe = TrainRecipe(batch=8, aux_weight=0.4)
    with training_extras(net, recipe) as (_, aux):
        params = [*net.parameters(), *aux.parameters()]
        opt, _ = optimiser(params, recipe)
        net.train(), aux.train()
        step = TrainStep(net, aux, opt, params, 0.4, 5.0, None, capture=cuda)
        batches = [(d.x_train[8 * i : 8 * i + 8], d.y_train[8 * i : 8 * i + 8]) for i in range(4)]
        for x, y in batches:
            step(x, y)
        assert step.captured is cuda
        x, y = d.x_train[:8].flip(0), d.y_train[:8].flip(0)  # a batch the capture never saw
        before = [t.detach().clone() for t in _tensors(net, aux, opt)]
        got = step(x, y)
        replayed = [t.detach().clone() for t in _tensors(net, aux, opt)]
        with torch.no_grad():
            for t, b in zip(_tensors(net, aux, opt), before, strict=True):
                t.copy_(b)
        want = TrainStep(net, aux, opt, params, 0.4, 5.0, None, capture=False)(x, y)
        rel, atol = (1e-4, 1e-6) if cuda else (0.0, 0.0)
        assert got[0] == pytest.approx(want[0], rel=rel, abs=atol) and got[1] == want[1]
        now = _tensors(net, aux, opt)
        for a, b in zip(replayed, now, strict=True):
            assert torch.allclose(a.double(), b.double(), rtol=rel, atol=atol)
        assert sum(not torch.equal(a, b) for a, b in zip(replayed, before, strict=True)) > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_each_replay_draws_new_drop_path_masks():
    """With the weights held still (SGD at lr 0), the same batch replayed twice gives two
    losses: the masks are drawn anew in each replay, not frozen at capture."""
    net, d = _net().to("cuda"), _data().to("cuda")
    recipe = TrainRecipe(batch=8, drop_path=0.5)
    with training_extras(net, recipe) as (drop, _):
        drop.prob = 0.5
        params = list(net.parameters())
        opt = torch.optim.SGD(params, lr=0.0)
        net.train()
        step = TrainStep(net, None, opt, params, 0.0, 5.0, None, capture=True, eager_steps=1)
        x, y = d.x_train[:8], d.y_train[:8]
        losses = [step(x, y)[0] for _ in range(5)]  # eager, capture, three replays
    assert step.captured
    assert len(set(losses[2:])) == 3


def test_each_kind_of_training_step_warms_up_fully_before_its_first_capture(monkeypatch):
    """Epochs without drop-path (the first) and with it capture different graphs: each kind
    gets the full eager warm-up before its first capture, later epochs one step; each epoch
    makes a new step (its learning rate and drop-path probability are baked in)."""
    from lenna.search import train as train_module
    from lenna.search.replay import FIRST_EAGER, LATER_EAGER

    made = []

    class Spy(TrainStep):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append((self.capture, self.eager_left))

        def run(self, inputs):  # as a GPU would: captured once its warm-up is over
            self.eager_left -= 1
            self.captured |= self.capture and self.eager_left < 0
            return self._body(inputs)

    monkeypatch.setattr(train_module, "TrainStep", Spy)
    monkeypatch.setattr(train_module, "graphs_apply", lambda recipe, device: True)
    recipe = TrainRecipe(batch=8, epochs=4, drop_path=0.2, cuda_graph=True)
    res = train_network(_net(), _data(), recipe=recipe)
    assert made == [
        (True, FIRST_EAGER),
        (True, FIRST_EAGER),
        (True, LATER_EAGER),
        (True, LATER_EAGER),
    ]
    assert res["cuda_graph"] is True

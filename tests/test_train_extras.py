"""What the training of a derived network adds for its length only — cutout, drop-path, the
auxiliary head — and the channels-last memory layout, which must not change the loss."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from search_helpers import run, tiny_config, tiny_data
from train_helpers import mixed_genotype

from lenna.search.augment import cutout
from lenna.search.auxiliary import Auxiliary
from lenna.search.datasets import ImageData
from lenna.search.drop_path import DropPath, droppable_edges
from lenna.search.folder import check_folder, stored_config
from lenna.search.network import NetConfig
from lenna.search.recipe import TrainRecipe
from lenna.search.run import Search
from lenna.search.train import train_network
from lenna.search.verify import build

pytestmark = pytest.mark.usefixtures("single_thread")
SMALL = NetConfig(channels=2, cells=2)  # a supernet of the darts space that runs in a second
# the narrowest darts supernet torch's CPU kernels run channels-last (see check_channels_last)
SMALL_LAST = NetConfig(channels=4, cells=2)


def _net(seed: int = 0, **shape):
    torch.manual_seed(seed)
    return build(mixed_genotype(**shape), 8)


def _data(n: int = 16) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return ImageData("c", x, y, x[:8], y[:8], 10)


# ---- cutout ----------------------------------------------------------------------------
def test_cutout_zeroes_one_square_of_the_given_side_in_every_channel():
    x = torch.ones(64, 3, 32, 32)
    y = cutout(x, torch.Generator().manual_seed(0), 8)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    full = 0
    for img in y[:, 0]:
        rows = torch.nonzero((img == 0).any(1)).flatten()
        cols = torch.nonzero((img == 0).any(0)).flatten()
        h, w = len(rows), len(cols)
        assert 0 < h <= 8 and 0 < w <= 8 and int((img == 0).sum()) == h * w  # one rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
        assert h == 8 or rows.min() == 0 or rows.max() == 31  # clipped only at a border
        assert w == 8 or cols.min() == 0 or cols.max() == 31
        full += (h, w) == (8, 8)
    assert full > 10  # most squares lie inside the image
    again = cutout(x, torch.Generator().manual_seed(0), 8)
    assert torch.equal(y, again)  # the generator decides


def test_cutout_keeps_the_dtype_and_the_values_outside_the_square():
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = cutout(x, torch.Generator().manual_seed(1), 5)
    assert y.dtype == torch.float64
    kept = y != 0
    assert torch.equal(y[kept], x[kept]) and int((~kept).sum()) <= 4 * 3 * 25


# ---- drop-path --------------------------------------------------------------------------
def test_drop_path_skips_identity_edges():
    net = _net()
    edges = droppable_edges(net)
    ops = {type(e.ops[0]).__name__ for e in edges}
    assert "Identity" not in ops and edges
    fixed = [m for m in net.modules() if type(m).__name__ == "MixedEdge"]
    identities = [e for e in fixed if isinstance(e.ops[0], torch.nn.Identity)]
    assert identities and len(edges) + len(identities) == len(fixed)


def test_drop_path_zeros_whole_paths_in_training_and_is_identity_in_eval():
    net = _net()
    edge = droppable_edges(net)[0]
    x = torch.randn(64, _in_channels(edge), 32, 32)
    edge.eval()
    plain = edge(x)
    drop = DropPath(net, prob=0.5)
    assert torch.equal(edge(x), plain)  # eval: nothing dropped
    edge.train()
    torch.manual_seed(0)
    plain_train = copy.deepcopy(edge.ops[0])(x)  # BN on batch statistics, as in training
    out = edge(x)
    zero = (out == 0).flatten(1).all(1)
    assert 10 < int(zero.sum()) < 54  # about half the images dropped
    torch.testing.assert_close(out[~zero], plain_train[~zero] * 2)  # kept: scaled by 1/(1-p)
    drop.prob = 0.0
    torch.testing.assert_close(edge(x), plain_train)
    drop.remove()
    drop.prob = 0.5
    torch.testing.assert_close(edge(x), plain_train)  # removed: the plain edge


def _in_channels(edge) -> int:
    conv = next(m for m in edge.modules() if isinstance(m, torch.nn.Conv2d))
    return conv.in_channels


# ---- auxiliary head ---------------------------------------------------------------------
def test_the_auxiliary_head_reads_training_passes_only_and_leaves_no_trace():
    net = _net(cells=3)
    before = set(net.state_dict())
    aux = Auxiliary(net)
    x = torch.randn(4, 3, 32, 32)
    net.train()
    logits = net(x)
    assert logits.shape == (4, 10) and aux.logits().shape == (4, 10)
    net.eval()
    net(x)
    with pytest.raises(RuntimeError, match="no training-mode forward pass"):
        aux.logits()  # an evaluation pass gives the head nothing
    aux.remove()
    net.train()
    net(x)
    with pytest.raises(RuntimeError):
        aux.logits()
    assert set(net.state_dict()) == before  # not a part of the network
    assert not any(m._forward_hooks for m in net.modules())


def test_training_with_the_extras_returns_the_plain_network():
    net = _net(cells=3)
    keys, n_params = set(net.state_dict()), sum(p.numel() for p in net.parameters())
    recipe = TrainRecipe(epochs=2, batch=8, augment=True, cutout=8, drop_path=0.3, aux_weight=0.4)
    res = train_network(net, _data(), recipe=recipe)
    assert 0.0 <= res["accuracy"] <= 1.0
    assert set(net.state_dict()) == keys and sum(p.numel() for p in net.parameters()) == n_params
    assert not any(m._forward_hooks for m in net.modules())  # timing and export see the plain net


def test_the_auxiliary_loss_trains_the_cells_below_it():
    """With the head, the loss has another path into the cells below 2/3 depth: their
    gradient differs from training without it."""
    grads = []
    for weight in (0.0, 0.4):
        net = _net(cells=3)
        net.train()
        aux = Auxiliary(net) if weight else None
        x, y = _data().x_train[:8], _data().y_train[:8]
        loss = F.cross_entropy(net(x), y)
        if aux is not None:
            loss = loss + weight * F.cross_entropy(aux.logits(), y)
        loss.backward()
        grads.append(net.stem[0].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


# ---- channels-last ----------------------------------------------------------------------
def test_channels_last_gives_the_same_loss_and_gradients():
    net = _net(cells=3)
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x, y = _data().x_train[:8], _data().y_train[:8]
    losses, grads = [], []
    for model, batch in ((net, x), (last, x.contiguous(memory_format=torch.channels_last))):
        model.train()
        loss = F.cross_entropy(model(batch), y)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.contiguous() for p in model.parameters()])
    assert last.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_channels_last_training_matches_and_hands_back_a_contiguous_network():
    curves = {}
    for last in (False, True):
        net, rows = _net(cells=3), []
        recipe = TrainRecipe(epochs=2, batch=8, aux_weight=0.4, channels_last=last)
        train_network(net, _data(), recipe=recipe, on_epoch=lambda *r, rows=rows: rows.append(r))
        curves[last] = [loss for _, loss, _ in rows]
        assert net.stem[0].weight.is_contiguous()
    assert curves[True] == pytest.approx(curves[False], rel=1e-4)


def test_a_channels_last_search_epoch_gives_the_contiguous_ones_loss(tmp_path):
    rows = {}
    for last in (False, True):
        cfg = tiny_config(
            space="darts",
            predictor=None,
            lam=0.0,
            channels_last=last,
            net=SMALL_LAST,
            device="cpu",  # on CUDA, cuDNN's TF32 kernels differ by layout (test_cuda.py)
        )
        s = Search(cfg, tiny_data())
        rows[last] = s.run_epoch()
        if last:
            conv = next(m for m in s.net.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for key in ("w_loss", "a_loss", "w_acc"):
        assert rows[True][key] == pytest.approx(rows[False][key], rel=1e-4)


def test_a_search_may_resume_in_another_memory_layout(tmp_path):
    run(tiny_config(space="darts", predictor=None, lam=0.0, net=SMALL), tmp_path / "r")
    stored = stored_config(tmp_path / "r")
    resumed = check_folder(tmp_path / "r", replace(stored, channels_last=True), resume=True)
    assert resumed.channels_last is True


def test_a_config_stored_before_channels_last_loads_with_it_off():
    from lenna.search.config import SearchConfig

    d = tiny_config().to_dict()
    del d["channels_last"]
    assert SearchConfig.from_dict(d).channels_last is False


@pytest.mark.slow
def test_search_records_channels_last_and_resumes_without_it(tmp_path):
    from measure_helpers import all_text
    from typer.testing import CliRunner

    from lenna.cli import app

    out = tmp_path / "r"
    args = ["search", "--out", str(out), "--space", "darts", "--data", "synthetic"]
    args += ["--limit", "32", "--epochs", "1", "--cells", "2", "--batch", "8"]
    runner = CliRunner()
    narrow = runner.invoke(app, [*args, "--channels", "3", "--channels-last", "--device", "cpu"])
    assert narrow.exit_code == 2 and "crash on its 1x1 stride-2" in all_text(narrow)
    assert not (out / "config.json").exists()
    result = runner.invoke(app, [*args, "--channels", "4", "--channels-last", "--device", "cpu"])
    assert result.exit_code == 0, all_text(result)
    assert stored_config(out).channels_last is True
    again = runner.invoke(app, ["search", "--out", str(out), "--resume", "--no-channels-last"])
    assert again.exit_code == 0, all_text(again)


def test_a_refused_channels_last_training_leaves_the_network_as_given():
    """The refusal comes before drop-path's hooks or the auxiliary head are attached."""
    from search_helpers import cheap_genotype

    from lenna.errors import InputError

    g = cheap_genotype("darts")
    net = build(g, net=replace(g.net, channels=2))
    recipe = TrainRecipe(epochs=1, batch=8, drop_path=0.2, aux_weight=0.4, channels_last=True)
    with pytest.raises(InputError, match="crash on its 1x1 stride-2"):
        train_network(net, _data(), recipe=recipe)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())

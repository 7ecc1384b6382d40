"""``additive``'s ensemble: members are independent networks, stacked, early-stopped one by one,
averaged in ms (so still linear in p); a file saved before the option loads as one member."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from predict_helpers import SMALL_HP, drop_param, random_alphas, synthetic_data
from safetensors.torch import load_file, save_file

from lenna.errors import InputError
from lenna.predict import load_predictor, save_predictor, train_predictor
from lenna.predict.stacked import StackedMLP

HP = {**SMALL_HP["additive"], "members": 3}


def test_a_stack_of_members_computes_each_member_as_its_own_mlp():
    torch.manual_seed(0)
    stack = StackedMLP(3, [4, 6, 2])
    z = torch.randn(5, 7, 4, dtype=torch.float64)
    with torch.no_grad():
        out = stack(z)
        assert out.shape == (3, 5, 7, 2)
        for m in range(3):
            h = torch.nn.functional.silu(z @ stack.weights[0][m] + stack.biases[0][m])
            np.testing.assert_allclose(out[m], h @ stack.weights[1][m] + stack.biases[1][m])
        assert not torch.allclose(out[0], out[1])  # started from different weights


def test_the_prediction_is_the_members_mean_in_ms():
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, **HP)
    with torch.no_grad():
        each = model.net.member_outputs(torch.as_tensor(data.X[:20]))
    assert each.shape == (3, 20)
    np.testing.assert_allclose(
        model.predict_features(data.X[:20]), torch.exp(each).mean(0).numpy(), rtol=1e-12
    )
    assert (each.std(0) > 0).all()  # the members differ


def test_each_member_keeps_its_own_best_epoch():
    data = synthetic_data()
    hp = {**HP, "epochs": 2000, "patience": 5, "lr": 0.01}
    model = train_predictor(data, "additive", seed=0, **hp)
    info = model.info["training"]
    epochs = info["member_best_epochs"]
    assert len(epochs) == 3 and max(epochs) == info["best_epoch"]
    assert len(set(epochs)) > 1  # they stopped apart
    # training ends when the last member has gone `patience` epochs without improving
    assert info["epochs_run"] == max(epochs) + 5 + 1
    # each member holds the weights of its own best epoch: its validation loss is its best
    val = np.isin(data.ids, model.info["split"]["val"])
    with torch.no_grad():
        each = model.net.member_outputs(torch.as_tensor(data.X[val]))
    mse = ((each - torch.log(torch.as_tensor(data.y[val]))) ** 2).mean(dim=-1)
    np.testing.assert_allclose(mse.numpy(), info["member_val_mse_log"], rtol=1e-9)


def test_members_round_trip_and_stay_differentiable(tmp_path):
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, **HP)
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert loaded.net.members == 3
    np.testing.assert_allclose(
        loaded.predict_features(data.X), model.predict_features(data.X), rtol=1e-12, atol=0
    )
    a = random_alphas(model.space, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loaded.predict(x, "normal", 24, 16), (a,), eps=1e-6)


def test_a_model_saved_before_members_loads_as_one_member(tmp_path):
    data = synthetic_data()
    one = train_predictor(data, "additive", seed=0, **{**HP, "members": 1})
    folder = save_predictor(one, tmp_path / "old")
    # rewrite its weights as the file of a single network was written: nn.Sequential of
    # Linear (weight (out, in)) and SiLU, one (E,) vector of edge scales
    new = load_file(str(folder / "weights.safetensors"))
    old = {k: v for k, v in new.items() if not k.startswith("curves.")}
    n = len([k for k in new if k.startswith("curves.weights.")])
    for i in range(n):
        old[f"curves.{2 * i}.weight"] = new[f"curves.weights.{i}"][0].T.contiguous()
        old[f"curves.{2 * i}.bias"] = new[f"curves.biases.{i}"][0, 0].contiguous()
    old["edge_log_scale"] = new["edge_log_scale"][0].contiguous()
    save_file(old, str(folder / "weights.safetensors"))
    drop_param(folder, "members")
    again = load_predictor(folder)
    assert again.net.members == 1
    np.testing.assert_allclose(again.predict_features(data.X), one.predict_features(data.X))


@pytest.mark.parametrize("bad", [0, -1, 65, 2.5, "five", True, None])
def test_bad_members_are_refused(bad):
    with pytest.raises(InputError, match="members"):
        train_predictor(synthetic_data(), "additive", seed=0, **{**HP, "members": bad})


def test_a_model_folder_written_before_members_loads_unchanged():
    """A folder saved by LENNA before members (model format 2: one network, nn.Linear
    layers), with its predictions as that LENNA made them."""
    here = Path(__file__).parent / "data" / "additive-format2"
    expected = json.loads((here / "expected.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another machine's fingerprint only warns
        model = load_predictor(here / "model")
    assert model.net.members == 1 and model.hparams["hidden"] == [8]
    assert model.hparams["members"] == 1  # what the network is, not today's default
    assert model.net.divisible == [] and model.hparams["divisible"] == []
    got = model.predict_features(np.asarray(expected["X"]))
    np.testing.assert_allclose(got, expected["ms"], rtol=1e-12)


def test_the_ensemble_stays_linear_in_the_probabilities():
    """An expected latency over paths is linear in p; a mean of such models in ms is too.
    Without shared-lead terms linear in all of p at once."""
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, shared=False, **HP)
    a, b = data.X[0].copy(), data.X[1].copy()
    b[[0, 1, -1]] = a[[0, 1, -1]]  # one block type and shape, other probabilities
    mix = 0.3 * a + 0.7 * b
    pa, pb, pm = model.predict_features(np.stack([a, b, mix]))
    assert pm == pytest.approx(0.3 * pa + 0.7 * pb, rel=1e-12)


def test_with_shared_leads_the_ensemble_stays_linear_in_each_edge():
    """With them (the default), a chance that any edge out of a node starts with a layer is
    linear in each edge's probabilities, as edges are drawn independently: mixing one edge's
    probabilities mixes the prediction. Mixing every edge at once does not, which shows the
    terms are at work."""
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, **HP)
    assert model.net.shared and model.net.groups
    k, n_edges = model.space.max_ops, model.space.num_edges
    a = data.X[0].copy()
    j = next(i for i in range(1, len(data.X)) if data.X[i][0] == a[0])  # same block type
    other = data.X[j]
    for e in range(n_edges):
        edge = slice(2 + e * k, 2 + (e + 1) * k)  # features: type, C, p (edges × ops), H
        b = a.copy()
        b[edge] = other[edge]
        mix = 0.3 * a + 0.7 * b
        pa, pb, pm = model.predict_features(np.stack([a, b, mix]))
        assert pm == pytest.approx(0.3 * pa + 0.7 * pb, rel=1e-12), e
    b = a.copy()
    b[2 : 2 + n_edges * k] = other[2 : 2 + n_edges * k]
    mix = 0.3 * a + 0.7 * b
    pa, pb, pm = model.predict_features(np.stack([a, b, mix]))
    assert abs(pm - (0.3 * pa + 0.7 * pb)) > 1e-9 * abs(pm)

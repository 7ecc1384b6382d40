"""``additive``'s shared-lead terms: a runtime that merges what edges leaving one node have in
common (ONNX Runtime runs one ReLU for every ReLU-led edge out of a node) is still predicted as
an exact expectation over paths; the option is saved, follows the runtime and refuses bad
values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from predict_helpers import SMALL_HP, drop_param, edit_json, random_alphas, synthetic_data
from synthetic import make_synthetic

from lenna.errors import InputError
from lenna.predict import load_data, load_predictor, save_predictor, train_predictor
from lenna.predict.additive import AdditiveNet, _shared
from lenna.space import encode, get_space
from lenna.space.op_kinds import has_shared_lead


def _rows(space, bt: str, probs: torch.Tensor, channels: int = 24, resolution: int = 8):
    """Encoded rows of ``probs`` ``(n, E, K)`` (already probabilities)."""
    x = torch.as_tensor(encode(space, bt, channels, resolution, np.zeros(space.alpha_shape)))
    X = x.repeat(len(probs), 1).to(torch.float64)
    X[:, 2:-1] = probs.reshape(len(probs), -1)
    return X


@pytest.mark.parametrize("space_name", ["darts", "lenna"])
@pytest.mark.parametrize("bt", ["normal", "reduction"])
def test_the_prediction_is_the_mean_over_each_edges_draws(space_name, bt):
    """Edges are drawn independently, so a model that is an expectation over paths is linear
    in each edge's probabilities: its prediction at α equals the α-weighted mean of its
    predictions with that one edge set to each of its ops. A term like ``q²`` would fail."""
    space = get_space(space_name)
    torch.manual_seed(0)
    net = AdditiveNet(space, [8], shared=True, members=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    mask = torch.as_tensor(space.op_mask(bt))
    logits = random_alphas(space, 1, seed=1).masked_fill(~mask, -torch.inf)
    probs = torch.softmax(logits, -1)[0]
    with torch.no_grad():
        want = torch.exp(net(_rows(space, bt, probs[None])))[0, 0]
        net.source_log_scale.add_(1.0)  # the lead terms are part of what is checked
        assert not torch.isclose(torch.exp(net(_rows(space, bt, probs[None])))[0, 0], want)
        net.source_log_scale.sub_(1.0)
        for e in range(space.num_edges):
            ops = torch.nonzero(mask[e]).flatten()
            each = probs.repeat(len(ops), 1, 1)
            each[:, e] = 0.0
            each[torch.arange(len(ops)), e, ops] = 1.0
            got = (probs[e, ops] * torch.exp(net(_rows(space, bt, each))[:, 0])).sum()
            torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_the_lead_terms_cost_what_a_path_runs_once():
    """Two ReLU-led edges out of one node pay the lead once; out of two nodes, twice."""
    space = get_space("darts")
    net = AdditiveNet(space, [4], shared=True).double()
    relu = net.groups.index("ReLU()|keep")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.curves.biases[-1][..., :].fill_(-30.0)  # every op and the overhead ~free
        net.curves.biases[-1][..., 2 * space.max_ops + 1 + relu] = 0.0  # the ReLU lead: 1 ms
    sep = space.ops.index("sep_conv_3x3")
    none = space.ops.index("none")

    def path(active: dict[int, int]) -> torch.Tensor:
        probs = torch.zeros(1, *space.alpha_shape, dtype=torch.float64)
        probs[0, :, none] = 1.0
        for e, k in active.items():
            probs[0, e] = 0.0
            probs[0, e, k] = 1.0
        return torch.exp(net(_rows(space, "normal", probs)))[0, 0]

    from_s0 = [e.index for e in space.edges if e.src == 0][:2]
    from_s1 = [e.index for e in space.edges if e.src == 1][:1]
    torch.testing.assert_close(path({from_s0[0]: sep, from_s0[1]: sep}), path({from_s0[0]: sep}))
    two = path({from_s0[0]: sep, from_s1[0]: sep})
    torch.testing.assert_close(two, 2 * path({from_s0[0]: sep}), rtol=1e-6, atol=0)


@pytest.mark.slow
def test_shared_fits_a_runtime_that_merges_common_leads(tmp_path):
    """Labels that pay each node's ReLU once: with the lead terms the model fits them, with
    per-edge costs alone it cannot (two ReLU-led edges cost less than twice one)."""
    path = make_synthetic(
        tmp_path / "lead.db", space_name="darts", n=600, lead=0.4, channels=(8, 64)
    )
    data = load_data(path)
    hp = {"hidden": [32, 32], "epochs": 400, "patience": 50, "members": 1, "divisible": []}
    merged = train_predictor(data, "additive", seed=0, shared=True, **hp)
    alone = train_predictor(data, "additive", seed=0, shared=False, **hp)
    a = merged.info["metrics"]["held_out"]["mape"]
    s = alone.info["metrics"]["held_out"]["mape"]
    assert a < 2.0 and a < 0.5 * s, (a, s)


def test_a_model_file_whose_shared_flag_does_not_match_its_weights_is_one_line(tmp_path):
    data = synthetic_data(space="darts")
    model = train_predictor(data, "additive", seed=0, shared=True, **SMALL_HP["additive"])
    folder = save_predictor(model, tmp_path / "m")
    edit_json(folder / "model.json", lambda meta: meta["params"].update(shared=False))
    with pytest.raises(InputError, match="shared") as caught:
        load_predictor(folder)
    assert "\n" not in str(caught.value)


def test_shared_is_saved_and_a_model_from_before_it_loads_without(tmp_path):
    data = synthetic_data(space="darts")
    model = train_predictor(data, "additive", seed=0, shared=True, **SMALL_HP["additive"])
    assert model.net.shared and model.net.groups
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert loaded.net.shared and loaded.net.groups == model.net.groups
    np.testing.assert_allclose(
        loaded.predict_features(data.X), model.predict_features(data.X), rtol=1e-12, atol=0
    )
    old = train_predictor(data, "additive", seed=0, shared=False, **SMALL_HP["additive"])
    folder = save_predictor(old, tmp_path / "old")
    drop_param(folder, "shared")
    again = load_predictor(folder)
    assert not again.net.shared
    np.testing.assert_allclose(again.predict_features(data.X), old.predict_features(data.X))


def _as_ort(data):
    return dataclasses.replace(data, fingerprint={**data.fingerprint, "backend": "onnxruntime"})


def test_shared_auto_is_on_under_both_runtimes():
    """ONNX Runtime merges common subexpressions (in ``lenna`` two identical pools of one
    node); eager labels of mostly cheap cells fit better with the terms as well."""
    assert has_shared_lead(get_space("darts")) and has_shared_lead(get_space("lenna"))
    data = synthetic_data(space="darts")
    eager = train_predictor(data, "additive", seed=0, **SMALL_HP["additive"])
    assert eager.net.shared
    ort = train_predictor(_as_ort(data), "additive", seed=0, **SMALL_HP["additive"])
    assert ort.net.shared
    lenna = _as_ort(synthetic_data(space="lenna"))
    on = train_predictor(lenna, "additive", seed=0, **SMALL_HP["additive"])
    assert on.net.shared and len(on.net.groups) == 4  # 3x3 and 2x2 max and avg pools
    off = train_predictor(lenna, "additive", seed=0, shared="off", **SMALL_HP["additive"])
    assert not off.net.shared


def test_shared_auto_is_off_in_a_space_without_shareable_first_layers():
    """Convolutions start with weights and an identity computes nothing: no edge out of a
    node has a layer another edge could share, so there are no terms to learn."""
    lenna = get_space("lenna")
    convs = tuple(op for op in lenna.ops if "Conv" in op)
    plain = dataclasses.replace(lenna, name="convs", ops=(*convs, "Identity"), down_ops=convs)
    assert not has_shared_lead(plain)
    assert _shared("auto", plain) is False and _shared("auto", lenna) is True
    assert _shared("on", plain) is True  # forcing them still works


@pytest.mark.parametrize("bad", ["maybe", 2, 0.5, None, [True]])
def test_bad_shared_is_refused_by_name(bad):
    with pytest.raises(InputError, match="shared") as caught:
        train_predictor(synthetic_data(), "additive", seed=0, shared=bad, **SMALL_HP["additive"])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bt", ["normal", "reduction"])
def test_gradients_reach_alpha_through_the_lead_terms_and_batches_agree(bt):
    """The search differentiates the prediction in α: the lead terms must pass exact gradients,
    and a batch of α must give what each α gives alone."""
    data = synthetic_data(space="darts")
    model = train_predictor(data, "additive", seed=0, shared=True, **SMALL_HP["additive"])
    a = random_alphas(model.space, 3, seed=5)
    out = model.predict(a, bt, 24, 8)
    singles = torch.stack([model.predict(a[i], bt, 24, 8) for i in range(3)])
    torch.testing.assert_close(out, singles.reshape(3), rtol=1e-10, atol=0)
    b = a[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: model.predict(x, bt, 24, 8), (b,), eps=1e-6, atol=1e-6
    )

"""``additive`` with ``pairs``: what two ops on neighbouring edges cost together beyond their
sum, bilinear in the two edges' probabilities (an exact expectation when edges are drawn
independently); off by default, and files without it are unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from predict_helpers import SMALL_HP, synthetic_data

from lenna.errors import InputError
from lenna.predict import load_predictor, save_predictor, train_predictor
from lenna.predict.additive import edge_pairs
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")

HP = {**SMALL_HP["additive"], "members": 2}


def test_pairs_are_the_edges_that_meet_at_a_node():
    space = get_space("lenna")  # 1 input, 5 nodes, every earlier node feeds every later one
    (chain_a, chain_b), (sib_a, sib_b) = edge_pairs(space, "all")
    e = space.edges
    assert all(e[a].dst == e[b].src for a, b in zip(chain_a, chain_b, strict=True))
    assert all(e[a].dst == e[b].dst and a < b for a, b in zip(sib_a, sib_b, strict=True))
    # node j (1..4) has j edges in and 5 - j out; node j (1..5) has C(j, 2) sibling pairs
    assert len(chain_a) == sum(j * (5 - j) for j in range(1, 5)) == 20
    assert len(sib_a) == sum(j * (j - 1) // 2 for j in range(1, 6)) == 20
    assert len(edge_pairs(space, "chain")) == 1 and edge_pairs(space, "none") == []


def test_an_untrained_pair_term_is_zero_so_training_starts_from_the_additive_model():
    data = synthetic_data()
    hp = {**HP, "epochs": 1, "lr": 0.0, "pairs": "all"}  # the weights as initialised
    net = train_predictor(data, "additive", seed=0, **hp).net
    X = torch.as_tensor(data.X[:30])
    with torch.no_grad():
        out = net.curves(net.shape_inputs(X))
        probs = X[..., 2:-1].reshape(30, net.E, net.K)
        assert out.shape[-1] == net.n_base + 2 * net.K * net.K
        assert torch.count_nonzero(out[..., net.n_base :]) == 0
        assert torch.count_nonzero(net._pair_ms(probs, out, out[..., : net.K])) == 0


def test_the_prediction_is_linear_in_each_edges_probabilities():
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, **{**HP, "pairs": "all"})
    with torch.no_grad():  # make the pair term matter, whatever training left it at
        model.net.curves.biases[-1][..., model.net.n_base :].normal_(0, 0.3)
    space, K = model.space, model.space.max_ops
    x = data.X[:1].copy()
    rng = np.random.default_rng(0)
    for edge in (0, 4, space.num_edges - 1):
        cols = slice(2 + edge * K, 2 + (edge + 1) * K)
        q1, q2 = (rng.dirichlet(np.ones(K)) for _ in range(2))
        mask = np.asarray(space.op_mask("normal" if x[0, 0] > 0.5 else "reduction"))[edge]
        q1, q2 = q1 * mask / (q1 * mask).sum(), q2 * mask / (q2 * mask).sum()
        rows = []
        for t in (0.0, 0.3, 1.0):
            r = x.copy()
            r[0, cols] = t * q1 + (1 - t) * q2
            rows.append(r[0])
        f = model.predict_features(np.stack(rows))
        assert f[1] == pytest.approx(0.3 * f[2] + 0.7 * f[0], rel=1e-9)
        assert abs(f[2] - f[0]) > 1e-6 * f[0]  # the edge matters


def test_a_paired_model_round_trips_and_a_plain_one_writes_no_pairs(tmp_path):
    data = synthetic_data()
    paired = train_predictor(data, "additive", seed=0, **{**HP, "pairs": "chain"})
    back = load_predictor(save_predictor(paired, tmp_path / "p"))
    assert back.hparams["pairs"] == "chain"
    np.testing.assert_allclose(
        back.predict_features(data.X[:20]), paired.predict_features(data.X[:20]), rtol=1e-12
    )
    plain = train_predictor(data, "additive", seed=0, **HP)
    folder = save_predictor(plain, tmp_path / "q")
    assert "pairs" not in json.dumps(json.loads((folder / "model.json").read_text())["params"])
    assert load_predictor(folder).hparams["pairs"] == "none"


def test_an_unknown_pairs_value_is_refused():
    with pytest.raises(InputError, match="pairs must be one of"):
        train_predictor(synthetic_data(), "additive", seed=0, **{**HP, "pairs": "some"})

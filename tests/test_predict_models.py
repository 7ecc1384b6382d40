"""Latency predictors: save/load round trip, gradients to α, range checks, held-out rows,
and accuracy on synthetic data of known additive structure.

Models are small (see ``predict_helpers.SMALL_HP``) and cached across tests; only the
accuracy tests train with default hyper-parameters.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from predict_helpers import (
    DIFFERENTIABLE,
    KINDS,
    SMALL_HP,
    drop_param,
    random_alphas,
    small_model,
    synthetic_data,
)

from lenna.errors import InputError
from lenna.predict import OutOfRange, evaluate_model, load_predictor, save_predictor
from lenna.predict.base import predictor_class
from lenna.predict.splits import make_split
from lenna.predict.train import train_predictor

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- 1. save/load round trip ----------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_gives_identical_predictions(kind, tmp_path):
    model, data = small_model(kind), synthetic_data()
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert type(loaded) is type(model) and loaded.kind == kind
    before, after = model.predict_features(data.X), loaded.predict_features(data.X)
    assert np.isfinite(before).all() and (before > 0).all()
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=0)
    assert loaded.info["split"] == model.info["split"]
    assert loaded.info["ranges"] == model.info["ranges"]


@pytest.mark.parametrize("kind", DIFFERENTIABLE)
def test_round_trip_keeps_the_differentiable_path(kind, tmp_path):
    model = small_model(kind)
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    a = random_alphas(model.space, 3, seed=1)
    for bt, res in (("normal", 16), ("reduction", 8)):
        before = model.predict(a, bt, 32, res).detach()
        after = loaded.predict(a, bt, 32, res).detach()
        torch.testing.assert_close(after, before, rtol=1e-12, atol=0)


# ---- 2. gradients to α -----------------------------------------------------------------------
GRADCHECK_KINDS = ("lut", "mlp", "lut+mlp", "elasticnet", "additive")


@pytest.mark.parametrize("kind", GRADCHECK_KINDS)
@pytest.mark.parametrize(
    ("block_type", "channels", "resolution"), [("normal", 24, 16), ("reduction", 40, 8)]
)
def test_gradcheck_predict(kind, block_type, channels, resolution):
    model = small_model(kind)
    a = random_alphas(model.space, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: model.predict(x, block_type, channels, resolution), (a,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind", GRADCHECK_KINDS)
def test_batched_predict(kind):
    model = small_model(kind)
    a = random_alphas(model.space, 4, seed=3)
    out = model.predict(a, "reduction", 32, 16)
    assert out.shape == (4,)
    singles = torch.stack([model.predict(a[i], "reduction", 32, 16) for i in range(4)])
    torch.testing.assert_close(out, singles.reshape(4), rtol=1e-10, atol=0)
    b = a[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: model.predict(x, "reduction", 32, 16), (b,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind", GRADCHECK_KINDS)
def test_gradients_reach_alpha_and_skip_padded_slots(kind):
    model = small_model(kind)
    sp = model.space
    a = random_alphas(sp, 2, seed=4).requires_grad_(True)
    model.predict(a, "reduction", 32, 16).sum().backward()
    g = a.grad
    mask = torch.as_tensor(sp.op_mask("reduction"))
    down = [e.index for e in sp.edges if sp.is_down("reduction", e)]
    assert len(down) == 5
    assert not mask[down, 10].any()  # slot 10 is padding on the downsampling edges
    assert (g[:, down, 10] == 0).all()
    assert (g[:, ~mask] == 0).all()
    # every edge's real slots get some gradient
    assert (g.abs().sum(-1) > 0).all(), g.abs().sum(-1)


def test_gbdt_is_not_differentiable():
    model = small_model("gbdt")
    assert model.differentiable is False
    a = random_alphas(model.space, seed=5)
    with pytest.raises(InputError, match="not differentiable"):
        model.predict(a, "normal", 32, 16)


# ---- 6. range checks ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ("mlp", "lut"))
def test_inside_training_ranges_no_warning(kind):
    model = small_model(kind)
    lo, hi = model.info["ranges"]["channels"]
    a = random_alphas(model.space, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRange)
        for bt in ("normal", "reduction"):
            for res in model.info["ranges"]["resolutions"]:
                for c in (lo, hi):
                    assert model.check_range(bt, c, res) is None
                    model.predict(a, bt, c, res, strict=True)


@pytest.mark.parametrize(
    ("kind", "channels", "resolution", "needle"),
    [
        ("mlp", 200, 16, "channels 200"),
        ("lut", 200, 16, "channels 200"),
        ("mlp", 2, 16, "channels 2"),
        ("mlp", 32, 32, "resolution 32"),
    ],
)
def test_outside_training_ranges_warns_or_refuses(kind, channels, resolution, needle):
    model = small_model(kind)
    a = random_alphas(model.space, seed=7)
    with pytest.warns(OutOfRange, match=needle):
        out = model.predict(a, "normal", channels, resolution)
    assert torch.isfinite(out).all()
    with pytest.raises(InputError, match=needle):
        model.predict(a, "normal", channels, resolution, strict=True)


# ---- 4. held-out rows are never used in fit ------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_held_out_rows_never_reach_fit(kind, monkeypatch):
    data = synthetic_data()
    cls = predictor_class(kind)
    seen = []
    original = cls._fit

    def spy(self, train, val):
        seen.append((train.ids.copy(), val.ids.copy(), len(train.X), len(train.y)))
        return original(self, train, val)

    monkeypatch.setattr(cls, "_fit", spy)
    model = train_predictor(data, kind, seed=0, **SMALL_HP[kind])
    s = {k: np.asarray(v) for k, v in model.info["split"].items()}

    # the stored split: disjoint, covers the data, and is the seeded split
    assert not set(s["train"]) & set(s["val"])
    assert not set(s["train"]) & set(s["test"])
    assert not set(s["val"]) & set(s["test"])
    assert sorted([*s["train"], *s["val"], *s["test"]]) == sorted(data.ids.tolist())
    assert len(s["test"]) > 0 and len(s["val"]) > 0
    expected = make_split(data, "random", 0)
    np.testing.assert_array_equal(s["test"], expected.test)

    # what _fit got: exactly the training ids, validation ids apart; no test id
    assert len(seen) == 1
    train_ids, val_ids, nx, ny = seen[0]
    assert nx == ny == len(train_ids)
    np.testing.assert_array_equal(np.sort(train_ids), s["train"])
    np.testing.assert_array_equal(np.sort(val_ids), s["val"])
    assert not np.isin(train_ids, s["test"]).any()
    assert not np.isin(val_ids, s["test"]).any()


@pytest.mark.parametrize("kind", ("lut", "mlp"))
def test_evaluation_uses_exactly_the_test_rows(kind, monkeypatch):
    model, data = small_model(kind), synthetic_data()
    test_ids = set(model.info["split"]["test"])
    res = evaluate_model(model, data)
    assert res["held_out"]["n"] == len(test_ids)
    assert model.info["metrics"]["held_out"]["n"] == len(test_ids)

    # the rows predicted for the held-out metrics are the test rows, no others
    rows = []
    original = type(model).predict_features

    def spy(self, X):
        rows.append(np.asarray(X))
        return original(self, X)

    monkeypatch.setattr(type(model), "predict_features", spy)
    evaluate_model(model, data)
    by_row = {tuple(x): i for i, x in zip(data.ids, data.X, strict=True)}
    held = {by_row[tuple(x)] for x in rows[0]}
    assert held == test_ids


def test_evaluation_on_another_dataset_counts_every_row():
    model = small_model("lut")
    other = synthetic_data(n=60, seed=1)
    assert other.identity != synthetic_data().identity
    res = evaluate_model(model, other)
    assert res["held_out"]["n"] == len(other) == 60
    assert res["one_hot"]["n"] == int(other.onehot.sum())


# ---- 7. accuracy on known additive structure ----------------------------------------------
def test_lut_fits_additive_labels():
    model = train_predictor(synthetic_data(), "lut", seed=0)
    assert model.info["metrics"]["held_out"]["mape"] < 2.0


def test_lut_plus_mlp_fits_additive_labels():
    model = train_predictor(synthetic_data(), "lut+mlp", seed=0)
    assert model.info["metrics"]["held_out"]["mape"] < 3.0


@pytest.mark.slow
def test_additive_fits_additive_labels_without_an_op_table():
    import dataclasses

    data = dataclasses.replace(synthetic_data(), op_table=synthetic_data().op_table.iloc[:0])
    # one member: the fit is the model's, not the ensemble's (0.8 % measured, about 5 s)
    model = train_predictor(data, "additive", seed=0, epochs=400, patience=50, members=1)
    assert model.info["metrics"]["held_out"]["mape"] < 3.0


@pytest.mark.slow
def test_mlp_learns_additive_labels_from_1000_rows():
    """Default hyper-parameters; ~3.8 % held-out MAPE measured (about 6 s on one core)."""
    model = train_predictor(synthetic_data(n=1000), "mlp", seed=0)
    m = model.info["metrics"]["held_out"]
    assert m["n"] == 200
    assert m["mape"] < 6.0
    assert m["kendall_tau"] > 0.9


def test_models_beat_a_constant_guess():
    """Even the small models must carry information: a constant prediction has R² <= 0."""
    for kind in ("lut", "elasticnet", "gbdt", "lut+mlp"):
        assert small_model(kind).info["metrics"]["held_out"]["r2"] > 0.5, kind


# ---- additive with shape-dependent edge scales ---------------------------------------------
def test_additive_shaped_edge_scales_round_trip_and_gradients(tmp_path):
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, edge_scale="shaped", **SMALL_HP["additive"])
    edge_terms = 2 * model.space.max_ops + 1 + model.space.num_edges
    assert len(model.net.groups) == 4  # shared leads: lenna's 3x3 and 2x2 max and avg pools
    assert model.net.curves.out_features == edge_terms + 4
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert loaded.net.shaped and loaded.hparams["edge_scale"] == "shaped"
    np.testing.assert_allclose(
        loaded.predict_features(data.X), model.predict_features(data.X), rtol=1e-12, atol=0
    )
    a = random_alphas(model.space, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loaded.predict(x, "reduction", 40, 8), (a,), eps=1e-6)
    # a model saved before the option had no edge_scale in its params: it loads as constant
    old = small_model("additive")
    folder = save_predictor(old, tmp_path / "old")
    drop_param(folder, "edge_scale")
    again = load_predictor(folder)
    assert not again.net.shaped
    np.testing.assert_allclose(again.predict_features(data.X), old.predict_features(data.X))


@pytest.mark.slow
def test_additive_shaped_fits_additive_labels():
    model = train_predictor(  # one member (1.2 % measured, about 5 s)
        synthetic_data(),
        "additive",
        seed=0,
        edge_scale="shaped",
        epochs=400,
        patience=50,
        members=1,
    )
    assert model.info["metrics"]["held_out"]["mape"] < 3.0


def test_additive_refuses_an_unknown_edge_scale():
    with pytest.raises(InputError, match="edge_scale"):
        train_predictor(synthetic_data(), "additive", seed=0, edge_scale="per-op")


@pytest.mark.parametrize("kind", ["elasticnet", "mlp", "lut", "additive", "lut+mlp"])
def test_predict_takes_integer_logits_and_returns_one_value_per_block(kind):  # issue 25, D13
    m = small_model(kind)
    shape = m.space.alpha_shape
    one = m.predict(torch.zeros(shape, dtype=torch.long), "normal", 16, 16)
    assert one.shape == ()
    assert torch.isclose(one, m.predict(torch.zeros(shape), "normal", 16, 16).to(one.dtype))
    assert m.predict(torch.zeros((3, *shape)), "normal", 16, 16).shape == (3,)


@pytest.mark.parametrize("kind", ["lut", "elasticnet", "mlp", "gbdt", "lut+mlp", "additive"])
def test_an_unknown_hyper_parameter_is_refused_not_ignored(kind):  # issue 26
    from lenna.space import get_space

    cls = predictor_class(kind)
    with pytest.raises(InputError, match=re.escape(f"{kind} has no hyper-parameter 'epohcs'")):
        cls(get_space("lenna"), epohcs=10)
    for key, value in cls.defaults.items():  # every declared one is accepted
        assert cls(get_space("lenna"), **{key: value})._hp()[key] == value

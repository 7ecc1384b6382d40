"""``additive``'s channel-alignment and divisibility features: values, old files, bad values,
and what they buy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from predict_helpers import SMALL_HP, drop_param, edit_json, synthetic_data
from synthetic import make_synthetic

from lenna.errors import InputError
from lenna.predict import load_data, load_predictor, save_predictor, train_predictor
from lenna.predict.additive import AdditiveNet
from lenna.space import get_space


def test_raw_shape_holds_the_padding_overhead_of_the_edge_width():
    space = get_space("lenna")
    net = AdditiveNet(space, [4], align=[8, 16])
    X = torch.zeros(4, space.num_features, dtype=torch.float64)
    X[:, 0] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # is_normal: the last row is a reduction
    X[:, 1] = torch.tensor([41.0, 48.0, 40.0, 42.0])
    X[:, -1] = 32.0
    raw = net.raw_shape(X)
    assert raw.shape == (4, 5)
    np.testing.assert_allclose(raw[:, 1], np.log([41, 48, 40, 42]))
    # a reduction's edges are 2C = 84 wide: padded to 88 and to 96
    np.testing.assert_allclose(raw[:, 3], np.log([48 / 41, 1.0, 1.0, 88 / 84]))
    np.testing.assert_allclose(raw[:, 4], np.log([48 / 41, 1.0, 48 / 40, 96 / 84]))


def test_the_default_model_sees_both_multiples_and_saves_them(tmp_path):
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, **SMALL_HP["additive"])
    assert model.net.align == [8, 16] and model.net.curves.in_features == 5
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert loaded.net.align == [8, 16]
    np.testing.assert_allclose(
        loaded.predict_features(data.X), model.predict_features(data.X), rtol=1e-12, atol=0
    )


def test_a_model_saved_before_the_option_loads_without_alignment(tmp_path):
    data = synthetic_data()
    old = train_predictor(data, "additive", seed=0, align=0, **SMALL_HP["additive"])
    assert old.net.align == [] and old.net.curves.in_features == 3
    folder = save_predictor(old, tmp_path / "old")
    drop_param(folder, "align")
    again = load_predictor(folder)
    assert again.net.align == []
    np.testing.assert_allclose(again.predict_features(data.X), old.predict_features(data.X))


@pytest.mark.parametrize("bad", ["eight", [8, "x"], -8, [None], float("inf"), 8.5, True, 10**30])
def test_bad_alignment_is_refused(bad):
    with pytest.raises(InputError, match="align"):
        train_predictor(synthetic_data(), "additive", seed=0, align=bad, **SMALL_HP["additive"])


@pytest.mark.slow
def test_alignment_fits_labels_of_padded_kernels(tmp_path):
    """Op costs that follow each edge's width rounded up to 8: with the default features the
    model fits them tightly, without them the smooth curve in log C cannot."""
    data = load_data(make_synthetic(tmp_path / "pad.db", n=600, pad=8, channels=(8, 96)))
    hp = {"hidden": [32, 32], "epochs": 400, "patience": 50, "members": 1}  # one network (1.0 %)
    aligned = train_predictor(data, "additive", seed=0, **hp)
    smooth = train_predictor(data, "additive", seed=0, align=0, **hp)
    a = aligned.info["metrics"]["held_out"]["mape"]
    s = smooth.info["metrics"]["held_out"]["mape"]
    assert a < 1.5 and a < 0.5 * s, (a, s)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"align": [8]}, "do not match its weights"),
        ({"align": float("inf")}, "whole channel"),
        ({"divisible": [8]}, "do not match its weights"),
        ({"divisible": "auto"}, "divisible must be whole channel"),
    ],
)
def test_a_tampered_alignment_is_refused_in_one_line(tmp_path, change, message):
    model = train_predictor(synthetic_data(), "additive", seed=0, **SMALL_HP["additive"])
    folder = save_predictor(model, tmp_path / "m")
    edit_json(folder / "model.json", lambda meta: meta["params"].update(change))
    with pytest.raises(InputError, match=message) as caught:
        load_predictor(folder)
    assert "\n" not in str(caught.value)


def test_raw_shape_holds_whether_the_edge_width_is_a_multiple():
    space = get_space("lenna")
    net = AdditiveNet(space, [4], align=[8], divisible=[4, 8])
    X = torch.zeros(4, space.num_features, dtype=torch.float64)
    X[:, 0] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the last row is a reduction: 2C = 84
    X[:, 1] = torch.tensor([41.0, 48.0, 44.0, 42.0])
    X[:, -1] = 32.0
    raw = net.raw_shape(X)
    assert raw.shape == (4, 6)
    np.testing.assert_array_equal(raw[:, 4], [0.0, 1.0, 1.0, 1.0])  # multiple of 4
    np.testing.assert_array_equal(raw[:, 5], [0.0, 1.0, 0.0, 0.0])  # multiple of 8


def test_divisible_is_saved_and_a_model_from_before_it_loads_without(tmp_path):
    data = synthetic_data()
    model = train_predictor(data, "additive", seed=0, divisible="4+8", **SMALL_HP["additive"])
    assert model.net.divisible == [4, 8] and model.net.curves.in_features == 7
    loaded = load_predictor(save_predictor(model, tmp_path / "m"))
    assert loaded.net.divisible == [4, 8]
    np.testing.assert_allclose(
        loaded.predict_features(data.X), model.predict_features(data.X), rtol=1e-12, atol=0
    )
    old = train_predictor(data, "additive", seed=0, divisible=[], **SMALL_HP["additive"])
    folder = save_predictor(old, tmp_path / "old")
    drop_param(folder, "divisible")
    again = load_predictor(folder)
    assert again.net.divisible == [] and again.net.curves.in_features == 5
    np.testing.assert_allclose(again.predict_features(data.X), old.predict_features(data.X))


@pytest.mark.parametrize("bad", ["four", -4, 4.5, True, [8, None]])
def test_bad_divisible_is_refused_by_name(bad):
    with pytest.raises(InputError, match="divisible") as caught:
        train_predictor(synthetic_data(), "additive", seed=0, divisible=bad, **SMALL_HP["additive"])
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_divisible_fits_a_runtime_that_switches_kernels_by_width(tmp_path):
    """Op costs 3× wherever the width is no multiple of 8 (as ONNX Runtime's blocked kernels):
    with the step as an input the model fits them, with padding overheads alone it cannot
    (a width of 63 pads nearly as little as 64). A reduction's edges are C and 2C wide here,
    and the model sees 2C: whether C is a multiple of 8 is whether 2C is one of 16."""
    data = load_data(make_synthetic(tmp_path / "step.db", n=600, step=8, channels=(8, 96)))
    hp = {"hidden": [32, 32], "epochs": 400, "patience": 50, "members": 1, "shared": False}
    stepped = train_predictor(data, "additive", seed=0, divisible="8+16", **hp)
    smooth = train_predictor(data, "additive", seed=0, **hp)
    a = stepped.info["metrics"]["held_out"]["mape"]
    s = smooth.info["metrics"]["held_out"]["mape"]
    assert a < 2.5 and a < 0.3 * s, (a, s)


def test_divisible_auto_follows_the_runtime_that_timed_the_labels():
    """ONNX Runtime's kernels switch by width (the steps pay); PyTorch's did not need them."""
    data = synthetic_data()
    eager = train_predictor(data, "additive", seed=0, **SMALL_HP["additive"])
    assert eager.net.divisible == []
    ort_data = dataclasses.replace(data, fingerprint={**data.fingerprint, "backend": "onnxruntime"})
    ort = train_predictor(ort_data, "additive", seed=0, **SMALL_HP["additive"])
    assert ort.net.divisible == [4, 8, 16]
    assert ort.net.curves.in_features == 3 + 4 + 3  # and the padding inputs of 8 to 64


def test_align_auto_follows_the_runtime_that_timed_the_labels():
    """ONNX Runtime's convolutions work on filter sets of four channel blocks (32 or 64
    channels); PyTorch eager keeps the 8- and 16-channel padding inputs only."""
    data = synthetic_data()
    eager = train_predictor(data, "additive", seed=0, **SMALL_HP["additive"])
    assert eager.net.align == [8, 16]
    ort_data = dataclasses.replace(data, fingerprint={**data.fingerprint, "backend": "onnxruntime"})
    ort = train_predictor(ort_data, "additive", seed=0, **SMALL_HP["additive"])
    assert ort.net.align == [8, 16, 32, 64]
    assert ort.net.curves.in_features == 3 + 4 + 3  # and the divisibility steps 4, 8, 16
    explicit = train_predictor(ort_data, "additive", seed=0, align="8+16", **SMALL_HP["additive"])
    assert explicit.net.align == [8, 16]

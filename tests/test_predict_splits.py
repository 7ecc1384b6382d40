"""Seeded train/validation/test splits and the accuracy figures."""

import math

import numpy as np
import pytest
from predict_helpers import synthetic_data

from lenna.errors import InputError
from lenna.predict.metrics import metrics
from lenna.predict.splits import make_split


def ids_of(split):
    return [split.train.tolist(), split.val.tolist(), split.test.tolist()]


# ---- 8. splits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "channels"])
def test_split_is_a_partition(kind):
    data = synthetic_data()
    s = make_split(data, kind, seed=0)
    train, val, test = (set(x) for x in ids_of(s))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(data.ids.tolist())
    assert len(test) == 60 and len(val) == 30 and len(train) == 210
    for part in (s.train, s.val, s.test):
        assert (np.diff(part) > 0).all()  # sorted, no duplicates


@pytest.mark.parametrize("kind", ["random", "channels"])
def test_same_seed_same_split_other_seed_another(kind):
    data = synthetic_data()
    assert ids_of(make_split(data, kind, seed=7)) == ids_of(make_split(data, kind, seed=7))
    a, b = make_split(data, kind, seed=7), make_split(data, kind, seed=8)
    assert a.test.tolist() != b.test.tolist()
    assert a.train.tolist() != b.train.tolist()


def test_channels_split_holds_out_every_wide_block():
    data = synthetic_data()
    s = make_split(data, "channels", seed=0)
    wide = data.ids[data.channels > np.quantile(data.channels, 0.9)]
    assert len(wide) > 0
    assert np.isin(wide, s.test).all()
    assert not np.isin(wide, s.train).any() and not np.isin(wide, s.val).any()
    trained = data.channels[np.isin(data.ids, s.train)]
    assert trained.max() <= np.quantile(data.channels, 0.9)


def test_random_split_does_not_force_wide_blocks_out():
    data = synthetic_data()
    s = make_split(data, "random", seed=0)
    wide = data.ids[data.channels > np.quantile(data.channels, 0.9)]
    assert np.isin(wide, s.train).any()


def test_unknown_split_is_refused():
    with pytest.raises(InputError, match=r"unknown split 'foo'.*random, channels"):
        make_split(synthetic_data(), "foo")


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_rows_are_refused(n):
    data = synthetic_data()
    small = data.subset(np.arange(len(data)) < n)
    with pytest.raises(InputError, match=rf"at least 3 samples.*got {n}"):
        make_split(small)


def test_three_rows_split_one_each():
    data = synthetic_data()
    s = make_split(data.subset(np.arange(len(data)) < 3), seed=0)
    assert sorted([*s.train, *s.val, *s.test]) == [0, 1, 2]
    assert len(s.train) == len(s.val) == len(s.test) == 1


# ---- 9. metrics ---------------------------------------------------------------------------------
def test_perfect_prediction():
    y = np.array([0.5, 1.0, 2.0, 3.5, 7.0])
    m = metrics(y, y.copy())
    assert m["n"] == 5
    assert m["rmse_ms"] == 0 and m["mape"] == 0
    assert m["within_5"] == 100 and m["within_10"] == 100
    assert m["r2"] == 1 and m["kendall_tau"] == pytest.approx(1)


def test_metrics_by_hand():
    y = np.array([1.0, 2.0, 4.0, 10.0])
    p = np.array([1.02, 2.3, 4.0, 9.2])  # relative errors 2 %, 15 %, 0 %, 8 %
    m = metrics(y, p)
    assert m["mape"] == pytest.approx((2 + 15 + 0 + 8) / 4)
    assert m["within_5"] == pytest.approx(50)
    assert m["within_10"] == pytest.approx(75)
    sq = [0.02**2, 0.3**2, 0, 0.8**2]
    assert m["rmse_ms"] == pytest.approx(math.sqrt(sum(sq) / 4))
    assert m["r2"] == pytest.approx(1 - sum(sq) / 48.75)
    assert m["kendall_tau"] == pytest.approx(1)


def test_reversed_order_gives_negative_tau():
    y = np.array([1.0, 2.0, 3.0])
    m = metrics(y, y[::-1].copy())
    assert m["kendall_tau"] == pytest.approx(-1)
    assert m["r2"] < 0
    assert m["within_10"] == pytest.approx(100 / 3)


def test_empty_and_single_rows():
    empty = metrics(np.array([]), np.array([]))
    assert empty["n"] == 0  # a count, not an undefined figure
    assert all(math.isnan(v) for k, v in empty.items() if k != "n")
    one = metrics(np.array([2.0]), np.array([2.2]))
    assert one["n"] == 1 and one["mape"] == pytest.approx(10)
    assert math.isnan(one["kendall_tau"]) and math.isnan(one["r2"])

"""Stopping rules on a fake bench with known values: exact stop points and estimates."""

import numpy as np
import pytest
from measure_helpers import FakeBench, fast_measure
from scipy import stats

from lenna.errors import InputError
from lenna.measure import measure_block
from lenna.measure.config import MeasureConfig
from lenna.measure.rules import CIRule, SeedRule, _line, _t, make_rule
from lenna.space import get_space, probabilities

# Within a reset the passes are v + these offsets (shuffled): their 40 % quantile is exactly
# 0 (position 0.8 of the sorted three: -0.4 + 0.8 * 0.5), their mean and median are not.
SEED_OFFSETS = (0.7, -0.4, 0.1)


# ---- SeedRule ------------------------------------------------------------------------------
def test_seed_rule_stops_when_the_streak_of_k_small_changes_completes():
    # running averages: 10, 11, 11, 11, 11.6, 11.6, 11.6, 11.6
    # change vs previous: -, 10 %, 0, 0 (streak 2), 5.5 % (streak broken), 0, 0, 0 -> k = 3
    values = [10, 12, 11, 11, 14, 11.6, 11.6, 11.6, 11.6, 11.6]
    bench = FakeBench(values, offsets_ms=SEED_OFFSETS)
    est = SeedRule(n=3, q=0.4, tol=0.01, k=3, max_resets=100).run(bench)
    assert est.resets == 8
    assert bench.resets == 8  # asked for no more resets than it reports
    assert bench.pass_calls == [3] * 8
    assert est.passes == 8 * 3
    assert est.converged is True
    assert est.latency_ms == pytest.approx(11.6, abs=1e-9)
    assert est.latency_ms == pytest.approx(np.mean(values[:8]), abs=1e-9)
    np.testing.assert_allclose(est.values_ms, values[:8], atol=1e-9)  # the 40 % quantiles
    assert est.rule == "seed"


def test_seed_rule_change_just_above_tol_breaks_the_streak():
    # avg 100 -> 100 (streak 1) -> 100 (streak 2) -> +1.2 % (reset) -> 0, 0, 0
    values = [100, 100, 100, 104.8, 101.2, 101.2, 101.2, 101.2]
    est = SeedRule(n=1, q=0.4, tol=0.01, k=3, max_resets=100).run(FakeBench(values))
    assert est.resets == 7
    assert est.latency_ms == pytest.approx(101.2, abs=1e-9)
    assert est.converged


def test_seed_rule_max_resets_stops_a_never_converging_sequence():
    values = [1.0, 100.0] * 10
    bench = FakeBench(values)
    est = SeedRule(n=2, q=0.4, tol=0.01, k=3, max_resets=7).run(bench)
    assert est.resets == 7
    assert bench.resets == 7
    assert est.passes == 14
    assert est.converged is False
    assert est.latency_ms == pytest.approx((4 * 1.0 + 3 * 100.0) / 7)


# ---- CIRule without control ----------------------------------------------------------------
def test_ci_rule_constant_sequence_stops_exactly_at_min_resets():
    bench = FakeBench([5.0] * 50)
    rule = CIRule(control=False, passes=1, q=0.5, min_resets=4, max_resets=50, rel=0.01)
    est = rule.run(bench)
    assert est.resets == 4
    assert bench.resets == 4
    assert est.passes == 4
    assert est.latency_ms == pytest.approx(5.0)
    assert est.ci_half_width_ms == pytest.approx(0.0, abs=1e-12)
    assert est.converged is True
    assert est.controls_ms == []


def expected_ci_stop(y, min_resets, rel, confidence=0.95):
    """First n >= min_resets with t(n-1) * s / sqrt(n) <= rel * mean (independent of src)."""
    for n in range(max(min_resets, 2), len(y) + 1):
        head = np.asarray(y[:n])
        t = stats.t.ppf(0.5 + confidence / 2, n - 1)
        half = t * head.std(ddof=1) / np.sqrt(n)
        if half <= rel * abs(head.mean()):
            return n, head.mean(), half
    raise AssertionError("the sequence never reaches the interval")


@pytest.mark.parametrize("build", ["class", "make_rule"])
def test_ci_rule_stops_where_the_t_half_width_first_drops_below_rel(build):
    y = np.random.default_rng(7).normal(10.0, 1.0, 300)
    n, mean, half = expected_ci_stop(y, min_resets=3, rel=0.03)
    assert 10 < n < 300  # a non-trivial stop point
    params = {"passes": 2, "q": 0.5, "min_resets": 3, "max_resets": 300, "rel": 0.03}
    rule = CIRule(control=False, **params) if build == "class" else make_rule("ci", **params)
    bench = FakeBench(y, offsets_ms=(-0.3, 0.3))  # median of the two passes = the value
    est = rule.run(bench)
    assert est.resets == n
    assert bench.resets == n
    assert est.passes == 2 * n
    assert est.latency_ms == pytest.approx(mean, rel=1e-12)
    assert est.ci_half_width_ms == pytest.approx(half, rel=1e-9)
    assert est.converged is True


def test_ci_rule_max_resets_without_convergence():
    y = [1.0, 9.0] * 20
    est = CIRule(control=False, passes=1, min_resets=3, max_resets=6, rel=0.001).run(FakeBench(y))
    assert est.resets == 6
    assert est.converged is False
    assert est.latency_ms == pytest.approx(5.0)
    assert est.ci_half_width_ms > 0.001 * 5.0


# ---- CIRule with the control variate -------------------------------------------------------
def cv_problem(n_resets=12):
    """Reduction-block costs with NaN padding, probabilities, and biased sampled paths."""
    space = get_space("lenna")
    bt = "reduction"
    mask = space.op_mask(bt)
    rng = np.random.default_rng(3)
    costs = np.where(mask, rng.uniform(0.05, 2.0, space.alpha_shape) * 1e-3, np.nan)  # seconds
    alphas = rng.normal(0, 1, space.alpha_shape)
    probs = probabilities(space, bt, alphas)
    # paths drawn with a bias toward the two most expensive ops: c̄ is far from E[c]
    paths = []
    for _ in range(n_resets):
        path = []
        for e in range(space.num_edges):
            k = int(mask[e].sum())
            top = np.argsort(costs[e, :k])[-2:]
            path.append(int(rng.choice(top)))
        paths.append(path)
    c_ms = np.array([sum(costs[e, j] for e, j in enumerate(p)) * 1e3 for p in paths])
    expected_c = float(np.nansum(np.where(mask, probs * costs, np.nan))) * 1e3
    return costs, probs, paths, c_ms, expected_c


def test_cv_rule_is_exact_when_latency_is_linear_in_the_control():
    costs, probs, paths, c_ms, expected_c = cv_problem()
    y = 2.0 * c_ms + 1.0  # ms
    assert abs(y[:5].mean() - (2 * expected_c + 1)) > 1.0  # the sample mean is biased
    bench = FakeBench(y, paths=paths)
    rule = CIRule(control=True, passes=1, q=0.5, min_resets=5, max_resets=12, rel=0.01)
    est = rule.run(bench, costs, probs)
    assert est.latency_ms == pytest.approx(2 * expected_c + 1, abs=1e-9)
    assert est.resets == 5  # zero residual: the interval closes at once
    assert est.converged
    np.testing.assert_allclose(est.controls_ms, c_ms[:5], rtol=1e-12)


def test_cv_rule_with_an_interference_outlier_is_still_exact():
    costs, probs, paths, c_ms, expected_c = cv_problem()
    y = 2.0 * c_ms + 1.0
    y[4] += 50.0  # one stalled reset
    rule = CIRule(control=True, passes=1, q=0.5, min_resets=12, max_resets=12, rel=0.01)
    est = rule.run(FakeBench(y, paths=paths), costs, probs)
    assert est.rejected == 1
    assert est.latency_ms == pytest.approx(2 * expected_c + 1, abs=1e-9)


def test_a_replayed_trace_ends_at_the_label_and_stores_the_controls_mean():
    costs, probs, paths, c_ms, expected_c = cv_problem()
    rng = np.random.default_rng(3)
    y = 2.0 * c_ms + 1.0 + rng.normal(0, 0.01, len(c_ms))  # noise: the interval closes late
    y[2] += 40.0  # and a stall the rule drops
    rule = CIRule(control=True, passes=1, q=0.5, min_resets=5, max_resets=len(y), rel=0.01)
    est = rule.run(FakeBench(y, paths=paths), costs, probs)
    assert est.converged and rule.min_resets < est.resets < len(y)  # it stopped by its criterion
    assert est.rejected == 1
    assert est.expected_control_ms == pytest.approx(expected_c, rel=1e-12)
    replayed, half = rule.replay(est.values_ms, est.controls_ms, est.expected_control_ms)
    assert len(replayed) == est.resets and np.isnan(replayed[:2]).all()
    assert replayed[-1] == pytest.approx(est.latency_ms, rel=1e-12)
    assert half[-1] == pytest.approx(est.ci_half_width_ms, rel=1e-12)
    # the rule stopped at the first reset whose interval met ±rel, and not before
    inside = half <= rule.rel * np.abs(replayed)
    assert inside[-1] == est.converged
    assert not inside[rule.min_resets - 1 : -1].any()


def test_a_replayed_plain_interval_is_the_running_mean():
    y = [10.0, 11.0, 9.0, 10.5, 10.2, 9.8]
    rule = CIRule(control=False, reject=0.0, passes=1, min_resets=3, max_resets=6, rel=1e-6)
    est = rule.run(FakeBench(y))
    assert est.expected_control_ms is None
    replayed, _ = rule.replay(est.values_ms, None, 0.0)
    np.testing.assert_allclose(replayed[2:], np.cumsum(y)[2:] / np.arange(3, 7), rtol=1e-12)


def test_cv_rule_without_costs_is_an_input_error():
    rule = CIRule(control=True, passes=1, min_resets=3)
    with pytest.raises(InputError, match="control variate"):
        rule.run(FakeBench([1.0] * 10))
    with pytest.raises(InputError):
        rule.run(FakeBench([1.0] * 10), costs=np.ones((15, 11)), probs=None)


# ---- make_rule and MeasureConfig -----------------------------------------------------------
def test_make_rule_names():
    assert isinstance(make_rule("seed"), SeedRule)
    cv, ci = make_rule("cv"), make_rule("ci")
    assert cv.control is True and cv.name == "cv"
    assert ci.control is False and ci.name == "ci"
    with pytest.raises(InputError, match="nope"):
        make_rule("nope")


def test_measure_config_refuses_bad_rule_and_params():
    with pytest.raises(InputError, match="stopping rule"):
        MeasureConfig(rule="nope", threads=1)
    with pytest.raises(InputError, match="bad parameters"):
        MeasureConfig(rule="ci", rule_params={"bogus": 1}, threads=1)
    with pytest.raises(InputError):
        MeasureConfig(batch=0, threads=1)
    with pytest.raises(InputError):
        MeasureConfig(threads=0)


# ---- the real thing, tiny --------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["ci", "cv", "seed"])
def test_measure_block_tiny_real_measurement(rule):
    space = get_space("lenna")
    params = {
        "ci": {"min_resets": 3, "max_resets": 4, "rel": 0.5, "passes": 1},
        "cv": {"min_resets": 3, "max_resets": 4, "rel": 0.5, "passes": 1},
        "seed": {"n": 2, "k": 2, "tol": 0.5, "max_resets": 4},
    }[rule]
    cfg = fast_measure(rule=rule, rule_params=params, op_passes=1)
    alphas = np.random.default_rng(0).normal(size=space.alpha_shape)
    m = measure_block(space, "reduction", 2, 8, alphas, cfg, seed=1)
    est = m.estimate
    assert est.rule == rule
    assert np.isfinite(est.latency_ms) and est.latency_ms > 0
    assert 1 <= est.resets <= 4
    assert len(est.values_ms) == est.resets
    if rule == "cv":
        assert len(est.controls_ms) == est.resets
        assert all(c > 0 for c in est.controls_ms)
    np.testing.assert_array_equal(m.alphas, alphas)


def test_the_fast_line_fit_and_t_quantile_agree_with_numpy_and_scipy():
    """The rule refits after every reset, so it uses a closed form and a cached quantile."""
    rng = np.random.default_rng(3)
    x = rng.normal(10, 2, 60)
    y = 1.3 * x + rng.normal(0, 0.5, 60)
    slope, intercept = np.polyfit(x, y, 1)
    assert _line(y, x) == pytest.approx((intercept, slope), rel=1e-9)
    for c in (4.0, 0.1):  # a constant control (one-hot α): no slope, even where its mean rounds
        assert _line(y[:3], np.full(3, c)) == (y[:3].mean(), 0.0)
    # Student's t quantiles from tables: two-sided 95 % at 3 and 148 df, 90 % at 20 df
    for conf, df, t in [(0.95, 3, 3.182446), (0.95, 148, 1.976122), (0.9, 20, 1.724718)]:
        assert _t(conf, df) == pytest.approx(t, abs=1e-6)

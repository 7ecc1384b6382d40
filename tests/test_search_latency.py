"""The latency term of the α loss and one bilevel step: values, gradients, forms, refusals."""

import copy
import itertools
import math
import warnings

import pytest
import torch
from search_helpers import (
    batches,
    clone,
    optimisers,
    predictor,
    term_for,
    tiny_net,
)

from lenna.errors import InputError
from lenna.predict import OutOfRange
from lenna.predict.base import list_kinds, predictor_class
from lenna.search.bilevel import StepStats, search_step
from lenna.search.latency import LatencyTerm
from lenna.search.network import NetConfig, Network, cell_specs
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")

SPACE = get_space("lenna")


def leaves(net: Network) -> dict[str, torch.Tensor]:
    """Detached copies of the network's α that collect their own gradients."""
    return {k: a.detach().clone().requires_grad_(True) for k, a in net.alphas.items()}


def latency_grads(term: LatencyTerm, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dE/dα, computed independently of the code under test's chain rule."""
    a = {k: v.detach().clone().requires_grad_(True) for k, v in alphas.items()}
    e = term.expected_ms(a)
    return dict(zip(a, torch.autograd.grad(e, list(a.values())), strict=True))


def alpha_grads_after_step(net, term, unrolled=False, w_lr=0.025, a_lr=0.01):
    w_opt, a_opt = optimisers(net, w_lr=w_lr, a_lr=a_lr)
    bw, ba = batches(4)
    st = search_step(net, term, w_opt, a_opt, bw, ba, 5.0, unrolled=unrolled)
    return {k: a.grad.detach().clone() for k, a in net.alphas.items()}, st


# ---- E[latency] -------------------------------------------------------------------------
def test_expected_ms_is_the_sum_of_the_predictor_over_the_cells():
    net = tiny_net(cells=3)
    term = term_for(net)
    pred = predictor("lenna")
    alphas = {k: torch.randn(SPACE.alpha_shape, dtype=torch.float64) for k in net.alphas}
    by_hand = sum(
        float(pred.predict(alphas[c.block_type], c.block_type, c.channels, c.resolution))
        for c in net.specs
    )
    e = term.expected_ms(alphas)
    assert e.shape == ()
    assert float(e) == pytest.approx(by_hand, rel=1e-12)
    assert sum(term.per_cell_ms(alphas)) == pytest.approx(by_hand, rel=1e-12)
    assert len(term.per_cell_ms(alphas)) == 3


@pytest.mark.parametrize("kind", [k for k in list_kinds() if predictor_class(k).differentiable])
def test_one_pass_per_cell_type_is_the_cells_asked_one_by_one(kind):
    """The term asks the predictor once per cell type, at all that type's cells' shapes: the
    value and the α-gradient of asking cell by cell (two reductions at two shapes here)."""
    net = tiny_net(cells=3)
    pred = predictor("lenna", kind)
    term = LatencyTerm(pred, SPACE, net.specs)
    offsets = [0.01, 0.02, -0.005]
    term.set_offsets(offsets)
    g = torch.Generator().manual_seed(1)
    base = {k: torch.randn(SPACE.alpha_shape, dtype=torch.float64, generator=g) for k in net.alphas}
    a = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    b = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    e = term.expected_ms(a)
    by_hand = sum(
        pred.predict(b[c.block_type], c.block_type, c.channels, c.resolution) + off
        for c, off in zip(net.specs, offsets, strict=True)
    )
    assert e.shape == () and float(e.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-12)
    ga = torch.autograd.grad(e, list(a.values()))
    gb = torch.autograd.grad(by_hand, list(b.values()))
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, rtol=1e-10, atol=1e-14)


def test_uniform_ms_is_e_at_zero_alphas_and_the_default_reference():
    net = tiny_net()
    term = term_for(net)
    zeros = {k: torch.zeros(SPACE.alpha_shape) for k in net.alphas}
    assert term.uniform_ms() == pytest.approx(float(term.expected_ms(zeros)), rel=1e-12)
    assert term.ref_ms == term.uniform_ms()
    assert math.isfinite(term.ref_ms) and term.ref_ms > 0
    assert term_for(net, ref_ms=2.5).ref_ms == 2.5


def test_cells_of_a_type_share_alpha_and_each_is_asked_at_its_own_size():
    net = tiny_net(cells=3)
    assert [(s.block_type, s.channels, s.resolution) for s in net.specs] == [
        ("normal", 8, 16),
        ("reduction", 8, 16),
        ("reduction", 16, 8),
    ]
    for cell, spec in zip(net.cells, net.specs, strict=True):
        assert cell.alphas is net.alphas[spec.block_type]
    ids = {id(a) for a in net.alphas.values()}
    assert not ids & {id(p) for p in net.weights()}
    assert len(net.weights()) + len(net.alphas) == len(list(net.parameters()))


# ---- gradients of the term alone --------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in list_kinds() if predictor_class(k).differentiable])
def test_every_differentiable_predictor_gives_alpha_its_true_latency_gradient(kind):
    # the search may be given any of these: along the term's steepest descent the expected
    # latency must fall at the rate the gradient says (a finite difference of the forward
    # pass, independent of autograd), whatever the model's form
    net = tiny_net()
    term = LatencyTerm(predictor("lenna", kind), get_space("lenna"), net.specs)
    a = leaves(net)
    e0 = term.expected_ms(a)
    e0.backward()
    assert all(torch.isfinite(v.grad).all() for v in a.values())
    norm = torch.sqrt(sum((v.grad**2).sum() for v in a.values()))
    assert norm > 0
    h = 1e-2
    with torch.no_grad():
        ahead = term.expected_ms({k: v - h * v.grad / norm for k, v in a.items()})
        behind = term.expected_ms({k: v + h * v.grad / norm for k, v in a.items()})
    assert ahead < e0 < behind
    assert float((ahead - behind) / (2 * h)) == pytest.approx(-float(norm), rel=0.05)


@pytest.mark.parametrize("form", ["linear", "log"])
def test_latency_gradient_reaches_alpha_without_any_cross_entropy(form):
    net = tiny_net()
    term = term_for(net, lam=2.0, form=form)
    a = leaves(net)
    ce = torch.tensor(0.0 if form == "linear" else 1.0)  # constant: no CE gradient at all
    term.loss(ce, term.expected_ms(a)).backward()
    for k, v in a.items():
        assert v.grad is not None and v.grad.dtype == torch.float32
        assert torch.isfinite(v.grad).all()
        assert v.grad.abs().max() > 0, k


def test_linear_gradient_is_lambda_over_ref_times_de_dalpha():
    net = tiny_net()
    term = term_for(net, lam=3.0, ref_ms=1.7)
    a = leaves(net)
    term.loss(torch.tensor(0.5), term.expected_ms(a)).backward()
    want = latency_grads(term, a)
    for k in a:
        torch.testing.assert_close(a[k].grad, 3.0 / 1.7 * want[k], rtol=1e-5, atol=1e-9)


def test_lambda_zero_leaves_the_loss_as_the_cross_entropy():
    net = tiny_net()
    term = term_for(net, lam=0.0)
    ce = torch.tensor(1.25)
    assert term.loss(ce, term.expected_ms(leaves(net))) is ce


# ---- forms and budgets ------------------------------------------------------------------
def test_loss_values_at_uniform_alpha():
    net = tiny_net()
    zeros = {k: torch.zeros(SPACE.alpha_shape) for k in net.alphas}
    ce = torch.tensor(0.8)
    lin = term_for(net, lam=2.0)
    log = term_for(net, lam=2.0, form="log")
    e = lin.expected_ms(zeros)
    assert float(lin.loss(ce, e)) == pytest.approx(0.8 + 2.0)  # E / ref = 1
    assert float(log.loss(ce, e)) == pytest.approx(0.8)  # (log E / log ref)^λ = 1
    ref = term_for(net, lam=2.0, form="log", ref_ms=float(e) / 2)
    ratio = math.log(float(e) * 1e3) / math.log(float(e) / 2 * 1e3)
    assert float(ref.loss(ce, e)) == pytest.approx(0.8 * ratio**2.0, rel=1e-6)


@pytest.mark.parametrize("form", ["linear", "log"])
def test_below_the_budget_the_term_gives_no_gradient_above_it_does(form):
    net = tiny_net()
    uniform = term_for(net).uniform_ms()
    ce = torch.tensor(0.9)
    grads = {}
    for name, target in (("below", 2.0 * uniform), ("above", 0.5 * uniform)):
        term = term_for(net, lam=5.0, form=form, target_ms=target)
        a = leaves(net)
        loss = term.loss(ce, term.expected_ms(a))
        if name == "below":
            assert float(loss.detach()) == pytest.approx(0.9)
        else:
            assert float(loss.detach()) > 0.9
        loss.backward()
        grads[name] = a
    for k in net.alphas:
        assert torch.count_nonzero(grads["below"][k].grad) == 0
        assert grads["above"][k].grad.abs().max() > 0
        assert torch.isfinite(grads["above"][k].grad).all()


def test_linear_budget_value_above_the_target():
    net = tiny_net()
    uniform = term_for(net).uniform_ms()
    term = term_for(net, lam=4.0, target_ms=0.25 * uniform)
    zeros = {k: torch.zeros(SPACE.alpha_shape) for k in net.alphas}
    loss = term.loss(torch.tensor(0.0), term.expected_ms(zeros))
    assert float(loss) == pytest.approx(4.0 * 0.75, rel=1e-6)  # λ (E − t) / ref, ref = E


# ---- refusals ---------------------------------------------------------------------------
def test_refuses_a_predictor_of_another_space():
    net = tiny_net()
    with pytest.raises(InputError, match="model of space 'darts'"):
        LatencyTerm(predictor("darts"), SPACE, net.specs)


def test_refuses_a_predictor_of_another_definition_of_the_space():
    import dataclasses

    other = copy.copy(predictor("lenna"))
    other.space = dataclasses.replace(SPACE, reduction_channel_factor=3)
    with pytest.raises(InputError, match="another definition"):
        LatencyTerm(other, SPACE, tiny_net().specs)


def test_refuses_a_non_differentiable_predictor():
    with pytest.raises(InputError, match="not differentiable"):
        LatencyTerm(predictor("lenna", "gbdt"), SPACE, tiny_net().specs)


@pytest.mark.parametrize("lam", [-1.0, -1e-9, math.nan, math.inf])
def test_refuses_a_bad_lambda(lam):
    with pytest.raises(InputError, match="λ must be a finite number >= 0"):
        term_for(tiny_net(), lam=lam)


def test_refuses_an_unknown_form():
    with pytest.raises(InputError, match="unknown latency form 'square'"):
        term_for(tiny_net(), form="square")


@pytest.mark.parametrize("name", ["ref_ms", "target_ms"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_refuses_bad_reference_or_target(name, value):
    with pytest.raises(InputError, match="must be a positive number of ms"):
        term_for(tiny_net(), **{name: value})


@pytest.mark.filterwarnings("ignore::lenna.predict.OutOfRange")
def test_refuses_cells_outside_the_training_ranges_unless_allowed():
    specs = cell_specs(SPACE, NetConfig(channels=4, cells=2))  # 4 channels: trained 8..64
    with pytest.raises(InputError, match=r"cell 0 \(normal, 4 ch, 16 px\).*--allow-extrapolation"):
        LatencyTerm(predictor("lenna"), SPACE, specs)
    with pytest.warns(OutOfRange, match="channels 4"):  # said once, when the term is built
        term = LatencyTerm(predictor("lenna"), SPACE, specs, lam=1.0, allow_extrapolation=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... and not again on every step
        e = term.expected_ms({k: torch.zeros(SPACE.alpha_shape) for k in ("normal", "reduction")})
    assert len(term.outside) == 2 and math.isfinite(float(e))


@pytest.mark.filterwarnings("ignore::lenna.predict.OutOfRange")
def test_refuses_a_resolution_the_predictor_never_saw():
    specs = cell_specs(SPACE, NetConfig(channels=8, cells=2, resolution=64))  # cells at 32 px
    with pytest.raises(InputError, match="resolution 32"):
        LatencyTerm(predictor("lenna"), SPACE, specs)


# ---- search_step: the chain rule and the effect of λ ------------------------------------
@pytest.mark.parametrize("unrolled", [False, True], ids=["first_order", "unrolled"])
def test_search_step_adds_exactly_lambda_times_the_latency_gradient(unrolled):
    net = tiny_net()
    lam = 50.0
    term = term_for(net, lam=lam)
    g_ce, st_none = alpha_grads_after_step(clone(net), None, unrolled)
    g_lat, st = alpha_grads_after_step(clone(net), term, unrolled)
    want = latency_grads(term, dict(net.alphas.items()))
    for k in net.alphas:
        assert torch.isfinite(g_lat[k]).all()
        torch.testing.assert_close(
            g_lat[k] - g_ce[k], lam / term.ref_ms * want[k], rtol=1e-4, atol=1e-6
        )
        assert not torch.allclose(g_lat[k], g_ce[k])
    assert st.a_loss == pytest.approx(st_none.a_loss, rel=1e-6)  # same CE
    assert st.total_loss == pytest.approx(st.a_loss + lam, rel=1e-5)  # E = ref at the start
    assert st.expected_ms == pytest.approx(term.uniform_ms(), rel=1e-3)
    assert math.isnan(st_none.expected_ms)


def test_lambda_changes_the_alpha_update():
    net = tiny_net()
    a, b = clone(net), clone(net)
    alpha_grads_after_step(a, None)
    alpha_grads_after_step(b, term_for(net, lam=50.0))
    for k in net.alphas:
        assert not torch.allclose(a.alphas[k], net.alphas[k])  # both moved ...
        assert not torch.allclose(a.alphas[k], b.alphas[k])  # ... differently


def test_a_lambda_zero_term_steps_exactly_like_no_term():
    """λ = 0 with a predictor (a sweep's baseline) must be the plain DARTS step."""
    net = tiny_net()
    g_none, _ = alpha_grads_after_step(clone(net), None)
    g_zero, st = alpha_grads_after_step(clone(net), term_for(net, lam=0.0))
    for k in net.alphas:
        torch.testing.assert_close(g_zero[k], g_none[k])
    assert math.isfinite(st.expected_ms)


def test_a_term_below_its_budget_steps_like_no_term():
    net = tiny_net()
    uniform = term_for(net).uniform_ms()
    g_none, _ = alpha_grads_after_step(clone(net), None)
    g_budget, _ = alpha_grads_after_step(clone(net), term_for(net, lam=50.0, target_ms=2 * uniform))
    for k in net.alphas:
        torch.testing.assert_close(g_budget[k], g_none[k])


@pytest.mark.slow
def test_a_large_lambda_lowers_the_expected_latency_over_a_few_steps():
    net = tiny_net(mode="weighted")
    term = term_for(net, lam=50.0)
    w_opt, a_opt = optimisers(net, a_lr=0.02)
    bw, ba = batches(4)
    seen = []
    for _ in range(5):
        st = search_step(net, term, w_opt, a_opt, bw, ba, 5.0)
        seen.append(st.expected_ms)
    seen.append(float(term.expected_ms(dict(net.alphas.items())).detach()))
    assert all(b < a for a, b in itertools.pairwise(seen)), seen
    assert seen[-1] < 0.99 * seen[0]


def test_adam_on_the_term_alone_lowers_the_expected_latency():
    net = tiny_net()
    term = term_for(net, lam=1.0)
    a = leaves(net)
    opt = torch.optim.Adam(list(a.values()), lr=0.05)
    seen = []
    for _ in range(6):
        opt.zero_grad()
        e = term.expected_ms(a)
        seen.append(float(e.detach()))
        term.loss(torch.tensor(0.0), e).backward()
        opt.step()
    assert all(b < a for a, b in itertools.pairwise(seen)), seen


def test_gated_step_reaches_alpha_and_reports_its_stats():
    net = tiny_net(mode="gated")
    term = term_for(net, lam=1.0)
    w_opt, a_opt = optimisers(net)
    bw, ba = batches()
    before = {k: a.detach().clone() for k, a in net.alphas.items()}
    w_before = [p.detach().clone() for p in net.weights()]
    st = search_step(
        net, term, w_opt, a_opt, bw, ba, 5.0, generator=torch.Generator().manual_seed(0)
    )
    assert isinstance(st, StepStats)
    assert st.batch == 8 and 0 <= st.w_correct <= 8 and 0 <= st.a_correct <= 8
    for v in (st.w_loss, st.a_loss, st.total_loss, st.expected_ms):
        assert math.isfinite(v)
    assert 0 <= st.latency_s <= st.step_s
    for k, a in net.alphas.items():
        assert torch.isfinite(a.grad).all() and a.grad.abs().max() > 0
        assert not torch.equal(a.detach(), before[k])
        assert a.requires_grad  # restored after the w step
    assert any(not torch.equal(p, q) for p, q in zip(net.weights(), w_before, strict=True))


@pytest.mark.slow
def test_unrolled_with_a_vanishing_weight_lr_is_the_first_order_gradient():
    net = tiny_net()
    g_first, _ = alpha_grads_after_step(clone(net), None, unrolled=False, w_lr=1e-12)
    g_unrolled, _ = alpha_grads_after_step(clone(net), None, unrolled=True, w_lr=1e-12)
    for k in net.alphas:
        torch.testing.assert_close(g_unrolled[k], g_first[k], rtol=1e-3, atol=1e-7)


@pytest.mark.slow
def test_unrolled_step_restores_the_weights_before_the_weight_step():
    """With α frozen (lr 0) the w step after a second-order α step is the first-order one's:
    the virtual step and the finite differences must leave w exactly as they found it."""
    net = tiny_net()
    first, unrolled = clone(net), clone(net)
    g_first, _ = alpha_grads_after_step(first, term_for(net, lam=1.0), a_lr=0.0)
    g_unrolled, st = alpha_grads_after_step(unrolled, term_for(net, lam=1.0), True, a_lr=0.0)
    assert all(math.isfinite(v) for v in (st.w_loss, st.a_loss, st.total_loss))
    assert any(not torch.allclose(g_unrolled[k], g_first[k]) for k in net.alphas)
    for k in net.alphas:
        assert torch.equal(unrolled.alphas[k], net.alphas[k])
    moved = False
    for p, q, r in zip(unrolled.weights(), first.weights(), net.weights(), strict=True):
        assert torch.equal(p, q)
        moved |= not torch.equal(p, r)
    assert moved


def test_gated_unrolled_step_runs():
    """Second order with gates: only the sampled ops are in the graph."""
    net = tiny_net(mode="gated")
    w_opt, a_opt = optimisers(net)
    bw, ba = batches()
    st = search_step(
        net,
        term_for(net, lam=1.0),
        w_opt,
        a_opt,
        bw,
        ba,
        5.0,
        unrolled=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert math.isfinite(st.total_loss)
    for a in net.alphas.values():
        assert torch.isfinite(a.grad).all()


def test_a_lut_term_looks_its_op_latencies_up_once(monkeypatch):
    """After its first pass a `lut` term is a softmax and a product on α's device: the table
    lookup (which reads the shapes back to the host) does not run again."""
    net = tiny_net(cells=3)
    term = LatencyTerm(predictor("lenna", "lut"), SPACE, net.specs)
    a = {k: torch.randn(SPACE.alpha_shape, dtype=torch.float64) for k in net.alphas}
    first = term.expected_ms(a)

    def no_lookup(*args):
        raise AssertionError("looked up again")

    monkeypatch.setattr(term.predictor, "op_latencies", no_lookup)
    assert float(term.expected_ms(a)) == float(first)
    b = {k: v + 0.3 for k, v in a.items()}
    b["normal"][0, 0] += 1.0
    assert float(term.expected_ms(b)) != float(first)  # new α: a new value, same table

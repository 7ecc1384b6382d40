"""Mixed edges and blocks in the three modes: weighted, gated, fixed."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from lenna.errors import InputError
from lenna.space import Block, MixedEdge, get_space

pytestmark = pytest.mark.usefixtures("single_thread")

C, H = 4, 8
SPACES = ["lenna", "darts"]
BLOCK_TYPES = ["normal", "reduction"]


def inputs(space, n=2, h=H):
    torch.manual_seed(0)
    return [torch.randn(n, C, h, h) for _ in range(space.num_inputs)]


def random_alphas(space, seed=0):
    return torch.randn(space.alpha_shape, generator=torch.Generator().manual_seed(seed))


def first_choices(space, block_type):
    return [space.edge_ops(block_type, e)[-1] for e in space.edges]


def make_block(name, block_type, mode, **kw):
    space = get_space(name)
    if mode == "fixed":
        kw.setdefault("choices", first_choices(space, block_type))
    else:
        kw.setdefault("alphas", random_alphas(space))
    return Block(space, block_type, C, mode=mode, **kw)


def expected_shape(space, block_type, n=2):
    s = space.shapes(block_type, C, H)
    return (n, s["out_channels"], s["out_resolution"], s["out_resolution"])


@pytest.mark.parametrize("mode", ["weighted", "gated", "fixed"])
@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("name", SPACES)
def test_block_forward_shape(name, block_type, mode):
    block = make_block(name, block_type, mode)
    if mode == "gated":
        block.reset_gates(torch.Generator().manual_seed(1))
    y = block(*inputs(block.space))
    assert tuple(y.shape) == expected_shape(block.space, block_type)


@pytest.mark.parametrize("mode", ["weighted", "gated"])
def test_mixed_edge_forward_shape(mode):
    edge = MixedEdge(get_space("lenna").down_ops, 3, 6, 2, mode=mode)
    probs = torch.full((10,), 0.1)
    if mode == "gated":
        edge.reset_gates(probs, torch.Generator().manual_seed(0))
    assert tuple(edge(torch.randn(2, 3, 7, 7), probs).shape) == (2, 6, 4, 4)


# ---- gated: one op per edge --------------------------------------------------------------
def count_op_calls(block):
    """Per edge, a list of call counts per op; hooks on every module in the edge's ``ops``."""
    counts = {k: [0] * len(edge.ops) for k, edge in block.edges.items()}
    for k, edge in block.edges.items():
        for i, op in enumerate(edge.ops):

            def hook(_mod, _inp, _out, k=k, i=i):
                counts[k][i] += 1

            op.register_forward_hook(hook)
    return counts


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("name", SPACES)
def test_gated_runs_exactly_the_sampled_op_on_each_edge(name, block_type, grad):
    block = make_block(name, block_type, "gated")
    counts = count_op_calls(block)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for c in counts.values():
            c[:] = [0] * len(c)
        slots = block.reset_gates(gen)
        with torch.set_grad_enabled(grad):
            block(*inputs(block.space))
        active = block.active_ops()
        for (k, edge), slot in zip(block.edges.items(), slots, strict=True):
            ran = edge.op_names[slot] != "none"  # a sampled `none` edge is absent: no call
            assert counts[k] == [int(i == slot and ran) for i in range(len(edge.ops))]
            assert active[int(k)] == edge.op_names[slot]


def test_gated_forward_before_reset_is_refused():
    block = make_block("lenna", "normal", "gated")
    with pytest.raises(InputError, match="reset_gates"):
        block(*inputs(block.space))


def test_reset_gates_outside_gated_mode_is_refused():
    with pytest.raises(InputError, match="weighted"):
        make_block("lenna", "normal", "weighted").reset_gates()


@pytest.mark.slow
def test_gate_frequencies_follow_softmax_alpha():
    # a lenna reduction block has both edge kinds: 10 down ops (padded to 11) and 11 ops
    space, block_type = get_space("lenna"), "reduction"
    block = make_block("lenna", block_type, "gated", alphas=random_alphas(space, 7) * 0.7)
    probs = block.probabilities().detach().double().numpy()
    n = 3000
    gen = torch.Generator().manual_seed(2024)
    samples = np.array([block.reset_gates(gen) for _ in range(n)])  # (n, edges)
    for e in space.edges:
        k = len(space.edge_ops(block_type, e))
        observed = np.bincount(samples[:, e.index], minlength=space.max_ops)
        assert observed[k:].sum() == 0  # padded slots are never drawn
        expected = n * probs[e.index, :k] / probs[e.index, :k].sum()
        assert chisquare(observed[:k], expected).pvalue > 0.001, e


def test_mixed_edge_gate_frequencies_follow_probs():
    edge = MixedEdge(get_space("darts").ops, C, C, 1, mode="gated")
    probs = torch.softmax(torch.linspace(-1.5, 1.5, 8, dtype=torch.float64), 0)
    gen = torch.Generator().manual_seed(11)
    counts = np.bincount([edge.reset_gates(probs, gen) for _ in range(3000)], minlength=8)
    assert chisquare(counts, 3000 * probs.numpy() / probs.sum().item()).pvalue > 0.001


def test_same_seed_gives_the_same_gate_sequence():
    block = make_block("darts", "reduction", "gated")
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(5)
        runs.append([block.reset_gates(gen) for _ in range(20)])
    assert runs[0] == runs[1]
    other = torch.Generator().manual_seed(6)
    assert runs[0] != [block.reset_gates(other) for _ in range(20)]


# ---- weighted: the explicit weighted sum -------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", SPACES)
def test_weighted_edge_is_the_softmax_weighted_sum(name, stride):
    space = get_space(name)
    op_names = space.down_ops if stride == 2 else space.ops
    edge = MixedEdge(op_names, C, C, stride, mode="weighted").eval()
    probs = torch.softmax(torch.randn(len(op_names), generator=torch.Generator().manual_seed(0)), 0)
    x = torch.randn(2, C, 7, 7)
    with torch.no_grad():
        expected = sum(p * op(x) for p, op in zip(probs, edge.ops, strict=True))
        torch.testing.assert_close(edge(x, probs), expected)
        # and it is not just one op's output
        assert not torch.allclose(edge(x, probs), edge.ops[0](x))


@pytest.mark.parametrize(
    "op_names",
    [("none", "max_pool_3x3", "sep_conv_3x3"), ("sep_conv_3x3", "none", "skip_connect"), ("none",)],
    ids=["none-first", "none-between", "only-none"],
)
def test_the_weighted_product_has_the_explicit_sums_value_and_gradients(op_names):
    """The stacked product leaves `none` out wherever it sits; value, the probabilities'
    gradients (zero for `none`'s own) and the input's gradient are the explicit sum's."""
    edge = MixedEdge(op_names, C, C, 1, mode="weighted")
    logits = torch.randn(len(op_names), generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, C, 7, 7, generator=torch.Generator().manual_seed(2))
    got, want = [], []
    for fn, sink in ((lambda xx, pp: edge(xx, pp), got), (None, want)):
        xx, lg = x.clone().requires_grad_(), logits.clone().requires_grad_()
        pp = torch.softmax(lg, 0)
        out = fn(xx, pp) if fn else sum(p * op(xx) for p, op in zip(pp, edge.ops, strict=True))
        out.pow(2).sum().backward()
        sink.extend([out.detach(), xx.grad, lg.grad])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_the_weighted_product_keeps_a_channels_last_input_channels_last():
    space = get_space("darts")
    edge = MixedEdge(space.ops, C, C, 1, mode="weighted").to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(len(space.ops), generator=g), 0)
    x = torch.randn(2, C, 7, 7, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = edge(x, probs)
        expected = sum(p * op(x) for p, op in zip(probs, edge.ops, strict=True))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, expected)


# ---- α gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["weighted", "gated"])
@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("name", SPACES)
def test_alpha_receives_a_gradient(name, block_type, mode):
    block = make_block(name, block_type, mode)
    if mode == "gated":
        block.reset_gates(torch.Generator().manual_seed(0))
    block(*inputs(block.space)).pow(2).mean().backward()
    grad = block.alphas.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    padded = ~torch.as_tensor(block.space.op_mask(block_type))
    assert torch.count_nonzero(grad[padded]) == 0


def test_gated_under_inference_mode_runs_without_alpha_graph():
    block = make_block("lenna", "normal", "gated")
    block.reset_gates(torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y = block(*inputs(block.space))
    assert not y.requires_grad


def test_nan_parameter_alphas_are_refused_by_forward():
    space = get_space("lenna")
    alphas = torch.nn.Parameter(torch.full(space.alpha_shape, float("nan")))
    with pytest.raises(InputError, match="NaN"):
        Block(space, "normal", C, alphas=alphas)(*inputs(space))


def test_shared_alpha_parameter_is_not_copied():
    space = get_space("darts")
    shared = torch.nn.Parameter(torch.zeros(space.alpha_shape))
    a, b = (Block(space, "normal", C, alphas=shared) for _ in range(2))
    assert a.alphas is shared and b.alphas is shared


# ---- fixed -------------------------------------------------------------------------------
@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("name", SPACES)
def test_fixed_builds_only_the_chosen_op(name, block_type):
    block = make_block(name, block_type, "fixed")
    assert block.alphas is None
    assert len(block.edges) == block.space.num_edges
    assert all(len(edge.ops) == 1 for edge in block.edges.values())
    assert block.active_ops() == first_choices(block.space, block_type)


def test_fixed_block_has_no_probabilities_or_features():
    block = make_block("lenna", "normal", "fixed")
    with pytest.raises(InputError, match="fixed"):
        block.probabilities()
    with pytest.raises(InputError, match="fixed"):
        block.features(H)


def test_fixed_none_choice_drops_the_edge():
    space = get_space("darts")
    # DARTS-style derivation: every node keeps its edges from the two block inputs only.
    choices = ["sep_conv_3x3" if e.src < 2 else None for e in space.edges]
    block = Block(space, "reduction", C, mode="fixed", choices=choices)
    assert sorted(int(k) for k in block.edges) == [e.index for e in space.edges if e.src < 2]
    assert block.active_ops() == choices
    y = block(*inputs(space))
    assert tuple(y.shape) == expected_shape(space, "reduction")


def test_fixed_with_an_op_not_on_the_edge_is_refused():
    space = get_space("lenna")
    choices = ["Identity"] * space.num_edges  # not a down op on the reduction's input edges
    with pytest.raises(InputError, match="'Identity'"):
        Block(space, "reduction", C, mode="fixed", choices=choices)


def test_fixed_with_a_node_cut_off_is_refused():
    space = get_space("darts")
    choices = [None if e.dst == 2 else "skip_connect" for e in space.edges]
    with pytest.raises(InputError, match="node 2"):
        Block(space, "normal", C, mode="fixed", choices=choices)


def test_the_op_mask_tensor_is_made_once_per_space_type_and_device():
    """``probabilities`` reuses one mask tensor (a copy from the host per forward pass would
    stall a GPU), one per block type."""
    from lenna.space.encode import torch_mask

    sp = get_space("darts")
    m = torch_mask(sp, "normal", torch.device("cpu"))
    assert torch_mask(sp, "normal", torch.device("cpu")) is m
    assert torch.equal(m, torch.as_tensor(sp.op_mask("normal")))
    r = torch_mask(sp, "reduction", torch.device("cpu"))
    assert r is not m and torch.equal(r, torch.as_tensor(sp.op_mask("reduction")))


def test_a_non_contiguous_term_index_is_a_buffer_outside_the_state_dict():
    edge = MixedEdge(["skip_connect", "none", "max_pool_3x3"], 4, 4, 1)
    assert edge._term_probs is None and edge._term_index.tolist() == [0, 2]
    assert "_term_index" not in edge.state_dict()  # checkpoints and weights stay as they were

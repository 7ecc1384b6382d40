"""Labels as the derived network runs the cell: a one-hot gated sample calls exactly the op
modules the fixed (derived) cell calls, in the same order; a `none` edge calls nothing."""

import numpy as np
import pytest
import torch

from lenna.space import Block, cell_alphas, derive, get_space, random_cell

pytestmark = pytest.mark.usefixtures("single_thread")

C, H = 4, 8


def leaf_calls(block: Block) -> list[tuple[int, str]]:
    """(edge index, module class) of every leaf module called in one forward pass, in order;
    the preprocessing (DARTS) is outside the edges and the same in both modes."""
    calls: list[tuple[int, str]] = []
    hooks = []
    for k, edge in block.edges.items():
        for mod in edge.modules():
            if not list(mod.children()):
                hooks.append(
                    mod.register_forward_hook(
                        lambda m, a, o, k=int(k): calls.append((k, type(m).__name__))
                    )
                )
    x = [torch.randn(1, C, H, H, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.inference_mode():
        block.eval()(*x[: block.space.num_inputs])
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("block_type", ["normal", "reduction"])
@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_onehot_gated_sample_calls_what_the_fixed_cell_calls(name, block_type):
    space = get_space(name)
    rng = np.random.default_rng(7)
    for _ in range(5):
        cell = random_cell(space, block_type, rng)
        fixed = Block(space, block_type, C, "fixed", choices=cell)
        gated = Block(space, block_type, C, "gated", cell_alphas(space, block_type, cell))
        gated.reset_gates(torch.Generator().manual_seed(0))
        assert gated.active_ops() == [op if op is not None else "none" for op in cell]
        want, got = leaf_calls(fixed), leaf_calls(gated)
        assert got == want
        assert not any(cls == "Zero" for _, cls in got)
        dropped = {e.index for e in space.edges if cell[e.index] is None}
        assert not dropped & {k for k, _ in got}


def test_fixed_and_gated_cells_compute_the_same_output():
    space = get_space("darts")
    cell = random_cell(space, "normal", np.random.default_rng(3))
    torch.manual_seed(0)
    fixed = Block(space, "normal", C, "fixed", choices=cell).eval()
    gated = Block(space, "normal", C, "gated", cell_alphas(space, "normal", cell)).eval()
    # copy the fixed cell's weights into the gated one's chosen ops
    for k, edge in fixed.edges.items():
        g = gated.edges[k]
        g.ops[g.op_names.index(cell[int(k)])].load_state_dict(edge.ops[0].state_dict())
    gated.preprocess.load_state_dict(fixed.preprocess.state_dict())
    gated.reset_gates(torch.Generator().manual_seed(0))
    x = [torch.randn(2, C, H, H) for _ in range(2)]
    with torch.inference_mode():
        assert torch.allclose(fixed(*x), gated(*x))


def test_a_node_whose_sampled_inputs_are_all_none_is_zeros_of_its_shape():
    space = get_space("darts")
    cell = random_cell(space, "reduction", np.random.default_rng(0))
    alphas = cell_alphas(space, "reduction", cell)
    node = space.num_inputs  # the first node: edges 0 and 1
    none = space.ops.index("none")
    for e in space.edges:
        if e.dst == node:
            alphas[e.index, :] = -1e4
            alphas[e.index, none] = 0.0
    block = Block(space, "reduction", C, "gated", alphas).eval()
    block.reset_gates(torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = block(*[torch.randn(1, C, H, H) for _ in range(2)])
    width = 2 * C
    assert out.shape == (1, 4 * width, H // 2, H // 2)
    assert torch.count_nonzero(out[:, :width]) == 0  # node 2 is the first slice of the concat


def test_a_fixed_none_choice_is_a_dropped_edge():
    space = get_space("darts")
    cell = random_cell(space, "normal", np.random.default_rng(1))
    spelled = ["none" if op is None else op for op in cell]
    a = Block(space, "normal", C, "fixed", choices=cell)
    b = Block(space, "normal", C, "fixed", choices=spelled)
    assert list(a.edges) == list(b.edges) == [str(i) for i, op in enumerate(cell) if op]
    assert not any(type(m).__name__ == "Zero" for m in b.modules())


@pytest.mark.parametrize("block_type", ["normal", "reduction"])
@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_random_cells_are_what_derive_outputs(name, block_type):
    space = get_space(name)
    rng = np.random.default_rng(11)
    for _ in range(50):
        cell = random_cell(space, block_type, rng)
        assert derive(space, block_type, cell_alphas(space, block_type, cell)) == cell
        if name == "darts":
            for node in range(space.num_inputs, space.num_inputs + space.num_nodes):
                kept = [e for e in space.edges if e.dst == node and cell[e.index] is not None]
                assert len(kept) == 2
            assert sum(op is None for op in cell) == 6
        else:
            assert None not in cell


def test_op_costs_of_none_are_zero():
    from lenna.measure.bench import GatedBench
    from lenna.measure.timer import Timer

    space = get_space("darts")
    block = Block(space, "normal", C, "gated")
    x = tuple(torch.randn(1, C, H, H) for _ in range(2))
    bench = GatedBench(block, x, Timer(torch.device("cpu")), torch.Generator().manual_seed(0))
    costs = bench.op_costs(2)
    none = space.ops.index("none")
    assert np.all(costs[:, none] == 0.0)
    others = np.delete(costs, none, axis=1)
    assert np.all(others > 0)


def test_measure_block_takes_a_space_or_its_name():  # issue 25, D13
    from measure_helpers import fast_measure

    from lenna.measure import measure_block

    space = get_space("darts")
    alphas = cell_alphas(space, "normal", random_cell(space, "normal", np.random.default_rng(4)))
    m = measure_block("darts", "normal", 4, 8, alphas, fast_measure(), seed=1)
    assert m.latency_ms > 0 and m.estimate.resets >= 3


def test_measuring_leaves_the_callers_thread_count_as_it_was():
    from measure_helpers import fast_measure

    from lenna.measure import measure_block

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        space = get_space("lenna")
        measure_block(space, "normal", 4, 8, np.zeros(space.alpha_shape), fast_measure(), seed=0)
        assert torch.get_num_threads() == 2  # measured at 1 (fast_measure), restored after
    finally:
        torch.set_num_threads(before)

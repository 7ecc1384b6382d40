"""Space facts, block shapes, a third space as pure data, and refusal of bad input."""

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.space import Block, MixedEdge, SearchSpace, encode, get_space, list_ops, list_spaces

pytestmark = pytest.mark.usefixtures("single_thread")

C, H = 4, 8


def test_lenna_space_facts():
    sp = get_space("lenna")
    assert sp.num_edges == 15
    assert len(sp.ops) == 11
    assert len(sp.down_ops) == 10
    assert sp.num_features == 168  # the seed's 167 + resolution
    assert sp.alpha_shape == (15, 11)
    assert len(sp.feature_names()) == sp.num_features


def test_darts_space_facts():
    sp = get_space("darts")
    assert sp.num_edges == 14
    assert len(sp.ops) == 8
    assert sp.num_inputs == 2
    assert sp.num_features == 2 + 14 * 8 + 1
    assert len(sp.feature_names()) == sp.num_features


def test_both_presets_are_listed():
    assert {"lenna", "darts"} <= set(list_spaces())


@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_every_op_of_a_space_is_registered(name):
    sp = get_space(name)
    assert set(sp.ops) | set(sp.down_ops) <= set(list_ops())


def test_lenna_reduction_downsamples_exactly_the_edges_leaving_node_0():
    sp = get_space("lenna")
    down = [e for e in sp.edges if sp.is_down("reduction", e)]
    assert len(down) == 5
    assert all(e.src == 0 for e in down)
    assert all(sp.edge_ops("reduction", e) == sp.down_ops for e in down)
    assert not any(sp.is_down("normal", e) for e in sp.edges)


def test_lenna_reduction_block_builds_strided_edges_with_down_ops():
    sp = get_space("lenna")
    block = Block(sp, "reduction", C)
    for e in sp.edges:
        edge = block.edges[str(e.index)]
        assert edge.op_names == sp.edge_ops("reduction", e)
        y = edge(torch.randn(1, C if e.src == 0 else 2 * C, H, H), block.probabilities()[e.index])
        assert y.shape[-1] == (H // 2 if e.src == 0 else H)


@pytest.mark.parametrize("block_type,out_c,out_h", [("normal", C, H), ("reduction", 2 * C, H // 2)])
def test_lenna_block_shape(block_type, out_c, out_h):
    block = Block(get_space("lenna"), block_type, C)
    y = block(torch.randn(2, C, H, H))
    assert tuple(y.shape) == (2, out_c, out_h, out_h)
    assert get_space("lenna").shapes(block_type, C, H)["out_channels"] == out_c


@pytest.mark.parametrize("block_type,width,out_h", [("normal", C, H), ("reduction", 2 * C, H // 2)])
def test_darts_block_concatenates_four_nodes(block_type, width, out_h):
    block = Block(get_space("darts"), block_type, C)
    y = block(torch.randn(2, C, H, H), torch.randn(2, C, H, H))
    assert tuple(y.shape) == (2, 4 * width, out_h, out_h)
    assert get_space("darts").shapes(block_type, C, H)["out_channels"] == 4 * width


# ---- a third space is data, not code ---------------------------------------------------
TINY = SearchSpace(
    name="tiny-test-only",
    description="1 input, 2 nodes, two ops; never registered.",
    num_inputs=1,
    num_nodes=2,
    ops=("3x3_Conv", "Identity"),
    down_ops=("3x3_ConvDW", "2x2_avgpool"),
    output="last",
    preprocess=False,
    derive_rule="edge_argmax",
)


def test_third_space_structure():
    assert TINY.num_edges == 3
    assert TINY.alpha_shape == (3, 2)
    assert TINY.num_features == 2 + 3 * 2 + 1
    assert TINY.name not in list_spaces()


@pytest.mark.parametrize("mode", ["weighted", "gated", "fixed"])
@pytest.mark.parametrize("block_type", ["normal", "reduction"])
def test_third_space_builds_a_block_in_every_mode(mode, block_type):
    choices = [TINY.edge_ops(block_type, e)[-1] for e in TINY.edges]
    block = Block(TINY, block_type, C, mode=mode, choices=choices if mode == "fixed" else None)
    if mode == "gated":
        block.reset_gates(torch.Generator().manual_seed(0))
    y = block(torch.randn(2, C, H, H))
    shapes = TINY.shapes(block_type, C, H)
    out_h = shapes["out_resolution"]
    assert tuple(y.shape) == (2, shapes["out_channels"], out_h, out_h)
    if mode != "fixed":
        assert block.features(H).shape == (TINY.num_features,)


# ---- bad input -----------------------------------------------------------------------------
LENNA = get_space("lenna")


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: get_space("nope"), "'nope'"),
        (lambda: Block(LENNA, "normal", 0), "got 0"),
        (lambda: Block(LENNA, "normal", -3), "got -3"),
        (lambda: encode(LENNA, "normal", 0, H, np.zeros(LENNA.alpha_shape)), "got 0"),
        (lambda: encode(LENNA, "normal", -3, H, np.zeros(LENNA.alpha_shape)), "got -3"),
        (lambda: LENNA.shapes("reduction", C, 7), "got 7"),
        (lambda: encode(LENNA, "reduction", C, 7, np.zeros(LENNA.alpha_shape)), "got 7"),
        (lambda: Block(LENNA, "reduce", C), "'reduce'"),
        (lambda: encode(LENNA, "reduce", C, H, np.zeros(LENNA.alpha_shape)), "'reduce'"),
        (lambda: Block(LENNA, "normal", C, mode="sampled"), "'sampled'"),
        (lambda: MixedEdge(["3x3_Conv"], C, C, 1, mode="sampled"), "'sampled'"),
        (lambda: Block(LENNA, "normal", C, alphas=np.zeros((15, 10))), r"\(15, 10\)"),
        (lambda: Block(LENNA, "normal", C, alphas=torch.zeros(14, 11)), r"\(14, 11\)"),
        (lambda: Block(get_space("darts"), "normal", C, alphas=np.zeros((15, 11))), r"\(15, 11\)"),
    ],
    ids=[
        "unknown-space",
        "block-channels-0",
        "block-channels-neg3",
        "encode-channels-0",
        "encode-channels-neg3",
        "shapes-odd-reduction",
        "encode-odd-reduction",
        "block-type",
        "encode-block-type",
        "block-mode",
        "edge-mode",
        "alphas-shape-numpy",
        "alphas-shape-torch",
        "alphas-shape-darts",
    ],
)
def test_bad_input_raises_input_error_naming_the_value(call, needle):
    with pytest.raises(InputError, match=needle):
        call()


@pytest.mark.parametrize("bad,needle", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_non_finite_alphas_are_refused(bad, needle, as_torch):
    alphas = np.zeros(LENNA.alpha_shape)
    alphas[3, 2] = bad
    if as_torch:
        alphas = torch.as_tensor(alphas)
    with pytest.raises(InputError, match=needle):
        encode(LENNA, "normal", C, H, alphas)
    with pytest.raises(InputError, match=needle):
        Block(LENNA, "normal", C, alphas=alphas)

"""Feature encoding: numpy and torch agree, probabilities are well formed, gradients reach α."""

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.space import Block, encode, get_space, probabilities

CASES = [(name, bt) for name in ("lenna", "darts") for bt in ("normal", "reduction")]
C, H = 16, 32


def random_alphas(space, seed=0, batch=()):
    return np.random.default_rng(seed).normal(size=(*batch, *space.alpha_shape)) * 2


@pytest.mark.parametrize("name,block_type", CASES)
def test_numpy_and_torch_encodings_agree(name, block_type):
    space = get_space(name)
    a = random_alphas(space)
    f_np = encode(space, block_type, C, H, a)
    f_t = encode(space, block_type, C, H, torch.as_tensor(a, dtype=torch.float64))
    assert f_np.shape == f_t.shape == (space.num_features,)
    np.testing.assert_allclose(f_t.numpy(), f_np, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,block_type", CASES)
def test_feature_layout(name, block_type):
    space = get_space(name)
    a = random_alphas(space)
    f = encode(space, block_type, C, H, a)
    assert f[0] == (1.0 if block_type == "normal" else 0.0)
    assert f[1] == C
    assert f[-1] == H
    np.testing.assert_array_equal(f[2:-1], probabilities(space, block_type, a).ravel())


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("name,block_type", CASES)
def test_probabilities_are_softmax_over_real_ops_only(name, block_type, as_torch):
    space = get_space(name)
    a = random_alphas(space)
    p = probabilities(space, block_type, torch.as_tensor(a) if as_torch else a)
    p = np.asarray(p)
    mask = space.op_mask(block_type)
    assert np.all(p[~mask] == 0.0)
    assert np.all(p[mask] > 0.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for e in space.edges:
        k = len(space.edge_ops(block_type, e))
        row = np.exp(a[e.index, :k] - a[e.index, :k].max())
        np.testing.assert_allclose(p[e.index, :k], row / row.sum(), rtol=0, atol=1e-12)


def test_lenna_reduction_pads_the_down_edges():
    mask = get_space("lenna").op_mask("reduction")
    down = {0, 1, 3, 6, 10}  # edges 0->1, 0->2, 0->3, 0->4, 0->5
    assert mask.sum(axis=1).tolist() == [10 if i in down else 11 for i in range(15)]


@pytest.mark.parametrize("name,block_type", CASES)
def test_gradient_of_a_feature_reaches_alpha(name, block_type):
    space = get_space(name)
    alphas = torch.tensor(random_alphas(space), requires_grad=True)
    f = encode(space, block_type, C, H, alphas)
    f[2].backward()  # p[edge 0][op 0]
    grad = alphas.grad
    assert grad[0, 0] != 0
    assert torch.count_nonzero(grad[1:]) == 0  # other edges do not affect edge 0


@pytest.mark.parametrize("name,block_type", CASES)
def test_batched_torch_encode(name, block_type):
    space = get_space(name)
    alphas = torch.as_tensor(random_alphas(space, batch=(3,)))
    f = encode(space, block_type, C, H, alphas)
    assert tuple(f.shape) == (3, space.num_features)
    for b in range(3):
        torch.testing.assert_close(f[b], encode(space, block_type, C, H, alphas[b]), rtol=0, atol=0)
        assert not torch.equal(f[b], f[(b + 1) % 3])


def test_block_features_match_encode():
    space = get_space("darts")
    a = random_alphas(space).astype(np.float32)
    block = Block(space, "reduction", 4, alphas=a)
    np.testing.assert_allclose(
        block.features(8), encode(space, "reduction", 4, 8, a.astype(np.float64)), atol=1e-6
    )


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_wrong_alpha_shape_names_both_shapes(as_torch):
    space = get_space("lenna")
    a = np.zeros((15, 10))
    with pytest.raises(InputError, match=r"\(15, 11\).*\(15, 10\)"):
        encode(space, "normal", C, H, torch.as_tensor(a) if as_torch else a)


@pytest.mark.parametrize("bad,needle", [(np.nan, "NaN"), (np.inf, "inf")])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_probabilities_refuse_non_finite_alphas(bad, needle, as_torch):
    space = get_space("darts")
    a = np.zeros(space.alpha_shape)
    a[-1, -1] = bad
    with pytest.raises(InputError, match=needle):
        probabilities(space, "normal", torch.as_tensor(a) if as_torch else a)

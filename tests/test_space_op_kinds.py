"""Parameter-free ops per edge, and cells drawn with a given parameter-free share."""

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.measure.sampler import Sampler
from lenna.space import cell_alphas, derive, get_space, random_cell
from lenna.space.op_kinds import has_shared_lead, parameter_free, shared_leads


def test_parameter_free_ops_are_the_pools_and_identities_at_stride_1():
    darts = get_space("darts")
    e = darts.edges[0]  # leaves a block input
    assert parameter_free(darts, "normal", e) == {"max_pool_3x3", "avg_pool_3x3", "skip_connect"}
    # at stride 2 a skip is a factorised reduce (two 1x1 convolutions): not parameter-free
    assert parameter_free(darts, "reduction", e) == {"max_pool_3x3", "avg_pool_3x3"}
    lenna = get_space("lenna")
    first = lenna.edges[0]
    assert parameter_free(lenna, "normal", first) == {"3x3_maxpool", "3x3_avgpool", "Identity"}
    assert parameter_free(lenna, "reduction", first) == set()  # 2x2 pools then a 1x1 conv
    inner = next(x for x in lenna.edges if x.src >= lenna.num_inputs)
    assert parameter_free(lenna, "reduction", inner) == {"3x3_maxpool", "3x3_avgpool", "Identity"}


def test_shared_leads_are_the_parameter_free_first_layers():
    """What a runtime can merge across edges out of one node: DARTS's ReLU-led convolutions
    (the stride-2 skip, a factorised reduce, starts with a ReLU too) and each pool; never a
    layer with weights, an identity or ``none``. Keys differ by stride and by side."""
    darts = get_space("darts")
    e = darts.edges[0]
    normal = dict(zip(darts.ops, shared_leads(darts, "normal", e), strict=True))
    assert normal["none"] is None and normal["skip_connect"] is None
    relu = {normal[op] for op in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")}
    assert relu == {"ReLU()|keep"}
    assert normal["max_pool_3x3"] != normal["avg_pool_3x3"]
    assert normal["max_pool_3x3"].startswith("MaxPool2d(")
    down = dict(zip(darts.ops, shared_leads(darts, "reduction", e), strict=True))
    assert down["skip_connect"] == down["sep_conv_3x3"] == "ReLU()|down"
    assert down["max_pool_3x3"] not in normal.values()  # stride 2: another layer
    lenna = get_space("lenna")
    leads = dict(zip(lenna.ops, shared_leads(lenna, "normal", lenna.edges[0]), strict=True))
    assert {op for op, k in leads.items() if k is not None} == {"3x3_maxpool", "3x3_avgpool"}
    down = shared_leads(lenna, "reduction", lenna.edges[0])
    assert {k.split("(")[0] for k in down if k} == {"MaxPool2d", "AvgPool2d"}  # 2x2, then a conv


def test_probing_ops_leaves_torchs_random_state_alone():
    """Probing builds op modules, which draws their weights; a model trained after a first
    probe must start from the same weights as one trained after a cached probe."""
    from lenna.space import op_kinds

    op_kinds._CACHE.clear()
    op_kinds._LEAD_CACHE.clear()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for name in ("darts", "lenna"):
        sp = get_space(name)
        for bt in ("normal", "reduction"):
            for e in sp.edges:
                parameter_free(sp, bt, e)
                shared_leads(sp, bt, e)
        has_shared_lead(sp)
    assert torch.equal(torch.get_rng_state(), before)


def _free_edges(space, bt, cell):
    """(parameter-free kept edges, kept edges that had a parameter-free choice)."""
    free = chosen = 0
    for e, op in zip(space.edges, cell, strict=True):
        kinds = parameter_free(space, bt, e)
        if op is None or not kinds:
            continue
        chosen += 1
        free += op in kinds
    return free, chosen


@pytest.mark.parametrize("name", ["lenna", "darts"])
@pytest.mark.parametrize("bt", ["normal", "reduction"])
def test_a_share_of_one_or_zero_gives_only_that_kind_and_the_cell_stays_derivable(name, bt):
    space = get_space(name)
    rng = np.random.default_rng(0)
    for share in (0.0, 1.0):
        for _ in range(20):
            cell = random_cell(space, bt, rng, free_share=share)
            assert derive(space, bt, cell_alphas(space, bt, cell)) == cell
            free, chosen = _free_edges(space, bt, cell)
            assert chosen > 0
            assert free == (chosen if share == 1.0 else 0)


def test_a_bad_share_is_one_line():
    with pytest.raises(InputError, match="free_share"):
        random_cell(get_space("darts"), "normal", np.random.default_rng(0), free_share=1.5)


def _old_draw(space, bt, rng):
    """``random_cell`` as sampler versions 2 and 3 drew it, written out."""
    if space.derive_rule == "edge_argmax":
        return [str(rng.choice(space.edge_ops(bt, e))) for e in space.edges]
    cell = [None] * space.num_edges
    for node in range(space.num_inputs, space.num_inputs + space.num_nodes):
        incoming = [e for e in space.edges if e.dst == node]
        for i in rng.choice(len(incoming), size=min(2, len(incoming)), replace=False):
            e = incoming[int(i)]
            cell[e.index] = str(rng.choice([o for o in space.edge_ops(bt, e) if o != "none"]))
    return cell


@pytest.mark.parametrize("name", ["lenna", "darts"])
@pytest.mark.parametrize("bt", ["normal", "reduction"])
def test_without_a_share_the_draw_is_the_uniform_one_of_before(name, bt):
    """``free_share=None`` must draw exactly what versions 2 and 3 drew (files resume)."""
    space = get_space(name)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(10):
        assert random_cell(space, bt, a) == _old_draw(space, bt, b)


def test_a_space_of_lists_and_a_redefined_space_are_probed_by_their_definition():
    from dataclasses import replace

    darts = get_space("darts")
    listed = replace(darts, ops=list(darts.ops), down_ops=list(darts.down_ops))
    e = darts.edges[0]
    assert parameter_free(listed, "normal", e) == parameter_free(darts, "normal", e)
    fewer = replace(darts, ops=("none", "max_pool_3x3", "sep_conv_3x3"))
    assert parameter_free(fewer, "normal", darts.edges[2]) == {"max_pool_3x3"}


@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_version_4_changes_only_derived_cells_and_spreads_their_parameter_free_share(name):
    space = get_space(name)
    v3 = Sampler(space, channels=(8, 128), seed=0, version=3)
    v4 = Sampler(space, channels=(8, 128), seed=0, version=4)
    shares = {3: [], 4: []}
    for i in range(600):
        a, b = v3(i), v4(i)
        assert (a.block_type, a.channels, a.resolution, a.regime) == (
            b.block_type,
            b.channels,
            b.resolution,
            b.regime,
        )
        if b.regime not in ("derived", "near_derived"):
            np.testing.assert_array_equal(a.alphas, b.alphas)
            continue
        for version, spec in ((3, a), (4, b)):
            cell = derive(space, spec.block_type, spec.alphas)
            if spec.regime == "derived":  # exactly one-hot on the drawn cell
                np.testing.assert_array_equal(
                    spec.alphas, cell_alphas(space, spec.block_type, cell)
                )
            free, chosen = _free_edges(space, spec.block_type, cell)
            shares[version].append(free / chosen)
    s3, s4 = np.array(shares[3]), np.array(shares[4])
    assert len(s4) > 150
    # version 3 almost never puts most edges on pools and skips; version 4 often does, and
    # also draws the all-convolution corner
    assert (s4 >= 0.8).mean() > 0.1 > (s3 >= 0.8).mean()
    assert (s4 <= 0.1).mean() > 0.05
    assert abs(s4.mean() - 0.5) < 0.08

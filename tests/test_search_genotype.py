"""Derive rules, the genotype file, the network's shape, the search config and the figures."""

import json
import math

import numpy as np
import pytest
import torch
from search_helpers import PNG_MAGIC, cheap_cells, cheap_genotype, tiny_net

from lenna._version import __version__
from lenna.errors import InputError
from lenna.report.search_figures import compare_curves, draw_genotype, pareto, search_curves
from lenna.search.config import SearchConfig
from lenna.search.genotype import GENOTYPE_FORMAT, Genotype, derive
from lenna.search.network import NetConfig, Network, cell_specs, reduction_indices
from lenna.space import get_space, probabilities

pytestmark = pytest.mark.usefixtures("single_thread")

LENNA, DARTS = get_space("lenna"), get_space("darts")
D = {name: i for i, name in enumerate(DARTS.ops)}  # darts op -> α slot


def kept_per_node(space, choices):
    return {
        node: [e.index for e in space.edges if e.dst == node and choices[e.index] is not None]
        for node in range(space.num_inputs, space.num_inputs + space.num_nodes)
    }


# ---- lenna: every edge keeps its strongest op -------------------------------------------
def test_lenna_derive_is_the_argmax_of_every_edge():
    a = np.zeros(LENNA.alpha_shape)
    want = []
    for e in LENNA.edges:
        k = (3 * e.index) % len(LENNA.ops)
        a[e.index, k] = 1.0 + e.index
        want.append(LENNA.ops[k])
    assert derive(LENNA, "normal", a) == want
    assert derive(LENNA, "normal", torch.as_tensor(a)) == want


def test_lenna_reduction_edges_from_the_input_use_down_ops_and_ignore_padding():
    a = np.zeros(LENNA.alpha_shape)
    a[:, 10] = 100.0  # slot 10 exists on normal edges (Identity) only
    a[:, 3] = 1.0
    got = derive(LENNA, "reduction", a)
    for e, op in zip(LENNA.edges, got, strict=True):
        if e.src == 0:  # downsampling: 10 ops, slot 10 is padding
            assert op == LENNA.down_ops[3] == "5x5_ConvDW"
        else:
            assert op == "Identity"
    assert derive(LENNA, "normal", a) == ["Identity"] * LENNA.num_edges


def test_lenna_ties_go_to_the_first_op():
    assert derive(LENNA, "normal", np.zeros(LENNA.alpha_shape)) == ["3x3_Conv"] * 15


@pytest.mark.parametrize(
    ("alphas", "needle"),
    [
        (np.zeros((14, 11)), "must have shape"),
        (np.full(LENNA.alpha_shape, np.nan), "NaN or inf"),
    ],
)
def test_derive_refuses_bad_alphas(alphas, needle):
    with pytest.raises(InputError, match=needle):
        derive(LENNA, "normal", alphas)


# ---- darts: two strongest incoming edges per node, never `none` -------------------------
def test_darts_derive_on_hand_made_alphas():
    a = np.full(DARTS.alpha_shape, -3.0)
    # node 2 (edges 0, 1): both kept; `none` is strongest on edge 0 but never chosen
    a[0, D["none"]], a[0, D["sep_conv_3x3"]] = 10.0, 1.0
    a[1, D["dil_conv_5x5"]] = 0.5
    # node 3 (edges 2, 3, 4): edge 4's op has the largest logit after `none`, but `none`
    # takes its probability: ranked by softmax weight, edges 3 and 2 win
    a[2, D["avg_pool_3x3"]] = 2.0
    a[3, D["skip_connect"]] = 3.0
    a[4, D["none"]], a[4, D["sep_conv_5x5"]] = 20.0, 1.0
    # node 4 (edges 5..8): a three-way tie between edges 5, 6, 7: the earlier edges win
    a[5, D["max_pool_3x3"]] = a[6, D["max_pool_3x3"]] = a[7, D["max_pool_3x3"]] = 2.0
    # node 5 (edges 9..13)
    a[13, D["dil_conv_3x3"]] = 4.0
    a[9, D["sep_conv_3x3"]] = 3.5
    a[11, D["avg_pool_3x3"]] = 1.0
    want = [
        "sep_conv_3x3",
        "dil_conv_5x5",
        "avg_pool_3x3",
        "skip_connect",
        None,
        "max_pool_3x3",
        "max_pool_3x3",
        None,
        None,
        "sep_conv_3x3",
        None,
        None,
        None,
        "dil_conv_3x3",
    ]
    assert derive(DARTS, "normal", a) == want
    assert derive(DARTS, "reduction", a) == want  # darts: same op list on every edge


def test_darts_ties_within_an_edge_go_to_the_first_op_like_the_edge_ties():
    """Uniform α: every op ties. Edges tie too and the earlier ones win; the op should be the
    edge's first non-`none` op (as the lenna rule's argmax and DARTS's reference code pick),
    not whichever name sorts last."""
    got = derive(DARTS, "normal", np.zeros(DARTS.alpha_shape))
    assert kept_per_node(DARTS, got) == {2: [0, 1], 3: [2, 3], 4: [5, 6], 5: [9, 10]}
    assert {op for op in got if op is not None} == {"max_pool_3x3"}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("block_type", ["normal", "reduction"])
def test_darts_derive_keeps_two_edges_per_node_and_their_best_real_op(seed, block_type):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=DARTS.alpha_shape) * 2
    a[:, D["none"]] += 3.0  # `none` usually strongest, as in real DARTS searches
    got = derive(DARTS, block_type, a)
    p = probabilities(DARTS, block_type, a)
    best = {e.index: p[e.index, 1:].max() for e in DARTS.edges}
    assert "none" not in got
    for node, kept in kept_per_node(DARTS, got).items():
        assert len(kept) == 2
        dropped = [e.index for e in DARTS.edges if e.dst == node and e.index not in kept]
        assert all(best[d] <= min(best[k] for k in kept) for d in dropped)
        for k in kept:
            assert got[k] == DARTS.ops[1 + int(np.argmax(p[k, 1:]))]


# ---- the genotype file ------------------------------------------------------------------
@pytest.fixture
def genotype():
    torch.manual_seed(3)
    alphas = {bt: torch.randn(DARTS.alpha_shape) for bt in ("normal", "reduction")}
    net = NetConfig(channels=8, cells=3, num_classes=4)
    g = Genotype.from_alphas(DARTS, alphas, net, lam=0.5)
    g.predicted_cells_ms = [0.5, 0.25, 0.125]
    g.predicted_ms = 0.875
    g.info = {"seed": 3, "predictor": "somewhere"}
    return g


def test_genotype_round_trip(tmp_path, genotype):
    path = genotype.save(tmp_path / "genotype.json")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = Genotype.load(path)
    assert loaded == genotype
    d = json.loads(path.read_text())
    assert d["format"] == GENOTYPE_FORMAT
    assert d["lenna_version"] == __version__
    assert d["space_hash"] == DARTS.definition_hash()
    assert d["cells"]["normal"].count(None) == 14 - 8  # 4 nodes × 2 kept edges


def test_genotype_round_trip_lenna(tmp_path):
    g = cheap_genotype("lenna")
    assert Genotype.load(g.save(tmp_path / "g.json")) == g


def _edit(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("cells",), KeyError, "is not a genotype file (no 'cells')"),
        (("net",), KeyError, "is not a genotype file (no 'net')"),
        (("lam",), "many", "lam must be a weight >= 0, got 'many'"),
        (("lam",), -1, "lam must be a weight >= 0, got -1"),
        (("lam",), float("nan"), "lam must be a weight >= 0, got nan"),
        (("format",), "1", "format must be a whole number >= 1, got '1'"),
        (("format",), 0, "format must be a whole number >= 1, got 0"),
        (("space",), 3, "space must be a name, got 3"),
        (("net",), None, "malformed network config: not an object of sizes (got None)"),
        (("net", "channels"), "4", "channels must be a whole number, got '4'"),
        (("net", "channels"), 4.5, "channels must be a whole number, got 4.5"),
        (("net", "channels"), True, "channels must be a whole number, got True"),
        (("net", "bogus"), 1, "unknown field 'bogus' (from a newer LENNA?)"),
        (("net", "cells"), 10**7, "network cells must be <= 1000, got 10000000"),
        (("predicted_ms",), "x", "predicted_ms must be a number of ms, got 'x'"),
        (("predicted_ms",), True, "predicted_ms must be a number of ms, got True"),
        (("budget_ms",), -1.0, "budget_ms must be a number of ms >= 0, got -1.0"),
        (("predicted_gap_ms",), "x", "predicted_gap_ms must be a number of ms, got 'x'"),
        (("predicted_cells_ms",), ["x"], "predicted_cells_ms must be numbers of ms, got 'x'"),
        (("predicted_fixed_ms",), float("nan"), "predicted_fixed_ms must be a number of ms >= 0"),
        (("predicted_cells_ms",), 3.0, "predicted_cells_ms must be a list of ms, got 3.0"),
        (("info",), "x", "info must be an object, got 'x'"),
        (("info", "measured_as"), "x", "info.measured_as must be an object, got 'x'"),
        (("format",), GENOTYPE_FORMAT + 1, "newer than this LENNA's; upgrade"),
        (("space",), "nasnet", "unknown space 'nasnet'"),
        (("space_hash",), "0123456789abcdef", "another definition of space 'darts'"),
        (("cells",), [], "'cells' must map block types to op lists"),
        (("cells",), {}, "'cells' must map block types to op lists"),
        (("cells", "huge"), ["none"] * 14, "unknown block type 'huge'"),
        (("cells", "normal"), ["none"] * 13, "normal cell needs 14 ops"),
        (("cells", "normal"), "skip_connect", "normal cell needs 14 ops"),
        (("cells", "normal", 3), "conv_9x9", "op 'conv_9x9' is not a candidate on normal edge 3"),
        (("net", "channels"), KeyError, "malformed network config"),
        (("net", "resolution"), 30, "cannot pass the stem and the reductions"),
    ],
)
def test_genotype_load_refuses_malformed_files(tmp_path, genotype, path, value, needle):
    d = genotype.to_dict()
    _edit(d, path, value)
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError) as info:
        Genotype.load(p)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "is not a genotype file (not JSON"),
        (b"[1, 2]", "is not a genotype file (not a JSON object"),
        (b"\xff\xfe\x00garbage", "is not a genotype file (not JSON"),
        (b"", "is not a genotype file"),
    ],
)
def test_genotype_load_refuses_files_that_are_not_genotypes(tmp_path, content, needle):
    p = tmp_path / "g.json"
    p.write_bytes(content)
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        Genotype.load(p)


def test_genotype_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such genotype file"):
        Genotype.load(tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"is a folder; give a run's genotype\.json"):
        Genotype.load(tmp_path)  # a folder
    (tmp_path / "genotype.json").write_text("{}")
    with pytest.raises(InputError, match=r"is a folder; give .*genotype\.json"):
        Genotype.load(tmp_path)  # a run folder: its genotype is named


def test_a_down_op_is_not_a_candidate_on_a_normal_lenna_edge(tmp_path):
    g = cheap_genotype("lenna")
    d = g.to_dict()
    d["cells"]["normal"][0] = "2x2_maxpool"
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match="'2x2_maxpool' is not a candidate on normal edge 0"):
        Genotype.load(p)


def test_onehot_alphas_reproduce_the_genotype(genotype):
    onehot = genotype.onehot_alphas()
    for bt, ops in genotype.cells.items():
        p = probabilities(DARTS, bt, onehot[bt].numpy())
        assert set(np.unique(p)) <= {0.0, 1.0}
        for e, op in zip(DARTS.edges, ops, strict=True):
            assert DARTS.ops[int(np.argmax(p[e.index]))] == (op or "none")
        assert derive(DARTS, bt, onehot[bt]) == ops
    g = cheap_genotype("lenna")
    for bt, ops in g.cells.items():
        assert derive(LENNA, bt, g.onehot_alphas()[bt]) == ops


def test_onehot_alphas_refuse_a_dropped_edge_in_a_space_without_none():
    g = cheap_genotype("lenna")
    g.cells["normal"][4] = None
    with pytest.raises(InputError, match="cannot drop edges"):
        g.onehot_alphas()


# ---- the network ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "want"),
    [(1, set()), (2, {1}), (3, {1, 2}), (8, {2, 5}), (20, {6, 13})],
)
def test_reductions_sit_at_a_third_and_two_thirds(cells, want):
    assert reduction_indices(cells) == want


@pytest.mark.parametrize("space", [LENNA, DARTS], ids=lambda s: s.name)
def test_cell_specs_double_width_and_halve_resolution_at_reductions(space):
    specs = cell_specs(space, NetConfig(channels=8, cells=8))
    assert [(s.index, s.block_type, s.channels, s.resolution) for s in specs] == [
        (0, "normal", 8, 16),
        (1, "normal", 8, 16),
        (2, "reduction", 8, 16),
        (3, "normal", 16, 8),
        (4, "normal", 16, 8),
        (5, "reduction", 16, 8),
        (6, "normal", 32, 4),
        (7, "normal", 32, 4),
    ]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"channels": 0}, "network channels must be >= 1"),
        ({"cells": 0}, "network cells must be >= 1"),
        ({"stem_stride": 3}, "stem stride must be 1 or 2"),
        ({"resolution": 30}, "cannot pass the stem and the reductions evenly"),
        ({"resolution": 33, "stem_stride": 1}, "cannot pass"),
    ],
)
def test_net_config_refuses_impossible_shapes(kw, needle):
    with pytest.raises(InputError, match=needle):
        NetConfig(**kw)


def test_net_config_round_trip_and_malformed_dict():
    n = NetConfig(channels=16, cells=5, in_channels=3, num_classes=7, resolution=64)
    assert NetConfig.from_dict(json.loads(json.dumps(n.to_dict()))) == n
    with pytest.raises(InputError, match="malformed network config"):
        NetConfig.from_dict({"channels": 8})
    with pytest.raises(InputError, match="malformed network config"):
        NetConfig.from_dict({**n.to_dict(), "cells": "many"})


@pytest.mark.parametrize("space", ["lenna", "darts"])
@pytest.mark.parametrize("mode", ["weighted", "gated"])
def test_supernet_forward_shape_and_alpha_gradient(space, mode):
    net = tiny_net(space, mode)
    assert set(net.alphas) == {"normal", "reduction"}
    if mode == "gated":
        net.reset_gates(torch.Generator().manual_seed(0))
    x = torch.randn(2, 1, 32, 32)
    out = net(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    for a in net.alphas.values():
        assert a.grad is not None and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_fixed_network_has_only_the_chosen_ops(space):
    g = cheap_genotype(space)
    net = Network(get_space(space), g.net, "fixed", g.cells)
    assert len(net.alphas) == 0
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    sup = tiny_net(space)
    n_fixed = sum(p.numel() for p in net.parameters())
    n_super = sum(p.numel() for p in sup.weights())
    assert 0 < n_fixed < n_super
    with pytest.raises(InputError, match="needs choices for cell types"):
        Network(get_space(space), g.net, "fixed", {"normal": g.cells["normal"]})


# ---- the search config ------------------------------------------------------------------
def test_search_config_round_trip():
    cfg = SearchConfig(
        space="darts", predictor="/m", lam=0.5, target_ms=3.0, net=NetConfig(channels=16)
    )
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["net"]["channels"] == 16
    assert SearchConfig.from_dict(d) == cfg
    assert SearchConfig.from_dict({}) == SearchConfig()


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"lam": -0.5}, "λ must be a finite number >= 0"),
        ({"lam": math.nan}, "λ must be a finite number >= 0"),
        ({"lam": math.inf}, "λ must be a finite number >= 0"),
        ({"lam": "1"}, "λ must be a finite number >= 0"),
        ({"lam": 0.5}, "λ > 0 needs a latency predictor"),
        ({"space": "nasnet"}, "unknown space 'nasnet'"),
        ({"mode": "fixed"}, "a search needs mode weighted or gated"),
        ({"mode": "soft"}, "unknown mode 'soft'"),
        ({"form": "square"}, "unknown latency form 'square'"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch": 0}, "batch must be >= 1"),
        ({"limit": 1}, "limit must be >= 2 images"),
        ({"threads": 0}, "threads must be from 1 to 1024"),
        ({"w_lr": 0.0}, "w_lr must be > 0"),
        ({"a_lr": -1.0}, r"a_lr\) must be > 0"),
        ({"a_lr": math.nan}, r"a_lr\) must be > 0"),
    ],
)
def test_search_config_refuses(kw, needle):
    with pytest.raises(InputError, match=needle):
        SearchConfig(**kw)


def test_search_config_from_dict_refuses_unknown_keys_and_bad_values():
    with pytest.raises(InputError, match=r"unknown search config keys: \['colour'\]"):
        SearchConfig.from_dict({"colour": "red"})
    with pytest.raises(InputError, match="λ must be"):
        SearchConfig.from_dict({"lam": -1})
    with pytest.raises(InputError, match="malformed network config"):
        SearchConfig.from_dict({"net": {"cells": 3}})


# ---- figures ----------------------------------------------------------------------------
def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_draw_genotype_writes_a_png(tmp_path, space):
    g = cheap_genotype(space)
    out = draw_genotype(g, tmp_path / "cells.png")
    assert out == tmp_path / "cells.png" and _is_png(out)


def test_draw_genotype_with_one_cell_type(tmp_path):
    g = Genotype("lenna", {"normal": cheap_cells("lenna")["normal"]}, NetConfig(cells=1), 0.0)
    assert _is_png(draw_genotype(g, tmp_path / "c.png"))


def test_curves_and_pareto_write_pngs(tmp_path):
    metrics = [
        {"epoch": i, "w_acc": 0.2 * i, "a_acc": 0.1 * i, "predicted_ms": 2.0 - 0.1 * i}
        for i in (1, 2, 3)
    ]
    assert _is_png(search_curves(metrics, tmp_path / "s.png"))
    assert _is_png(compare_curves({"λ=0": metrics, "λ=1": metrics[:2]}, tmp_path / "c.png"))
    rows = [
        {"lam": 0.0, "measured_cells_ms": 1.0, "accuracy": 0.9, "predicted_ms": 1.1},
        {"lam": 1.0, "measured_cells_ms": 0.5, "accuracy": 0.8, "predicted_ms": None},
        {"lam": 2.0, "measured_cells_ms": 0.4, "accuracy": math.nan, "predicted_ms": math.nan},
    ]
    assert _is_png(pareto(rows, tmp_path / "p.png"))


def test_predictions_load_as_the_search_wrote_them(tmp_path, genotype):
    """A cell's prediction is the model's plus a measured offset, which may take it below 0,
    and an extrapolating model may overflow: the file a search wrote must load again (a
    sweep reads it right after the search)."""
    genotype.predicted_ms = float("inf")
    genotype.predicted_cells_ms = [-0.01, 0.5]
    loaded = Genotype.load(genotype.save(tmp_path / "g.json"))
    assert loaded.predicted_ms == float("inf") and loaded.predicted_cells_ms == [-0.01, 0.5]

"""The sampler covers the simplex, is reproducible per (seed, index), and its α are the gates'."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.measure.sampler import NETWORK_WIDTH_STEP, REGIMES, Sampler, network_width
from lenna.space import Block, cell_alphas, derive, encode, get_space, probabilities

N = 500
LO, HI = 8, 128


@pytest.fixture(scope="module")
def space():
    return get_space("lenna")


@pytest.fixture(scope="module")
def specs(space):
    sampler = Sampler(space, channels=(LO, HI), resolutions=(32, 16, 8), seed=0)
    return [sampler(i) for i in range(N)]


def edge_entropies(space, spec):
    """(normalised entropy, probabilities) of each edge's real ops."""
    p = probabilities(space, spec.block_type, spec.alphas)
    mask = space.op_mask(spec.block_type)
    out = []
    for e in range(space.num_edges):
        q = p[e][mask[e]]
        nz = q[q > 0]
        out.append((float(-(nz * np.log(nz)).sum()) / math.log(len(q)), q))
    return out


def test_every_regime_appears(specs):
    counts = Counter(s.regime for s in specs)
    assert set(counts) == set(REGIMES)
    for name, w in REGIMES.items():
        sd = math.sqrt(N * w * (1 - w))
        assert abs(counts[name] - N * w) < 4 * sd, (name, counts)


EXACT = ("onehot", "derived")  # the regimes whose α are exactly one-hot


def test_onehot_share_is_what_the_mixture_says(specs):
    share = sum(s.regime in EXACT for s in specs)
    w = sum(REGIMES[r] for r in EXACT)
    sd = math.sqrt(N * w * (1 - w))
    assert abs(share - w * N) < 4 * sd


def test_onehot_samples_are_exactly_one_hot(space, specs):
    onehot = [s for s in specs if s.regime in EXACT]
    assert onehot
    for s in onehot:
        for h, q in edge_entropies(space, s):
            assert h == 0.0
            assert set(np.unique(q)) <= {0.0, 1.0}
            assert q.sum() == 1.0


def test_entropy_spread_covers_the_simplex(space, specs):
    h = np.array([h for s in specs for h, _ in edge_entropies(space, s)])
    assert h.min() == 0.0  # exact corners
    assert h.max() > 0.99  # near log(K): the flat middle
    # and everything in between: every tenth of [0, 1] holds edges
    hist, _ = np.histogram(h, bins=10, range=(0.0, 1.0))
    assert (hist > 0).all(), hist
    # non-one-hot regimes are never exactly one-hot
    soft = [h for s in specs if s.regime not in EXACT for h, _ in edge_entropies(space, s)]
    assert min(soft) > 0.0


def test_channels_in_range_and_log_uniform(specs):
    ch = np.array([s.channels for s in specs])
    assert ch.min() >= LO and ch.max() <= HI
    assert all(isinstance(c, int) for c in ch.tolist())
    assert ch.min() == LO  # the low end is reached
    assert ch.max() > 0.75 * HI
    gm = math.sqrt(LO * (HI + 1))
    assert 0.8 * gm < np.median(ch) < 1.25 * gm  # a uniform draw would put it near 68
    # equal shares in equal log-intervals: each octave [8,16), [16,32), [32,64), [64,128]
    octaves = np.histogram(np.log2(ch), bins=[3, 4, 5, 6, 7.01])[0] / N
    assert (np.abs(octaves - 0.25) < 0.07).all(), octaves


def test_resolutions_and_block_types_uniform(specs):
    res = Counter(s.resolution for s in specs)
    bts = Counter(s.block_type for s in specs)
    assert set(res) == {32, 16, 8}
    assert set(bts) == {"normal", "reduction"}
    assert min(res.values()) > N / 3 - 4 * math.sqrt(N * 2 / 9)


def test_padded_slots_are_zero(space, specs):
    for s in specs[:50]:
        mask = space.op_mask(s.block_type)
        assert (s.alphas[~mask] == 0).all()
        assert s.alphas.shape == space.alpha_shape
        assert np.isfinite(s.alphas).all()


def test_same_seed_and_index_same_spec_other_seed_different(space):
    a = Sampler(space, channels=(2, 64), seed=11)
    b = Sampler(space, channels=(2, 64), seed=11)
    c = Sampler(space, channels=(2, 64), seed=12)
    for i in (0, 1, 17, 400):
        x, y, z = a(i), b(i), c(i)
        assert (x.index, x.block_type, x.channels, x.resolution, x.regime) == (
            y.index,
            y.block_type,
            y.channels,
            y.resolution,
            y.regime,
        )
        np.testing.assert_array_equal(x.alphas, y.alphas)
        assert not np.array_equal(x.alphas, z.alphas)
    # order does not matter: index 17 alone equals index 17 after others
    np.testing.assert_array_equal(Sampler(space, (2, 64), seed=11)(17).alphas, a(17).alphas)
    # different indices of one seed differ
    assert not np.array_equal(a(0).alphas, a(1).alphas)


def test_reduction_never_with_odd_resolution(space):
    sampler = Sampler(space, channels=(2, 4), resolutions=(7, 8), seed=0)
    pairs = Counter((s.block_type, s.resolution) for s in (sampler(i) for i in range(300)))
    assert ("reduction", 7) not in pairs
    assert set(pairs) == {("normal", 7), ("normal", 8), ("reduction", 8)}
    with pytest.raises(InputError, match="even"):
        Sampler(space, channels=(2, 4), resolutions=(7,), block_types=("reduction",))


@pytest.mark.parametrize("channels", [(0, 10), (10, 5), (-1, 4)])
def test_bad_channel_ranges(space, channels):
    with pytest.raises(InputError, match="channels"):
        Sampler(space, channels=channels)


def test_bad_lists(space):
    with pytest.raises(InputError):
        Sampler(space, resolutions=())
    with pytest.raises(InputError):
        Sampler(space, block_types=("nope",))
    with pytest.raises(InputError):
        Sampler(space, resolutions=(0,))


@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_features_and_gates_use_the_same_probabilities(name):
    space = get_space(name)
    sampler = Sampler(space, channels=(2, 4), resolutions=(8,), seed=3)
    seen = set()
    i = 0
    while seen != set(REGIMES):  # one block per regime is enough
        spec = sampler(i)
        i += 1
        if spec.regime in seen:
            continue
        seen.add(spec.regime)
        f = encode(space, spec.block_type, spec.channels, spec.resolution, spec.alphas)
        p_feat = f[2:-1].reshape(space.alpha_shape)
        block = Block(space, spec.block_type, spec.channels, "gated", spec.alphas)
        p_gate = block.probabilities().detach().numpy()
        np.testing.assert_allclose(p_feat, p_gate, rtol=0, atol=1e-6)
        # and the gates only ever pick a slot with non-zero probability
        path = block.reset_gates(torch.Generator().manual_seed(i))
        assert all(p_feat[e, j] > 0 for e, j in enumerate(path))


@pytest.mark.parametrize("name", ["lenna", "darts"])
def test_derived_regime_draws_only_cells_the_derive_rule_outputs(name):
    space = get_space(name)
    sampler = Sampler(space, channels=(2, 4), resolutions=(8,), seed=5)
    derived = [s for s in map(sampler, range(300)) if s.regime == "derived"]
    assert len(derived) > 30
    for s in derived:
        cell = derive(space, s.block_type, s.alphas)
        np.testing.assert_array_equal(s.alphas, cell_alphas(space, s.block_type, cell))
        if name == "darts":
            assert sum(op is None for op in cell) == 6  # two inputs kept per node


def test_near_derived_alpha_peaks_on_a_derivable_cell():
    space = get_space("darts")
    sampler = Sampler(space, channels=(2, 4), resolutions=(8,), seed=6)
    near = [s for s in map(sampler, range(300)) if s.regime == "near_derived"]
    assert len(near) > 20
    none = space.ops.index("none")
    top_none = []
    for s in near:
        p = probabilities(space, s.block_type, s.alphas)
        top_none.append(int((p.argmax(axis=1) == none).sum()))
        assert not np.all(p.max(axis=1) == 1.0)  # peaked, never exactly one-hot
    # the boost sits on `none` on a derived cell's 6 dropped edges (random α: 14/8 = 1.75)
    assert 4.5 <= np.mean(top_none) <= 7.0, top_none


@pytest.mark.parametrize(
    ("file", "version"),
    [
        ("lenna.db", 1),
        ("darts-v2.db", 2),
        ("darts-ort-v3-zen5.db", 3),
        ("darts-v4-zen5.db", 4),
        ("lenna-v4-zen5.db", 4),
        # resumed in a later sitting: their last rows too
        ("darts-ort-v4-zen5.db", 4),
        ("lenna-ort-v4-zen5.db", 4),
        ("lenna-v3-zen5.db", 3),
    ],
)
def test_each_version_draws_what_files_begun_with_it_hold(file, version):
    """Shipped files of each sampler version: their first and last rows are that version's
    draws, so a newer default never changes what an older file resumes with."""
    import sqlite3
    from pathlib import Path

    db = Path(__file__).parents[1] / "benchmarks" / "data" / file
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT * FROM (SELECT sample_index, block_type, channels, resolution, regime, alphas "
        "FROM samples ORDER BY sample_index LIMIT 20) UNION SELECT * FROM (SELECT "
        "sample_index, block_type, channels, resolution, regime, alphas FROM samples "
        "ORDER BY sample_index DESC LIMIT 20)"
    ).fetchall()
    assert len(rows) == 40
    con.close()
    sampler = Sampler(get_space(file.split("-")[0].removesuffix(".db")), seed=0, version=version)
    for i, bt, ch, res, regime, alphas in rows:
        spec = sampler(i)
        assert (spec.block_type, spec.channels, spec.resolution, spec.regime) == (
            bt,
            ch,
            res,
            regime,
        )
        np.testing.assert_allclose(spec.alphas, np.asarray(json.loads(alphas)), rtol=1e-12)


def test_version_3_moves_about_half_the_widths_to_a_network_width_and_nothing_else(space):
    v2 = Sampler(space, channels=(LO, HI), seed=0, version=2)
    v3 = Sampler(space, channels=(LO, HI), seed=0, version=3)
    moved = 0
    for i in range(N):
        a, b = v2(i), v3(i)
        assert (a.block_type, a.resolution, a.regime) == (b.block_type, b.resolution, b.regime)
        np.testing.assert_array_equal(a.alphas, b.alphas)
        if a.channels != b.channels:
            moved += 1
            assert b.channels % NETWORK_WIDTH_STEP == 0 and LO <= b.channels <= HI
    on_grid = sum(v3(i).channels % NETWORK_WIDTH_STEP == 0 for i in range(N))
    assert 0.4 * N <= moved <= 0.6 * N  # half draw a network width; a few land on their own
    assert 0.45 * N <= on_grid <= 0.65 * N  # v2 alone: about 1 in 10


def test_network_width_is_a_multiple_of_the_step_in_range_or_none():
    rng = np.random.default_rng(0)
    seen = Counter(network_width(20, 70, rng) for _ in range(2000))
    assert set(seen) == {24, 32, 40, 48, 56, 64}
    assert seen[24] > seen[64]  # log-uniform: narrow widths more often
    assert network_width(9, 15, rng) is None  # no multiple of 8: the sampler keeps its own
    assert network_width(8, 12, rng) == 8


def test_a_file_begun_with_sampler_2_resumes_with_it(tmp_path):
    from measure_helpers import tiny_config
    from typer.testing import CliRunner

    from lenna.cli import app
    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset

    db = tmp_path / "v2.db"
    cfg = tiny_config(channels=(8, 15), sampler_version=2)
    run_measurement(db, cfg, 1)
    result = CliRunner().invoke(app, ["measure", "--out", str(db), "-n", "8"])
    assert result.exit_code == 0, result.output
    with Dataset.open(db) as ds:
        df = ds.samples()
        assert ds.meta["config"]["sampler_version"] == 2
    v2, v3 = cfg.sampler(), Sampler(get_space("lenna"), (8, 15), (8,), seed=0, version=3)
    assert any(v2(i).channels != v3(i).channels for i in range(8))  # the two tell apart
    for r in df.itertuples():
        assert r.channels == v2(r.sample_index).channels


def test_unknown_sampler_version_is_one_line(space):
    with pytest.raises(InputError, match="sampler version 9"):
        Sampler(space, version=9)


def test_a_file_begun_with_sampler_1_resumes_with_it_from_the_cli(tmp_path):
    from measure_helpers import tiny_config
    from typer.testing import CliRunner

    from lenna.cli import app
    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset

    db = tmp_path / "old.db"
    cfg = tiny_config(sampler_version=1, label_version=1)  # a lenna file from before v2
    old = cfg.to_dict()
    del old["sampler_version"], old["label_version"]  # as such files store their config
    run_measurement(db, cfg, 1)
    with Dataset.open(db) as ds:
        ds.set_meta("config", old)
    result = CliRunner().invoke(app, ["measure", "--out", str(db), "-n", "4"])
    assert result.exit_code == 0, result.output
    with Dataset.open(db) as ds:
        df = ds.samples()
        assert "sampler_version" not in ds.meta["config"]  # the file's config is untouched
    v1 = Sampler(get_space("lenna"), channels=(2, 4), resolutions=(8,), seed=0, version=1)
    for r in df.itertuples():
        spec = v1(r.sample_index)
        assert r.regime == spec.regime
        np.testing.assert_array_equal(np.asarray(r.alphas), spec.alphas)


def test_a_darts_file_of_label_version_1_is_refused_in_one_line(tmp_path):
    from measure_helpers import one_line_error, tiny_config
    from typer.testing import CliRunner

    from lenna.cli import app
    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset

    db = tmp_path / "old.db"
    run_measurement(db, tiny_config(space="darts"), 0)
    with Dataset.open(db) as ds:
        old = dict(ds.meta["config"])
        del old["sampler_version"], old["label_version"]
        ds.set_meta("config", old)
    result = CliRunner().invoke(app, ["measure", "--out", str(db), "-n", "1"])
    one_line_error(result, "labels of version 1")
    with pytest.raises(InputError, match="measure into a new file"):
        run_measurement(tmp_path / "new.db", tiny_config(space="darts", label_version=1), 1)


@pytest.mark.slow
def test_sampler_version_option_starts_a_file_with_it_and_a_resume_cannot_change_it(tmp_path):
    from typer.testing import CliRunner

    from lenna.cli import app
    from lenna.measure.store import Dataset

    db = tmp_path / "v4.db"
    base = ["measure", "--out", str(db), "--channels", "8:12", "--resolutions", "8"]
    new = [*base, "--space", "darts", "-n", "2", "--drift-every", "0"]
    result = CliRunner().invoke(app, [*new, "--sampler-version", "4"])
    assert result.exit_code == 0, result.output
    with Dataset.open(db, readonly=True) as ds:
        assert ds.meta["config"]["sampler_version"] == 4
    other = CliRunner().invoke(app, [*base, "-n", "3", "--sampler-version", "3"])
    assert other.exit_code == 2
    assert "begun with sampler version 4" in other.output
    same = CliRunner().invoke(app, [*base, "-n", "3", "--sampler-version", "4"])
    assert same.exit_code == 0, same.output
    bad = CliRunner().invoke(app, [*new, "--out", str(tmp_path / "x.db"), "--sampler-version", "9"])
    assert bad.exit_code == 2
    assert "--sampler-version must be one of 1, 2, 3, 4, got 9" in bad.output

"""Shared helpers for the search tests: saved predictors, tiny data, tiny configs, genotypes.

Everything is tiny on purpose: a ``lut`` predictor trained on the synthetic latency dataset
(channels 8..64, resolutions 16 and 8), 32 synthetic training images, networks of 2 cells
at 16 px with 8 channels, one or two epochs. Cached objects are shared by the whole test
process; tests must treat them as read-only.
"""

from __future__ import annotations

import atexit
import copy
import csv
import json
import math
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from predict_helpers import SMALL_HP, synthetic_data

from lenna.predict import Predictor, load_predictor, train_predictor
from lenna.predict.io import save_predictor
from lenna.search.checkpoint import load_checkpoint
from lenna.search.config import SearchConfig
from lenna.search.datasets import ImageData, load_data
from lenna.search.folder import FIELDS
from lenna.search.genotype import Genotype
from lenna.search.latency import LatencyTerm
from lenna.search.network import NetConfig, Network
from lenna.search.run import run_search
from lenna.space import get_space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# the synthetic images: 1×32×32, 4 classes
TINY_NET = NetConfig(channels=8, cells=2, num_classes=4)
FAST_RULE = {"min_resets": 3, "max_resets": 5, "rel": 0.5}

_ROOT = Path(tempfile.mkdtemp(prefix="lenna-search-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@contextmanager
def one_thread():
    """For module-scoped fixtures, which run before the function-scoped ``single_thread``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache
def predictor_folder(space: str = "lenna", kind: str = "lut") -> Path:
    """A saved predictor of ``kind`` trained on ``synthetic_db(space=space)`` (read-only)."""
    hp = dict(SMALL_HP[kind])
    if kind == "gbdt":
        hp["n_estimators"] = 10
    model = train_predictor(synthetic_data(space=space), kind, seed=0, **hp)
    return save_predictor(model, _ROOT / f"{space}-{kind}")


@lru_cache
def predictor(space: str = "lenna", kind: str = "lut") -> Predictor:
    """The loaded model of :func:`predictor_folder` (read-only)."""
    return load_predictor(predictor_folder(space, kind), space=space)


@lru_cache
def tiny_data() -> ImageData:
    """32 synthetic training images (16 for w, 16 for α), 64 test images."""
    return load_data("synthetic", seed=0, limit=32)


def tiny_config(space: str = "lenna", **overrides) -> SearchConfig:
    """A search that takes about a second: 2 cells, 8 channels, batch 8, one epoch."""
    kw = {
        "space": space,
        "data": "synthetic",
        "limit": 32,
        "predictor": str(predictor_folder(space)),
        "lam": 1.0,
        "epochs": 1,
        "batch": 8,
        "mode": "weighted",
        "net": NetConfig(channels=8, cells=2),
        "a_lr": 0.01,
        "fixed_ms": 0.05,  # given, not measured: two runs stay comparable (test_search_budget)
        **overrides,
    }
    return SearchConfig(**kw)


def tiny_net(space: str = "lenna", mode: str = "weighted", seed: int = 0, **net) -> Network:
    torch.manual_seed(seed)
    cfg = NetConfig(**{**TINY_NET.to_dict(), **net})
    return Network(get_space(space), cfg, mode)


def term_for(net: Network, space: str = "lenna", **kw) -> LatencyTerm:
    return LatencyTerm(predictor(space), get_space(space), net.specs, **kw)


def batches(batch: int = 8) -> tuple[tuple, tuple]:
    """A w batch and an α batch from :func:`tiny_data` (disjoint images)."""
    d = tiny_data()
    w = (d.x_train[:batch], d.y_train[:batch])
    a = (d.x_train[16 : 16 + batch], d.y_train[16 : 16 + batch])
    return w, a


def optimisers(net: Network, w_lr: float = 0.025, a_lr: float = 0.01):
    w_opt = torch.optim.SGD(net.weights(), w_lr, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(list(net.alphas.values()), a_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    return w_opt, a_opt


def clone(net: Network) -> Network:
    return copy.deepcopy(net)


def cheap_cells(space: str) -> dict[str, list[str | None]]:
    """Cheap, valid choices per cell type: identities and pools (lenna), skips (darts)."""
    sp = get_space(space)
    cells = {}
    for bt in ("normal", "reduction"):
        ops: list[str | None] = []
        for e in sp.edges:
            names = sp.edge_ops(bt, e)
            if space == "lenna":
                ops.append("Identity" if "Identity" in names else "2x2_maxpool")
            else:  # keep the two edges from the cell inputs of every node
                ops.append("skip_connect" if e.src < 2 else None)
        cells[bt] = ops
    return cells


def cheap_genotype(space: str = "lenna", **net) -> Genotype:
    cfg = NetConfig(**{**TINY_NET.to_dict(), **net})
    return Genotype(space, cheap_cells(space), cfg, lam=0.5)


# ---- run folders ------------------------------------------------------------------------
TIMING = ("epoch_s", "latency_share")  # metrics columns that differ between equal runs


class Stop(Exception):
    """Stands in for Ctrl-C between two epochs."""


def stop_after(epoch):
    def on_epoch(row):
        if row["epoch"] == epoch:
            raise Stop

    return on_epoch


def run(cfg, out, **kw):
    kw.setdefault("figures", False)
    return run_search(cfg, out, data=tiny_data(), **kw)


def read_metrics(folder):
    with (folder / "metrics.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    return reader.fieldnames, rows


def as_floats(rows):
    """Rows as numbers, NaN (a column that does not apply, e.g. no budget) as None: comparable."""
    return [
        {k: None if math.isnan(float(v)) else float(v) for k, v in r.items() if k not in TIMING}
        for r in rows
    ]


def read_alphas(folder):
    return [json.loads(ln) for ln in (folder / "alphas.jsonl").read_text().splitlines()]


def weight_files(folder):
    return sorted(folder.glob("checkpoint-*.safetensors"))


def assert_same_run(a, b, ra, rb):
    """Two run folders hold the same search result (timing columns aside)."""
    assert ra.genotype == rb.genotype
    assert Genotype.load(a / "genotype.json") == Genotype.load(b / "genotype.json")
    ta, ma = load_checkpoint(a)
    tb, mb = load_checkpoint(b)
    assert sorted(ta) == sorted(tb)
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]
    strip = ("token", "weights")
    assert {k: v for k, v in ma.items() if k not in strip} == {
        k: v for k, v in mb.items() if k not in strip
    }
    assert read_alphas(a) == read_alphas(b)
    fa, rows_a = read_metrics(a)
    fb, rows_b = read_metrics(b)
    assert fa == fb == list(FIELDS)
    assert as_floats(rows_a) == as_floats(rows_b)
    assert as_floats(ra.metrics) == as_floats(rb.metrics)

"""A search run in a folder: its files, what it reports, and what it refuses."""

import json
import math
from dataclasses import replace

import pytest
import torch
from search_helpers import (
    PNG_MAGIC,
    predictor,
    predictor_folder,
    read_alphas,
    read_metrics,
    run,
    tiny_config,
    weight_files,
)

from lenna.errors import InputError
from lenna.folder_lock import held_folder
from lenna.search.checkpoint import load_checkpoint
from lenna.search.config import SearchConfig
from lenna.search.folder import FIELDS
from lenna.search.genotype import Genotype
from lenna.search.latency import LatencyTerm
from lenna.search.network import NetConfig, cell_specs
from lenna.search.run import run_search
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- one epoch: the run folder ----------------------------------------------------------
@pytest.mark.parametrize(
    ("space", "mode", "unrolled"),
    [
        ("lenna", "weighted", False),
        ("darts", "weighted", False),
        ("lenna", "gated", False),
        ("darts", "gated", False),
        ("darts", "weighted", True),
    ],
    ids=["lenna", "darts", "lenna_gated", "darts_gated", "darts_unrolled"],
)
@pytest.mark.slow
def test_one_epoch_writes_the_run_folder(tmp_path, space, mode, unrolled):
    out = tmp_path / "run"
    cfg = tiny_config(space, mode=mode, unrolled=unrolled)
    steps = []
    epochs = []
    res = run(
        cfg,
        out,
        figures=True,
        on_step=lambda st, i, n: steps.append((i, n)),
        on_epoch=epochs.append,
    )
    names = {p.name for p in out.iterdir()}
    assert len(weight_files(out)) == 1
    assert names - {weight_files(out)[0].name} == {
        "config.json",
        "metrics.csv",
        "alphas.jsonl",
        "checkpoint.json",
        "genotype.json",
        "cells.png",
        "search_curves.png",
    }
    for png in ("cells.png", "search_curves.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert steps == [(1, 2), (2, 2)]  # 16 + 16 images, batch 8
    assert epochs == res.metrics

    # config.json: the config, with the network fitted to the data
    stored = SearchConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert stored == replace(cfg, net=stored.net)  # the caller's config, not rewritten
    assert (stored.net.in_channels, stored.net.num_classes, stored.net.resolution) == (1, 4, 32)

    # metrics.csv
    fields, rows = read_metrics(out)
    assert fields == list(FIELDS)
    assert len(rows) == 1
    row = {k: float(v) for k, v in rows[0].items()}
    assert row["epoch"] == 1 and row["lr"] == pytest.approx(cfg.w_lr)
    assert 0 <= row["w_acc"] <= 1 and 0 <= row["a_acc"] <= 1
    for k in ("w_loss", "a_loss", "total_loss", "predicted_ms", "epoch_s"):
        assert math.isfinite(row[k]) and row[k] > 0, k
    assert row["total_loss"] > row["a_loss"]  # λ = 1: the latency term adds about 1
    assert 0 <= row["latency_share"] <= 1
    sp = get_space(space)
    for bt in ("normal", "reduction"):
        k_max = max(len(sp.edge_ops(bt, e)) for e in sp.edges)
        assert 0 < row[f"entropy_{bt}"] <= math.log(k_max) + 1e-9

    # alphas.jsonl = the checkpoint's α; predicted_ms = E at those α
    (line,) = read_alphas(out)
    tensors, meta = load_checkpoint(out)
    assert meta["epoch"] == 1
    alphas = {}
    for bt in ("normal", "reduction"):
        alphas[bt] = torch.tensor(line[bt])
        assert alphas[bt].shape == sp.alpha_shape
        assert torch.equal(alphas[bt], tensors[f"net.alphas.{bt}"])
    term = LatencyTerm(predictor(space), sp, cell_specs(sp, stored.net))
    assert row["predicted_ms"] == pytest.approx(float(term.expected_ms(alphas)), rel=1e-6)

    # genotype.json
    g = Genotype.load(out / "genotype.json")
    assert g == res.genotype
    assert g.space == space and g.lam == 1.0 and g.net == stored.net
    assert len(g.predicted_cells_ms) == 2
    assert g.predicted_ms == pytest.approx(sum(g.predicted_cells_ms))
    assert g.predicted_cells_ms == pytest.approx(term.per_cell_ms(g.onehot_alphas()))
    assert g.info["epochs"] == 1 and g.info["seed"] == 0 and g.info["data"] == "synthetic"
    assert res.folder == out


def test_a_search_without_predictor(tmp_path):
    res = run(tiny_config(predictor=None, lam=0.0, mode="gated"), tmp_path / "r")
    assert math.isnan(res.metrics[0]["predicted_ms"])
    assert res.genotype.predicted_ms is None and res.genotype.predicted_cells_ms == []
    assert res.metrics[0]["total_loss"] == pytest.approx(res.metrics[0]["a_loss"])


def test_lambda_zero_with_a_predictor_runs_and_reports_the_latency(tmp_path):
    """A sweep's λ = 0 baseline: plain DARTS, but E[latency] is still reported."""
    res = run(tiny_config(lam=0.0, mode="gated"), tmp_path / "r")
    assert math.isfinite(res.metrics[0]["predicted_ms"])
    assert res.genotype.predicted_ms is not None


def test_an_empty_existing_folder_is_fine(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    run(tiny_config(mode="gated"), out)
    assert (out / "genotype.json").is_file()


# ---- refusals ---------------------------------------------------------------------------
def test_a_missing_data_folder_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "r"
    cfg = tiny_config(mode="gated", data="cifar10:/nonexistent/cifar")
    with pytest.raises(InputError, match="cifar10 folder not found: /nonexistent/cifar"):
        run_search(cfg, out, figures=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"predictor": str(predictor_folder("darts"))}, "is a model of space 'darts', not 'lenna'"),
        ({"predictor": str(predictor_folder("lenna", "gbdt"))}, "not differentiable"),
        ({"net": NetConfig(channels=4, cells=2)}, "outside the predictor's training ranges"),
        ({"ref_ms": -1.0}, "reference latency must be a positive number"),
    ],
    ids=["other_space", "gbdt", "out_of_range", "bad_ref"],
)
@pytest.mark.filterwarnings("ignore::lenna.predict.OutOfRange")
def test_refused_searches(tmp_path, overrides, needle):
    with pytest.raises(InputError, match=needle):
        run(tiny_config(mode="gated", **overrides), tmp_path / "r")


def test_a_refused_search_can_be_retried_into_the_same_folder(tmp_path):
    """A refusal must not leave a run folder that blocks the corrected command."""
    out = tmp_path / "r"
    with pytest.raises(InputError, match="model of space 'darts'"):
        run(tiny_config(mode="gated", predictor=str(predictor_folder("darts"))), out)
    run(tiny_config(mode="gated"), out)
    assert (out / "genotype.json").is_file()


def test_refused_searches_into_a_new_folder_leave_none(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(InputError, match="model of space 'darts'"):
        run(tiny_config(mode="gated", predictor=str(predictor_folder("darts"))), out)
    assert not out.exists()


def test_a_folder_another_run_is_writing_is_refused_and_kept(tmp_path):
    """Two searches started into one folder both found it empty and wrote it together."""
    out = tmp_path / "r"
    with held_folder(out, "search"):  # another run holds it (flock: per open file)
        (out / "config.json").write_text("{}")  # what that run wrote so far
        with pytest.raises(InputError, match="being written by another search"):
            run(tiny_config(mode="gated"), out)
        assert (out / "config.json").read_text() == "{}"
    assert run(tiny_config(mode="gated"), tmp_path / "r2").genotype is not None


def test_out_of_range_cells_run_with_allow_extrapolation(tmp_path):
    cfg = tiny_config(mode="gated", net=NetConfig(channels=4, cells=2), allow_extrapolation=True)
    with pytest.warns(UserWarning, match="channels 4"):
        res = run(cfg, tmp_path / "r")
    assert math.isfinite(res.metrics[0]["predicted_ms"])


def test_lambda_refusals_come_from_the_config():
    with pytest.raises(InputError, match="λ must be a finite number >= 0"):
        tiny_config(lam=-1.0)
    with pytest.raises(InputError, match="λ must be a finite number >= 0"):
        tiny_config(lam=math.nan)
    with pytest.raises(InputError, match="needs a latency predictor"):
        tiny_config(lam=1.0, predictor=None)


def test_a_search_leaves_the_callers_config_as_given(tmp_path):
    from dataclasses import asdict

    import search_helpers as sh

    cfg = sh.tiny_config()
    before = asdict(cfg)
    sh.run(cfg, tmp_path / "r")
    assert asdict(cfg) == before


def test_the_search_entry_points_are_exported():
    import lenna.search as s

    assert {"SearchConfig", "run_search", "evaluate_arch"} <= set(s.__all__)

"""``benchmarks/compare_datasets.py --predictor``: two labelings of the same blocks, compared
by what one model kind learns from each on the same split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from synthetic import make_synthetic

BENCH = Path(__file__).parents[1] / "benchmarks"


def _module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its sibling _record
    spec = importlib.util.spec_from_file_location("compare_datasets", BENCH / "compare_datasets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_the_cleaner_labeling_of_the_same_blocks_scores_higher(tmp_path, monkeypatch):
    clean = make_synthetic(tmp_path / "a.db", n=120, channels=(8, 32))
    noisy = make_synthetic(tmp_path / "b.db", n=100, channels=(8, 32), noise=0.3)
    lines = _module(monkeypatch).predictor_table(clean, noisy, "elasticnet", [0, 1])
    assert "100 common rows" in lines[0]  # only the blocks both files hold
    head, rows = lines[2], lines[4:]
    assert "C < 16 A / B" in head and "C ≥ 16 A / B" in head and "16×16 A / B" in head
    assert [r.split("|")[1].strip() for r in rows] == ["0", "1"]
    for r in rows:
        a, b = (float(v) for v in r.split("|")[2].split("/"))
        assert a > b  # noise of ±30 % leaves few rows within ±10 %


def test_files_of_two_sampler_versions_are_not_the_same_blocks(monkeypatch):
    """An eager file (version 3) and an ONNX Runtime file (version 4 by default) of one seed
    hold other blocks at some indices: comparing them row by row would compare unlike rows."""
    mod = _module(monkeypatch)
    config = {"seed": 0, "channels": [8, 128], "resolutions": [32], "block_types": ["normal"]}
    a = {"space_hash": "h", "config": {**config, "sampler_version": 3}}
    assert mod.sampled_alike(a, {"space_hash": "h", "config": {**config, "sampler_version": 3}})
    assert not mod.sampled_alike(a, {"space_hash": "h", "config": {**config, "sampler_version": 4}})
    assert not mod.sampled_alike(a, {"space_hash": "x", "config": {**config, "sampler_version": 3}})
    old = {"space_hash": "h", "config": dict(config)}  # a file from before versions: 1
    assert mod.sampled_alike(old, {"space_hash": "h", "config": {**config, "sampler_version": 1}})

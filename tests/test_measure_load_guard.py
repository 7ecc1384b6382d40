"""The load guard: a label measured while its reference ran slow is measured again.

Why: under ONNX Runtime, rows whose reference ran 15 % or more slower than at calibration
read low (the reference slowed, the path less); measured again at ordinary load they came
back 4–30 % higher. ``max_load`` measures such a label again and keeps the try at the lowest
load.
"""

import numpy as np
import pytest
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure import block_measure
from lenna.measure.config import LOAD_RETRIES, MeasureConfig
from lenna.measure.rules import Estimate
from lenna.measure.run_config import RunConfig, upgrade_config
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")


def test_max_load_defaults_by_backend_and_old_files_keep_theirs_off():
    assert MeasureConfig().max_load == 0.0
    assert MeasureConfig(backend="onnxruntime").max_load == pytest.approx(1.15)
    assert MeasureConfig(max_load=1.3).max_load == pytest.approx(1.3)
    old = RunConfig(space="lenna", measure=MeasureConfig(backend="onnxruntime")).to_dict()
    del old["measure"]["max_load"]  # a file from before the guard
    assert RunConfig.from_dict(upgrade_config(old)).measure.max_load == 0.0


@pytest.mark.parametrize("bad", [0.5, -1.0, 1000.0, True, "x", float("nan")])
def test_bad_max_load_is_refused_in_one_line(bad):
    with pytest.raises(InputError, match="max_load"):
        MeasureConfig(max_load=bad)


class ScriptedRule:
    """A rule whose successive runs report the given loads (label = 1 / load, as the labels
    under load read low)."""

    control = False

    def __init__(self, loads):
        self.loads, self.calls = list(loads), 0

    def run(self, bench, costs=None, probs=None, z0_ms=None):
        load = self.loads[self.calls]
        self.calls += 1
        refs = [] if load is None else [load]
        return Estimate(
            1.0 / (load or 1.0),
            "cv",
            3,
            9,
            0.01,
            True,
            references_ms=refs,
            reference_ms=None if load is None else 1.0,
        )


def _measure(monkeypatch, loads, max_load):
    rule = ScriptedRule(loads)
    cfg = MeasureConfig(normalise=False, max_load=max_load)
    monkeypatch.setattr(MeasureConfig, "make_rule", lambda self: rule)
    space = get_space("lenna")
    alphas = np.zeros(space.alpha_shape)
    m = block_measure.measure_block(space, "normal", 8, 8, alphas, cfg, seed=0)
    return m, rule.calls


@pytest.mark.parametrize(
    ("loads", "max_load", "calls", "kept"),
    [
        ([1.05], 1.15, 1, 1.05),  # at ordinary load: one try
        ([1.3, 1.1], 1.15, 2, 1.1),  # the second try is below the bound: it is kept
        ([1.3, 1.2, 1.25], 1.15, 1 + LOAD_RETRIES, 1.2),  # never below: the lowest is kept
        ([1.3, 1.4, 1.5], 1.15, 1 + LOAD_RETRIES, 1.3),  # later tries slower: the first stays
        ([1.3], 0.0, 1, 1.3),  # off
        ([None], 1.15, 1, None),  # not normalised: no load to judge by
    ],
)
def test_a_label_above_max_load_is_measured_again_and_the_lowest_load_kept(
    monkeypatch, loads, max_load, calls, kept
):
    m, n = _measure(monkeypatch, loads, max_load)
    assert n == calls
    if kept is None:
        assert m.estimate.load is None
    else:
        assert m.estimate.load == pytest.approx(kept)
        assert m.latency_ms == pytest.approx(1.0 / kept)


def test_the_cli_takes_max_load_and_refuses_a_bad_one(tmp_path):
    out = str(tmp_path / "d.db")
    args = ["measure", "--out", out, *"--space lenna -n 1 --max-load 0.5".split()]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "max_load" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "d.db").exists()


@pytest.mark.parametrize(
    ("loads", "calls", "kept"), [([float("nan")], 1, None), ([1.3, float("nan"), 1.2], 3, 1.2)]
)
def test_a_load_that_is_not_a_number_is_not_judged_nor_kept(monkeypatch, loads, calls, kept):
    m, n = _measure(monkeypatch, loads, 1.15)
    assert n == calls
    if kept is not None:
        assert m.estimate.load == pytest.approx(kept)


def test_a_file_resumes_under_another_max_load_but_not_other_settings(tmp_path):
    from measure_helpers import make_dataset, tiny_config

    from lenna.measure.dataset_open import config_differences
    from lenna.measure.store import Dataset

    db = make_dataset(tmp_path / "d.db", 1)
    with Dataset.open(db, readonly=True) as ds:
        meta = ds.meta
    cfg = tiny_config()
    guarded = RunConfig.from_dict(
        {**cfg.to_dict(), "measure": {**cfg.measure.to_dict(), "max_load": 1.3}}
    )
    assert config_differences(meta, guarded) == ([], "")
    other = RunConfig.from_dict({**cfg.to_dict(), "measure": {**cfg.measure.to_dict(), "batch": 2}})
    assert config_differences(meta, other)[0] == ["measure"]


def test_a_derived_networks_measurement_is_guarded_alike(monkeypatch):
    """evaluate-arch's cells and network (measure_module) are measured as labels are."""
    import torch

    from lenna.measure import fixed

    rule = ScriptedRule([1.3, 1.1])
    monkeypatch.setattr(fixed, "make_rule", lambda *a, **k: rule)
    cfg = MeasureConfig(normalise=False, max_load=1.15)
    est = fixed.measure_module(torch.nn.ReLU(), (torch.randn(1, 4, 8, 8),), cfg)
    assert rule.calls == 2 and est.load == pytest.approx(1.1)
    rule = ScriptedRule([1.3])
    monkeypatch.setattr(fixed, "make_rule", lambda *a, **k: rule)
    fixed.measure_module(torch.nn.ReLU(), (torch.randn(1, 4, 8, 8),), MeasureConfig())
    assert rule.calls == 1  # eager default: off


def test_a_resume_under_another_guard_is_kept_on_record_and_shown(tmp_path):
    import dataclasses
    import json

    from measure_helpers import make_dataset, tiny_config

    from lenna.measure.dataset_open import MAX_LOAD_KEY, max_load_now
    from lenna.measure.runner import run_measurement
    from lenna.measure.store import Dataset

    db = make_dataset(tmp_path / "d.db", 2)  # the guard off (eager default)
    cfg = tiny_config()
    guarded = dataclasses.replace(cfg, measure=dataclasses.replace(cfg.measure, max_load=1.2))
    run_measurement(db, guarded, 3)
    run_measurement(db, guarded, 4)  # the same guard again: nothing new to note
    with Dataset.open(db, readonly=True) as ds:
        meta = ds.meta
    assert [(c["rows"], c["max_load"]) for c in meta[MAX_LOAD_KEY]] == [(2, 1.2)]
    assert max_load_now(meta) == pytest.approx(1.2)
    res = CliRunner().invoke(app, ["dataset", "info", str(db)])
    assert "load guard: off, rows above load 1.2 measured again from row 3 on" in res.stdout
    doc = json.loads(CliRunner().invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert doc["max_load"] == 0.0 and doc["max_load_changes"][0]["rows"] == 2

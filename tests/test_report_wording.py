"""What the reports and tables say: a quick demo calls itself a smoke test, the search's
predictor is not called the best where it ranked lower, a budget search is named by its
budget, the convergence figure follows the label's own rule, undefined figures print "-",
anchors read as channels at a resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lenna.measure.reference import anchor_label
from lenna.measure.rules import CIRule
from lenna.predict.metrics import metrics
from lenna.report.convergence import plot_convergence
from lenna.report.demo_report import _fit_lines, convergence_text
from lenna.report.demo_sentences import SMOKE, rank_sentence
from lenna.report.report_html import markdown_to_html
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.space import get_space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pred(mape: float, differentiable: bool = True) -> dict:
    return {"mape": mape, "differentiable": differentiable, "n": 5}


def test_the_searchs_predictor_is_called_first_only_when_it_was():
    preds = {"lut": _pred(30.0), "lut+mlp": _pred(92.6), "gbdt": _pred(5.0, False)}
    s = rank_sentence(preds, "lut+mlp")
    assert "ranked 2 of 2 differentiable models" in s and "lut first" in s
    assert "On these 5 held-out rows" in s
    assert "ranked first" in rank_sentence(preds, "lut")  # gbdt, not differentiable, is not ranked


def test_the_smoke_warning_names_the_quick_plan_and_where_to_read_why():
    from lenna.demo.plan import QUICK

    assert SMOKE.startswith("Smoke test (`--quick`), not evidence")
    assert "docs/limitations.md" in SMOKE
    assert f"{QUICK.samples} measured blocks" in SMOKE  # the plan's own sizes, kept in step


def test_html_renders_single_asterisk_emphasis_but_not_products():
    page = markdown_to_html("Each *reset* draws; 2 * 3 * 4 and a*b*c stay.", {}, Path("."))
    assert "<em>reset</em>" in page
    assert "2 * 3 * 4" in page and "a*b*c" in page


def _genotype(lam: float, budget_ms: float | None = None) -> Genotype:
    return Genotype(space="lenna", cells={}, net=NetConfig(), lam=lam, budget_ms=budget_ms)


def test_a_budget_search_is_named_by_its_budget_not_its_stored_lambda():
    assert _genotype(0.0, 7.933).searched_for == "budget 7.933 ms"
    assert _genotype(0.5).searched_for == "λ = 0.5"


def test_an_empty_split_has_zero_rows_and_undefined_figures():
    m = metrics(np.array([]), np.array([]))
    assert m["n"] == 0 and isinstance(m["n"], int)
    assert all(np.isnan(m[k]) for k in ("rmse_ms", "mape", "r2", "kendall_tau"))


@pytest.mark.parametrize(
    ("key", "label"), [("64x32", "64 ch 32×32"), ("8x16", "8 ch 16×16"), ("odd", "odd")]
)
def test_anchors_read_as_channels_at_a_resolution(key, label):
    assert anchor_label(key) == label


def _cv_row(expected: float | None, rule: str = "cv") -> dict:
    rng = np.random.default_rng(0)
    controls = rng.uniform(1.0, 2.0, 24)
    values = 1.5 * controls + 0.2 + rng.normal(0, 0.01, 24)
    trace = {"values_ms": list(values), "controls_ms": list(controls), "references_ms": []}
    if expected is not None:
        trace["expected_control_ms"] = expected
    est, _, _ = CIRule().fit(list(values), list(controls), expected or 0.0)
    return {
        "sample_index": 0,
        "block_type": "normal",
        "channels": 16,
        "resolution": 8,
        "rule": rule,
        "resets": 24,
        "latency_ms": est,
        "converged": 1,
        "trace": trace,
    }


@pytest.mark.parametrize("expected", [1.5, None])  # None: a trace from before the mean was stored
def test_the_convergence_figure_draws_a_cv_trace_old_or_new(tmp_path, expected):
    out = plot_convergence(_cv_row(expected), tmp_path / "c.png", {"rel": 0.01})
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_the_convergence_figure_draws_a_seed_trace(tmp_path):
    row = {**_cv_row(None), "rule": "seed"}
    row["trace"] = {"values_ms": row["trace"]["values_ms"]}
    out = plot_convergence(row, tmp_path / "s.png", None)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_the_convergence_text_names_the_rule_and_its_threshold(tmp_path, monkeypatch):
    import lenna.report.demo_report as report

    class _Ds:
        def __init__(self, row: dict, settings: dict) -> None:
            self.row, self.meta = row, {"rule_settings": settings}

        def __enter__(self) -> _Ds:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def sample(self, i: int) -> dict:
            return self.row

    row = {**_cv_row(1.5), "converged": 0, "resets": 40}
    monkeypatch.setattr(report.Dataset, "open", lambda *a, **k: _Ds(row, {"rel": 0.03}))
    text = convergence_text(tmp_path / "latency.db")
    assert "rule `cv`" in text and "±3 %" in text and "control variate" in text
    assert "40 resets" in text and "wider than ±3 %" in text
    monkeypatch.setattr(report.Dataset, "open", lambda *a, **k: _Ds({**row, "rule": "seed"}, {}))
    assert "running average" in convergence_text(tmp_path / "latency.db")


@pytest.mark.parametrize(
    ("changes", "cells_ms", "needle"),
    [
        (4, 7.5, "brought the prediction to 7.800 ms, within the budget"),
        (4, 8.0, "brought the prediction to 8.300 ms, as close to the budget as single"),
        (0, 7.5, "predicted at 8.810 ms."),
    ],
)
def test_the_budget_section_says_where_the_fit_left_the_prediction(
    tmp_path, changes, cells_ms, needle
):
    darts = get_space("darts")
    alphas = {bt: torch.zeros(darts.alpha_shape) for bt in ("normal", "reduction")}
    g = Genotype.from_alphas(darts, alphas, NetConfig(), lam=0.0)
    g.budget_ms, g.predicted_ms, g.predicted_fixed_ms, g.predicted_gap_ms = 7.9, cells_ms, 0.3, 0.0
    g.info = {"budget": {"derived_ms": 8.81, "changes_to_fit": changes, "multiplier": 0.3}}
    path = g.save(tmp_path / "genotype.json")
    text = " ".join(_fit_lines(path))
    assert "predicted at 8.810 ms" in text and needle in text
    assert _fit_lines(tmp_path / "missing.json") == []
    assert _fit_lines(None) == []


@pytest.mark.parametrize(
    ("rule", "settings", "expected", "needle"),
    [
        ("weird", {"rel": 0.01}, 1.5, "unknown rule 'weird': drawn as ci"),
        ("cv", {"no_such_setting": 1}, 1.5, "rule settings unreadable: defaults drawn"),
        ("cv", {"rel": 0.01}, None, "no control's mean stored"),
        ("cv", {"rel": 0.01}, 1.5, ""),
    ],
)
def test_the_convergence_figure_says_what_it_could_not_draw_as_stored(
    rule, settings, expected, needle
):
    import matplotlib.pyplot as plt

    from lenna.report.convergence import _rule_panels

    row = {**_cv_row(expected), "rule": rule}
    y = np.asarray(row["trace"]["values_ms"])
    fig, (a, b) = plt.subplots(1, 2)
    note = _rule_panels(row, row["trace"], y, np.arange(1, len(y) + 1), a, b, settings)
    plt.close(fig)
    assert (needle in note) if needle else note == ""

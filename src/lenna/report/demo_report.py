"""The demo's report: ``report.md`` (figures beside it) and a self-contained ``report.html``.

Every number names its source file in the demo folder, so a reader can check it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lenna.atomic import write_text
from lenna.measure.fingerprint import describe
from lenna.measure.store import Dataset
from lenna.report.convergence import plot_convergence
from lenna.report.demo_sentences import SMOKE, budget_sentence, gain_sentence, rank_sentence
from lenna.report.report_html import markdown_to_html
from lenna.report.scatter import plot_predicted_vs_measured

FP_KEYS = (
    "cpu_model",
    "logical_cores",
    "threads",
    "torch",
    "device",
    "dtype",
    "batch",
    "python",
    "os",
    "hash",
)


def _figures(res: object, folder: Path) -> dict[str, Path]:
    figs = folder / "figures"
    figs.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    with Dataset.open(folder / "latency.db", readonly=True) as ds:
        row, settings = ds.sample(0), ds.meta.get("rule_settings")
    out["convergence"] = plot_convergence(row, figs / "convergence.png", settings)
    scatter = {k: tuple(map(list, v["_scatter"])) for k, v in res.predictors.items()}
    out["scatter"] = plot_predicted_vs_measured(
        {k: (_arr(y), _arr(p)) for k, (y, p) in scatter.items()},
        figs / "predicted_vs_measured.png",
        title="held-out blocks measured in this demo",
    )
    sweep = folder / "search"
    out["curves"] = sweep / "search_curves.png"
    out["pareto"] = sweep / "pareto.png"
    for r in res.rows:
        out[f"cells λ={r['lam']:g}"] = Path(r["run"]) / "cells.png"
    if res.budget.get("run"):
        out["budget curves"] = folder / "budget" / "search_curves.png"
        out["budget cells"] = Path(res.budget["run"]) / "cells.png"
    return out


def _arr(x: list) -> object:
    import numpy as np

    return np.asarray(x, dtype=float)


RUNTIME_KEYS = ["backend", "onnxruntime", "graph_optimization", "provider"]  # not in torch's


def runtime_phrase(fp: dict) -> str:
    """Which runtime the report's latencies are the time of."""
    if fp.get("backend", "torch") == "onnxruntime":
        return (
            f"in ONNX Runtime {fp.get('onnxruntime', '')} ({fp.get('provider', 'CPU')}, graph "
            f"optimisation {fp.get('graph_optimization', 'all')}): each block and network as "
            "the runtime runs its exported graph"
        )
    return f"in PyTorch {fp.get('torch', '')} eager mode"


def convergence_text(db: Path) -> str:
    """What the convergence figure of sample 0 shows, in the words of the file's own rule."""
    with Dataset.open(db, readonly=True) as ds:
        row, settings = ds.sample(0), ds.meta.get("rule_settings") or {}
    lead = (
        "A label is the expected latency of a block whose edges are mixtures of ops. Each "
        "*reset* draws one op per edge (binary gates, with the α's probabilities) and times "
        "that path. "
    )
    if row["rule"] == "seed":
        tol, k = 100 * float(settings.get("tol", 0.01)), settings.get("k", 10)
        return lead + (
            "The label (the seed's rule) is the running average over resets, stopped once it "
            f"changed by less than {tol:g} % on {k} resets in a row. For sample 0 of "
            "`latency.db`: (1) each reset's latency, (2) the running average, the dashed line "
            f"being the stored label, (3) the average's relative change per reset against the "
            f"{tol:g} % mark."
        )
    rel = 100 * float(settings.get("rel", 0.01))
    cv = row["rule"] == "cv"
    how = (
        "the mean over paths, corrected by a control variate (each path's op costs, whose "
        "mean under α is known)"
        if cv
        else "the mean over paths"
    )
    conf = 100 * float(settings.get("confidence", 0.95))
    stop = (
        f"stopped once its {conf:g} % confidence interval is within ±{rel:g} % (from reset "
        f"{settings.get('min_resets', 20)} on) or at reset {settings.get('max_resets', 150)}"
    )
    end = (
        "it met the interval"
        if row["converged"]
        else f"it stopped at its most resets, with the interval wider than ±{rel:g} %"
    )
    return lead + (
        f"The label (rule `{row['rule']}`) is {how}, {stop}. For sample 0 of `latency.db` "
        f"({row['resets']} resets; {end}): (1) each reset's latency"
        + (", grey dots its op costs" if cv else "")
        + ", (2) the rule's estimate after each reset with its interval, the dashed line "
        "being the stored label, (3) the interval's half-width against the threshold."
    )


def _md(res: object, figs: dict[str, Path], folder: Path) -> str:
    rel = {k: v.relative_to(folder).as_posix() for k, v in figs.items()}
    fp = res.fingerprint
    lines = [
        "# LENNA demo report",
        "",
        *([f"**{SMOKE}**", ""] if res.plan == "quick" else []),
        f"**{gain_sentence(res.rows)}**",
        "",
        f"Plan `{res.plan}`; this run's stage times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in res.stage_s.items())
        + " (a resumed run skips the work an earlier one finished).",
        "",
        "## The machine",
        "",
        f"{describe(fp)} — every latency below was measured here (source: `latency.db`), "
        f"{runtime_phrase(fp)}.",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {k} | {fp.get(k)} |" for k in [*FP_KEYS, *(k for k in RUNTIME_KEYS if k in fp)]],
        "",
        "## How one label converged",
        "",
        convergence_text(folder / "latency.db"),
        "",
        f"![convergence]({rel['convergence']})",
        "",
        "## Latency predictors, side by side",
        "",
        "Held-out blocks of `latency.db` (models in `models/`, metrics from each `model.json`). "
        f"The search used **{res.chosen}**, chosen in advance: with a demo's few labels it was "
        "the best differentiable model over five seeded splits of a full demo's dataset (with "
        "1,600–3,000 labels `additive` is; see docs/benchmarks.md). "
        + rank_sentence(res.predictors, res.chosen),
        "",
        "| model | differentiable | n | RMSE ms | MAPE % | within ±10 % | R² | Kendall τ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, v in res.predictors.items():
        lines.append(
            f"| {k} | {'yes' if v['differentiable'] else 'no'} | {v['n']} | {v['rmse_ms']:.3f} "
            f"| {v['mape']:.2f} | {v['within_10']:.1f} | {_f(v['r2'])} | {_f(v['kendall_tau'])} |"
        )
    lines += [
        "",
        f"![predicted vs measured]({rel['scatter']})",
        "",
        "## Search (mnist5k), λ = 0 against λ > 0",
        "",
        "Per epoch: accuracy on the two halves of the search data (DARTS trains the weights on "
        "one half and α on the other) and the predictor's expected latency, E[latency] "
        "(source: `search/lam_*/metrics.csv`).",
        "",
        f"![search curves]({rel['curves']})",
        "",
    ]
    lines += [
        "The derived cells below: nodes `in0`, `in1` are the cell's inputs, numbered nodes its "
        "intermediate results; each arc is a kept edge labelled with its op. Blue edges keep "
        "the resolution, red ones halve it (a reduction cell's input edges).",
        "",
    ]
    for r in res.rows:
        key = f"cells λ={r['lam']:g}"
        lines += [f"![derived {key}]({rel[key]})", ""]
    lines += [
        "## Derived networks, measured for real",
        "",
        "Source: `search/sweep.json` (each from `search/lam_*/result.json`). Cells measured = "
        "each cell timed alone on its input in the network (what the predictor models); "
        "network = stem + cells + classifier, batch 1. Error = (predicted − measured) / "
        "measured.",
        "",
        "| λ | network ms (measured) | cells ms (measured) | cells ms (predicted) | error "
        "| test accuracy | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res.rows:
        err = r.get("prediction_error")
        lines.append(
            f"| {r['lam']:g} | {r['measured_ms']:.3f} | {r['measured_cells_ms']:.3f} | "
            f"{_f(r['predicted_ms'])} | {'-' if err is None else f'{100 * err:+.1f} %'} | "
            f"{100 * r['accuracy']:.2f} % | {r['params']:,} |"
        )
    lines += ["", f"![pareto]({rel['pareto']})", ""]
    lines += _budget_md(res, rel)
    return "\n".join(lines)


def _budget_md(res: object, rel: dict[str, str]) -> list[str]:
    """The budget search: the sentence, its numbers, the multiplier's curves."""
    b = res.budget
    lines = ["## Search within a latency budget", "", f"**{budget_sentence(b)}**", ""]
    if not b or "refused" in b:
        return lines
    err = b.get("network_prediction_error")
    lines += [
        "The budget is the whole network's latency (stem, cells, norms, classifier; batch 1), "
        "set to a share of the λ = 0 network's measured latency. The search raised a "
        "multiplier on the latency term while the derived network was predicted over budget "
        "and lowered it when under (source: `budget/sweep.json`, `budget/budget_*/metrics.csv`).",
        "",
        "| budget ms | network ms (measured) | network ms (predicted) | error | measured / budget "
        "| test accuracy |",
        "|---|---|---|---|---|---|",
        f"| {b['budget_ms']:g} | {b['measured_ms']:.3f} | {_f(b.get('predicted_network_ms'))} | "
        f"{'-' if err is None else f'{100 * err:+.1f} %'} | "
        f"{b['measured_ms'] / b['budget_ms']:.2f} | {100 * b['accuracy']:.2f} % |",
        "",
        *_fit_lines(Path(b["run"]) / "genotype.json" if b.get("run") else None),
        f"![budget search curves]({rel['budget curves']})",
        "",
        f"![derived cells within the budget]({rel['budget cells']})",
        "",
    ]
    return lines


def _fit_lines(genotype: Path | None) -> list[str]:
    """How the budget search's end met its budget in prediction: the network it derived and
    the op changes that walked it towards the budget (why the curves end above the table's
    prediction). Nothing where the genotype does not say."""
    try:  # the genotype's JSON as written (report sits below search: no Genotype here)
        d = json.loads(genotype.read_text()) if genotype is not None else {}
        fit, budget = d["info"]["budget"], float(d["budget_ms"])
        before, changes = float(fit["derived_ms"]), int(fit["changes_to_fit"])
        after = d["predicted_ms"] + d["predicted_fixed_ms"] + (d.get("predicted_gap_ms") or 0.0)
    except (OSError, ValueError, TypeError, KeyError):
        return []
    said = f"The network derived at the search's end was predicted at {before:.3f} ms"
    if changes == 0:
        return [f"{said}.", ""]
    where = (
        "within the budget"
        if after <= budget
        else "as close to the budget as single changes reach, still over it"
    )
    return [
        f"{said}; {changes} change{'' if changes == 1 else 's'} of one op (or one input) at a "
        "time, each the least loss of α's preference per ms saved, brought the prediction to "
        f"{after:.3f} ms, {where} (see docs/search.md, A latency budget).",
        "",
    ]


def _f(x: object) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def write_report(res: object, folder: str | Path) -> tuple[Path, Path]:
    """Write the figures, ``report.md`` and ``report.html`` into ``folder``."""
    folder = Path(folder)
    figs = _figures(res, folder)
    md = _md(res, figs, folder)
    write_text(folder / "report.md", md)
    write_text(folder / "report.html", markdown_to_html(md, figs, folder))
    return folder / "report.md", folder / "report.html"

"""A λ sweep: one search and one verification per λ, gathered into a table and a Pareto figure.

Each λ gets its own run folder; a sweep that is stopped and started again skips the λ whose
``result.json`` exists and resumes a search that has a checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.search.config import SearchConfig
from lenna.search.datasets import load_data
from lenna.search.genotype import Genotype
from lenna.search.run import CONFIG, GENOTYPE, METRICS, run_search
from lenna.search.verify import evaluate_arch

RESULT = "result.json"
TABLE_FIELDS = (
    "lam",
    "measured_ms",
    "measured_cells_ms",
    "predicted_ms",
    "prediction_error",
    "accuracy",
    "params",
)


def lam_folder(out: Path, lam: float) -> Path:
    return out / f"lam_{lam:g}"


def check_lams(lams: Sequence[float]) -> list[float]:
    if not lams:
        raise InputError("give at least one λ")
    bad = [x for x in lams if not (math.isfinite(x) and x >= 0)]
    if bad:
        raise InputError(f"λ must be finite numbers >= 0, got {bad}")
    if len(set(lams)) != len(lams):
        raise InputError("each λ once, please")
    return list(lams)


def run_one(
    base: SearchConfig,
    lam: float,
    out: Path,
    eval_epochs: int,
    measure: MeasureConfig | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    eval_limit: int | None = None,
) -> dict:
    """Search at ``lam`` then verify the derived network; returns the table row."""
    folder = lam_folder(out, lam)
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    cfg = replace(base, lam=lam)
    data = load_data(cfg.data, seed=cfg.seed, limit=cfg.limit)
    if not (folder / GENOTYPE).is_file():
        resume = (folder / CONFIG).is_file()
        run_search(
            cfg,
            folder,
            resume=resume,
            data=data,
            on_step=(lambda st, i, n: on_event("step", {"lam": lam, "i": i, "n": n, "st": st}))
            if on_event
            else None,
            on_epoch=(lambda row: on_event("epoch", {"lam": lam, **row})) if on_event else None,
        )
    genotype = Genotype.load(folder / GENOTYPE)
    full = load_data(cfg.data, seed=cfg.seed, limit=eval_limit)  # default: the whole train split
    res = evaluate_arch(genotype, full, eval_epochs, cfg.seed, measure=measure)
    res["run"] = str(folder)
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(folder / RESULT)
    return res


def write_table(rows: Sequence[dict], out: Path) -> None:
    """``sweep.csv``, ``sweep.json``, ``pareto.png`` and ``search_curves.png`` in ``out``."""
    from lenna.report.search_figures import compare_curves, pareto

    with (out / "sweep.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(list(rows), indent=2))
    pareto(rows, out / "pareto.png")
    curves = {}
    for r in rows:
        path = Path(r["run"]) / METRICS
        if path.is_file():
            with path.open() as f:
                curves[f"λ={r['lam']:g}"] = [
                    {k: float(v) for k, v in m.items()} for m in csv.DictReader(f)
                ]
    if curves:
        compare_curves(curves, out / "search_curves.png")


def run_sweep(
    base: SearchConfig,
    lams: Sequence[float],
    out: str | Path,
    eval_epochs: int = 5,
    measure: MeasureConfig | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    eval_limit: int | None = None,
) -> list[dict]:
    """Search + evaluate-arch per λ (resumable); writes the table and figures."""
    lams = check_lams(lams)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for lam in lams:
        if on_event:
            on_event("lam", {"lam": lam})
        rows.append(run_one(base, lam, out, eval_epochs, measure, on_event, eval_limit))
    write_table(rows, out)
    return rows

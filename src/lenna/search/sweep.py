"""A sweep: one search and one verification per λ (or per latency budget), gathered into a
table and a Pareto figure.

Each point gets its own run folder; a sweep that is stopped and started again skips the points
whose ``result.json`` exists and resumes a search that has a checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

from lenna.atomic import write_text
from lenna.errors import InputError
from lenna.folder_lock import held_folder
from lenna.jsonsafe import write_json
from lenna.measure.config import MeasureConfig
from lenna.search.config import SPEED_ONLY, SearchConfig
from lenna.search.datasets import load_data
from lenna.search.folder import (
    CONFIG,
    GENOTYPE,
    METRICS,
    NETWORK_WEIGHTS,
    check_resumable,
)
from lenna.search.genotype import Genotype
from lenna.search.recipe import TrainRecipe
from lenna.search.run import fit_net, run_search
from lenna.search.verify import evaluate_arch

RESULT = "result.json"
TABLE_FIELDS = (
    "lam",
    "budget_ms",
    "measured_ms",
    "predicted_network_ms",
    "within_budget",
    "measured_cells_ms",
    "predicted_ms",
    "prediction_error",
    "accuracy",
    "params",
)


def lam_folder(out: Path, lam: float, budget_ms: float | None = None) -> Path:
    return out / (f"lam_{lam:g}" if budget_ms is None else f"budget_{budget_ms:g}ms")


def point_label(lam: float, budget_ms: float | None) -> str:
    return f"λ={lam:g}" if budget_ms is None else f"T={budget_ms:g} ms"


def check_lams(lams: Sequence[float], eval_epochs: int = 0, what: str = "λ") -> list[float]:
    if not lams:
        raise InputError(f"give at least one {what}")
    bad = [x for x in lams if not (math.isfinite(x) and x >= 0)]
    if what != "λ":
        bad += [x for x in lams if x == 0]
    if bad:
        raise InputError(
            f"{what} must be finite numbers {'>' if what != 'λ' else '>='} 0, got {bad}"
        )
    if len(set(lams)) != len(lams):
        raise InputError(f"each {what} once, please")
    if eval_epochs < 0:
        raise InputError(f"eval epochs must be >= 0, got {eval_epochs}")
    return list(lams)


def run_one(
    base: SearchConfig,
    lam: float,
    out: Path,
    eval_epochs: int,
    measure: MeasureConfig | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    eval_limit: int | None = None,
    budget_ms: float | None = None,
) -> dict:
    """Search at ``lam`` (or within ``budget_ms``) then verify the derived network; returns
    the table row."""
    folder = lam_folder(out, lam, budget_ms)
    cfg = replace(base, lam=lam, budget_ms=budget_ms)
    label = point_label(lam, budget_ms)
    data = load_data(cfg.data, seed=cfg.seed, limit=cfg.limit)
    cfg.net = fit_net(cfg.net, data)
    evaluation = {"epochs": eval_epochs, "limit": eval_limit}
    if (folder / CONFIG).is_file():
        _check_same(folder, cfg, evaluation)
    if (folder / RESULT).is_file():
        return _row(json.loads((folder / RESULT).read_text()), out)
    if not (folder / GENOTYPE).is_file():
        resume = (folder / CONFIG).is_file()
        run_search(
            cfg,
            folder,
            resume=resume,
            data=data,
            on_step=(lambda st, i, n: on_event("step", {"label": label, "i": i, "n": n, "st": st}))
            if on_event
            else None,
            on_epoch=(lambda row: on_event("epoch", {"label": label, **row})) if on_event else None,
        )
    genotype = Genotype.load(folder / GENOTYPE)
    full = load_data(cfg.data, seed=cfg.seed, limit=eval_limit)  # default: the whole train split
    res = evaluate_arch(
        genotype,
        full,
        eval_epochs,
        cfg.seed,
        measure=measure,
        device=cfg.device,
        recipe=TrainRecipe(amp=cfg.amp, channels_last=cfg.channels_last),  # the search's speed
        weights_out=folder / NETWORK_WEIGHTS if eval_epochs > 0 else None,  # for `lenna export`
        on_stage=(lambda s: on_event("eval", {"label": label, "stage": s})) if on_event else None,
        on_epoch=(
            lambda e, loss, acc: on_event(
                "eval",
                {"label": label, "stage": f"training {e}/{eval_epochs}, train acc {acc:.1%}"},
            )
        )
        if on_event
        else None,
    )
    res["run"] = folder.name  # relative to the sweep folder: it may be moved or renamed
    res["evaluation"] = evaluation
    write_json(folder / RESULT, res)
    return _row(res, out)


def _row(res: dict, out: Path) -> dict:
    """A stored result with its run folder resolved against the sweep folder (and a
    not-measured accuracy, null in JSON, back to NaN)."""
    acc = res.get("accuracy")
    return {
        **res,
        "run": str(out / Path(res["run"]).name),
        "accuracy": math.nan if acc is None else acc,
    }


def _check_same(folder: Path, cfg: SearchConfig, evaluation: dict) -> None:
    """Refuse to reuse a λ folder made with other settings (its results would be stale)."""
    try:
        stored = json.loads((folder / CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{folder / CONFIG} is unreadable ({e.__class__.__name__})") from None
    # the compute device decides speed, not results: a sweep may continue on another one
    if isinstance(stored, dict) and set(stored) <= {f.name for f in fields(SearchConfig)}:
        stored = SearchConfig.from_dict(stored).to_dict()  # fields added later: their defaults
    diff = [
        k
        for k, v in cfg.to_dict().items()
        if stored.get(k) != v and k not in SPEED_ONLY and not (k == "amp" and v == "auto")
    ]
    if (folder / RESULT).is_file():
        old = json.loads((folder / RESULT).read_text()).get("evaluation")
        if old is not None and old != evaluation:
            diff.append("eval settings")
    if diff:
        raise InputError(
            f"{folder} was made with other settings ({', '.join(diff)}); "
            "use another --out or the same options"
        )


def write_table(rows: Sequence[dict], out: Path) -> None:
    """``sweep.csv``, ``sweep.json``, ``pareto.png`` and ``search_curves.png`` in ``out``."""
    from lenna.report.search_figures import compare_curves, pareto

    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=TABLE_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(out / "sweep.csv", buf.getvalue())
    write_json(out / "sweep.json", list(rows))
    pareto(rows, out / "pareto.png")
    curves, budgets = {}, {}
    for r in rows:
        path = Path(r["run"]) / METRICS
        if path.is_file():
            label = point_label(r["lam"], r.get("budget_ms"))
            with path.open() as f:
                curves[label] = [
                    {k: float(v) if v != "" else math.nan for k, v in m.items()}
                    for m in csv.DictReader(f)
                ]
            budgets[label] = r.get("budget_ms")
    if curves:
        compare_curves(curves, out / "search_curves.png", budgets)


def run_sweep(
    base: SearchConfig,
    lams: Sequence[float] | None,
    out: str | Path,
    eval_epochs: int = 5,
    measure: MeasureConfig | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    eval_limit: int | None = None,
    ray_address: str | None = None,
    budgets: Sequence[float] | None = None,
) -> list[dict]:
    """Search + evaluate-arch per λ, or per whole-network budget (ms) (resumable); writes the
    table and figures.

    With ``ray_address`` each point is one Ray task declaring the CPUs it trains with; the
    results are gathered into the same table (progress then comes per finished point).
    """
    if budgets:
        if lams:
            raise InputError("sweep λ or budgets, not both")
        points = [(0.0, b) for b in check_lams(budgets, eval_epochs, "budget")]
    else:
        points = [(lam, None) for lam in check_lams(lams or [], eval_epochs)]
    if eval_limit is not None and eval_limit < 1:  # before any λ's search runs
        raise InputError(f"--eval-limit must be at least 1, got {eval_limit}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    check_resumable(out, lambda n: n.startswith(("lam_", "budget_", "sweep.")), "a sweep's folder")
    with held_folder(out, "sweep"):  # one writer; a folder a refusal leaves empty is removed
        if ray_address is not None:
            rows = _run_on_ray(base, points, out, eval_epochs, measure, eval_limit, ray_address)
        else:
            rows = []
            for lam, budget in points:
                if on_event:
                    on_event("point", {"label": point_label(lam, budget)})
                rows.append(
                    run_one(
                        base, lam, out, eval_epochs, measure, on_event, eval_limit, budget_ms=budget
                    )
                )
        write_table(rows, out)
    return rows


def _run_on_ray(
    base: SearchConfig,
    points: list[tuple[float, float | None]],
    out: Path,
    eval_epochs: int,
    measure: MeasureConfig | None,
    eval_limit: int | None,
    address: str,
) -> list[dict]:
    """One task per point; each declares its CPUs (the search's threads, default 1) and
    torch in it uses that many, so tasks packed onto one node do not oversubscribe its cores."""
    from lenna.measure.fleet import connect

    ray = connect(address)
    if not base.threads:
        base = replace(base, threads=1)
    if base.predictor:  # workers may start elsewhere: the model folder by absolute path
        base = replace(base, predictor=str(Path(base.predictor).resolve()))
    # a search on a GPU takes one GPU per task, so a node with 8 GPUs runs 8 searches at once;
    # decided from what was asked (the driver may have no GPU), and Ray shows each task its
    # one GPU as cuda:0
    gpus = 1 if str(base.device).startswith("cuda") else 0
    if gpus:
        base = replace(base, device="cuda")
    task = ray.remote(num_cpus=base.threads, num_gpus=gpus)(run_one)
    refs = [
        task.remote(base, lam, out.resolve(), eval_epochs, measure, None, eval_limit, budget)
        for lam, budget in points
    ]
    return ray.get(refs)

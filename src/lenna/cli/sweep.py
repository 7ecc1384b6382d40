"""``lenna sweep``: search and evaluate-arch per λ or per budget, one table and one Pareto
figure."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from lenna.cli import search_options as opt
from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.search_progress import search_progress, sweep_events
from lenna.errors import InputError
from lenna.search.sweep import run_sweep
from lenna.signals import stop_on_signals

err = console(stderr=True)


def _numbers(option: str, text: str | None, default: str | None) -> list[float] | None:
    text = text if text is not None else default
    if text is None:
        return None
    items = [v.strip() for v in text.split(",")]
    try:
        values = [float(v) for v in items if v]
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"{option} needs at least one number, got {text!r}")
    if not all(items):  # "0,,1": a value lost in editing, not one to skip
        raise InputError(f"{option} has an empty item in {text!r}; remove the extra comma")
    return values


def sweep_table(rows: list[dict], title: str) -> Table:
    """One row per λ or budget: measured and predicted latency, accuracy."""
    by_budget = any(r.get("budget_ms") is not None for r in rows)
    t = Table(title=f"{'budget' if by_budget else 'λ'} sweep, {title}")
    first = ["budget ms", "measured ms", "predicted ms", "within"] if by_budget else ["λ"]
    rest = ["cells measured ms", "cells predicted ms", "accuracy"]
    if not by_budget:
        rest = ["measured ms", *rest]
    for col in first + rest:
        t.add_column(col, justify="right")
    for r in rows:
        pred, whole = r["predicted_ms"], r.get("predicted_network_ms")
        if by_budget:
            lead = [
                f"{r['budget_ms']:g}",
                f"{r['measured_ms']:.3f}",
                "-" if whole is None else f"{whole:.3f}",
                f"{r['measured_ms'] / r['budget_ms']:.2f}×",
            ]
        else:
            lead = [f"{r['lam']:g}", f"{r['measured_ms']:.3f}"]
        t.add_row(
            *lead,
            f"{r['measured_cells_ms']:.3f}",
            "-" if pred is None else f"{pred:.3f}",
            "-" if math.isnan(r["accuracy"]) else f"{100 * r['accuracy']:.2f} %",
        )
    return t


def sweep_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Sweep folder (one run folder per λ or budget)."),
    lams: str = typer.Option(
        None, "--lams", help="Comma-separated λ values (default: 0,0.5 unless --budgets)."
    ),
    budgets: str = typer.Option(
        None, "--budgets", help="Comma-separated whole-network budgets (ms), instead of λ."
    ),
    space: str = opt.SPACE,
    predictor: str = opt.PREDICTOR,
    data: str = opt.DATA,
    limit: int = opt.LIMIT,
    epochs: int = opt.EPOCHS,
    eval_epochs: int = typer.Option(5, "--eval-epochs", help="Training epochs per derived net."),
    eval_limit: int = typer.Option(
        None, "--eval-limit", help="Train derived nets on this many images (default 0 = all)."
    ),
    warmup: int = opt.WARMUP,
    seed: int = opt.SEED,
    form: str = opt.FORM,
    ref_ms: float = opt.REF,
    target_ms: float = opt.TARGET,
    budget_lr: float = opt.BUDGET_LR,
    fixed_ms: float = opt.FIXED,
    allow_extrapolation: bool = opt.EXTRAP,
    mode: str = opt.MODE,
    batch: int = opt.BATCH,
    channels: int = opt.CHANNELS,
    cells: int = opt.CELLS,
    arch_lr: float = opt.ARCH_LR,
    threads: int = opt.THREADS,
    device: str = opt.DEVICE,
    preset: str = opt.PRESET,
    augment: bool = opt.AUGMENT,
    amp: str = opt.AMP,
    channels_last: bool = opt.CHANNELS_LAST,
    cuda_graph: bool = opt.CUDA_GRAPH,
    ray: str = typer.Option(
        None, "--ray", help="Run each λ as a Ray task: auto, local, or HOST:PORT."
    ),
) -> None:
    """Search + evaluate-arch per λ or per budget; writes sweep.csv/json and a Pareto figure.

    Resumable: run the same command again and finished points are skipped.
    """
    if lams is not None and budgets is not None:
        raise InputError("give --lams or --budgets, not both")
    lam_values = None if budgets is not None else _numbers("--lams", lams, "0,0.5")
    budget_values = _numbers("--budgets", budgets, None)
    kw = {
        k: v
        for k, v in locals().items()
        if k not in ("ctx", "out", "lams", "budgets", "eval_epochs", "eval_limit", "ray")
    }
    kw.pop("lam_values")
    kw.pop("budget_values")
    if not predictor:
        raise InputError("a sweep needs --predictor MODEL")
    new_sweep = not out.exists()  # a sweep begun before this check still resumes
    if new_sweep and target_ms is not None and lam_values and not any(v > 0 for v in lam_values):
        raise InputError(opt.TARGET_ALONE)
    if new_sweep and ref_ms is not None and not any(v > 0 for v in lam_values or []):
        raise InputError(opt.REF_ALONE)
    if ray is not None:
        from lenna.measure.fleet import require_ray

        require_ray()
    cfg = opt.search_config(given=opt.typed_options(ctx, kw), **kw, lam=0.0)
    with search_progress() as bar:
        try:
            with stop_on_signals():
                rows = run_sweep(
                    cfg,
                    lam_values,
                    out,
                    eval_epochs,
                    on_event=sweep_events(bar, cfg.epochs),
                    eval_limit=None if eval_limit == 0 else eval_limit,  # 0: all, as --limit
                    ray_address=ray,
                    budgets=budget_values,
                )
        except KeyboardInterrupt as e:
            bar.stop()
            if out.is_dir():
                interrupted(e, f"progress is saved in {out}; run the same command to continue")
            interrupted(e, "before any point began; nothing was saved")
    console().print(sweep_table(rows, f"{cfg.space} space, {cfg.data}"))
    err.print(f"table and Pareto figure in {out}")

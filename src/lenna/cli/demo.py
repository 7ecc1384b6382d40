"""``lenna demo``: the whole loop on this machine, with a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.progress import CountColumn, make_progress
from lenna.cli.search_progress import sweep_events
from lenna.demo.plan import FULL, QUICK
from lenna.measure.config import MeasureConfig
from lenna.search.device import compute_device
from lenna.signals import Interrupted, stop_on_signals

err = console(stderr=True)


def demo_cmd(
    quick: bool = typer.Option(
        False,
        "--quick",
        help="A small run, still measured for real: a smoke test (2–4 minutes on 2 cores; "
        "several times that on a busy machine).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Folder for data, models, report (default: demo-out, or demo-out-quick with "
        "--quick, as `make demo` and `make demo-quick` use).",
    ),
    backend: str = typer.Option(
        "torch",
        "--backend",
        help="Runtime every latency is measured in: torch (eager) or onnxruntime (the blocks "
        "and networks as ONNX Runtime runs them; needs the onnx extra).",
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        help="Where searches and training compute: auto (a GPU when there is one), cpu, "
        "cuda or cuda:N. Latency is measured on the CPU.",
    ),
) -> None:
    """Measure → predict → search (λ = 0, λ > 0, a budget) → measure the results → report.

    Offline, on this machine. Writes OUT/report.html (self-contained) and OUT/report.md.
    Run it again with the same --out to resume after an interruption.
    """
    from lenna.demo.pipeline import check_out, run_demo
    from lenna.report.demo_report import write_report
    from lenna.report.demo_sentences import SMOKE, budget_sentence, gain_sentence

    if out is None:  # a quick run never lands in (and is refused by) the full demo's folder
        out = Path("demo-out-quick" if quick else "demo-out")
    MeasureConfig(backend=backend)  # an unknown or missing backend: one line, before anything
    compute_device(device)
    check_out(out)
    with make_progress(
        err,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ) as bar:
        tasks: dict[str, int] = {}
        on_event = sweep_events(bar, (QUICK if quick else FULL).search_epochs)

        def on_progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total, info="")
            bar.update(tasks[what], completed=done, total=total)

        try:
            with stop_on_signals():
                res = run_demo(
                    out,
                    quick,
                    on_stage=lambda s: bar.console.print(f"[bold cyan]{s}"),
                    on_progress=on_progress,
                    on_event=on_event,
                    on_predictors=lambda preds, chosen: bar.console.print(_table(preds, chosen)),
                    backend=backend,
                    device=device,
                )
                md, page = write_report(res, out)
        except Interrupted as e:
            bar.stop()
            interrupted(e, f"finished stages are kept in {out}; run the same command to resume")
    if quick:
        err.print(f"\n{SMOKE}")
    err.print(f"\n{gain_sentence(res.rows)}")
    err.print(budget_sentence(res.budget))
    err.print(f"report: {page} (and {md})")


def _table(preds: dict[str, dict], chosen: str) -> Table:
    """The predictor comparison, held-out rows of the demo's own measurements."""
    t = Table(title=f"latency predictors on held-out blocks (the search uses {chosen})")
    for col in ("model", "differentiable", "n", "MAPE %", "within ±10 %", "RMSE ms", "τ"):
        t.add_column(col, justify="right")
    for kind, m in preds.items():
        t.add_row(
            kind,
            "yes" if m["differentiable"] else "no",
            str(m["n"]),
            f"{m['mape']:.2f}",
            f"{m['within_10']:.1f}",
            f"{m['rmse_ms']:.3f}",
            f"{m['kendall_tau']:.3f}",
        )
    return t

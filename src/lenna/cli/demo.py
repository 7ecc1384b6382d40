"""``lenna demo``: the whole loop on this machine, with a report."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lenna.cli.app import fail
from lenna.cli.search import _Bars
from lenna.measure.runner import Interrupted, stop_on_signals

err = Console(stderr=True)


def demo_cmd(
    quick: bool = typer.Option(
        False, "--quick", help="A small run (under 3 minutes on 2 cores), still measured for real."
    ),
    out: Path = typer.Option(Path("lenna-demo"), "--out", help="Folder for data, models, report."),
) -> None:
    """Measure → predict → search (λ = 0 and λ > 0) → measure the results → report.

    Offline, on this machine. Writes OUT/report.html (self-contained) and OUT/report.md.
    Run it again with the same --out to resume after an interruption.
    """
    from lenna.demo.pipeline import check_out, run_demo
    from lenna.report.demo_report import gain_sentence, write_report

    check_out(out)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        tasks: dict[str, int] = {}
        bars: dict[float, _Bars] = {}

        def on_progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total, info="")
            bar.update(tasks[what], completed=done, total=total)

        def on_event(kind: str, info: dict) -> None:
            lam = info["lam"]
            if kind == "lam":
                bars[lam] = _Bars(bar, 0, f"search λ={lam:g} ")
            elif kind == "step":
                bars[lam].step(info["st"], info["i"], info["n"])
            elif kind == "epoch":
                bars[lam].epoch_done(info)

        try:
            with stop_on_signals():
                res = run_demo(
                    out,
                    quick,
                    on_stage=lambda s: bar.console.print(f"[bold cyan]{s}"),
                    on_progress=on_progress,
                    on_event=on_event,
                )
                md, page = write_report(res, out)
        except Interrupted as e:
            bar.stop()
            fail(
                f"interrupted: finished stages are kept in {out}; run the same command to resume",
                130 if e.signum == signal.SIGINT else 143,
            )
    err.print(f"\n{gain_sentence(res.rows)}")
    err.print(f"report: {page} (and {md})")

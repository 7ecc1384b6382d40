"""``lenna search``: latency-aware DARTS, or a search within a latency budget."""

from __future__ import annotations

from pathlib import Path

import typer

from lenna.cli import search_options as opt
from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.search_progress import SearchBars, search_progress
from lenna.errors import InputError
from lenna.search.folder import CONFIG
from lenna.search.genotype import Genotype
from lenna.search.run import run_search
from lenna.signals import stop_on_signals

err = console(stderr=True)


def search_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Run folder (new, or existing with --resume)."),
    space: str = opt.SPACE,
    predictor: str = opt.PREDICTOR,
    lam: float = typer.Option(
        0.0,
        "--lam",
        help="λ: weight of the latency term (>= 0; 0.5 to 1 trades well in the docs' runs).",
    ),
    data: str = opt.DATA,
    limit: int = opt.LIMIT,
    epochs: int = opt.EPOCHS,
    warmup: int = opt.WARMUP,
    seed: int = opt.SEED,
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run in --out."),
    form: str = opt.FORM,
    ref_ms: float = opt.REF,
    target_ms: float = opt.TARGET,
    budget_ms: float = opt.BUDGET,
    budget_lr: float = opt.BUDGET_LR,
    fixed_ms: float = opt.FIXED,
    allow_extrapolation: bool = opt.EXTRAP,
    mode: str = opt.MODE,
    unrolled: bool = opt.UNROLLED,
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
) -> None:
    """Search a cell by DARTS plus a latency term (loss on α: CE + λ·predicted latency), or
    within a latency budget.

    Writes config.json, metrics.csv, alphas.jsonl, the checkpoint of the last finished epoch,
    genotype.json, figures and (when it measured the network outside the cells)
    fixed_part.json into --out. Ctrl-C keeps every finished epoch; --resume continues to the same
    result an uninterrupted run reaches (only --out is needed; options given must match).
    """
    options = {k: v for k, v in locals().items() if k not in ("ctx", "out", "resume")}
    given = opt.typed_options(ctx, options)
    cfg = (
        opt.resumed_config(out, options, ctx)
        if resume
        else opt.search_config(given=given, **options)
    )
    if not resume and cfg.target_ms is not None and cfg.lam == 0 and cfg.budget_ms is None:
        raise InputError(opt.TARGET_ALONE)
    if not resume and cfg.ref_ms is not None and cfg.lam == 0:
        raise InputError(opt.REF_ALONE)
    with search_progress() as bar:
        bars = SearchBars(bar, cfg.epochs)
        try:
            with stop_on_signals():
                res = run_search(
                    cfg,
                    out,
                    resume=resume,
                    on_step=bars.step,
                    on_epoch=bars.epoch_done,
                    on_note=bar.console.print,
                )
        except KeyboardInterrupt as e:
            bar.stop()
            if (out / CONFIG).is_file():
                interrupted(e, f"finished epochs are saved in {out}; add --resume to continue")
            interrupted(e, "before the run folder was written; nothing to resume")
    err.print(derived_line(res.genotype, out / "genotype.json"))


def derived_line(g: Genotype, path: Path) -> str:
    """What a search derived and the latency predicted for it."""
    how = g.searched_for
    pred = ""
    if g.predicted_network_ms is not None:
        gap = g.predicted_gap_ms or 0.0
        pred = (
            f", predicted {g.predicted_network_ms:.3f} ms for the whole network "
            f"({g.predicted_ms:.3f} ms cells + {g.predicted_fixed_ms:.3f} ms fixed part"
            + (f" {'+' if gap >= 0 else '−'} {abs(gap):.3f} ms whole-network gap)" if gap else ")")
        )
    elif g.predicted_ms is not None:
        pred = f", predicted {g.predicted_ms:.3f} ms for the cells"
    return f"derived {g.space} architecture ({how}){pred} -> {path}"

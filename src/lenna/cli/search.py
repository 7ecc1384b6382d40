"""``lenna search``: latency-aware DARTS, or a search within a latency budget."""

from __future__ import annotations

from pathlib import Path

import typer

from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.search_options import (
    AMP,
    ARCH_LR,
    AUGMENT,
    BATCH,
    BUDGET,
    BUDGET_LR,
    CELLS,
    CHANNELS,
    CHANNELS_LAST,
    CUDA_GRAPH,
    DATA,
    DEVICE,
    EPOCHS,
    EXTRAP,
    FIXED,
    FORM,
    LIMIT,
    MODE,
    PREDICTOR,
    PRESET,
    REF,
    REF_ALONE,
    SEED,
    SPACE,
    TARGET,
    TARGET_ALONE,
    THREADS,
    UNROLLED,
    WARMUP,
    resumed_config,
    search_config,
    typed_options,
)
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
    space: str = SPACE,
    predictor: str = PREDICTOR,
    lam: float = typer.Option(
        0.0,
        "--lam",
        help="λ: weight of the latency term (>= 0; 0.5 to 1 trades well in the docs' runs).",
    ),
    data: str = DATA,
    limit: int = LIMIT,
    epochs: int = EPOCHS,
    warmup: int = WARMUP,
    seed: int = SEED,
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run in --out."),
    form: str = FORM,
    ref_ms: float = REF,
    target_ms: float = TARGET,
    budget_ms: float = BUDGET,
    budget_lr: float = BUDGET_LR,
    fixed_ms: float = FIXED,
    allow_extrapolation: bool = EXTRAP,
    mode: str = MODE,
    unrolled: bool = UNROLLED,
    batch: int = BATCH,
    channels: int = CHANNELS,
    cells: int = CELLS,
    arch_lr: float = ARCH_LR,
    threads: int = THREADS,
    device: str = DEVICE,
    preset: str = PRESET,
    augment: bool = AUGMENT,
    amp: str = AMP,
    channels_last: bool = CHANNELS_LAST,
    cuda_graph: bool = CUDA_GRAPH,
) -> None:
    """Search a cell by DARTS plus a latency term (loss on α: CE + λ·predicted latency), or
    within a latency budget.

    Writes config.json, metrics.csv, alphas.jsonl, the checkpoint of the last finished epoch,
    genotype.json, figures and (when it measured the network outside the cells)
    fixed_part.json into --out. Ctrl-C keeps every finished epoch; --resume continues to the same
    result an uninterrupted run reaches (only --out is needed; options given must match).
    """
    options = {k: v for k, v in locals().items() if k not in ("ctx", "out", "resume")}
    given = typed_options(ctx, options)
    cfg = resumed_config(out, options, ctx) if resume else search_config(given=given, **options)
    if not resume and cfg.target_ms is not None and cfg.lam == 0 and cfg.budget_ms is None:
        raise InputError(TARGET_ALONE)
    if not resume and cfg.ref_ms is not None and cfg.lam == 0:
        raise InputError(REF_ALONE)
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

"""``lenna measure`` and ``lenna measure-ops``: label blocks with their latency on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.options import check_seed, parse_ints, parse_names, parse_range
from lenna.cli.progress import CountColumn, LineProgress, make_progress
from lenna.errors import InputError
from lenna.limits import MAX_SAMPLES
from lenna.measure.extra_rows import ExtraBlock, add_blocks
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.run_config import stored_config, upgrade_config
from lenna.measure.runner import (
    Interrupted,
    RunConfig,
    open_dataset,
    run_measurement,
    run_op_table,
    stop_on_signals,
)
from lenna.measure.sampler import SAMPLER_VERSION, SAMPLER_VERSION_ORT, SAMPLER_VERSIONS
from lenna.measure.store import Dataset
from lenna.space import BLOCK_TYPES, get_space

err = console(stderr=True)


def _progress() -> Progress | LineProgress:
    return make_progress(
        err,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}"),
    )


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def _show_check(bar: Progress, task: TaskID) -> Callable[[], None]:
    """What the bar says while the anchors' ratios are calibrated again (seconds)."""
    return lambda: bar.update(
        task, description="checking the anchors' ratios (seconds)", rate="", last=""
    )


def _show_calibration(bar: Progress, task: TaskID) -> Callable[[], None]:
    """What the bar says while this machine's reference speed is calibrated (once)."""
    return lambda: bar.update(
        task,
        description="calibrating this machine (once per setting; about a minute)",
        rate="",
        last="",
    )


def _stored_config(out: Path) -> dict | None:
    """The config of the file being resumed, as it began (:func:`stored_config`)."""
    if not out.exists():
        return None
    with Dataset.open(out, readonly=True) as ds:
        return stored_config(ds.meta)


def _build_config(
    out: Path,
    *,
    space: str | None = None,
    channels: str | None = None,
    resolutions: str | None = None,
    block_types: str | None = None,
    batch: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    seed: int | None = None,
    rule: str | None = None,
    drift_every: int | None = None,
    normalise: bool | None = None,
    reference: str | None = None,
    backend: str | None = None,
    sampler_version: int | None = None,
    max_load: float | None = None,
) -> RunConfig:
    """Options the user gave win; the rest come from the file being resumed, then defaults."""
    stored = _stored_config(out)
    if stored is None and space is None:
        raise InputError("--space is required for a new dataset (e.g. --space lenna)")
    if sampler_version is not None:
        if sampler_version not in SAMPLER_VERSIONS:
            known = ", ".join(map(str, SAMPLER_VERSIONS))
            raise InputError(f"--sampler-version must be one of {known}, got {sampler_version}")
        began = stored and upgrade_config(stored)["sampler_version"]
        if began and began != sampler_version:
            raise InputError(
                f"{out} was begun with sampler version {began}; a file resumes with the "
                f"sampler it began with (drop --sampler-version, or start a new file)"
            )
    base = RunConfig.from_dict(stored) if stored else RunConfig(space=space)
    measure = {
        k: v
        for k, v in {
            "rule": rule,
            "batch": batch,
            "device": device,
            "threads": threads,
            "normalise": normalise,
            "reference": reference,
            "backend": backend,
            "max_load": max_load,
        }.items()
        if v is not None
    }
    if backend is not None and backend != base.measure.backend and reference is None:
        measure["reference"] = None  # the new backend's own default (onnxruntime: narrow)
    if backend is not None and backend != base.measure.backend and max_load is None:
        measure["max_load"] = None  # likewise (onnxruntime: 1.15)
    if rule is not None and rule != base.measure.rule:
        measure["rule_params"] = {}
        if normalise is None:  # the new rule's own default
            measure["normalise"] = None
    if drift_every is not None and drift_every < 0:
        raise InputError(f"--drift-every must be >= 0, got {drift_every}")
    changes = {
        "space": space,
        "channels": parse_range(channels) if channels is not None else None,
        "resolutions": parse_ints(resolutions, "--resolutions")
        if resolutions is not None
        else None,
        "block_types": parse_names(block_types, "--block-types", BLOCK_TYPES)
        if block_types is not None
        else None,
        "seed": seed,
        "drift_every": drift_every,
        "sampler_version": sampler_version,
    }
    get_space(changes["space"] or base.space)
    given = {k: v for k, v in changes.items() if v is not None}
    if stored is None:  # a new file: no version given is the final backend's default
        given["sampler_version"] = sampler_version
    cfg = replace(base, measure=replace(base.measure, **measure), **given)
    _check_normalised_only(cfg, reference, max_load)
    return cfg


def _check_normalised_only(cfg: RunConfig, reference: str | None, max_load: float | None) -> None:
    """Options that act only on normalised labels, given where there are none (--no-normalise,
    or the seed rule): said, not dropped without a word."""
    if cfg.measure.normalise:
        return
    why = (
        "unnormalised (--no-normalise)"
        if cfg.measure.rule != "seed"
        else "the seed rule's, never normalised"
    )
    if reference is not None and reference != "single":
        raise InputError(
            f"--reference {reference} picks the block timed alongside to normalise labels, "
            f"and these labels are {why}; drop --reference or measure normalised labels"
        )
    if max_load:
        raise InputError(
            f"--max-load judges a label by its reference's load, and these labels are {why}; "
            "drop --max-load or measure normalised labels"
        )


def measure_cmd(
    out: Path = typer.Option(..., "--out", help="Dataset file (SQLite). Existing: resume it."),
    n: int = typer.Option(
        None,
        "-n",
        help="Measure until the file holds N sampled blocks (required unless --from-run; rows "
        "added by --from-run do not count; 0: only create the file with these settings).",
    ),
    space: str = typer.Option(
        None,
        "--space",
        help="Search space (lenna, darts): a new file needs it (or --from-run's); else the file's.",
    ),
    channels: str = typer.Option(
        None, "--channels", help="Input channels MIN:MAX, log-uniform (default: 8:128)."
    ),
    resolutions: str = typer.Option(
        None, "--resolutions", help="Input resolutions (default: 32,16,8)."
    ),
    block_types: str = typer.Option(
        None, "--block-types", help="Block types (default: normal,reduction)."
    ),
    batch: int = typer.Option(None, "--batch", help="Batch size (default: 1)."),
    device: str = typer.Option(None, "--device", help="cpu or cuda (default: cpu)."),
    threads: int = typer.Option(
        None,
        "--threads",
        help="CPU threads, fixed and recorded (default: 1: steadiest when shared).",
    ),
    seed: int = typer.Option(
        None, "--seed", help="Sampler seed (default: 0); sample i is a function of (seed, i)."
    ),
    rule: str = typer.Option(None, "--rule", help="Stopping rule: cv (default), ci, seed."),
    normalise: bool = typer.Option(
        None,
        "--normalise/--no-normalise",
        help="Time a reference block alongside every reset and report labels at the dataset's "
        "calibrated speed, so the machine's drift cancels (default: on; the seed rule: off).",
    ),
    reference: str = typer.Option(
        None,
        "--reference",
        help="Which reference block to time alongside: matched (the one nearest the block's "
        "size, steadier for large blocks; the torch default), narrow (as matched, but blocks "
        "under 16 channels beside an 8-channel one; the onnxruntime default) or single "
        "(always the 16-channel one).",
    ),
    backend: str = typer.Option(
        None,
        "--backend",
        help="The runtime labels are the time of: torch (eager mode, default) or onnxruntime "
        "(each sampled path as ONNX Runtime runs the fixed cell; needs the onnx extra). New "
        "files only: a file of one backend refuses rows of another.",
    ),
    max_load: float = typer.Option(
        None,
        "--max-load",
        help="Measure a row again (up to two more tries, keeping the one at the lowest load) "
        "when its reference ran this much slower than at calibration: 1.15 = 15 % slower; 0: "
        "off (default for a new file: 1.15 for onnxruntime, whose labels read low under load, "
        "0 for torch; a resumed file keeps its own, 0 for files from before the guard).",
    ),
    drift_every: int = typer.Option(
        None,
        "--drift-every",
        help="Re-measure the control sample every K rows (on a fleet: every K rows of each "
        "device; default: 50); at the end, calibrate the anchors' ratios again if K rows or "
        "more were added since the last check (matched references); 0: off.",
    ),
    trace: bool = typer.Option(
        False, "--trace", help="Keep per-reset values (for `lenna plot convergence`)."
    ),
    allow_mixed: bool = typer.Option(
        False, "--allow-mixed", help="Add to a file measured on another fingerprint."
    ),
    recalibrate: bool = typer.Option(
        False,
        "--recalibrate",
        help="Calibrate this machine's reference speed anew for a new file (made once per "
        "machine and setting and shared by its files, so they mean the same milliseconds; "
        "an existing file keeps its own).",
    ),
    sampler_version: int = typer.Option(
        None,
        "--sampler-version",
        help="Which documented mixture draws the blocks (new files only; a file resumes with "
        f"its own). Default {SAMPLER_VERSION}, or {SAMPLER_VERSION_ORT} with --backend "
        "onnxruntime: 4 also draws each derivable cell's share of pools and skips, which "
        "covers the cells a latency term steers to better under ONNX Runtime "
        "(docs/measurement.md#the-sampler).",
    ),
    from_run: Path = typer.Option(
        None,
        "--from-run",
        help="Also add the cells of a finished search (its folder): each derived cell and "
        "α of a few later epochs, at the cells' own type, channels and resolution. Blocks "
        "already in the file are skipped, so running it twice adds nothing.",
    ),
    ray: str = typer.Option(
        None,
        "--ray",
        help="Measure on a Ray cluster, one actor per node with the lenna_device resource: "
        "auto (a running cluster), local (start one here), or HOST:PORT.",
    ),
) -> None:
    """Measure random blocks' latency into a dataset file, one committed row per block.

    A label is the block's expected latency under binary gates: the mean over paths drawn
    from its α, each timed as the fixed cell it stands for.

    Sample i is always the same block, so an interrupted run resumes by running the same
    command again: it completes the file to N rows without duplicates.
    """
    if n is None and from_run is None:
        raise InputError("give -n N (sampled blocks) or --from-run RUN_DIR, or both")
    if n is not None and not 0 <= n <= MAX_SAMPLES:
        raise InputError(f"-n must be from 0 to {MAX_SAMPLES:,}, got {n}")
    check_seed(seed)
    run_blocks = None
    if from_run is not None:
        run_space, run_blocks = _run_blocks(from_run)
        if space is None and not out.exists():
            space = run_space
    cfg = _build_config(
        out,
        space=space,
        channels=channels,
        resolutions=resolutions,
        block_types=block_types,
        batch=batch,
        device=device,
        threads=threads,
        seed=seed,
        rule=rule,
        drift_every=drift_every,
        normalise=normalise,
        reference=reference,
        backend=backend,
        sampler_version=sampler_version,
        max_load=max_load,
    )
    if run_blocks is not None and run_space != cfg.space:
        raise InputError(f"{from_run} searched space {run_space!r}; {out} holds {cfg.space!r}")
    if recalibrate and out.exists() and ray is None:  # said before, not after, the work
        err.print(
            f"note: {out} keeps its own calibration (its rows keep their scale); the "
            "machine's new one applies to the files made after it"
        )
    if ray is not None:
        if n is None:
            raise InputError("--ray measures sampled blocks: give -n N")
        if recalibrate:
            raise InputError(
                "--recalibrate is for this machine, not a fleet (each device has its own)"
            )
        _measure_on_fleet(out, cfg, n, ray, allow_mixed)
    elif n is not None:
        _measure_local(out, cfg, n, trace, allow_mixed, recalibrate)
    if run_blocks is not None:
        # a new machine calibration is made once: by the sampled rows if there were any
        _add_run(out, cfg, run_blocks, from_run, allow_mixed, recalibrate and n is None)


def _run_blocks(run_dir: Path) -> tuple[str, list[ExtraBlock]]:
    """The run's space and its cells as blocks to add."""
    from lenna.search.run_cells import run_cells

    name, cells = run_cells(run_dir)
    return name, [
        ExtraBlock(c.block_type, c.channels, c.resolution, c.alphas, c.regime) for c in cells
    ]


def _add_run(
    out: Path,
    cfg: RunConfig,
    blocks: list[ExtraBlock],
    run_dir: Path,
    allow_mixed: bool,
    recalibrate: bool = False,
) -> None:
    """`lenna measure --from-run`: the run's cells not yet in the file, with a bar."""
    with _progress() as bar:
        task = bar.add_task(f"cells of {run_dir}", total=len(blocks), rate="", last="")

        def on_sample(row: dict, added: int) -> None:
            bar.update(
                task,
                advance=1,
                last=f"last {row['latency_ms']:.3f} ms ({row['block_type']}, "
                f"C={row['channels']}, {row['regime']})",
            )

        try:
            with stop_on_signals():
                added, skipped = add_blocks(
                    out,
                    cfg,
                    blocks,
                    allow_mixed=allow_mixed,
                    on_sample=on_sample,
                    recalibrate=recalibrate,
                    on_calibrate=_show_calibration(bar, task),
                    on_warning=_warn,
                )
        except Interrupted as e:
            bar.stop()
            interrupted(e, f"rows added so far are kept in {out}; run the same command again")
    err.print(
        f"{added} rows added from {run_dir} to {out}"
        + (f" ({skipped} of its blocks were already there)" if skipped else "")
    )


def _measure_local(
    out: Path, cfg: RunConfig, n: int, trace: bool, allow_mixed: bool, recalibrate: bool
) -> None:
    """`lenna measure` on this machine, with a progress bar."""
    m = cfg.measure
    with open_dataset(out, cfg, config_fingerprint(m), allow_mixed) as ds:
        start_count = ds.count()  # also refuses a mismatched file before any progress is shown
        added = sum(i < 0 for i in ds.indices())  # rows of --from-run: not part of -n
    stored = [start_count]
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(
            "measuring", total=max(n + added, start_count), completed=start_count, rate="", last=""
        )

        def on_sample(row: dict, count: int) -> None:
            stored[0] = count
            done = count - start_count
            rate = done / max(time.perf_counter() - t0, 1e-9) * 60
            bar.update(
                task,
                description="measuring",
                completed=count,
                rate=f"{rate:.1f} samples/min",
                last=f"last {row['latency_ms']:.3f} ms ({row['block_type']}, C={row['channels']})"
                + (f", load {row['load']:.2f}×" if row.get("load") is not None else ""),
            )

        try:
            with stop_on_signals():
                total = run_measurement(
                    out,
                    cfg,
                    n,
                    allow_mixed=allow_mixed,
                    trace=trace,
                    on_sample=on_sample,
                    on_warning=_warn,
                    on_check=_show_check(bar, task),
                    recalibrate=recalibrate,
                    on_calibrate=_show_calibration(bar, task),
                )
        except Interrupted as e:
            bar.stop()
            interrupted(
                e, f"{stored[0]} rows stored in {out}; run the same command again to resume"
            )
    err.print(f"{total} rows in {out}")


def measure_ops_cmd(
    out: Path = typer.Option(
        ..., "--out", help="Dataset file to add the op table to (created if missing)."
    ),
    space: str = typer.Option(
        None, "--space", help="Search space (lenna, darts): required for a new file, else its own."
    ),
    channels: str = typer.Option(
        None,
        "--channels",
        help="Channel range MIN:MAX (default: the file's, or 8:128); grid: powers of 2 + ends.",
    ),
    resolutions: str = typer.Option(
        None, "--resolutions", help="Resolutions (default: the file's, or 32,16,8)."
    ),
    passes: int = typer.Option(
        20, "--passes", help="Timed calls per op (the 40 % quantile is kept)."
    ),
    allow_mixed: bool = typer.Option(
        False, "--allow-mixed", help="Add to a file measured on another fingerprint."
    ),
    backend: str = typer.Option(
        None,
        "--backend",
        help="torch or onnxruntime (default: the file's; a new file: torch).",
    ),
) -> None:
    """Time every candidate op alone at each grid shape: the op table `lut` and `lut+mlp` use."""
    if passes < 1:
        raise InputError(f"--passes must be >= 1, got {passes}")
    cfg = _build_config(out, space=space, backend=backend)
    with _progress() as bar:
        task = bar.add_task("op table", total=None, rate="", last="")
        try:
            with stop_on_signals():
                n_rows = run_op_table(
                    out,
                    cfg,
                    parse_range(channels) if channels is not None else None,
                    parse_ints(resolutions, "--resolutions") if resolutions is not None else None,
                    passes,
                    allow_mixed,
                    on_start=lambda total, done: bar.update(task, total=total, completed=done),
                    on_shape=lambda rows: bar.advance(task),
                )
        except Interrupted as e:
            bar.stop()
            interrupted(
                e,
                f"the op table in {out} keeps the shapes already measured; "
                "run the same command again to finish it",
            )
    err.print(f"{n_rows} op-table rows in {out}")


def _measure_on_fleet(out: Path, cfg: RunConfig, n: int, address: str, allow_mixed: bool) -> None:
    """`lenna measure --ray`: the driver writes, the devices measure; per-device rates shown."""
    from lenna.measure.fleet import require_ray, run_fleet_measurement

    require_ray()
    if address == "local":
        _warn(
            "--ray local runs 2 measuring actors on this one machine at once, and each one's "
            "timings disturb the other's: it is for trying the fleet out, with a throw-away --out"
        )
    t0 = time.perf_counter()
    per_device: dict[str, int] = {}
    stored = [0]
    with _progress() as bar:
        task = bar.add_task("measuring (fleet)", total=n, rate="", last="")

        def on_sample(row: dict, count: int, device: str) -> None:
            stored[0] = count
            per_device[device] = per_device.get(device, 0) + 1
            minutes = max(time.perf_counter() - t0, 1e-9) / 60
            rates = ", ".join(f"{d}: {k / minutes:.1f}/min" for d, k in sorted(per_device.items()))
            load = row.get("load")
            last = f"last from {device}" + (f", load {load:.2f}×" if load is not None else "")
            bar.update(task, completed=count, rate=rates, last=last)

        try:
            with stop_on_signals():
                total = run_fleet_measurement(
                    out,
                    cfg,
                    n,
                    address,
                    allow_mixed=allow_mixed,
                    on_sample=on_sample,
                    on_warning=_warn,
                    on_check=_show_check(bar, task),
                )
        except Interrupted as e:
            bar.stop()
            interrupted(
                e,
                f"{stored[0]} rows stored in {out}; run the same command again to resume",
            )
    err.print(f"{total} rows in {out}")

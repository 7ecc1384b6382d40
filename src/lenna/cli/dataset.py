"""``lenna dataset`` and ``lenna plot``: inspect, export and draw measured datasets."""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.progress import BarColumn, TextColumn

from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.options import check_out_file
from lenna.cli.progress import CountColumn, make_progress
from lenna.errors import InputError
from lenna.measure.dataset_open import MAX_LOAD_KEY
from lenna.measure.export import export
from lenna.measure.fingerprint import describe
from lenna.measure.ratio_check import CHECKS_KEY, RATIO_TOLERANCE, relative_change
from lenna.measure.recheck import RECHECKS_KEY, RecheckedRow, as_dicts, recheck, summary
from lenna.measure.reference import anchor_label
from lenna.measure.runner import upgrade_config
from lenna.measure.store import Dataset

dataset_app = typer.Typer(help="Inspect and export measured datasets.", no_args_is_help=True)
plot_app = typer.Typer(help="Figures from measured datasets.", no_args_is_help=True)


def dataset_summary(ds: Dataset) -> dict:
    """The JSON contract of ``lenna dataset info --json``."""
    meta = ds.meta
    df = ds.samples()
    return {
        "rows": len(df),
        "space": meta.get("space"),
        "fingerprint": meta.get("fingerprint"),
        "config": meta.get("config"),
        "rule_settings": meta.get("rule_settings"),  # None in a file from before they were kept
        "sampler_version": upgrade_config(meta.get("config") or {})["sampler_version"],
        "label_version": upgrade_config(meta.get("config") or {})["label_version"],
        "regimes": {str(k): int(v) for k, v in df["regime"].value_counts().items()},
        "fingerprints": sorted(ds.fingerprints()),
        "op_table_rows": len(ds.op_table()),
        "drift_flagged_rows": int(df["drift_flag"].sum()) if len(df) else 0,
        "latency_ms": {
            "min": float(df["latency_ms"].min()),
            "median": float(df["latency_ms"].median()),
            "max": float(df["latency_ms"].max()),
        }
        if len(df)
        else None,
        "median_wall_s": float(df["wall_s"].median()) if len(df) else None,
        "load": _load_summary(df),
        "drift_checks": _drift_summary(ds.drift()),
        "devices": _device_counts(df),
        "reference_ms": meta.get("reference_ms"),
        "reference_ratios": meta.get("reference_ratios"),
        "reference_ratio_checks": meta.get(CHECKS_KEY, []),
        "label_rechecks": meta.get(RECHECKS_KEY, []),
        "max_load": upgrade_config(meta.get("config") or {})["measure"]["max_load"],
        "max_load_changes": meta.get(MAX_LOAD_KEY, []),
    }


def _load_summary(df: pd.DataFrame) -> dict | None:
    """The machine's load over the rows that record it (reference time / calibrated)."""
    load = df["load"].dropna()
    if load.empty:
        return None
    q = load.quantile([0.1, 0.5, 0.9])
    return {"rows": len(load), "p10": float(q[0.1]), "median": float(q[0.5]), "p90": float(q[0.9])}


def _drift_summary(drift: pd.DataFrame) -> dict | None:
    """How far the drift guard's control block moved from its first value over the file's
    checks: the file's own test-retest figure for one block on this machine (a row's CI
    half-width says only how well that one measurement converged). ``None`` without checks."""
    if drift.empty:
        return None
    change = drift["rel_change"].abs()
    return {
        "checks": len(drift),
        "median_abs_change": float(change.median()),
        "max_abs_change": float(change.max()),
        "flagged_checks": int(drift["flagged"].sum()),
    }


def _device_counts(df: pd.DataFrame) -> dict[str, int] | None:
    """Rows per fleet device (names as the run that measured them gave them); ``None`` when
    no row was measured on a fleet."""
    counts = df["device"].dropna().value_counts()
    order = sorted(counts.index, key=lambda name: (len(name), name))  # device 2 before device 10
    return {str(k): int(counts[k]) for k in order} or None


@dataset_app.command("info")
def info_cmd(
    db: Path = typer.Argument(..., help="Dataset file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Rows, space, machine fingerprint and measurement config of a dataset."""
    with Dataset.open(db, readonly=True) as ds:
        info = dataset_summary(ds)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    c = console()
    c.print(
        f"[bold]{db}[/]: {info['rows']} rows, space {info['space']}, "
        f"{info['op_table_rows']} op-table rows, {info['drift_flagged_rows']} drift-flagged"
    )
    c.print(f"machine: {describe(info['fingerprint'])}", markup=False)  # "[hash]" is no style
    cfg = info["config"]
    m = cfg["measure"]
    c.print(
        f"config: {m.get('backend', 'torch')} backend, rule {m['rule']}, batch {m['batch']}, "
        f"{m['device']}, {m['threads']} thread{'' if m['threads'] == 1 else 's'}, "
        f"channels {cfg['channels']}, resolutions {cfg['resolutions']}, seed {cfg['seed']}, "
        f"sampler version {info['sampler_version']}, label version {info['label_version']}"
    )
    if info["regimes"]:
        c.print("rows per regime: " + ", ".join(f"{k} {v}" for k, v in info["regimes"].items()))
    if info["reference_ms"] is not None:
        c.print(
            f"labels normalised ({m.get('reference', 'single')} reference) to the reference "
            f"block's calibrated time {info['reference_ms']:.3f} ms"
            + "".join(
                f", anchor {anchor_label(k)} ×{r:.3f}"
                for k, r in (info["reference_ratios"] or {}).items()
            )
        )
    stored = info["reference_ratios"] or {}
    for check in info["reference_ratio_checks"]:
        c.print(f"anchor check with {check['rows']} rows in the file: " + _moves(check, stored))
    if info["latency_ms"]:
        lat = info["latency_ms"]
        c.print(
            f"latency ms: min {lat['min']:.3f}, median {lat['median']:.3f}, max {lat['max']:.3f}; "
            f"median {info['median_wall_s']:.2f} s to measure a sample"
        )
    if info["devices"]:
        local = info["rows"] - sum(info["devices"].values())
        c.print(
            "rows per fleet device: "
            + ", ".join(f"{k}: {v}" for k, v in info["devices"].items())
            + (f" ({local} measured locally)" if local else "")
        )
    if info["load"]:
        ld = info["load"]
        c.print(
            f"machine load while measuring (reference time / its time at this file's "
            f"calibration): median {ld['median']:.2f}×, 10th–90th percentile "
            f"{ld['p10']:.2f}–{ld['p90']:.2f}× over {ld['rows']} rows"
        )
    if info["drift_checks"]:
        dc = info["drift_checks"]
        c.print(
            f"drift guard: the control block, measured again {dc['checks']} times, moved a "
            f"median {dc['median_abs_change']:.1%} (at most {dc['max_abs_change']:.1%}) from "
            f"its first value; {dc['flagged_checks']} of the checks flagged rows"
        )
    if info["max_load"] or info["max_load_changes"]:
        steps = "".join(
            f", {_guard(ch['max_load'])} from row {ch['rows'] + 1} on"
            for ch in info["max_load_changes"]
        )
        c.print(f"load guard: {_guard(info['max_load'])}{steps}")
    for rc in info["label_rechecks"]:
        c.print(f"labels measured again at {rc['time']}: " + _recheck_line(rc))


def _guard(max_load: float) -> str:
    return f"rows above load {max_load:g} measured again" if max_load else "off"


def _recheck_line(s: dict) -> str:
    """One recheck's summary in words."""
    hours = s.get("median_hours_since")
    by_res = ", ".join(f"{h}×{h} {v:.1%}" for h, v in (s.get("by_resolution") or {}).items())
    shares = (
        f"; {s['within_2']:.0%} within ±2 %, {s['within_5']:.0%} within ±5 %"
        if "within_2" in s and "within_5" in s
        else ""
    )
    return (
        f"{s['rows']} rows{f' stored a median {hours:.1f} h before' if hours is not None else ''}"
        f" moved a median {s['median_abs_change']:.1%} (signed {s['median_change']:+.1%}, at "
        f"most {s['max_abs_change']:.1%}){shares}"
        + (f"; median by resolution: {by_res}" if by_res else "")
        + (
            f"; rows above load {s['above_load']}: {s['replaced']} labels replaced"
            if "replaced" in s
            else ""
        )
        + (" (interrupted)" if s.get("interrupted") else "")
    )


@dataset_app.command("recheck")
def recheck_cmd(
    db: Path = typer.Argument(..., help="Dataset file, measured on this machine."),
    n: int = typer.Option(
        None, "-n", help="How many seeded random rows to measure again (default: 20)."
    ),
    rows: str | None = typer.Option(
        None, "--rows", help="Measure these sample indices instead, e.g. 12,40,977."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the random choice of rows (default: 0)."
    ),
    above_load: float | None = typer.Option(
        None,
        "--above-load",
        help="Measure again every row stored at a higher load than this (1.15: its reference "
        "ran 15 % slower than at calibration) instead of random ones: rows sampled on this "
        "machine, at most 1000; not with -n, --rows or --seed (rows of unnormalised files "
        "have no load).",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="With --above-load: rewrite the file, keeping each new label in place of the old "
        "one where it was measured at a lower load (ONNX Runtime labels taken under load read "
        "low). Ctrl-C keeps the rows replaced so far.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Measure some rows again now and compare with their stored labels.

    Each row is measured as the file measured it (its settings, gate seed and calibrated
    speed), so a change is this machine's since then. On a shared host labels of some block
    shapes drift by several % over hours while others do not; this says how far a file's
    labels are from the machine now, before a search trusts them. The summary is kept in the
    file and shown by `lenna dataset info`. About as long per row as measuring it was.

    With --above-load L --replace it mends a file instead: every row stored at a load above L
    is measured again, and its new label replaces the old where it ran at a lower load.
    """
    from lenna.signals import Interrupted, stop_on_signals

    if rows is not None and n is not None:
        raise InputError("--rows and -n exclude each other: give the rows, or how many")
    if above_load is not None and (rows is not None or n is not None or seed is not None):
        raise InputError("--above-load picks the rows itself: drop --rows, -n and --seed")
    n = 20 if n is None else n
    seed = 0 if seed is None else seed
    wanted = _indices(rows) if rows is not None else None
    err = console(stderr=True)
    with ExitStack() as stack:
        bar: Any = None
        task: Any = None

        def on_start(total: int) -> None:  # after every check: no bar before a refusal
            nonlocal bar, task
            bar = stack.enter_context(
                make_progress(
                    err,
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    CountColumn(),
                    TextColumn("{task.fields[last]}"),
                )
            )
            task = bar.add_task("measuring again", total=total, last="")

        def on_row(r: RecheckedRow, k: int, total: int) -> None:
            change = f"row {r.sample_index}: {r.stored_ms:.3f} → {r.again_ms:.3f} ms"
            bar.update(task, completed=k, last=f"{change} ({r.change:+.1%})")

        try:
            with stop_on_signals():
                out = recheck(db, wanted, n, seed, on_row, None, on_start, above_load, replace)
        except Interrupted as e:
            if bar is not None:
                bar.stop()
            kept = "rows replaced so far keep their new labels, the others their old ones"
            interrupted(e, kept if replace else f"nothing was written to {db}")
    s = summary(out)
    if above_load is not None:
        s |= {"above_load": above_load, "replaced": sum(r.replaced for r in out)}
    if as_json:
        typer.echo(json.dumps({"summary": s, "rows": as_dicts(out)}, indent=2))
        return
    c = console()
    for r in out:
        since = f", stored {r.hours_since:.1f} h ago" if r.hours_since is not None else ""
        c.print(
            f"row {r.sample_index} ({r.block_type}, C={r.channels}, {r.resolution}²{since}): "
            f"{r.stored_ms:.3f} → {r.again_ms:.3f} ms ({r.change:+.1%})"
            + (f", load {r.stored_load:.2f} → {r.again_load:.2f}" if _loads(r) else "")
            + (", replaced" if r.replaced else "")
        )
    c.print(_recheck_line(s))


def _loads(r: RecheckedRow) -> bool:
    return r.stored_load is not None and r.again_load is not None


def _indices(text: str) -> list[int]:
    """``--rows``: comma-separated sample indices (0 is one)."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--rows must be comma-separated sample indices, got {text!r}") from None
    if not vals:
        raise InputError("--rows is empty: give sample indices, e.g. 12,40,977")
    if min(vals) < 0:
        raise InputError(f"--rows must be sample indices >= 0, got {text!r}")
    return vals


def _moves(check: dict, stored: dict) -> str:
    """A check's ratios against the stored ones; beyond the tolerance in bold."""
    parts = []
    for key, now in check.get("ratios", {}).items():
        rel = relative_change(stored.get(key), now)
        change = "n/a" if math.isnan(rel) else f"{rel:+.1%}"
        text = f"{anchor_label(key)} ×{now:.3f} ({change} vs stored)"
        parts.append(f"[bold]{text}[/]" if abs(rel) > RATIO_TOLERANCE else text)
    return ", ".join(parts) or "no anchors"


@dataset_app.command("export")
def export_cmd(
    db: Path = typer.Argument(..., help="Dataset file."),
    dest: Path = typer.Argument(..., help="Output file: .parquet or .csv."),
) -> None:
    """Export samples with their encoded features (Parquet keeps the metadata too)."""
    check_out_file(dest, "the output file")
    with Dataset.open(db, readonly=True) as ds:
        n = export(ds, dest)
    console(stderr=True).print(f"{n} rows written to {dest}")


@plot_app.command("convergence")
def convergence_cmd(
    db: Path = typer.Argument(..., help="Dataset measured with --trace."),
    sample: int = typer.Option(..., "--sample", help="Sample id (sample_index)."),
    out: Path = typer.Option(..., "--out", help="Output image (.png, .svg, .pdf)."),
) -> None:
    """How one label converged: the latency of each timed path (one per gate reset), what
    the file's stopping rule estimated after each reset, and its stopping signal (for cv and
    ci the confidence interval against its ±rel; for seed the average's change)."""
    from lenna.report.convergence import plot_convergence

    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError(f"--out must end in .png, .svg or .pdf, got {out.name!r}")
    check_out_file(out)
    with Dataset.open(db, readonly=True) as ds:
        row, settings = ds.sample(sample), ds.meta.get("rule_settings")
    console(stderr=True).print(f"wrote {plot_convergence(row, out, settings)}")

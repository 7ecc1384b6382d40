"""The derived-cell check: predictors against measured *derived* cells, the number users act on.

A predictor is trained on a dataset's random α and judged on held-out rows of the same
distribution; a search, though, returns a derived cell (for ``darts``: two inputs per node,
``none`` on six edges). This check draws seeded random derived cells of the dataset's space
(:func:`lenna.space.random_cell`, a seed of its own), disjoint from the dataset's rows, at
fixed (C, H) shapes per block type inside the dataset's ranges, and measures them on this
machine at the dataset's calibration into a check file beside it (``*-derived-check.db``;
measured once on the dataset's machine, then reused by later runs on any machine). Every
model kind is trained on the dataset (the same seeded split as ``predictor_accuracy.py``)
and scored on the check cells: within ±5 %, within ±10 %, MAPE, Kendall τ, per block type
too, beside its random-α held-out figures.

The check set is for judging only: nothing is tuned on it.

    python benchmarks/derived_check.py \\
        --data benchmarks/data/lenna-v2.db benchmarks/data/darts-v2.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from lenna.measure.extra_rows import ExtraBlock, add_blocks, block_index
from lenna.measure.fingerprint import config_fingerprint, same_machine
from lenna.measure.runner import RunConfig, open_dataset
from lenna.measure.store import Dataset
from lenna.predict import list_kinds, load_data, train_predictor
from lenna.predict.metrics import metrics
from lenna.space import cell_alphas, get_space, random_cell

sys.path.insert(0, str(Path(__file__).parent))
from _models import parse_model
from _record import publish

# (C, H) per block type: 6 shapes spread over the default ranges (channels 8–128, 32/16/8)
SHAPES = [(8, 32), (16, 16), (32, 8), (48, 32), (64, 16), (112, 8)]
CHECK_SEED = 909  # the check's own stream; datasets draw from (their seed, index)


def check_blocks(space_name: str, block_types: list[str], per_shape: int) -> list[ExtraBlock]:
    """The seeded derived cells of the check, ``per_shape`` per (block type, C, H)."""
    space = get_space(space_name)
    rng = np.random.default_rng([CHECK_SEED, len(space_name)])
    out = []
    for bt in block_types:
        for c, h in SHAPES:
            for _ in range(per_shape):
                cell = random_cell(space, bt, rng)
                out.append(ExtraBlock(bt, c, h, cell_alphas(space, bt, cell), "check_derived"))
    return out


def make_check(data_path: Path, check_path: Path, per_shape: int) -> Path:
    """Measure the check cells into ``check_path`` at ``data_path``'s calibration."""
    with Dataset.open(data_path, readonly=True) as ds:
        meta, df = ds.meta, ds.samples()
    cfg = RunConfig.from_dict(meta["config"])
    cfg.drift_every = 0
    blocks = check_blocks(cfg.space, list(cfg.block_types), per_shape)
    trained = {
        block_index(r.block_type, r.channels, r.resolution, np.asarray(r.alphas))
        for r in df.itertuples()
    }
    blocks = [
        b
        for b in blocks
        if block_index(b.block_type, b.channels, b.resolution, b.alphas) not in trained
    ]
    if check_path.exists():  # cells measured before (on the dataset's machine) are kept
        with Dataset.open(check_path, readonly=True) as ds:
            done = {
                block_index(r.block_type, r.channels, r.resolution, np.asarray(r.alphas))
                for r in ds.samples().itertuples()
            }
        blocks = [
            b
            for b in blocks
            if block_index(b.block_type, b.channels, b.resolution, b.alphas) not in done
        ]
        if not blocks:  # nothing to measure: any machine may score on them
            return check_path

    def progress(row: dict, n: int) -> None:
        print(
            f"  check cell {n}: {row['block_type']} C={row['channels']} "
            f"H={row['resolution']} {row['latency_ms']:.3f} ms",
            flush=True,
        )

    measure_beside(data_path, meta, cfg, check_path, blocks, progress)
    return check_path


def measure_beside(
    source: Path, meta: dict, cfg: RunConfig, out: Path, blocks: list[ExtraBlock], progress
) -> None:
    """Measure ``blocks`` into ``out`` at the calibration of the dataset ``source`` (its
    ``meta``, its config ``cfg``), on that dataset's machine only."""
    fp = config_fingerprint(cfg.measure)
    if not same_machine(meta["fingerprint"], fp):
        sys.exit(f"{source} was measured on another machine/setting: measure on its own")
    with open_dataset(out, cfg, fp, False) as ds:  # the dataset's own speed
        for key in ("reference_ms", "reference_ratios"):
            if meta.get(key) is not None and ds.meta.get(key) is None:
                ds.set_meta(key, meta[key])
    add_blocks(out, cfg, blocks, on_sample=progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=list_kinds(), help="kind or kind:name=value,...")
    ap.add_argument("--per-shape", type=int, default=4, help="cells per (block type, C, H)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    ap.add_argument(
        "--include-flagged",
        action="store_true",
        help="also train on rows the drift guard flagged (a noisy host flags most)",
    )
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sections, fp = [], None
    for path in args.data:
        check = path.with_name(path.stem + "-derived-check.db")
        make_check(path, check, args.per_shape)
        data = load_data(path, include_flagged=args.include_flagged)
        cells = load_data(check, include_flagged=True)  # the check file has no drift guard
        fp = data.fingerprint
        bts = cells.block_types
        lines = [
            f"**{data.space.name}** — trained on {path.name} ({len(data)} rows"
            f"{', drift-flagged included' if args.include_flagged else ''}); checked on "
            f"{len(cells)} derived cells in {check.name} ({len(SHAPES)} shapes × "
            f"{args.per_shape} per block type).",
            "",
            "| model | diff. | random-α held-out ±10 % (MAPE) | derived ±5 % | derived ±10 % "
            "| derived MAPE | τ | normal: median error | reduction: median error | worst |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for spec in args.models:
            kind, hp = parse_model(spec)
            m = train_predictor(data, kind, seed=args.seed, **hp)
            h = m.info["metrics"]["held_out"]
            pred = m.predict_features(cells.X)
            r = metrics(cells.y, pred)
            err = (pred - cells.y) / cells.y * 100
            worst = err[np.argmax(np.abs(err))]
            lines.append(
                f"| {spec} | {'yes' if m.differentiable else 'no'} | {h['within_10']:.1f} % "
                f"({h['mape']:.2f} %) | {r['within_5']:.1f} % | {r['within_10']:.1f} % "
                f"| {r['mape']:.2f} % | {r['kendall_tau']:.3f} "
                f"| {np.median(err[bts == 'normal']):+.1f} % "
                f"| {np.median(err[bts == 'reduction']):+.1f} % | {worst:+.1f} % |"
            )
            print(lines[-1], flush=True)
        sections.append("\n".join(lines))
    body = "\n\n".join(sections) + (
        "\n\nDerived: seeded random derived cells (seed "
        f"{CHECK_SEED}), disjoint from the training rows, measured on this machine at the "
        "dataset's calibration; error = (predicted − measured) / measured."
    )
    publish("derived_check", fp, [body], save=not args.no_record and bool(fp))


if __name__ == "__main__":
    main()

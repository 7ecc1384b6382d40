"""Would rows at the widths networks run at make the predictor right on derived cells?

The sampler draws a block's width log-uniformly over every integer in the range, so C = 32 is
about 1 row in 80 and C = 64 1 in 150; a network's cells run at its width doubled at each
reduction (8, 16, 32 by default; 16, 32, 64 in DARTS's search), and on the Zen 5 ORT file the
model read even its own training rows at C = 32 and 64 a few percent high.

This measures a version-2 dataset's first ``-n`` blocks again as sampler version 3 draws them:
half the blocks (a seeded draw of their own) take a width drawn log-uniformly among the
multiples of 8 in the range instead of their own; α, block type and resolution stay. They are
measured into ``--out`` at the dataset's calibration (as the derived-cell check is), on the
dataset's machine. Then ``additive`` is trained on the dataset's first ``-n`` rows and,
separately, on the new file's rows (same kind, same seed), and both are scored on the
dataset's rows past ``-n`` (blocks neither saw, the sampler's widths) and on its derived-cell
check (network widths). One design, decided before it was measured; the check only scores.

    python benchmarks/diagnostics/network_widths.py --data benchmarks/data/darts-ort-zen5.db \\
        -n 800 --out /tmp/darts-ort-widths.db          # ~12 min on 2 cores (ORT, darts)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lenna.measure.extra_rows import ExtraBlock
from lenna.measure.runner import RunConfig
from lenna.measure.store import Dataset
from lenna.predict import load_data, train_predictor
from lenna.predict.metrics import metrics

sys.path.insert(0, str(Path(__file__).parents[1]))
from derived_check import measure_beside


def blocks(cfg: RunConfig, n: int) -> list[ExtraBlock]:
    """The first ``n`` blocks as sampler version 3 draws them (version 2's blocks, half of
    them at a network width)."""
    sampler = replace(cfg, sampler_version=3).sampler()
    return [
        ExtraBlock(s.block_type, s.channels, s.resolution, s.alphas, s.regime)
        for s in map(sampler, range(n))
    ]


def measure(data_path: Path, out: Path, n: int) -> None:
    with Dataset.open(data_path, readonly=True) as ds:
        meta = ds.meta
    cfg = replace(RunConfig.from_dict(meta["config"]), drift_every=0)

    def progress(row: dict, k: int) -> None:
        if k % 50 == 0:
            print(f"  {k} rows, last C={row['channels']} {row['latency_ms']:.3f} ms", flush=True)

    # the rows are version 3's draws (measured as extra rows: no sampler runs on this file)
    measure_beside(data_path, meta, replace(cfg, sampler_version=3), out, blocks(cfg, n), progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("-n", type=int, default=800)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    measure(args.data, args.out, args.n)
    torch.set_num_threads(2)
    full = load_data(args.data, include_flagged=True)
    check_path = args.data.with_name(args.data.stem + "-derived-check.db")
    check = load_data(check_path, include_flagged=True)
    widths = load_data(args.out, include_flagged=True)
    first = (full.ids >= 0) & (full.ids < args.n)  # sampled rows only (--from-run's are < 0)
    later = full.subset(full.ids >= args.n)
    train_sets = {"sampler widths": full.subset(first), "network widths": widths}
    on_8 = np.round(widths.channels) % 8 == 0
    print(
        f"{args.out.name}: {len(widths)} rows, {on_8.mean() * 100:.0f} % at multiples of 8; "
        f"scored on {len(later)} later rows of {args.data.name} and {len(check)} check cells"
    )
    print("| trained on | seed | later rows ±10 % (MAPE) | check ±10 % | ±5 % | MAPE | τ |")
    print("|---|---|---|---|---|---|---|")
    for name, d in train_sets.items():
        for seed in args.seeds:
            m = train_predictor(d, "additive", seed=seed)
            r = metrics(later.y, m.predict_features(later.X))
            c = metrics(check.y, m.predict_features(check.X))
            print(
                f"| {name} | {seed} | {r['within_10']:.1f} % ({r['mape']:.2f} %) "
                f"| {c['within_10']:.1f} % | {c['within_5']:.1f} % | {c['mape']:.2f} % "
                f"| {c['kendall_tau']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

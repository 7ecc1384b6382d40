"""Are the derived cells a latency term steers to (mostly pools and skips) a gap in the data?

Under λ > 0 a search's cheapest cells hold pools and identities on most edges: in a `lenna`
trade-off run the worst-predicted cell (+33 %) had 12 of 15 such edges, while the sampler's
derivable cells draw each edge's op uniformly, so 10 or more cheap edges of 15 come up about
once in 600 cells. This draws derivable cells whose share of cheap ops is high (per cell a
probability q ~ U(``--q-min``, 1) that an edge's op is a pool or a skip; the structure of a
`darts` cell as the derive rule makes it), at the shapes of the default search network's
cells, measures them beside the dataset at its calibration (on its machine), and splits them
in two halves by a seeded draw. ``additive`` trained on the dataset is scored on the second
half; then trained on the dataset plus the first half and scored again; both also on the
dataset's derived-cell check (nothing may get worse there). One design, fixed before it ran.

    python benchmarks/diagnostics/cheap_cells.py --data benchmarks/data/lenna-v3-zen5.db \\
        --out /tmp/lenna-cheap.db                       # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lenna.measure.extra_rows import ExtraBlock
from lenna.measure.runner import RunConfig
from lenna.measure.store import Dataset
from lenna.predict import load_data
from lenna.predict.base import predictor_class
from lenna.predict.data import LatencyData
from lenna.predict.metrics import metrics
from lenna.predict.splits import Split, make_split
from lenna.space import cell_alphas, encode, get_space, random_cell
from lenna.space.mixed import NONE_OP

sys.path.insert(0, str(Path(__file__).parents[1]))
from _record import record
from derived_check import measure_beside

CHEAP = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "3x3_maxpool", "3x3_avgpool", "Identity")
# the cells of the default search network (C = 8, 3 cells, 32×32 input, stem stride 2)
SHAPES = [("normal", 8, 16), ("reduction", 8, 16), ("reduction", 16, 8)]
SEED = 2718  # this diagnostic's own stream


def cheap_cell(space, bt: str, q: float, rng: np.random.Generator) -> list[str | None]:
    """A derivable cell whose kept edges are cheap ops with probability ``q`` each."""
    cell = random_cell(space, bt, rng)
    for e, op in zip(space.edges, cell, strict=True):
        if op is None:
            continue
        ops = [o for o in space.edge_ops(bt, e) if o != NONE_OP]
        pool = [o for o in ops if (o in CHEAP) == (rng.random() < q)] or ops
        cell[e.index] = str(rng.choice(pool))
    return cell


def blocks(space_name: str, per_shape: int, q_min: float) -> list[ExtraBlock]:
    space = get_space(space_name)
    rng = np.random.default_rng([SEED, len(space_name)])
    out = []
    for bt, c, h in SHAPES:
        for _ in range(per_shape):
            cell = cheap_cell(space, bt, rng.uniform(q_min, 1.0), rng)
            out.append(ExtraBlock(bt, c, h, cell_alphas(space, bt, cell), "cheap_derived"))
    return out


def fit(data: LatencyData, seed: int):
    sp = make_split(data, "random", seed)
    return predictor_class("additive")(data.space, seed=seed).fit(data, sp)


def joined(a: LatencyData, b: LatencyData) -> tuple[LatencyData, Split]:
    """``a`` and ``b`` as one training set: ``a``'s own split, all of ``b`` added to training."""
    both = LatencyData(
        a.space,
        np.concatenate([a.ids, b.ids]),
        np.concatenate([a.X, b.X]),
        np.concatenate([a.y, b.y]),
        np.concatenate([a.onehot, b.onehot]),
        a.fingerprint,
        a.identity,
        a.op_table,
        a.reference_ms,
        a.reference,
        a.reference_ratios,
    )
    return both, make_split(a, "random", 0)


def score(model, d: LatencyData) -> str:
    m = metrics(d.y, model.predict_features(d.X))
    err = np.median((model.predict_features(d.X) - d.y) / d.y) * 100
    return f"{m['within_10']:.1f} % ({m['mape']:.2f} %, median {err:+.1f} %)"


def run_cells(runs: list[Path], space_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, measured ms and preprocessing offsets of the derived cells of finished
    searches (``evaluate-arch`` wrote ``result.json`` beside each ``genotype.json``)."""
    space = get_space(space_name)
    X, y, off = [], [], []
    for run in runs:
        g = json.loads((run / "genotype.json").read_text())
        r = json.loads((run / "result.json").read_text())
        offsets = json.loads((run / "fixed_part.json").read_text()).get("cell_offsets_ms")
        cells = g["info"]["cells"]
        offsets = offsets or [0.0] * len(cells)
        for c, ms, o in zip(cells, r["measured_per_cell_ms"], offsets, strict=True):
            a = cell_alphas(space, c["block_type"], g["cells"][c["block_type"]])
            X.append(encode(space, c["block_type"], c["channels"], c["resolution"], a))
            y.append(ms)
            off.append(o)
    return np.array(X), np.array(y), np.array(off)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-shape", type=int, default=24)
    ap.add_argument("--q-min", type=float, default=0.6)
    ap.add_argument(
        "--runs", type=Path, nargs="*", default=[], help="search runs whose derived cells to score"
    )
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    with Dataset.open(args.data, readonly=True) as ds:
        meta = ds.meta
    cfg = replace(RunConfig.from_dict(meta["config"]), drift_every=0)
    if not args.out.exists():
        measure_beside(
            args.data, meta, cfg, args.out, blocks(cfg.space, args.per_shape, args.q_min), None
        )
    torch.set_num_threads(2)
    data = load_data(args.data, include_flagged=True)
    cheap = load_data(args.out, include_flagged=True)
    half = np.random.default_rng(SEED).permutation(len(cheap)) < len(cheap) // 2
    first, second = cheap.subset(half), cheap.subset(~half)
    check_path = args.data.with_name(args.data.stem + "-derived-check.db")
    check = load_data(check_path, include_flagged=True) if check_path.exists() else None
    lines = [
        f"{args.data.name}: {len(cheap)} cells of mostly cheap ops (q ~ U({args.q_min}, 1)) at "
        f"{', '.join(f'{b} {c}@{h}' for b, c, h in SHAPES)}, labels "
        f"{cheap.y.min():.3f}–{cheap.y.max():.3f} ms; `additive`, within ±10 % (MAPE, median "
        "error).",
        "",
        "| trained on | held-out half of the cheap cells | derived-cell check "
        "| cells of the runs |",
        "|---|---|---|---|",
    ]
    runs = run_cells(args.runs, data.space.name) if args.runs else None
    plain = fit(data, 0)
    both, sp = joined(data, first)
    sp = Split(np.concatenate([sp.train, first.ids]), sp.val, sp.test)
    added = predictor_class("additive")(data.space, seed=0).fit(both, sp)
    for name, model in ((f"{args.data.name}", plain), (f"+ {len(first)} cheap cells", added)):
        cells = [score(model, second), score(model, check) if check is not None else "—"]
        if runs is not None:  # as the search predicts them: the model plus the cell's offset
            X, y, off = runs
            p = model.predict_features(X) + off
            err = (p - y) / y * 100
            cells.append(
                f"{len(y)} cells: median \\|error\\| {np.median(np.abs(err)):.1f} %, worst "
                f"{err[np.argmax(np.abs(err))]:+.1f} %"
            )
        else:
            cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print(*lines, sep="\n")
    if not args.no_record:
        record("cheap_cells", data.fingerprint, "\n".join(lines))


if __name__ == "__main__":
    main()

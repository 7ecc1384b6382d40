"""Is a mixed-α label the mean of its paths' own labels? A label for α is the block's expected
latency over the paths softmax(α) draws; the gated bench switches path at every reset. A
derived cell runs one path. If switching cost time (a new path's weights out of cache, a
stall the stopping rule does not drop), mixed-α labels would read high against one-path
labels, and a model that learns mostly from mixed α would read derived cells high, as the
trade-off runs' cells do in eager mode.

For ``--rows`` seeded rows of a dataset whose α is spread (regimes ``uniform``, ``dirichlet``,
``seed``, ``near_derived``) at its smallest widths (C ≤ ``--max-channels``): the row measured
again (``measure_block`` at the dataset's config and calibration), then ``--paths`` paths drawn
from its α, each measured as a one-hot label the same way, then the row once more. The ratio
mixed label / mean path label per row, and over all rows, with the path sample's standard
error. Nothing else should run meanwhile.

    python benchmarks/diagnostics/mixed_vs_paths.py --data benchmarks/data/lenna-v3-zen5.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lenna.measure.block_measure import measure_block
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.reference import Calibration
from lenna.measure.runner import RunConfig
from lenna.measure.store import Dataset
from lenna.space import cell_alphas, get_space
from lenna.space.encode import probabilities

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish

SPREAD = ("uniform", "dirichlet", "seed", "near_derived")  # not peaked: mostly one path


def draw_paths(space, block_type: str, alphas, n: int, rng: np.random.Generator) -> list:
    """``n`` paths from softmax(α), as the gates draw them: one op per edge, independently."""
    probs = probabilities(space, block_type, alphas)
    out = []
    for _ in range(n):
        cell = []
        for e in space.edges:
            ops = space.edge_ops(block_type, e)
            cell.append(ops[rng.choice(len(ops), p=probs[e.index, : len(ops)])])
        out.append(cell)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=10, help="spread-α rows to check")
    ap.add_argument("--paths", type=int, default=40, help="paths drawn per row")
    ap.add_argument("--max-channels", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    with Dataset.open(args.data, readonly=True) as ds:
        cfg = RunConfig.from_dict(ds.meta["config"])
        cal = Calibration.of(ds.meta)
        rows = ds.samples()
    rows = rows[rows.regime.isin(SPREAD) & (rows.channels <= args.max_channels)]
    rng = np.random.default_rng(args.seed)
    pick = rows.iloc[rng.choice(len(rows), size=min(args.rows, len(rows)), replace=False)]
    space = get_space(cfg.space)
    lines = [
        f"{args.data.name}: {len(pick)} spread-α rows at C ≤ {args.max_channels}, each measured "
        f"again before and after {args.paths} paths drawn from its α, each path measured as a "
        "one-hot label (the dataset's config and calibration).",
        "",
        "| sample | regime | block | mixed ms (before / after) | mean of paths ms (± s.e.) "
        "| mixed / paths |",
        "|---|---|---|---|---|---|",
    ]
    ratios, ses = [], []
    for n, (_, r) in enumerate(pick.iterrows()):
        bt, c, h = r.block_type, int(r.channels), int(r.resolution)
        alphas = np.asarray(r.alphas, float)

        def label(a, seed, bt=bt, c=c, h=h):
            return measure_block(space, bt, c, h, a, cfg.measure, seed, cal).latency_ms

        before = label(alphas, 1000 + n)
        paths = draw_paths(space, bt, alphas, args.paths, rng)
        times = np.array([label(cell_alphas(space, bt, p), 2000 + k) for k, p in enumerate(paths)])
        after = label(alphas, 3000 + n)
        mixed, mean = (before + after) / 2, times.mean()
        se = times.std(ddof=1) / np.sqrt(len(times)) / mean
        ratios.append(mixed / mean)
        ses.append(se)
        lines.append(
            f"| {int(r.sample_index)} | {r.regime} | {bt}, C={c}, {h}² | {before:.4f} / "
            f"{after:.4f} | {mean:.4f} (± {se * 100:.1f} %) | {mixed / mean:.3f} |"
        )
        print(lines[-1], flush=True)
    ratios, ses = np.array(ratios), np.array(ses)
    pooled = np.sqrt((ses**2).sum()) / len(ses)  # the mean's s.e. from the path draws alone
    spread = ratios.std(ddof=1) / np.sqrt(len(ratios)) if len(ratios) > 1 else float("nan")
    lines += [
        "",
        f"- mixed / mean of paths: median {np.median(ratios):.3f}, mean {ratios.mean():.3f} "
        f"(s.e. {spread:.3f} from the rows' spread; {pooled:.3f} from the path draws alone), "
        f"range {ratios.min():.3f}–{ratios.max():.3f}",
    ]
    print("\n".join(lines[-1:]))
    here = config_fingerprint(cfg.measure)  # the host that measured, not the dataset's
    publish("mixed_vs_paths", here, lines, save=not args.no_record)


if __name__ == "__main__":
    main()

"""Two measuring campaigns of the same blocks, compared label by label.

Files with the same space and sampler config (seed, channels, resolutions, block types) hold
the same block under the same sample index, so their common rows are a test-retest over
hours instead of seconds. Labels of a normalised file are at its calibrated speed, so only
the *spread* of log(B/A) around its median is compared (and its trend with channels, which
a per-file scale cannot explain).

    python benchmarks/compare_datasets.py benchmarks/data/lenna.db benchmarks/data/lenna-norm.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lenna.measure.store import Dataset

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish


def labels(path: Path) -> tuple[dict, dict, dict]:
    with Dataset.open(path) as ds:
        df, meta = ds.samples(), ds.meta
    lat = dict(zip(df["sample_index"], df["latency_ms"], strict=True))
    ch = dict(zip(df["sample_index"], df["channels"], strict=True))
    return lat, ch, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    (la, ch, ma), (lb, _, mb) = labels(args.a), labels(args.b)
    keys = ("space_hash",)
    same = all(ma.get(k) == mb.get(k) for k in keys) and all(
        ma["config"].get(k) == mb["config"].get(k)
        for k in ("seed", "channels", "resolutions", "block_types")
    )
    if not same:
        sys.exit("the two files were not sampled alike: their rows are different blocks")
    ids = sorted(set(la) & set(lb))
    r = np.log(np.array([lb[i] / la[i] for i in ids]))
    dev = np.abs(r - np.median(r))
    c = np.array([ch[i] for i in ids])
    lines = [
        f"{len(ids)} common blocks: A = {args.a.name} (normalised: "
        f"{ma['config']['measure'].get('normalise', False)}), B = {args.b.name} (normalised: "
        f"{mb['config']['measure'].get('normalise', False)}).",
        "",
        f"- median B/A: {np.exp(np.median(r)):.3f} (a per-file scale)",
        f"- spread around it: median |dev| {np.median(dev) * 100:.2f} %, "
        f"p90 {np.quantile(dev, 0.9) * 100:.2f} %",
        f"- correlation of log(B/A) with log channels: {np.corrcoef(r, np.log(c))[0, 1]:.2f}",
        "",
        "| channels | blocks | median B/A |",
        "|---|---|---|",
    ]
    for lo, hi in ((8, 16), (16, 32), (32, 64), (64, 129)):
        m = (c >= lo) & (c < hi)
        if m.any():
            lines.append(f"| {lo}–{hi - 1} | {int(m.sum())} | {np.exp(np.median(r[m])):.3f} |")
    publish("compare_datasets", mb.get("fingerprint", {}), lines, save=not args.no_record)


if __name__ == "__main__":
    main()

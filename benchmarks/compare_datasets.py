"""Two measuring campaigns of the same blocks, compared label by label.

Files with the same space and sampler config (seed, channels, resolutions, block types) hold
the same block under the same sample index, so their common rows are a test-retest over
hours instead of seconds. Labels of a normalised file are at its calibrated speed, so only
the *spread* of log(B/A) around its median is compared (and its trend with channels, which
a per-file scale cannot explain).

With ``--predictor KIND``, a model of that kind is also trained on each file's common rows
with the same split (per ``--seeds``), so the two labelings are compared by what a predictor
learns from them: held-out rows within ±10 %, overall, per resolution and for narrow blocks
(C < 16, the ones ``--reference narrow`` times differently).

    python benchmarks/compare_datasets.py benchmarks/data/lenna.db benchmarks/data/lenna-norm.db
    python benchmarks/compare_datasets.py A.db B.db --predictor additive --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lenna.measure.run_config import upgrade_config
from lenna.measure.store import Dataset
from lenna.predict import load_data, train_predictor
from lenna.predict.train import split_masks

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish


def labels(path: Path) -> tuple[dict, dict, dict]:
    with Dataset.open(path, readonly=True) as ds:
        df, meta = ds.samples(), ds.meta
    lat = dict(zip(df["sample_index"], df["latency_ms"], strict=True))
    ch = dict(zip(df["sample_index"], df["channels"], strict=True))
    return lat, ch, meta


def sampled_alike(ma: dict, mb: dict) -> bool:
    """Whether two files' metadata draw the same block under each sample index: the same
    space, sampler settings and sampler version (a version moves some rows' widths or α)."""
    ca, cb = upgrade_config(ma["config"]), upgrade_config(mb["config"])
    keys = ("seed", "channels", "resolutions", "block_types", "sampler_version")
    return ma.get("space_hash") == mb.get("space_hash") and all(ca[k] == cb[k] for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--predictor", help="also train this kind on each file's common rows")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="splits (with --predictor)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    (la, ch, ma), (lb, _, mb) = labels(args.a), labels(args.b)
    if not sampled_alike(ma, mb):
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
    if args.predictor:
        lines += ["", *predictor_table(args.a, args.b, args.predictor, args.seeds)]
    publish("compare_datasets", mb.get("fingerprint", {}), lines, save=not args.no_record)


def predictor_table(a: Path, b: Path, kind: str, seeds: list[int]) -> list[str]:
    """Held-out accuracy of ``kind`` trained on each file's common (unflagged) rows, one
    split per seed, the same in both files (a split is a function of the ids and the seed)."""
    da, db = load_data(a), load_data(b)
    common = np.intersect1d(da.ids, db.ids)
    da, db = da.subset(np.isin(da.ids, common)), db.subset(np.isin(db.ids, common))
    groups = {
        "all": np.ones(len(common), bool),
        "C < 16": da.channels < 16,
        "C ≥ 16": da.channels >= 16,
    }
    for h in sorted(set(da.resolution.astype(int))):
        groups[f"{h}×{h}"] = da.resolution == h
    head = " | ".join(f"{g} A / B" for g in groups)
    lines = [
        f"`{kind}` trained on each file's {len(common)} common rows (drift-flagged rows out), "
        "held-out rows within ±10 % (A / B):",
        "",
        f"| split seed | {head} | MAPE A / B |",
        "|---" * (len(groups) + 2) + "|",
    ]
    for seed in seeds:
        cells, mape = [], []
        errs = []
        for d in (da, db):
            m = train_predictor(d, kind, seed=seed)
            held = split_masks(m, d)["held_out"]
            err = np.abs(m.predict_features(d.X) / d.y - 1)
            errs.append((held, err))
            mape.append(f"{np.mean(err[held]) * 100:.1f}")
        for mask in groups.values():
            pair = [np.mean(e[h & mask] <= 0.10) * 100 for h, e in errs]
            cells.append(f"{pair[0]:.1f} / {pair[1]:.1f}")
        lines.append(f"| {seed} | {' | '.join(cells)} | {' / '.join(mape)} % |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()

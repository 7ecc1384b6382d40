"""Is a version-3 file a better training set than a version-2 file of the same blocks?

Sampler version 3 moves half the widths to a multiple of 8 (the widths networks run at). A
model trained on such a file scored better on derived cells but, on one ORT file, worse on
its *own* held-out rows, which are another mix (half of them at those widths). Scoring each
model on its own file's split cannot tell the mix from the model. This scores both on the
same rows.

Given a version-2 file and a version-3 file of the same blocks (sample ``i`` is the same α,
block type, resolution and regime in both; only about half the widths differ), measured on
one machine: one seeded split of the ids serves both files, so neither model has seen any
test block of either file. ``additive`` (or ``--model``) is trained on each file's training
rows and scored on both files' test rows (the version-3 ones split into moved and kept
widths) and on both files' derived-cell checks (the same cells, measured beside each file).
Drift-flagged rows are included, so both files keep every id. One design, fixed before it
was run; nothing is tuned on its figures.

    python benchmarks/diagnostics/sampler_versions.py \\
        --v2 benchmarks/data/lenna-v2-zen5.db --v3 benchmarks/data/lenna-v3-zen5.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from lenna.predict import load_data
from lenna.predict.base import predictor_class
from lenna.predict.data import LatencyData
from lenna.predict.metrics import metrics
from lenna.predict.splits import make_split

sys.path.insert(0, str(Path(__file__).parents[1]))
from _models import parse_model
from _record import record


def common(v2: LatencyData, v3: LatencyData) -> tuple[LatencyData, LatencyData]:
    """Both files' sampled rows of the ids they share, in id order."""
    ids = np.intersect1d(v2.ids[v2.ids >= 0], v3.ids[v3.ids >= 0])
    a = v2.subset(np.isin(v2.ids, ids))
    b = v3.subset(np.isin(v3.ids, ids))
    a, b = a.subset(np.argsort(a.ids)), b.subset(np.argsort(b.ids))
    # block type, resolution and α must agree; only the width (column 1) may differ
    same = (a.X[:, 0] == b.X[:, 0]) & (a.X[:, -1] == b.X[:, -1]) & (a.onehot == b.onehot)
    same &= np.isclose(a.X[:, 2:-1], b.X[:, 2:-1], atol=1e-6).all(axis=1)
    if not same.all():
        sys.exit(f"the two files do not hold the same blocks ({(~same).sum()} ids differ)")
    return a, b


def score(model, d: LatencyData, mask: np.ndarray | None = None) -> str:
    if mask is not None:
        d = d.subset(mask)
    m = metrics(d.y, model.predict_features(d.X))
    return f"{m['within_10']:.1f} % ({m['mape']:.2f} %)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--v2", type=Path, required=True)
    ap.add_argument("--v3", type=Path, required=True)
    ap.add_argument("--model", default="additive", help="kind or kind:name=value,...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    kind, hp = parse_model(args.model)
    v2, v3 = (load_data(p, include_flagged=True) for p in (args.v2, args.v3))
    v2, v3 = common(v2, v3)
    checks = {}
    for p in (args.v2, args.v3):
        c = p.with_name(p.stem + "-derived-check.db")
        if c.exists():
            checks[c.name] = load_data(c, include_flagged=True)
    moved = np.round(v2.channels) != np.round(v3.channels)
    cols = ["v2 test", "v3 test", "v3 test, moved", "v3 test, kept", *checks]
    lines = [
        f"v2 = {args.v2.name}, v3 = {args.v3.name}: {len(v2)} common blocks, {moved.sum()} "
        f"widths moved; model `{args.model}`; within ±10 % (MAPE).",
        "",
        "| trained on | seed | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    print(*lines, sep="\n")
    for seed in args.seeds:
        sp = make_split(v2, "random", seed)
        test = np.isin(v2.ids, sp.test)
        for name, d in (("v2", v2), ("v3", v3)):
            model = predictor_class(kind)(d.space, seed=seed, **hp)
            model.fit(d, sp)
            cells = [
                score(model, v2, test),
                score(model, v3, test),
                score(model, v3, test & moved),
                score(model, v3, test & ~moved),
                *(score(model, c) for c in checks.values()),
            ]
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    if not args.no_record:  # printed row by row above, as each model finished
        record("sampler_versions", v2.fingerprint, "\n".join(lines))


if __name__ == "__main__":
    main()

"""Is a file of a newer sampler version a better training set than one of the same blocks?

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

Version 4 changes the ops of version 3's derived and near-derived rows instead (their
parameter-free share is drawn first), so the same design compares a version-3 and a version-4
file: the "changed" test rows are then those whose α differ, and a third file of cells
measured beside each (``--extra``, e.g. ``cheap_cells.py``'s) is scored as well.

    python benchmarks/diagnostics/sampler_versions.py \\
        --old benchmarks/data/lenna-v2-zen5.db --new benchmarks/data/lenna-v3-zen5.db
    python benchmarks/diagnostics/sampler_versions.py \\
        --old benchmarks/data/darts-v3-zen5.db --new benchmarks/data/darts-v4-zen5.db \\
        --extra benchmarks/data/darts-v4-zen5-cheap.db
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


def common(v2: LatencyData, v3: LatencyData) -> tuple[LatencyData, LatencyData, np.ndarray]:
    """Both files' sampled rows of the ids they share, in id order, and which ids the newer
    version changed (their width or their α)."""
    ids = np.intersect1d(v2.ids[v2.ids >= 0], v3.ids[v3.ids >= 0])
    a = v2.subset(np.isin(v2.ids, ids))
    b = v3.subset(np.isin(v3.ids, ids))
    a, b = a.subset(np.argsort(a.ids)), b.subset(np.argsort(b.ids))
    # block type and resolution must agree; a newer version changes a width or an α
    same = (a.X[:, 0] == b.X[:, 0]) & (a.X[:, -1] == b.X[:, -1])
    if not same.all():
        sys.exit(f"the two files do not hold the same blocks ({(~same).sum()} ids differ)")
    alpha = ~np.isclose(a.X[:, 2:-1], b.X[:, 2:-1], atol=1e-6).all(axis=1)
    return a, b, (np.round(a.channels) != np.round(b.channels)) | alpha


def score(model, d: LatencyData, mask: np.ndarray | None = None) -> str:
    if mask is not None:
        d = d.subset(mask)
    m = metrics(d.y, model.predict_features(d.X))
    return f"{m['within_10']:.1f} % ({m['mape']:.2f} %)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", "--v2", dest="v2", type=Path, required=True, help="older version")
    ap.add_argument("--new", "--v3", dest="v3", type=Path, required=True, help="newer version")
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more cells to score on")
    ap.add_argument("--model", default="additive", help="kind or kind:name=value,...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    kind, hp = parse_model(args.model)
    v2, v3 = (load_data(p, include_flagged=True) for p in (args.v2, args.v3))
    v2, v3, moved = common(v2, v3)
    checks = {}
    for p in (args.v2, args.v3):
        c = p.with_name(p.stem + "-derived-check.db")
        if c.exists():
            checks[c.name] = load_data(c, include_flagged=True)
    for p in args.extra:
        checks[p.name] = load_data(p, include_flagged=True)
    cols = ["old test", "new test", "new test, changed", "new test, kept", *checks]
    lines = [
        f"old = {args.v2.name}, new = {args.v3.name}: {len(v2)} common blocks, {moved.sum()} "
        f"changed (width or α); model `{args.model}`; within ±10 % (MAPE).",
        "",
        "| trained on | seed | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    print(*lines, sep="\n")
    for seed in args.seeds:
        sp = make_split(v2, "random", seed)
        test = np.isin(v2.ids, sp.test)
        for name, d in (("old", v2), ("new", v3)):
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

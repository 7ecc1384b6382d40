"""Label error or model error? Measure chosen rows of a dataset again and compare.

For each sample index: the stored label, the same block measured again now (the dataset's
own config and calibrated reference time, so at the same calibrated speed), and the
prediction of a model trained as ``predictor_accuracy.py`` trains it. A held-out miss that
the new measurement agrees with the model on was label noise; one that stays was the model.

Rows are named (``--rows``) or picked: ``--misses`` takes every held-out row of the seeded
split that the model misses by more than ±10 %, ``--controls N`` adds N held-out rows it
hits (seeded), whose new labels show how well labels repeat at all. ``--repeats R`` measures
the list R times over, so a row's measurements lie minutes apart.

    python benchmarks/diagnostics/remeasure_rows.py \\
        --data benchmarks/data/lenna-norm.db --rows 962 369 5
    python benchmarks/diagnostics/remeasure_rows.py \\
        --data benchmarks/data/darts-v3-zen5.db --misses --controls 15 --repeats 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lenna.measure.fingerprint import config_fingerprint, same_machine
from lenna.measure.reference import Calibration
from lenna.measure.runner import RunConfig, measure_sample
from lenna.measure.store import Dataset
from lenna.predict import load_data, train_predictor
from lenna.predict.train import held_out_rows
from lenna.space import get_space

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish

MISS = 0.10  # a miss: the prediction beyond ±10 % of the stored label


def pick_rows(model, data, misses: bool, controls: int, seed: int) -> tuple[list, list]:
    """The held-out rows the model misses (if ``misses``) and ``controls`` it hits."""
    held = held_out_rows(model, data)
    off = np.abs(model.predict_features(data.X) / data.y - 1) > MISS
    missed = data.ids[held & off].tolist() if misses else []
    hits = data.ids[held & ~off]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(hits, size=min(controls, len(hits)), replace=False) if controls else []
    return sorted(missed), sorted(int(i) for i in chosen)


def summary(kind: str, rows: list[int], again: dict, stored, pred) -> str:
    """How the new labels of ``rows`` sit against the stored ones and the model."""
    if not rows:
        return ""
    moved = [abs(a / stored[i] - 1) * 100 for i in rows for a in again[i]]
    line = (
        f"- {kind} ({len(rows)}): new / stored label a median {np.median(moved):.1f} % apart "
        f"(largest {max(moved):.1f} %)"
    )
    if kind.startswith("misses"):
        model = sum(all(abs(pred[i] / a - 1) > MISS for a in again[i]) for i in rows)
        label = sum(all(abs(pred[i] / a - 1) <= MISS for a in again[i]) for i in rows)
        line += (
            f"; the model still beyond ±10 % of every new label on {model} (model error), "
            f"within it on {label} (label error), the rest between"
        )
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rows", type=int, nargs="*", default=[], help="sample indices")
    ap.add_argument("--misses", action="store_true", help="add the model's held-out misses")
    ap.add_argument("--controls", type=int, default=0, help="add N held-out rows it hits")
    ap.add_argument("--repeats", type=int, default=1, help="measure the list R times over")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    ap.add_argument("--model", default="additive")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.repeats < 1 or args.controls < 0:
        ap.error("--repeats must be >= 1 and --controls >= 0")
    if not (args.rows or args.misses or args.controls):
        ap.error("no rows to measure: give --rows, --misses or --controls")
    with Dataset.open(args.data, readonly=True) as ds:
        cfg = RunConfig.from_dict(ds.meta["config"])
        cal = Calibration.of(ds.meta)
        stored = ds.samples().set_index("sample_index")["latency_ms"]
    data = load_data(args.data, include_flagged=True)
    here = config_fingerprint(cfg.measure)  # the host that measures again
    if not same_machine(data.fingerprint, here):
        ap.error(
            f"{args.data} was measured on another machine or setting (fingerprint "
            f"{data.fingerprint.get('hash')}, here {here['hash']}): new and stored labels "
            "would not be comparable"
        )
    unknown = sorted(set(args.rows) - set(data.ids.tolist()))
    if unknown:
        ap.error(f"no sample {unknown[0]} in {args.data} ({len(unknown)} unknown)")
    model = train_predictor(data, args.model, seed=args.seed)
    pred = dict(zip(data.ids.tolist(), model.predict_features(data.X), strict=True))
    missed, controls = pick_rows(model, data, args.misses, args.controls, args.seed)
    rows = list(dict.fromkeys([*args.rows, *missed, *controls]))
    space, sampler = get_space(cfg.space), cfg.sampler()
    again: dict[int, list[float]] = {i: [] for i in rows}
    for r in range(args.repeats):
        for i in rows:
            again[i].append(measure_sample(space, cfg, sampler(i), i, cal).latency_ms)
            print(f"pass {r + 1}: {i} {again[i][-1]:.4f} ms", flush=True)
    lines = [
        f"{args.data.name}: rows measured again {args.repeats}× with the dataset's config and "
        f"reference time; `{args.model}` trained on its seeded split (seed {args.seed}; all "
        "rows, drift-flagged included).",
        "",
        "| sample | stored ms | again ms | again / stored | predicted / stored "
        "| predicted / again |",
        "|---|---|---|---|---|---|",
    ]
    for i in rows:
        spec, old, p = sampler(i), float(stored.loc[i]), float(pred[i])
        lines.append(
            f"| {i} ({spec.block_type}, C={spec.channels}, {spec.resolution}²"
            f"{', miss' if i in missed else ''}) | {old:.3f} "
            f"| {' / '.join(f'{a:.3f}' for a in again[i])} "
            f"| {' / '.join(f'{(a / old - 1) * 100:+.1f} %' for a in again[i])} "
            f"| {(p / old - 1) * 100:+.1f} % "
            f"| {' / '.join(f'{(p / a - 1) * 100:+.1f} %' for a in again[i])} |"
        )
    notes = [
        summary("misses (held-out rows beyond ±10 %)", missed, again, stored, pred),
        summary("controls (held-out rows within ±10 %)", controls, again, stored, pred),
    ]
    lines += ["", *filter(None, notes)]
    print("\n".join(lines))
    publish("remeasure_rows", here, lines, save=not args.no_record)


if __name__ == "__main__":
    main()

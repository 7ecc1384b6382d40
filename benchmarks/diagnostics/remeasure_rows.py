"""Label error or model error? Measure chosen rows of a dataset again and compare.

For each sample index: the stored label, the same block measured again now (the dataset's
own config and calibrated reference time, so at the same calibrated speed), and the
prediction of a model trained as ``predictor_accuracy.py`` trains it. A held-out miss that
the new measurement agrees with the model on was label noise; one that stays was the model.

    python benchmarks/diagnostics/remeasure_rows.py \\
        --data benchmarks/data/lenna-norm.db --rows 962 369 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lenna.measure.reference import Calibration
from lenna.measure.runner import RunConfig, measure_sample
from lenna.measure.store import Dataset
from lenna.predict import load_data, train_predictor
from lenna.space import get_space

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rows", type=int, nargs="+", required=True, help="sample indices")
    ap.add_argument("--model", default="additive")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    with Dataset.open(args.data) as ds:
        cfg = RunConfig.from_dict(ds.meta["config"])
        cal = Calibration.of(ds.meta)
        stored = ds.samples().set_index("sample_index")["latency_ms"]
    data = load_data(args.data, include_flagged=True)
    model = train_predictor(data, args.model, seed=0)
    pred = dict(zip(data.ids.tolist(), model.predict_features(data.X), strict=True))
    space, sampler = get_space(cfg.space), cfg.sampler()
    lines = [
        f"{args.data.name}: rows measured again with the dataset's config and reference time; "
        f"`{args.model}` trained on its seeded split (all rows, drift-flagged included).",
        "",
        "| sample | stored ms | again ms | again / stored | predicted / stored "
        "| predicted / again |",
        "|---|---|---|---|---|---|",
    ]
    for i in args.rows:
        spec = sampler(i)
        m = measure_sample(space, cfg, spec, i, cal)
        old, new, p = float(stored.loc[i]), m.latency_ms, float(pred[i])
        lines.append(
            f"| {i} ({spec.block_type}, C={spec.channels}, {spec.resolution}²) | {old:.3f} "
            f"| {new:.3f} | {(new / old - 1) * 100:+.1f} % | {(p / old - 1) * 100:+.1f} % "
            f"| {(p / new - 1) * 100:+.1f} % |"
        )
        print(lines[-1], flush=True)
    publish("remeasure_rows", data.fingerprint, lines, save=not args.no_record)


if __name__ == "__main__":
    main()

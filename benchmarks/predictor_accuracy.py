"""Predictor accuracy side by side, on datasets measured on this machine.

For each dataset: every model kind is trained on the same seeded random split and
evaluated on its held-out rows and its one-hot held-out rows; a second set, trained with
``--split channels`` (every row above the 90th percentile of channels held out), gives the
extrapolation figures. Then the prediction throughput (samples/s, batched, CPU) as a ratio
to the median wall time of measuring one sample. Appends everything to RESULTS.md.

    python benchmarks/predictor_accuracy.py --data benchmarks/data/lenna.db benchmarks/data/darts.db
    python benchmarks/predictor_accuracy.py --data D.db --models lut additive:edge_scale=shaped
    python benchmarks/predictor_accuracy.py --data D.db --models lut additive additive:align=0 \\
        --seed 1 --no-figure            # another split, an ablation, the figures left alone

A model is ``kind`` or ``kind:name=value,...`` (hyperparameters; numbers or words).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lenna.measure.store import Dataset
from lenna.predict import list_kinds, load_data, train_predictor
from lenna.predict.train import evaluate_model, split_masks
from lenna.report.scatter import plot_predicted_vs_measured

sys.path.insert(0, str(Path(__file__).parent))
from _models import parse_model
from _record import publish

FIGURES = Path(__file__).parent / "figures"


def throughput(model, X: np.ndarray, repeats: int = 3) -> float:
    """Samples per second of batched CPU prediction (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict_features(X)
        best = min(best, time.perf_counter() - t0)
    return len(X) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=list_kinds())
    ap.add_argument("--seed", type=int, default=0, help="seed of the splits and the training")
    ap.add_argument(
        "--no-figure", action="store_true", help="do not redraw benchmarks/figures/*.png"
    )
    ap.add_argument(
        "--include-flagged",
        action="store_true",
        help="also train/evaluate on rows the drift guard flagged",
    )
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sections = []
    fp = None
    for path in args.data:
        data = load_data(path, include_flagged=args.include_flagged)
        fp = data.fingerprint
        with Dataset.open(path, readonly=True) as ds:
            wall = float(ds.samples()["wall_s"].median())
        X = np.repeat(data.X, int(np.ceil(20000 / len(data))), axis=0)[:20000]
        lines = [
            f"**{data.space.name}** — {path.name}: {len(data)} samples"
            f"{' (drift-flagged rows included)' if args.include_flagged else ''} "
            f"({int(data.onehot.sum())} one-hot), op table {len(data.op_table)} rows, "
            f"median {wall:.2f} s to measure a sample.",
            "",
            "| model | diff. | held-out MAPE | ±5 % | ±10 % | RMSE ms | R² | τ "
            "| one-hot MAPE | one-hot ±10 % | extrap. MAPE | extrap. ±10 % | samples/s "
            "| × faster than measuring |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        scatter = {}
        for spec in args.models:
            kind, hp = parse_model(spec)
            t0 = time.perf_counter()
            m = train_predictor(data, kind, seed=args.seed, **hp)
            mx = train_predictor(data, kind, seed=args.seed, split="channels", **hp)
            r = m.info["metrics"]
            ex = evaluate_model(mx, data)["extrapolation"]
            h, oh = r["held_out"], r["one_hot"]
            tput = throughput(m, X)
            held = split_masks(m, data)["held_out"]
            scatter[spec] = (data.y[held], m.predict_features(data.X[held]))
            lines.append(
                f"| {spec} | {'yes' if m.differentiable else 'no'} | {h['mape']:.2f} % "
                f"| {h['within_5']:.1f} % | {h['within_10']:.1f} % | {h['rmse_ms']:.3f} "
                f"| {h['r2']:.3f} | {h['kendall_tau']:.3f} | {oh['mape']:.2f} % "
                f"| {oh['within_10']:.1f} % | {ex['mape']:.2f} % | {ex['within_10']:.1f} % "
                f"| {tput:,.0f} | {tput * wall:,.0f} |"
            )
            print(lines[-1], f"(trained in {time.perf_counter() - t0:.0f} s)", flush=True)
        if not args.no_figure:
            fig = FIGURES / f"{path.stem}_predicted_vs_measured.png"
            FIGURES.mkdir(exist_ok=True)
            plot_predicted_vs_measured(scatter, fig, title=f"held-out rows of {path.name}")
            lines.append(f"\nFigure: `benchmarks/figures/{fig.name}`.")
        sections.append("\n".join(lines))
    body = "\n\n".join(sections)
    body += (
        f"\n\nHeld-out: the seeded random 20 % test split (seed {args.seed}); one-hot: its "
        "one-hot rows; extrap.: models trained with `--split channels`, on rows above the 90th "
        "percentile of channels."
    )
    publish("predictor_accuracy", fp, [body], save=not args.no_record and bool(fp))


if __name__ == "__main__":
    main()

"""Does the latency term buy measured speed, and at what accuracy? λ = 0 against λ > 0.

For each space: the latency predictor (trained on this machine's dataset, or given), then for
each seed a search at λ = 0 and at the chosen λ, then `evaluate-arch` on every derived network
(latency measured for real, trained from scratch, tested on the held-out split). Printed and
appended to RESULTS.md: measured latency ratio (λ > 0 over λ = 0, per seed and median),
accuracy difference, predicted-vs-measured error of the derived cells, the latency term's
share of a search step (timed inside the λ > 0 runs, and as the step-time ratio of the two
runs), and the process's peak memory.

    python benchmarks/search_tradeoff.py --space lenna --lam 1 \\
        --predictor-data benchmarks/data/lenna-matched.db --out /tmp/tradeoff
    python benchmarks/search_tradeoff.py --backend onnxruntime --out /tmp/tradeoff-ort
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics as st
import sys
from dataclasses import replace
from pathlib import Path

import torch

from lenna.measure.config import MeasureConfig
from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import load_predictor, save_predictor
from lenna.search.config import SearchConfig
from lenna.search.datasets import load_data
from lenna.search.folder import METRICS
from lenna.search.network import NetConfig
from lenna.search.run import run_search
from lenna.search.verify import evaluate_arch

sys.path.insert(0, str(Path(__file__).parent))
from _datasets import described, shipped
from _models import folder_name, parse_model
from _record import publish


def predictor_for(args: argparse.Namespace, out: Path) -> Path:
    if args.predictor:
        return Path(args.predictor)
    path = args.predictor_data or shipped(args.space)
    # named by its data file too: a rerun into the same --out with other data trains anew
    folder = out / f"predictor-{args.space}-{folder_name(args.kind)}-{Path(path).stem}"
    if not (folder / "model.json").is_file():
        data = load_latency_data(path, include_flagged=True)
        print(f"training {args.kind} on {len(data)} rows of {path}")
        kind, hp = parse_model(args.kind)
        save_predictor(train_predictor(data, kind, seed=0, **hp), folder)
    return folder


def step_times(run: Path) -> tuple[float, float]:
    """(mean epoch seconds, mean latency share) from a run's metrics.csv."""
    with (run / METRICS).open() as f:
        rows = list(csv.DictReader(f))
    return (
        st.mean(float(r["epoch_s"]) for r in rows),
        st.mean(float(r["latency_share"]) for r in rows),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="lenna")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--predictor", help="model folder; else trained from --predictor-data")
    ap.add_argument(
        "--predictor-data",
        type=Path,
        help="latency dataset to train the predictor on (default: the newest shipped one of "
        f"the space in benchmarks/data: {described()}; with --backend onnxruntime "
        f"{described('onnxruntime')})",
    )
    ap.add_argument(
        "--kind",
        default="additive",
        help="predictor kind, or kind:name=value,... (e.g. additive:shared=1; default: the "
        "best model on the shipped files)",
    )
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--mode", default="weighted")
    ap.add_argument("--eval-epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-tradeoff"))
    ap.add_argument("--target", action="store_true", help="check the issue's targets")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime"],
        help="onnxruntime: an ORT-predictor search against an eager-predictor search, every "
        "network measured in ONNX Runtime (--predictor-data: the ORT dataset)",
    )
    ap.add_argument(
        "--eager-data",
        type=Path,
        help="with --backend onnxruntime: the eager dataset the eager predictor is trained on "
        "(default: the space's newest shipped eager file)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.backend == "onnxruntime":
        from _tradeoff_backend import run_backend

        return run_backend(args, publish)
    pred = predictor_for(args, args.out)
    model = load_predictor(pred, space=args.space)
    base = SearchConfig(
        space=args.space,
        data=args.data,
        limit=args.limit,
        predictor=str(pred),
        epochs=args.epochs,
        warmup=args.warmup,
        batch=args.batch,
        mode=args.mode,
        net=NetConfig(),
        a_lr=3e-3,
    )
    search_data = {s: load_data(args.data, seed=s, limit=args.limit) for s in args.seeds}
    full_data = {s: load_data(args.data, seed=s) for s in args.seeds}
    measure = MeasureConfig(threads=1)
    results: dict[tuple[int, float], dict] = {}
    for seed in args.seeds:
        for lam in (0.0, args.lam):
            run = args.out / f"{args.space}-seed{seed}-lam{lam:g}"
            cfg = replace(base, lam=lam, seed=seed)
            if not (run / "genotype.json").is_file():
                resume = (run / "config.json").is_file()
                print(f"search {args.space} seed {seed} λ {lam:g} -> {run}", flush=True)
                res = run_search(cfg, run, resume=resume, data=search_data[seed], figures=True)
                g = res.genotype
            else:
                from lenna.search.genotype import Genotype

                g = Genotype.load(run / "genotype.json")
            if (run / "result.json").is_file():  # a re-run reports, it does not redo
                r = json.loads((run / "result.json").read_text())
            else:
                torch.set_num_threads(2)
                r = evaluate_arch(g, full_data[seed], args.eval_epochs, seed, measure=measure)
                r["epoch_s"], r["latency_share"] = step_times(run)
                r["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                (run / "result.json").write_text(json.dumps(r, indent=2))
            results[(seed, lam)] = r
            print(
                f"  measured {r['measured_ms']:.3f} ms (cells {r['measured_cells_ms']:.3f}, "
                f"predicted {r['predicted_ms']:.3f}), accuracy {100 * r['accuracy']:.2f} %",
                flush=True,
            )
    # peak RSS of the process that searched and verified each run (recorded with the run)
    peaks = [r["peak_rss_gb"] for r in results.values() if "peak_rss_gb" in r]
    peak_gb = max(peaks) if peaks else float("nan")
    trained_on = (
        "its dataset"
        if args.predictor
        else f"`{Path(args.predictor_data or shipped(args.space)).name}`"
    )
    lines = [
        f"`{args.space}` space, `{args.data}` (search on {args.limit} images, {args.epochs} "
        f"epochs ({args.warmup} weight warm-up), batch {args.batch}, {args.mode}, λ = "
        f"{args.lam:g}; verification: {args.eval_epochs} epochs on "
        f"the full train split, test on the held-out split), predictor `{args.kind}` "
        f"(held-out MAPE {model.info['metrics']['held_out']['mape']:.1f} % on {trained_on}), "
        "form linear.",
        "",
        "| seed | λ | measured ms (net) | cells measured ms | cells predicted ms | pred. error "
        "| accuracy | params | epoch s | latency share of step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (seed, lam), r in sorted(results.items()):
        lines.append(
            f"| {seed} | {lam:g} | {r['measured_ms']:.3f} | {r['measured_cells_ms']:.3f} | "
            f"{r['predicted_ms']:.3f} | {100 * r['prediction_error']:+.1f} % | "
            f"{100 * r['accuracy']:.2f} % | {r['params']:,} | {r['epoch_s']:.1f} | "
            f"{100 * r['latency_share']:.2f} % |"
        )
    ratios = [
        results[(s, args.lam)]["measured_ms"] / results[(s, 0.0)]["measured_ms"] for s in args.seeds
    ]
    cell_ratios = [
        results[(s, args.lam)]["measured_cells_ms"] / results[(s, 0.0)]["measured_cells_ms"]
        for s in args.seeds
    ]
    acc_diff = [
        100 * (results[(s, args.lam)]["accuracy"] - results[(s, 0.0)]["accuracy"])
        for s in args.seeds
    ]
    errors = [abs(r["prediction_error"]) * 100 for r in results.values()]
    # each derived cell alone: its predicted against its measured time (the number acted on)
    cell_errors = [
        (p - m) / m * 100
        for r in results.values()
        for p, m in zip(r["predicted_per_cell_ms"], r["measured_per_cell_ms"], strict=True)
    ]
    worst_cell = max(cell_errors, key=abs)
    share = st.median(results[(s, args.lam)]["latency_share"] for s in args.seeds)
    step_ratio = st.median(
        results[(s, args.lam)]["epoch_s"] / results[(s, 0.0)]["epoch_s"] for s in args.seeds
    )
    summary = [
        "",
        f"- measured latency ratio λ={args.lam:g} / λ=0, whole network: "
        f"{', '.join(f'{x:.3f}' for x in ratios)} (median {st.median(ratios):.3f}); "
        f"cells only: median {st.median(cell_ratios):.3f}; beside it, each derived cell's "
        f"prediction error ({len(cell_errors)} cells): median |error| "
        f"{st.median(abs(e) for e in cell_errors):.1f} %, worst {worst_cell:+.1f} %",
        f"- accuracy difference (points): {', '.join(f'{x:+.2f}' for x in acc_diff)} "
        f"(mean {st.mean(acc_diff):+.2f})",
        "- |predicted − measured| / measured of the derived cells: "
        f"median {st.median(errors):.1f} %, max {max(errors):.1f} %",
        f"- latency term's share of a search step (timed inside the λ > 0 runs): median "
        f"{100 * share:.2f} %; epoch-time ratio λ>0 / λ=0 runs: {step_ratio:.3f}",
        f"- peak memory (max RSS of the searching process, {len(peaks)} of "
        f"{len(results)} runs recorded): {peak_gb:.2f} GB",
    ]
    if args.target:
        ok = (
            st.median(ratios) <= 0.7,
            st.mean(acc_diff) >= -1.0,
            share <= 0.02,
            peak_gb <= 3.0,
        )
        summary.append(
            "- targets (ratio ≤ 0.7, accuracy loss ≤ 1 point, term ≤ 2 % of a step, ≤ 3 GB): "
            + ", ".join("met" if x else "NOT met" for x in ok)
        )
    publish(
        f"Search trade-off, {args.space} space",
        results[(args.seeds[0], 0.0)]["fingerprint"],
        lines + summary,
        save=not args.no_record,
    )


if __name__ == "__main__":
    main()

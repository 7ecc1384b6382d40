"""Does one search within a budget give a network that measures at that budget?

For each seed: a search at λ = 0, its derived network measured (whole network, batch 1, the
predictor's settings); budgets at 40, 55, 70 and 85 % of that measured latency; one search per
budget (``budget_ms``: the multiplier on the derived network) and, for comparison, today's
fixed-λ hinge at the same budget (``lam`` with ``target_ms`` = the budget less the network's
fixed part, since the hinge covers the cells only). Every derived network is measured and
trained as in ``search_tradeoff.py``. Reported per run: measured / budget and accuracy.
Every latency is timed as the predictor's labels were (its backend, threads, calibration): an
ONNX Runtime predictor gives a budget met in ONNX Runtime.

Searches and training run two at a time (one thread each); every latency is measured alone,
with nothing else running, so the figure that matters is not disturbed by the parallelism.

    python benchmarks/latency_budget.py --out /tmp/lenna-budget
    python benchmarks/latency_budget.py --space darts --kind additive --no-hinge \
        --predictor-data benchmarks/data/darts-ort-v2.db --workers 1 --out /tmp/budget-ort
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint
from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import load_predictor, save_predictor
from lenna.search.config import SearchConfig
from lenna.search.datasets import load_data
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.run import run_search
from lenna.search.timing import measure_config_from, measured_as
from lenna.search.train import train_network
from lenna.search.verify import build, evaluate_arch

sys.path.insert(0, str(Path(__file__).parent))
from _datasets import described, shipped
from _record import publish

SHARES = (0.40, 0.55, 0.70, 0.85)


def _search(cfg: SearchConfig, run: Path) -> str:
    """One search in its own process (one thread); returns the run folder."""
    torch.set_num_threads(1)
    if not (run / "genotype.json").is_file():
        resume = (run / "config.json").is_file()
        run_search(cfg, run, resume=resume, figures=True)
    return str(run)


def _train(run: Path, data: str, seed: int, epochs: int) -> float:
    """Train the derived network of ``run`` from scratch; its test accuracy (cached)."""
    torch.set_num_threads(1)
    path = run / "accuracy.json"
    if path.is_file():
        return json.loads(path.read_text())["accuracy"]
    net = build(Genotype.load(run / "genotype.json"))
    acc = train_network(net, load_data(data, seed=seed), epochs, seed)["accuracy"]
    path.write_text(json.dumps({"accuracy": acc, "epochs": epochs}))
    return acc


def _measure(run: Path, measure: MeasureConfig) -> dict:
    """Measure the derived network of ``run`` (alone, cached)."""
    path = run / "measured.json"
    if path.is_file():
        return json.loads(path.read_text())
    r = evaluate_arch(Genotype.load(run / "genotype.json"), "mnist5k", 0, measure=measure)
    path.write_text(json.dumps(r, indent=2))
    return r


def predictor_for(args: argparse.Namespace) -> Path:
    if args.predictor:
        return Path(args.predictor)
    path = args.predictor_data or shipped(args.space)
    # named by its data file too: a rerun into the same --out with other data trains anew
    folder = args.out / f"predictor-{args.space}-{args.kind}-{Path(path).stem}"
    if not (folder / "model.json").is_file():
        data = load_latency_data(path, include_flagged=True)
        print(f"training {args.kind} on {len(data)} rows of {path}", flush=True)
        save_predictor(train_predictor(data, args.kind, seed=0), folder)
    return folder


def parallel(fn, jobs: list[tuple], workers: int) -> list:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, *zip(*jobs, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    ap.add_argument("--predictor", help="model folder; else trained from --predictor-data")
    ap.add_argument("--space", default="lenna", choices=["darts", "lenna"])
    ap.add_argument(
        "--predictor-data",
        type=Path,
        help=f"latency dataset to train the predictor on (default: {described()}, in "
        "benchmarks/data); its backend is the one every network is measured in",
    )
    ap.add_argument("--kind", default="lut+mlp")
    ap.add_argument("--hinge-lam", type=float, default=1.0, help="λ of the fixed-λ hinge")
    ap.add_argument("--no-hinge", action="store_true", help="skip the hinge comparison")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--eval-epochs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-budget"))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pred = predictor_for(args)
    model = load_predictor(pred, space=args.space)
    base = SearchConfig(
        space=args.space,
        data="mnist5k",
        limit=args.limit,
        predictor=str(pred),
        epochs=args.epochs,
        warmup=args.warmup,
        batch=args.batch,
        net=NetConfig(),
        a_lr=3e-3,
    )
    # timed as the labels were: their backend, 1 thread, their Z0, anchors and reference mode
    measure = measure_config_from(measured_as(model), threads=1)

    # 1. λ = 0 per seed: searched, then measured alone: the budgets are shares of it
    zero = {s: args.out / f"seed{s}-lam0" for s in args.seeds}
    parallel(_search, [(replace(base, seed=s), zero[s]) for s in args.seeds], args.workers)
    m0 = {s: _measure(zero[s], measure) for s in args.seeds}
    # what the hinge (cells only) leaves outside: the fixed part and the whole-network gap
    fixed = {
        s: m0[s]["predicted_fixed_ms"] + (m0[s]["predicted_gap_ms"] or 0.0) for s in args.seeds
    }

    # 2. one search per budget, and the hinge at the same budget
    runs: dict[tuple[int, str, float], Path] = {}
    jobs = []
    for s in args.seeds:
        for share in args.shares:
            budget = round(share * m0[s]["measured_ms"], 4)
            run = args.out / f"seed{s}-budget{share:g}"
            runs[(s, "budget", share)] = run
            jobs.append((replace(base, seed=s, budget_ms=budget), run))
            if not args.no_hinge:
                run = args.out / f"seed{s}-hinge{share:g}"
                runs[(s, "hinge", share)] = run
                cfg = replace(base, seed=s, lam=args.hinge_lam, target_ms=budget - fixed[s])
                jobs.append((cfg, run))
    print(f"{len(jobs)} searches, {args.workers} at a time", flush=True)
    parallel(_search, jobs, args.workers)

    # 3. every network measured alone, then all trained (two at a time)
    measured = {k: _measure(run, measure) for k, run in runs.items()}
    every = [(zero[s], "mnist5k", s, args.eval_epochs) for s in args.seeds]
    every += [(run, "mnist5k", k[0], args.eval_epochs) for k, run in runs.items()]
    accs = dict(zip([str(j[0]) for j in every], parallel(_train, every, args.workers), strict=True))

    lines = [
        f"`{args.space}` space, `mnist5k` (search on {args.limit} images, {args.epochs} epochs "
        f"({args.warmup} weight warm-up), batch {args.batch}; verification: whole network "
        f"measured alone in {measure.backend} at batch 1, 1 thread, normalised as the labels; "
        "trained "
        f"{args.eval_epochs} epochs on the full train split, tested on the held-out split); "
        f"predictor `{args.kind}` (held-out MAPE "
        f"{model.info['metrics']['held_out']['mape']:.1f} % on {pred.name}'s dataset). Budget "
        "= share × the λ = 0 network's measured latency"
        + (
            "."
            if args.no_hinge
            else f"; hinge = λ {args.hinge_lam:g} with target = budget − fixed part − gap "
            "(cells only)."
        ),
        "",
        "| seed | method | share | budget ms | measured ms | measured / budget | predicted ms "
        "| accuracy | Δ acc vs λ = 0 (points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios: dict[str, list[float]] = {"budget": [], "hinge": []}
    by_share: dict[float, list[float]] = {}
    for s in args.seeds:
        a0 = accs[str(zero[s])]
        lines.append(
            f"| {s} | λ = 0 | - | - | {m0[s]['measured_ms']:.3f} | - | "
            f"{m0[s]['predicted_network_ms']:.3f} | {100 * a0:.2f} % | - |"
        )
        for (seed, method, share), run in sorted(runs.items()):
            if seed != s:
                continue
            r = measured[(seed, method, share)]
            budget = round(share * m0[s]["measured_ms"], 4)
            ratio = r["measured_ms"] / budget
            ratios[method].append(ratio)
            acc = accs[str(run)]
            if method == "budget":
                by_share.setdefault(share, []).append(100 * (acc - a0))
            lines.append(
                f"| {s} | {method} | {share:g} | {budget:.3f} | {r['measured_ms']:.3f} | "
                f"{ratio:.3f} | {r['predicted_network_ms']:.3f} | {100 * acc:.2f} % | "
                f"{100 * (acc - a0):+.2f} |"
            )
    lines.append("")
    for method, rs in ratios.items():
        if not rs:
            continue
        within5 = sum(abs(x - 1) <= 0.05 for x in rs)
        within3 = sum(abs(x - 1) <= 0.03 for x in rs)
        lines += [
            f"- **{method}**: measured / budget median {st.median(rs):.3f}, range "
            f"{min(rs):.3f}–{max(rs):.3f}; within ±5 %: {within5}/{len(rs)}, within ±3 %: "
            f"{within3}/{len(rs)}; over budget: {sum(x > 1 for x in rs)}/{len(rs)}",
        ]
    for share, d in sorted(by_share.items()):
        lines.append(
            f"- budget at {share:g}: accuracy vs λ = 0, points: "
            + ", ".join(f"{x:+.2f}" for x in d)
        )
    publish(
        "Latency budget (benchmarks/latency_budget.py)",
        config_fingerprint(measure),
        lines,
        not args.no_record,
    )


if __name__ == "__main__":
    main()

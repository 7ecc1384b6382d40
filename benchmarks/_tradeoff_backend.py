"""`search_tradeoff.py --backend onnxruntime`: which predictor gives the faster network in the
runtime the user deploys with?

Per seed: a λ = 0 search, a λ > 0 search steered by the ONNX Runtime predictor (trained on ORT
labels) and one steered by the eager predictor (trained on PyTorch eager labels). Every derived
network is measured in ONNX Runtime (whole network and cells, batch 1, 1 thread, at the ORT
dataset's calibrated speed) and trained as in the plain trade-off. The eager-steered rows'
"predicted" figures are eager milliseconds: their error against ORT shows the mismatch.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from dataclasses import replace
from pathlib import Path

import torch
from _datasets import shipped  # benchmarks/ is on sys.path: search_tradeoff.py put it there
from _models import folder_name, parse_model

from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import load_predictor, save_predictor
from lenna.search.config import SearchConfig
from lenna.search.datasets import load_data
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.run import run_search
from lenna.search.timing import measure_config_from, measured_as
from lenna.search.verify import evaluate_arch


def ort_data(args: argparse.Namespace) -> Path:
    return args.predictor_data or shipped(args.space, "onnxruntime")


def eager_data(args: argparse.Namespace) -> Path:
    return args.eager_data or shipped(args.space)


def trained(path: Path, kind: str, folder: Path) -> Path:
    if not (folder / "model.json").is_file():
        data = load_latency_data(path, include_flagged=True)
        print(f"training {kind} on {len(data)} rows of {path}", flush=True)
        name, hp = parse_model(kind)
        save_predictor(train_predictor(data, name, seed=0, **hp), folder)
    return folder


def run_backend(args: argparse.Namespace, publish) -> None:
    out = args.out
    name = folder_name(args.kind)
    ort, eager = ort_data(args), eager_data(args)
    preds = {
        "ort": trained(ort, args.kind, out / f"ort-{name}-{ort.stem}"),
        "eager": trained(eager, args.kind, out / f"eager-{name}-{eager.stem}"),
    }
    ort_model = load_predictor(preds["ort"], space=args.space)
    ort_as = measured_as(ort_model)  # every network is measured at the ORT labels' speed
    base = SearchConfig(
        space=args.space, data=args.data, limit=args.limit, epochs=args.epochs,
        warmup=args.warmup, batch=args.batch, mode=args.mode, net=NetConfig(), a_lr=3e-3,
    )  # fmt: skip
    # timed as the ORT labels were: 1 thread, their Z0, anchors and reference mode
    measure = measure_config_from(ort_as, threads=1, backend="onnxruntime")
    plan = [("λ = 0", 0.0, "ort"), ("ORT predictor", args.lam, "ort"),
            ("eager predictor", args.lam, "eager")]  # fmt: skip
    results: dict[tuple[int, str], dict] = {}
    for seed in args.seeds:
        search_data = load_data(args.data, seed=seed, limit=args.limit)
        full_data = load_data(args.data, seed=seed)
        for label, lam, which in plan:
            run = out / f"{args.space}-seed{seed}-lam{lam:g}-{which}"
            cfg = replace(base, lam=lam, seed=seed, predictor=str(preds[which]))
            if not (run / "genotype.json").is_file():
                print(f"search {args.space} seed {seed} {label} -> {run}", flush=True)
                resume = (run / "config.json").is_file()
                g = run_search(cfg, run, resume=resume, data=search_data, figures=False).genotype
            else:
                g = Genotype.load(run / "genotype.json")
            if (run / "result.json").is_file():
                r = json.loads((run / "result.json").read_text())
            else:
                g.info["measured_as"] = ort_as
                torch.set_num_threads(2)
                r = evaluate_arch(g, full_data, args.eval_epochs, seed, measure=measure)
                (run / "result.json").write_text(json.dumps(r, indent=2))
            results[(seed, label)] = r
            print(
                f"  {label}: ORT {r['measured_ms']:.3f} ms (cells {r['measured_cells_ms']:.3f}, "
                f"predicted {r['predicted_ms']:.3f}), accuracy {100 * r['accuracy']:.2f} %",
                flush=True,
            )
    lines = [
        f"`{args.space}` space, `{args.data}` (search on {args.limit} images, {args.epochs} "
        f"epochs ({args.warmup} weight warm-up), batch {args.batch}, {args.mode}, λ = "
        f"{args.lam:g}; verification: {args.eval_epochs} epochs on the full train split). "
        f"Predictors `{args.kind}`: ORT from {ort_data(args)}, "
        f"eager from {eager_data(args)}. Every network measured in ONNX Runtime "
        "(whole network, batch 1, 1 thread, at the ORT dataset's speed).",
        "",
        "| seed | search | ORT measured ms (net) | ORT measured ms (cells) | cells predicted ms "
        "| accuracy | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for (seed, label), r in results.items():
        lines.append(
            f"| {seed} | {label} | {r['measured_ms']:.3f} | {r['measured_cells_ms']:.3f} | "
            f"{r['predicted_ms']:.3f} | {100 * r['accuracy']:.2f} % | {r['params']:,} |"
        )

    def ratio(a: str, b: str) -> list[float]:
        return [results[(s, a)]["measured_ms"] / results[(s, b)]["measured_ms"] for s in args.seeds]

    def acc(a: str, b: str) -> str:
        d = [100 * (results[(s, a)]["accuracy"] - results[(s, b)]["accuracy"]) for s in args.seeds]
        return ", ".join(f"{x:+.2f}" for x in d)

    def fmt(xs: list[float]) -> str:
        return ", ".join(f"{x:.3f}" for x in xs)

    ort, eager, zero = "ORT predictor", "eager predictor", "λ = 0"

    def net_err(label: str) -> str:
        """Whole network predicted against measured in ORT, and the gap inside the prediction
        (the network less its parts timed alone, measured before the search)."""
        out = []
        for s in args.seeds:
            r = results[(s, label)]
            e, gap = r.get("network_prediction_error"), r.get("predicted_gap_ms")
            out.append(
                ("n/a" if e is None else f"{100 * e:+.1f} %")
                + ("" if gap is None else f" (gap {1e3 * gap:+.1f} µs)")
            )
        return ", ".join(out)

    lines += [
        "",
        f"- ORT latency, ORT-steered / eager-steered network: {fmt(ratio(ort, eager))} "
        f"(median {st.median(ratio(ort, eager)):.3f}); accuracy difference (points): "
        f"{acc(ort, eager)}",
        f"- ORT latency over λ = 0: ORT-steered {fmt(ratio(ort, zero))}, eager-steered "
        f"{fmt(ratio(eager, zero))}",
        f"- accuracy vs λ = 0 (points): ORT-steered {acc(ort, zero)}, eager-steered "
        f"{acc(eager, zero)}",
        f"- ORT-steered whole network, predicted vs measured in ORT: {net_err(ort)}; "
        f"λ = 0 network: {net_err(zero)}",
    ]
    fp = results[(args.seeds[0], "λ = 0")]["fingerprint"]
    publish(f"Search trade-off under ONNX Runtime, {args.space} space", fp, lines,
            save=not args.no_record)  # fmt: skip

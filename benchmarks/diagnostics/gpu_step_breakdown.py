"""Where a search step's time goes at the `darts-cifar10` preset: the first-order step with no
latency term (λ = 0) and with a `lut` and an `additive` term, in bf16 and float32, the term
alone (synchronised), and `Search.run_epoch` (what `lenna search` runs) against the
benchmark's hand loop. The step is replayed as a CUDA graph, as `lenna search` runs it on a
GPU; `--no-cuda-graph` breaks the eager step down. Prints one table; records nothing.

    python benchmarks/diagnostics/gpu_step_breakdown.py --device cuda
    python benchmarks/diagnostics/gpu_step_breakdown.py --device cuda --no-cuda-graph
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from search_throughput import DATA, cifar_like, search_rate, sync

from lenna.predict import load_data, train_predictor
from lenna.predict.io import save_predictor
from lenna.search.config import SearchConfig
from lenna.search.device import compute_device
from lenna.search.network import NetConfig
from lenna.search.presets import with_preset
from lenna.search.run import Search


def epoch_step_s(args: argparse.Namespace, predictor: Path, device: torch.device) -> float:
    """Seconds per step of run_epoch's second epoch (wall, synchronised at its end)."""
    given = {"predictor": str(predictor), "lam": 1.0, "batch": args.batch, "device": str(device),
             "net": {"channels": args.channels, "cells": args.cells}, "amp": args.amp,
             "cuda_graph": args.cuda_graph}  # fmt: skip
    d = with_preset("darts-cifar10", given)
    cfg = SearchConfig(**{**d, "net": NetConfig(**d["net"])})
    s = Search(replace(cfg, limit=None), cifar_like(2 * args.batch * args.steps, device))
    s.run_epoch()
    sync(device)
    t0 = time.perf_counter()
    s.run_epoch()
    sync(device)
    return (time.perf_counter() - t0) / args.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-breakdown"))
    ap.add_argument(
        "--cuda-graph",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="as `lenna search`",
    )
    args = ap.parse_args()
    args.channels_last = False
    warnings.filterwarnings("ignore", message=".*another machine")  # the shipped file's CPU
    device = compute_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for kind in ("lut", "additive"):
        folders[kind] = args.out / f"darts-{kind}"
        if not (folders[kind] / "model.json").is_file():
            save_predictor(train_predictor(load_data(DATA), kind, seed=0), folders[kind])
    print("| precision | latency term | step ms | images / s | term alone ms |")
    print("|---|---|---|---|---|")
    for amp in ("bf16", "off"):
        args.amp = amp
        for kind in (None, "lut", "additive"):
            r = search_rate(args, folders[kind] if kind else None, device)
            term = r["latency_share"] * r["step_s"] * 1e3
            print(f"| {amp} | {kind or 'none (λ = 0)'} | {1e3 * r['step_s']:.0f} | "
                  f"{r['images_s']:.1f} | {term:.1f} |", flush=True)  # fmt: skip
    for amp in ("bf16", "off"):
        args.amp = amp
        ms = 1e3 * epoch_step_s(args, folders["additive"], device)
        print(f"run_epoch, {amp}, additive: {ms:.0f} ms per step", flush=True)


if __name__ == "__main__":
    main()

"""How fast does a DARTS-size search run: images per second of the search step and of training
a derived network, at the `darts-cifar10` preset, on CIFAR-shaped synthetic images.

The search step is DARTS's first order (an α step on the α half, then a weight step on the w
half) with the latency term of a predictor trained on this repository's `darts` dataset; its
share of a step is timed inside the step. Each step runs as ``lenna search`` runs it: batches
cropped and flipped on the device, in the run's memory format, under its mixed precision.
Training a derived network is ``evaluate-arch``'s training loop with the `darts-cifar10-eval`
recipe (crop, flip, cutout, drop-path, the auxiliary head). On a GPU the full preset runs (8
cells of 16 channels, batch 64; derived network 20 cells of 36 channels, batch 96) and the
50-epoch search (25,000 + 25,000 images per epoch) and 600-epoch training they imply are
printed. On a CPU the sizes are reduced (the options say which) and the figures are CPU
figures, nothing more.

    python benchmarks/search_throughput.py                       # reduced, on the CPU
    python benchmarks/search_throughput.py --device cuda --full  # the preset, on a GPU
    python benchmarks/search_throughput.py --device cuda --full --amp off --channels-last
    python benchmarks/search_throughput.py --device cuda --full --no-cuda-graph  # eager steps

On a GPU the step is replayed as a CUDA graph, as ``lenna search`` runs it (its first steps run
eagerly and capture; the timed steps come after them).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lenna.measure.fingerprint import fingerprint
from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import save_predictor
from lenna.search.augment import crop_flip
from lenna.search.bilevel import latency_grad
from lenna.search.config import SearchConfig, amp_dtype
from lenna.search.datasets import ImageData
from lenna.search.device import compute_device
from lenna.search.graphed import FIRST_EAGER, graph_applies
from lenna.search.network import NetConfig, Network
from lenna.search.presets import with_preset
from lenna.search.recipe import TrainRecipe
from lenna.search.run import Search
from lenna.search.train import optimiser, train_batch, training_extras
from lenna.search.train_step import TrainStep
from lenna.space import derive, get_space

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish

# fixed, not _datasets.shipped(): only the predictor's shape matters to throughput, and the
# recorded figures were all taken with a predictor trained on this file
DATA = Path(__file__).parent / "data" / "darts-v2.db"
IMAGES_PER_HALF = 25_000  # CIFAR-10's 50,000 training images, half for w and half for α
TRAIN_IMAGES = 50_000  # evaluate-arch trains on all of them


def cifar_like(n: int, device: torch.device, seed: int = 0) -> ImageData:
    """``n`` random 3×32×32 images in 10 classes (and a small test split), on ``device``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 64, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n + 64,), generator=g)
    return ImageData("cifar-like", x[:n], y[:n], x[n:], y[n:], 10).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency_term_s(s: Search, device: torch.device, n: int = 20) -> float:
    """Median seconds of the latency term's value and α gradient, synchronised (inside a step
    its kernels overlap with the network's, so the step cannot time it on a GPU)."""
    alphas = dict(s.net.alphas.items())
    times = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        latency_grad(s.term, alphas)
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def search_rate(args: argparse.Namespace, predictor: Path | None, device: torch.device) -> dict:
    """The first-order step's rate; ``predictor`` None: λ = 0, no latency term."""
    net = {"channels": args.channels, "cells": args.cells}
    given = {"predictor": str(predictor) if predictor else None, "lam": 1.0 if predictor else 0.0,
             "batch": args.batch, "device": str(device), "net": net, "amp": args.amp,
             "channels_last": args.channels_last, "cuda_graph": args.cuda_graph}  # fmt: skip
    d = with_preset("darts-cifar10", given)
    cfg = SearchConfig(**{**d, "net": NetConfig(**d["net"])})
    graphs = cfg.cuda_graph and graph_applies(device, cfg.mode, cfg.unrolled)
    warmup = max(args.warmup_steps, FIRST_EAGER + 1) if graphs else args.warmup_steps
    steps = warmup + args.steps
    data = cifar_like(2 * args.batch * steps, device)
    s = Search(replace(cfg, limit=None), data)
    w, a, g = s.batches(0)
    step = s.stepper(True, g)  # as Search.run_epoch steps: a graph's replay, or eager
    times = []
    for i in range(steps):
        sync(device)
        t0 = time.perf_counter()
        xw, xa = data.x_train[w[i]], data.x_train[a[i]]  # as Search.run_epoch prepares them
        if cfg.augment:
            xw, xa = crop_flip(xw, g), crop_flip(xa, g)
        bw = (xw.contiguous(memory_format=s.memory_format), data.y_train[w[i]])
        ba = (xa.contiguous(memory_format=s.memory_format), data.y_train[a[i]])
        step(bw, ba)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    lat_s = latency_term_s(s, device) if s.term is not None else 0.0
    # callers without --epoch-steps (diagnostics/gpu_step_breakdown.py) time epochs their way
    n = getattr(args, "epoch_steps", None)
    overhead = epoch_overhead_s(args, cfg, device, step_s) if n and graphs else float("nan")
    return {
        "overhead_s": overhead,
        "step_s": step_s,
        "images_s": 2 * args.batch / step_s,
        "latency_share": lat_s / step_s,
        "epoch_s": IMAGES_PER_HALF / args.batch * step_s,
        "cells": args.cells,
        "channels": args.channels,
        "batch": args.batch,
        "amp": "bf16" if s.amp == torch.bfloat16 else "off",
        "graph": s.graphs,
        "warmup": warmup,
    }


def epoch_overhead_s(
    args: argparse.Namespace, cfg: SearchConfig, device: torch.device, step_s: float
) -> float:
    """What an epoch of ``Search.run_epoch`` costs beyond its steps at the median rate: its
    eager steps and its graph's capture (a graph is captured again each epoch), the metrics
    and α written after it. Timed on the second of two epochs of ``--epoch-steps`` steps."""
    n = args.epoch_steps
    s = Search(replace(cfg, limit=None), cifar_like(2 * args.batch * n, device, 2))
    s.run_epoch()
    sync(device)
    t0 = time.perf_counter()
    s.run_epoch()
    sync(device)
    return time.perf_counter() - t0 - n * step_s


def train_rate(args: argparse.Namespace, device: torch.device) -> dict:
    """Images per second of evaluate-arch's training step with the eval recipe (crop, flip,
    cutout, the auxiliary head, drop-path at half its final probability, as mid-training):
    the median of ``steps`` steps, each with its batch's augmentation, after the eager steps
    and, with ``--train-cuda-graph``, the capture (a graph's replays only; an epoch of 520
    batches captures once)."""
    space = get_space("darts")
    zeros = np.zeros(space.alpha_shape)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    shape = NetConfig(channels=args.eval_channels, cells=args.eval_cells, in_channels=3,
                      stem_stride=1, stem_multiplier=3)  # fmt: skip
    net = Network(space, shape, "fixed", choices).to(device)
    given = {"batch": args.eval_batch, "amp": args.amp, "channels_last": args.channels_last}
    recipe = TrainRecipe.of("darts-cifar10-eval", given)
    amp = amp_dtype(recipe.amp, device)
    graph = args.train_cuda_graph and device.type == "cuda"
    warmup = FIRST_EAGER + 1 if graph else args.warmup_steps
    data = cifar_like(args.eval_batch * (warmup + args.steps), device, 1)
    g = torch.Generator().manual_seed(0)
    times = []
    with training_extras(net, recipe) as (drop, aux):
        params = [*net.parameters(), *(aux.parameters() if aux is not None else [])]
        opt, _ = optimiser(params, recipe)
        if drop is not None:
            drop.prob = recipe.drop_path / 2
        for m in (net, aux):
            if m is not None:
                m.train()
        step = TrainStep(net, aux, opt, params, recipe.aux_weight, recipe.grad_clip, amp, graph)
        for i in range(warmup + args.steps):
            sl = slice(i * args.eval_batch, (i + 1) * args.eval_batch)
            sync(device)
            t0 = time.perf_counter()
            step(train_batch(data.x_train[sl], recipe, g), data.y_train[sl])
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    images_s = args.eval_batch / float(np.median(times))
    return {"images_s": images_s, "cells": args.eval_cells, "channels": args.eval_channels,
            "batch": args.eval_batch, "amp": "bf16" if amp == torch.bfloat16 else "off",
            "graph": step.captured, "epochs_h": 600 * TRAIN_IMAGES / images_s / 3600}  # fmt: skip


def peak_gb(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GB of GPU memory"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB RSS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full", action="store_true", help="the preset's full sizes")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--cells", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--eval-channels", type=int, default=16)
    ap.add_argument("--eval-cells", type=int, default=8)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument(
        "--epoch-steps", type=int, default=None, help="steps of the epochs timed whole (30 full, 6)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kind", default="lut", help="predictor kind of the latency term")
    ap.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16"],
        help="mixed precision, as `lenna search --amp` (auto: bf16 on a GPU)",
    )
    ap.add_argument("--channels-last", action="store_true", help="as `lenna search` takes it")
    ap.add_argument(
        "--cuda-graph",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replay the step as a CUDA graph on a GPU, as `lenna search` does (default: on)",
    )
    ap.add_argument("--only", choices=["search", "train"], help="time one of the two")
    ap.add_argument(
        "--train-cuda-graph",
        action="store_true",
        help="replay the training step as a CUDA graph (`evaluate-arch --cuda-graph`, opt-in)",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-throughput"))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.full:
        args.channels, args.cells, args.batch = 16, 8, 64
        args.eval_channels, args.eval_cells, args.eval_batch = 36, 20, 96
    if args.epoch_steps is None:
        args.epoch_steps = 30 if args.full else 6
    torch.set_num_threads(args.threads)
    device = compute_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / f"darts-{args.kind}"
    if args.only != "train" and not (folder / "model.json").is_file():
        save_predictor(train_predictor(load_latency_data(DATA), args.kind, seed=0), folder)
    s = search_rate(args, folder, device) if args.only != "train" else None
    t = train_rate(args, device) if args.only != "search" else None
    size = "the full preset" if args.full else "reduced sizes"
    amp = (s or t)["amp"]
    head = (
        f"`darts-cifar10` preset on {device} at {size}, CIFAR-shaped synthetic images, "
        f"{args.threads} CPU thread(s), median of {args.steps} steps; precision {amp}, "
        f"{'channels-last' if args.channels_last else 'default'} memory format"
    )
    if s is not None:
        head += (
            f"; search: after {s['warmup']} steps, latency term `{args.kind}` trained on "
            f"{DATA.name}, step {'replayed as a CUDA graph' if s['graph'] else 'eager'}"
        )
    lines = [
        head + ".",
        "",
        "| what | network | batch | images / s | other |",
        "|---|---|---|---|---|",
    ]
    if s is not None:
        overhead = (
            f"; with each epoch's overhead ({s['overhead_s']:.1f} s: eager steps, capture, "
            f"metrics; from a {args.epoch_steps}-step epoch) "
            f"{50 * (s['epoch_s'] + s['overhead_s']) / 3600:.2f} h"
            if s["overhead_s"] == s["overhead_s"]  # measured (a graph's): not NaN
            else ""
        )
        lines.append(
            f"| search step (first order, w + α) | {s['cells']} cells, C = {s['channels']} | "
            f"{s['batch']} + {s['batch']} | {s['images_s']:.1f} | latency term "
            f"{100 * s['latency_share']:.2f} % of a step; {s['epoch_s']:.0f} s per epoch of 25k "
            f"+ 25k images, {50 * s['epoch_s'] / 3600:.2f} h for 50 epochs{overhead} |"
        )
    if t is not None:
        lines.append(
            f"| training a derived network | {t['cells']} cells, C = {t['channels']} | "
            f"{t['batch']} | {t['images_s']:.1f} | `darts-cifar10-eval` recipe, drop-path at "
            f"half{', replayed as a CUDA graph' if t['graph'] else ', eager'}; "
            f"{t['epochs_h']:.2f} h for 600 epochs of 50k images |"
        )
    lines += ["", f"Peak memory: {peak_gb(device)}."]
    dtype = "bfloat16" if amp == "bf16" else "float32"
    fp = fingerprint(str(device), threads=args.threads, dtype=dtype, batch=args.batch)
    publish("Search throughput (benchmarks/search_throughput.py)", fp, lines, not args.no_record)


if __name__ == "__main__":
    main()

"""How many PyTorch ops a first-order DARTS search step dispatches, at the `darts-cifar10`
preset's depth (8 cells of the `darts` space, weighted mode, λ = 0), and how many the latency
term's value and α-gradient dispatch with a `lut` and an `additive` predictor trained on
`benchmarks/data/darts-v2.db` (the term runs eagerly, outside a CUDA graph).

On a GPU a step at DARTS's size waits on launching its many small kernels rather than on
the GPU's arithmetic (docs/gpu.md), so the count of dispatched ops is a figure that holds
on any machine: fewer ops, less host time per step. Counted on the CPU with a dispatch
mode; the optimisers are switched to their multi-tensor (``foreach``) form, which PyTorch
uses by default on CUDA. Channels and batch do not change the counts. Prints; records
nothing.

    python benchmarks/diagnostics/step_ops.py
    python benchmarks/diagnostics/step_ops.py --kinds   # the step alone
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parents[1]))
from search_throughput import DATA, cifar_like

from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import load_predictor, save_predictor
from lenna.search.bilevel import latency_grad, search_step
from lenna.search.config import SearchConfig
from lenna.search.network import NetConfig
from lenna.search.presets import with_preset
from lenna.search.run import Search


class OpCount(TorchDispatchMode):
    """Counts every op that reaches the dispatcher, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--top", type=int, default=12, help="ops to list by count")
    ap.add_argument(
        "--kinds", nargs="*", default=["lut", "additive"], help="latency terms to count"
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-throughput"))
    args = ap.parse_args()
    torch.manual_seed(0)
    net = {"channels": 8, "cells": args.cells}
    d = with_preset("darts-cifar10", {"lam": 0.0, "batch": 4, "device": "cpu", "net": net,
                                      "amp": "off", "augment": False})  # fmt: skip
    cfg = SearchConfig(**{**d, "net": NetConfig(**d["net"])})
    data = cifar_like(4 * 2 * 3, torch.device("cpu"))
    s = Search(replace(cfg, limit=None), data)
    for opt in (s.w_opt, s.a_opt):
        for group in opt.param_groups:
            group["foreach"] = True  # as on CUDA
    w, a, g = s.batches(0)

    def step(i: int) -> None:
        bw = (data.x_train[w[i]], data.y_train[w[i]])
        ba = (data.x_train[a[i]], data.y_train[a[i]])
        search_step(s.net, s.term, s.w_opt, s.a_opt, bw, ba, cfg.grad_clip, False, g)

    step(0)  # optimiser state exists from here on
    forward, backward, whole = OpCount(), OpCount(), OpCount()
    with forward:
        loss = F.cross_entropy(s.net(data.x_train[w[1]]), data.y_train[w[1]])
    with backward:
        loss.backward()
    s.net.zero_grad(set_to_none=True)
    with whole:
        step(2)
    n_params = sum(1 for _ in s.net.parameters())
    print(f"`darts` supernet, {args.cells} cells, weighted, {n_params} parameter tensors")
    print("| part | ops dispatched |")
    print("|---|---|")
    for name, c in (("forward", forward), ("backward", backward), ("search step", whole)):
        print(f"| {name} | {sum(c.ops.values()):,} |")
    for kind in args.kinds:
        c = term_ops(s, kind, args.out)
        print(f"| latency term, `{kind}` (value and α-gradient) | {sum(c.ops.values()):,} |")
    print(
        "most frequent in a step: "
        + ", ".join(f"{k} {v}" for k, v in whole.ops.most_common(args.top))
    )


def term_ops(s: Search, kind: str, out: Path) -> OpCount:
    """The ops of one latency-term pass at the search's cells (a predictor of ``kind`` trained
    on DATA, cached in ``out`` as search_throughput.py caches it)."""
    from lenna.search.latency import LatencyTerm

    folder = out / f"darts-{kind}"
    if not (folder / "model.json").is_file():
        save_predictor(train_predictor(load_latency_data(DATA), kind, seed=0), folder)
    pred = load_predictor(folder, space="darts")
    term = LatencyTerm(pred, s.space, s.net.specs, 1.0, allow_extrapolation=True)
    alphas = dict(s.net.alphas.items())
    latency_grad(term, alphas)  # a first pass: anything made once is made
    count = OpCount()
    with count:
        latency_grad(term, alphas)
    return count


if __name__ == "__main__":
    main()

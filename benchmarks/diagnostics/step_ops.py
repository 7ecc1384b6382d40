"""How many PyTorch ops a first-order DARTS search step dispatches, at the `darts-cifar10`
preset's depth (8 cells of the `darts` space, weighted mode, λ = 0).

On a GPU a step at DARTS's size waits on launching its many small kernels rather than on
the GPU's arithmetic (docs/gpu.md), so the count of dispatched ops is a figure that holds
on any machine: fewer ops, less host time per step. Counted on the CPU with a dispatch
mode; the optimisers are switched to their multi-tensor (``foreach``) form, which PyTorch
uses by default on CUDA. Channels and batch do not change the counts. Prints; records
nothing.

    python benchmarks/diagnostics/step_ops.py
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
from search_throughput import cifar_like

from lenna.search.bilevel import search_step
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
    print(
        "most frequent in a step: "
        + ", ".join(f"{k} {v}" for k, v in whole.ops.most_common(args.top))
    )


if __name__ == "__main__":
    main()

"""Which reference block shares a block's drift best: the case for matched anchors.

For a small, a large and a large reduction block (fixed paths), times the block and several
candidate references alternately, min of 3 passes each per "reset" (as the ``cv`` rule
does), for ``--seconds`` each. Over windows of 20 resets (about one measurement) it prints
the spread of the block's window means of log time and of its log ratio to each reference:
the reference with the smallest ratio spread cancels most of the machine's drift for that
block. Candidates: the anchors of :mod:`lenna.measure.reference` and a C=128 32×32 block.

    python benchmarks/diagnostics/reference_match.py --threads 2 --seconds 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lenna
from lenna.measure.bench import GatedBench
from lenna.measure.reference import ANCHORS, anchor_for, anchor_key
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

BLOCKS = {
    "normal C=8": ("normal", 8),
    "normal C=128": ("normal", 128),
    "reduction C=96": ("reduction", 96),
}
WINDOW = 20


def bench(
    space: lenna.SearchSpace, block_type: str, channels: int, res: int, seed: int
) -> GatedBench:
    torch.manual_seed(seed)
    block = Block(space, block_type, channels, "gated", np.zeros(space.alpha_shape))
    x = tuple(torch.randn(1, channels, res, res) for _ in range(space.num_inputs))
    b = GatedBench(block, x, Timer(), torch.Generator().manual_seed(seed))
    b.warm_up(2)
    b.reset()
    b.passes(3)
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0, help="per block")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = lenna.get_space("lenna")
    sizes = [*ANCHORS, (128, 32)]
    refs = {anchor_key(s): bench(space, "normal", s[0], s[1], 0) for s in sizes}
    head = " | ".join(f"/ {k}" for k in refs)
    lines = [
        f"{args.threads} thread(s), {args.seconds:.0f} s per block, windows of {WINDOW} resets "
        "(min of 3 passes each); SD over windows of the mean log time (the block alone) and of "
        "the mean log ratio block / reference, in %. The matched anchor of each block is marked *.",
        "",
        f"| block (32×32) | windows | alone | {head} |",
        "|---|---|---|" + "---|" * len(refs),
    ]
    for name, (bt, c) in BLOCKS.items():
        a = bench(space, bt, c, 32, 5)
        ys: list[float] = []
        zs: dict[str, list[float]] = {k: [] for k in refs}
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            y, z = [], {k: [] for k in refs}
            for _ in range(3):
                y.append(a.passes(1)[0])
                for k, r in refs.items():
                    z[k].append(r.passes(1)[0])
            ys.append(min(y))
            for k in refs:
                zs[k].append(min(z[k]))
        n = len(ys) // WINDOW

        def means(v: list[float], n: int = n) -> np.ndarray:
            lv = np.log(v[: n * WINDOW])
            return lv.reshape(n, WINDOW).mean(axis=1)

        my = means(ys)
        matched = anchor_key(anchor_for(c, 32))
        cells = [
            f"{(my - means(zs[k])).std() * 100:.2f}{'*' if k == matched else ''}" for k in refs
        ]
        lines.append(f"| {name} | {n} | {my.std() * 100:.2f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    publish_cpu("reference_match", args, lines)


if __name__ == "__main__":
    main()

"""Under ONNX Runtime, does a smaller reference cancel a cheap block's drift better?

ORT labels of cheap blocks (8×8, a few channels: 0.04–0.3 ms) repeat far worse than larger
ones on a shared host (``lenna dataset recheck`` minutes apart: 8×8 rows a median 15 %, 32×32
rows 4 %), although each is timed beside its matched anchor and kept as a ratio. The smallest
anchor is the 16-channel 16×16 primary (0.19 ms in ORT): several times a cheap block's work,
with a smaller share of per-call and per-node overhead. This script times a few cheap fixed
paths in ORT (outputs bound, as labels are) alternately with candidate references, min of 3
passes each per "reset" as the ``cv`` rule does, for ``--seconds`` per block, and prints
the spread over windows of 20 resets of the block's mean log time alone and of its mean log
ratio to each reference: the smallest spread is the reference that shares the block's drift.

    python benchmarks/diagnostics/ort_small_anchor.py --seconds 60
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import lenna
from lenna.measure.ort_path import PathSessions
from lenna.measure.reference import ANCHORS, anchor_key
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

# name: (block type, channels, resolution, gate seed)
BLOCKS = {
    "normal C=8 8×8": ("normal", 8, 8, 1),
    "reduction C=8 8×8": ("reduction", 8, 8, 2),
    "normal C=15 8×8": ("normal", 15, 8, 3),
    "normal C=12 16×16": ("normal", 12, 16, 4),
    # is it size or the channel count's multiple of 16 (ORT's blocked NCHWc kernels)?
    "normal C=32 8×8": ("normal", 32, 8, 5),
    "normal C=24 8×8": ("normal", 24, 8, 6),
    "normal C=48 16×16": ("normal", 48, 16, 7),
}
CANDIDATES = [ANCHORS[0], (8, 8), (8, 16), (16, 8)]
WINDOW = 20


def fixed_path(space: lenna.SearchSpace, bt: str, c: int, h: int, seed: int) -> Callable:
    """One sampled path of a gated block, as ORT runs that fixed cell (bound outputs)."""
    torch.manual_seed(seed)
    block = Block(space, bt, c, "gated", np.zeros(space.alpha_shape)).eval()
    x = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
    with torch.inference_mode():
        block.reset_gates(torch.Generator().manual_seed(seed))
    sessions = PathSessions(block, x, threads=1)
    sessions.open()
    for _ in range(20):  # a new session's first passes run slow
        sessions.run()
    return sessions.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="per block")
    ap.add_argument("--blocks", nargs="+", choices=list(BLOCKS), default=list(BLOCKS))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    args.threads = 1  # as labels are timed
    torch.set_num_threads(1)
    space = lenna.get_space("lenna")
    timer = Timer()
    # each reference: the seed-0 path of a normal block, as the dataset's anchors are drawn
    refs = {anchor_key(s): fixed_path(space, "normal", s[0], s[1], 0) for s in CANDIDATES}
    ref_ms = {k: 1e3 * min(timer(r) for _ in range(50)) for k, r in refs.items()}
    head = " | ".join(f"/ {k} ({ms:.3f} ms)" for k, ms in ref_ms.items())
    lines = [
        f"ONNX Runtime, 1 thread, outputs bound; {args.seconds:.0f} s per block, windows of "
        f"{WINDOW} resets (min of 3 passes each). SD over windows of the mean log time (the "
        "block alone) and of the mean log ratio block / reference, in %; the primary anchor "
        f"({anchor_key(ANCHORS[0])}) is what labels of these blocks are timed beside today.",
        "",
        f"| block | ms | windows | alone | {head} |",
        "|---|---|---|---|" + "---|" * len(refs),
    ]
    for name in args.blocks:
        run = fixed_path(space, *BLOCKS[name])
        ys: list[float] = []
        zs: dict[str, list[float]] = {k: [] for k in refs}
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            y, z = [], {k: [] for k in refs}
            for _ in range(3):
                y.append(timer(run))
                for k, r in refs.items():
                    z[k].append(timer(r))
            ys.append(min(y))
            for k in refs:
                zs[k].append(min(z[k]))
        n = len(ys) // WINDOW

        def means(v: list[float], n: int = n) -> np.ndarray:
            return np.log(v[: n * WINDOW]).reshape(n, WINDOW).mean(axis=1)

        my = means(ys)
        cells = [f"{(my - means(zs[k])).std() * 100:.2f}" for k in refs]
        lines.append(
            f"| {name} | {np.median(ys) * 1e3:.3f} | {n} | {my.std() * 100:.2f} | "
            + " | ".join(cells)
            + " |"
        )
        print(lines[-1], flush=True)
    publish_cpu("ort_small_anchor", args, lines)


if __name__ == "__main__":
    main()

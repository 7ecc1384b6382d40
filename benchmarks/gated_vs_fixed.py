"""Is a label the time of the derived cell? A one-hot gated block against the fixed cell.

For seeded random *derived* cells of each space (what the derive rule outputs: in ``darts``
two inputs per node and ``none`` on the other six edges), three modules with the same
weights are timed in turns, pass by pass, on the same inputs:

- ``fixed``: the derived cell as the derived network builds it (dropped edges do not exist);
- ``gated``: the measured block, gated on the cell's one-hot α (what a label times);
- ``gated, none run``: the same with every sampled ``none`` edge run and added (how labels
  were measured before label version 2), for comparison.

Each cell's ratio is the median over rounds of (min of a round's passes) / (the fixed cell's).
Prints the median and range of the ratios per space and appends them to RESULTS.md.

    python benchmarks/gated_vs_fixed.py --cells 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from lenna.measure.timer import Timer
from lenna.space import Block, cell_alphas, get_space, random_cell
from lenna.space.mixed import MixedEdge

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish_cpu

SHAPES = [(8, 32), (16, 16), (32, 32), (48, 16), (64, 8), (96, 16), (128, 8)]


def modules(space, block_type: str, channels: int, cell: list) -> tuple[Block, Block]:
    """The fixed cell and the gated block on its one-hot α, with the same weights."""
    torch.manual_seed(0)
    fixed = Block(space, block_type, channels, "fixed", choices=cell).eval()
    gated = Block(space, block_type, channels, "gated", cell_alphas(space, block_type, cell))
    gated.eval()
    for k, edge in fixed.edges.items():
        g = gated.edges[k]
        g.ops[g.op_names.index(cell[int(k)])].load_state_dict(edge.ops[0].state_dict())
    gated.preprocess.load_state_dict(fixed.preprocess.state_dict())
    gated.reset_gates(torch.Generator().manual_seed(0))
    return fixed, gated


@torch.inference_mode()
def ratios(fixed: Block, gated: Block, x: tuple, rounds: int, passes: int) -> tuple[float, float]:
    """Median over rounds of gated / fixed and of gated-with-none-run / fixed."""
    timer = Timer("cpu")

    def best(fn) -> float:
        fn()  # untimed: a module's first pass after the other's
        return min(timer(fn) for _ in range(passes))

    def run_fixed():
        fixed(*x)

    def run_gated():
        gated(*x)

    r_new, r_old = [], []
    for _ in range(rounds):
        f = best(run_fixed)
        g = best(run_gated)
        with mock.patch.object(MixedEdge, "absent", property(lambda self: False)):
            o = best(run_gated)
        r_new.append(g / f)
        r_old.append(o / f)
    return float(np.median(r_new)), float(np.median(r_old))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spaces", nargs="+", default=["lenna", "darts"])
    ap.add_argument("--cells", type=int, default=24, help="derived cells per space")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2212)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"{args.cells} seeded derived cells per space (seed {args.seed}), normal and "
        f"reduction alternating, shapes (C, H) cycling through {SHAPES}; batch 1, "
        f"{args.threads} thread(s); per cell the median over {args.rounds} rounds of "
        f"min-of-{args.passes} passes, the three modules in turns.",
        "",
        "| space | gated / fixed: median | range | cells within ±2 % "
        "| gated with `none` run / fixed: median | range |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.spaces:
        space = get_space(name)
        rng = np.random.default_rng([args.seed, len(name)])
        new, old = [], []
        for i in range(args.cells):
            bt = ("normal", "reduction")[i % 2]
            c, h = SHAPES[i % len(SHAPES)]
            cell = random_cell(space, bt, rng)
            fixed, gated = modules(space, bt, c, cell)
            x = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
            a, b = ratios(fixed, gated, x, args.rounds, args.passes)
            new.append(a)
            old.append(b)
            print(
                f"{name} {bt:9s} C={c:3d} H={h:2d}: gated/fixed {a:.3f}, none run {b:.3f}",
                flush=True,
            )
        new, old = np.array(new), np.array(old)
        lines.append(
            f"| {name} | {np.median(new):.3f} | {new.min():.3f}–{new.max():.3f} "
            f"| {np.mean(np.abs(new - 1) <= 0.02) * 100:.0f} % | {np.median(old):.3f} "
            f"| {old.min():.3f}–{old.max():.3f} |"
        )
    publish_cpu("gated_vs_fixed", args, lines)


if __name__ == "__main__":
    main()

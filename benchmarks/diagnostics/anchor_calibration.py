"""How reproducible the anchors' calibrated ratios are, and whether labels agree across anchors.

A dataset calibrates each anchor's speed ratio to the primary reference once and stores it;
every label of a block timed alongside that anchor is scaled by it. So a ratio that is off
by x % moves a whole band of block sizes by x % against its neighbours. This script
calibrates the ratios ``--repeats`` times by two methods, alternating:

- ``quantile`` (the shipped one, :func:`lenna.measure.reference.calibrate_ratio`): the ratio
  of the two references' 10th percentiles of back-to-back min-of-3 times, in alternating
  half-second windows until two windows agree within 1 %;
- ``paired``: alternating groups of 3 passes, the primary's then the anchor's, each pair of
  groups giving min / min (a ratio of moments ~10 ms apart, not ~0.5 s as above), the
  median of those ratios over a 1-s window (the same length as one ``quantile`` window of
  two halves), repeated until two windows agree within 1 %.

Then it checks what matters: a block on the boundary between two anchors (normal and
reduction, 32×32, C = 16 between 16×16 and 32×32; C = 45 between 32×32 and 64×32) is
timed alongside each anchor in turn (per round, 3 pass pairs with one anchor, then 3 with the
other), and its label normalised by each (as the rule does: mean over rounds of min(y) /
min(z), times the anchor's calibrated time) is compared. With consistent ratios the two
labels agree; the printed discrepancy is label(upper anchor) / label(lower anchor) − 1 under
each method's median ratios. (A third method, fitting each ratio so that one boundary
block's labels agree, was tried once and did not carry to other blocks: RESULTS.md.)

    python benchmarks/diagnostics/anchor_calibration.py --threads 2 --repeats 6
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

import lenna
from lenna.measure.bench import GatedBench
from lenna.measure.reference import (
    ANCHORS,
    Reference,
    _settle,
    anchor_key,
    calibrate_ratio,
    reference_for,
)
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu


def paired_ratio(anchor: Reference, primary: Reference, window_s: float = 1.0) -> float:
    """The ``paired`` method (see the module docstring)."""

    def window() -> float:
        t0, ratios = time.perf_counter(), []
        while time.perf_counter() - t0 < window_s or len(ratios) < 10:
            p = min(primary.time_s() for _ in range(3))
            ratios.append(min(anchor.time_s() for _ in range(3)) / p)
        return float(np.median(ratios))

    return _settle(window, 0.01, 20, lambda a, b: (a + b) / 2)


def boundary_block(space: lenna.SearchSpace, channels: int, block_type: str) -> GatedBench:
    """A block of ``channels`` at 32×32 on one fixed path, warmed up."""
    torch.manual_seed(3)
    block = Block(space, block_type, channels, "gated", np.zeros(space.alpha_shape))
    x = tuple(torch.randn(1, channels, 32, 32) for _ in range(space.num_inputs))
    bench = GatedBench(block, x, Timer(), torch.Generator().manual_seed(3))
    bench.warm_up(2)
    bench.reset()
    return bench


def boundary_values(
    bench: GatedBench, lo: Reference, hi: Reference, rounds: int
) -> tuple[float, float]:
    """Mean over rounds of min(y)/min(z) against each of two anchors. Each round times 3
    (block, anchor) pairs with one anchor, then 3 with the other, so every anchor pass follows
    a block pass as in the rule (a reference pass runs slower after a larger pass)."""
    out: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            ref = (lo, hi)[k]
            y, z = [], []
            for _ in range(3):
                y.append(bench.passes(1)[0])
                z.append(ref.time_s())
            out[k].append(min(y) / min(z))
    return float(np.mean(out[0])), float(np.mean(out[1]))


# the blocks halfway (in log C·H) between consecutive anchors: C·H = 512 and ≈ 1448
BOUNDARY_CHANNELS = (16, 45)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=150, help="rounds per boundary block")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = lenna.get_space("lenna")
    refs = {a: reference_for(space, size=a) for a in ANCHORS}
    primary = refs[ANCHORS[0]]
    methods = {
        "quantile": lambda: {a: calibrate_ratio(refs[a], primary) for a in ANCHORS[1:]},
        "paired": lambda: {a: paired_ratio(refs[a], primary) for a in ANCHORS[1:]},
    }
    got = {(m, a): [] for m in methods for a in ANCHORS[1:]}
    secs = {m: [] for m in methods}
    for r in range(args.repeats):
        for m in methods if r % 2 == 0 else reversed(methods):
            t0 = time.perf_counter()
            for a, v in methods[m]().items():
                got[m, a].append(v)
            secs[m].append(time.perf_counter() - t0)
        print(f"[{r + 1}/{args.repeats}] " + "  ".join(f"{k}: {v[-1]:.3f}" for k, v in got.items()))
    lines = [
        f"{args.repeats} calibrations per method, alternating, {args.threads} thread(s). "
        "Ratio of each anchor to the 16×16 primary:",
        "",
        "| method | anchor | median | min–max | spread (max/min − 1) "
        "| median s per calibration (both anchors) |",
        "|---|---|---|---|---|---|",
    ]
    for (m, a), v in got.items():
        lines.append(
            f"| `{m}` | {anchor_key(a)} | {np.median(v):.3f} | {min(v):.3f}–{max(v):.3f} "
            f"| {(max(v) / min(v) - 1) * 100:.1f} % | {np.median(secs[m]):.1f} |"
        )
    ratio = {(m, a): float(np.median(got[m, a])) for m, a in got}
    for m in methods:
        ratio[m, ANCHORS[0]] = 1.0
    lines += [
        "",
        f"Blocks on anchor boundaries ({args.rounds} rounds of 3 pass pairs per anchor): "
        "label with the upper anchor over label with the lower anchor − 1, under each "
        "method's median ratios (0 = consistent labels).",
        "",
        "| block (32×32) | anchors | " + " | ".join(f"`{m}`" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for kind in ("normal", "reduction"):
        for channels, (lo, hi) in zip(BOUNDARY_CHANNELS, pairwise(ANCHORS), strict=True):
            bench = boundary_block(space, channels, kind)
            va, vb = boundary_values(bench, refs[lo], refs[hi], args.rounds)
            cells = " | ".join(
                f"{(vb * ratio[m, hi]) / (va * ratio[m, lo]) * 100 - 100:+.2f} %" for m in methods
            )
            lines.append(f"| {kind} C={channels} | {anchor_key(lo)} / {anchor_key(hi)} | {cells} |")
            print(lines[-1], flush=True)
    publish_cpu("anchor_calibration", args, lines)


if __name__ == "__main__":
    main()

"""How this machine's speed drifts, and how much a reference block cancels of it.

Times a fixed large block A (normal, C=64, 32×32) and the reference block B (the one every
normalised measurement uses) alternately, one pass each, for ``--seconds``. Prints the
autocorrelation of log pass times (how long a slow spell lasts), and for windows of 10, 50
and 200 passes the spread of window medians of A, of B and of A/B and the correlation of
A's and B's window medians. A ratio spread well below A's spread is what reference
normalisation buys.

    python benchmarks/diagnostics/speed_drift.py --seconds 20 --threads 1
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
from lenna.measure.reference import CHANNELS, RESOLUTION, reference_for
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu


def big_block(space: lenna.SearchSpace) -> GatedBench:
    torch.manual_seed(1)
    block = Block(space, "normal", 64, "gated", np.zeros(space.alpha_shape))
    x = tuple(torch.randn(1, 64, 32, 32) for _ in range(space.num_inputs))
    bench = GatedBench(block, x, Timer(), torch.Generator().manual_seed(1))
    bench.warm_up(2)
    bench.reset()
    return bench


def autocorr(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).mean() / x.var())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="", help="conditions worth recording (other load, ...)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = lenna.get_space("lenna")
    a, ref = big_block(space), reference_for(space)
    ta, tb = [], []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        ta.append(a.passes(1)[0])
        tb.append(ref.time_s())
    la, lb = np.log(ta), np.log(tb)
    lines = [
        f"{len(la)} alternating passes in {args.seconds:.0f} s, {args.threads} thread(s): "
        f"A = normal block C=64 32×32 (median {np.exp(np.median(la)) * 1e3:.2f} ms), "
        f"B = the reference block C={CHANNELS} {RESOLUTION}×{RESOLUTION} "
        f"(median {np.exp(np.median(lb)) * 1e3:.2f} ms).",
        "",
        "Autocorrelation of log pass time: "
        + ", ".join(
            f"lag {k}: A {autocorr(la, k):.2f} / B {autocorr(lb, k):.2f}"
            for k in (1, 10, 100)
            if len(la) > 2 * k
        ),
        "",
        "| window (passes) | SD log A | SD log B | SD log A/B | corr(A, B) |",
        "|---|---|---|---|---|",
    ]
    for w in (1, 10, 50, 200):
        n = len(la) // w
        if n < 5:
            continue
        ma = np.array([np.median(la[i * w : (i + 1) * w]) for i in range(n)])
        mb = np.array([np.median(lb[i * w : (i + 1) * w]) for i in range(n)])
        lines.append(
            f"| {w} | {ma.std():.3f} | {mb.std():.3f} | {(ma - mb).std():.3f} "
            f"| {np.corrcoef(ma, mb)[0, 1]:.2f} |"
        )
    if args.note:
        lines += ["", f"Conditions: {args.note}"]
    publish_cpu("speed_drift", args, lines)


if __name__ == "__main__":
    main()

"""Is a cell's latency smooth in its channel count, in eager mode and in ONNX Runtime?

The predictors learn each op's cost as a smooth curve of (log C, log H) plus channel-padding
inputs (``additive``'s ``align``). This script times a fixed ``lenna`` normal cell whose 15
edges all run one op, at every channel count of a range, in both runtimes side by side
(fresh session per cell, outputs bound once as labels are timed, warm-up discarded, median
of repeats), and prints each time as a
ratio to the next multiple of ``--block``: a flat run up to the multiple followed by a jump is
a blocked kernel padding the channels, which a smooth curve cannot follow.

    python benchmarks/diagnostics/channel_steps.py --ops 3x3_Conv 3x3_ConvDW 3x3_maxpool
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lenna.measure.backend import session
from lenna.measure.onnx_pieces import export_module
from lenna.measure.ort_path import bound_call
from lenna.measure.threads import torch_threads
from lenna.space import get_space
from lenna.space.block import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu


def median_s(call: Callable[[], object], warmup: int, repeats: int, inner: int) -> float:
    """Median seconds per call over ``repeats`` loops of ``inner`` calls, after ``warmup``."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        times.append((time.perf_counter() - t0) / inner)
    return float(np.median(times))


def cell_times(op: str, channels: int, res: int, threads: int) -> tuple[float, float]:
    """(eager ms, ORT ms) of the all-``op`` normal cell at (channels, res)."""
    block = Block(get_space("lenna"), "normal", channels, mode="fixed", choices=[op] * 15).eval()
    x = torch.randn(1, channels, res, res)
    with torch.inference_mode():
        eager = median_s(lambda: block(x), 10, 15, 5)
    sess = session(export_module(block, (x,)).SerializeToString(), threads)
    # outputs bound once, as labels are timed (ort_path's docstring says why)
    ort = median_s(bound_call(sess, {"in0": x.numpy()}), 20, 15, 5)
    return eager * 1e3, ort * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ops", nargs="+", default=["3x3_Conv", "3x3_ConvDW", "3x3_maxpool"])
    ap.add_argument("--channels", default="8:68:4", help="START:STOP:STEP (STOP included)")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--block", type=int, default=16, help="the multiple ratios refer to")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    start, stop, step = (int(v) for v in args.channels.split(":"))
    chans = list(range(start, stop + 1, step))
    lines = [
        f"`lenna` normal cell, every edge one op, {args.resolution}×{args.resolution}, batch 1, "
        f"{args.threads} thread(s). Each cell: ms, and in brackets its time over the time at "
        f"the next multiple of {args.block} channels (1.00: as slow as the padded width).",
        "",
        "| op | runtime | " + " | ".join(f"C={c}" for c in chans) + " |",
        "|---|---|" + "---|" * len(chans),
    ]
    with torch_threads(args.threads):
        for op in args.ops:
            times = {c: cell_times(op, c, args.resolution, args.threads) for c in chans}
            for k, name in enumerate(("eager", "onnxruntime")):
                cells = []
                for c in chans:
                    up = -(-c // args.block) * args.block
                    ref = times.get(up)
                    ratio = f" ({times[c][k] / ref[k]:.2f})" if ref else ""
                    cells.append(f"{times[c][k]:.3f}{ratio}")
                lines.append(f"| `{op}` | {name} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    publish_cpu("Channel steps (benchmarks/diagnostics/channel_steps.py)", args, lines)


if __name__ == "__main__":
    main()

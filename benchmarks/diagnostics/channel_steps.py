"""Is a cell's latency smooth in its channel count, in eager mode and in ONNX Runtime?

The predictors learn each op's cost as a smooth curve of (log C, log H) plus channel-padding
inputs (``additive``'s ``align``) and divisibility inputs (its ``divisible``). This script
times a fixed normal cell of ``--space`` whose edges all run one op, at every channel count of
a range, in both runtimes side by side
(fresh session per cell, outputs bound once as labels are timed, warm-up discarded, median
of repeats), and prints each time as a
ratio to the next multiple of ``--block``: a flat run up to the multiple followed by a jump is
a blocked kernel padding the channels, which a smooth curve cannot follow.

    python benchmarks/diagnostics/channel_steps.py --ops 3x3_Conv 3x3_ConvDW 3x3_maxpool
    python benchmarks/diagnostics/channel_steps.py --space darts --ops sep_conv_3x3 \
        max_pool_3x3 --channels 56:72:1 --block 8      # every width, odd ones too
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


def cell_times(
    space_name: str, op: str, channels: int, res: int, threads: int
) -> tuple[float, float]:
    """(eager ms, ORT ms) of the all-``op`` normal cell of the space at (channels, res)."""
    space = get_space(space_name)
    choices = [op] * space.num_edges
    block = Block(space, "normal", channels, mode="fixed", choices=choices).eval()
    xs = tuple(torch.randn(1, channels, res, res) for _ in range(space.num_inputs))
    with torch.inference_mode():
        eager = median_s(lambda: block(*xs), 10, 15, 5)
    sess = session(export_module(block, xs).SerializeToString(), threads)
    # outputs bound once, as labels are timed (ort_path's docstring says why)
    feed = {f"in{i}": x.numpy() for i, x in enumerate(xs)}
    ort = median_s(bound_call(sess, feed), 20, 15, 5)
    return eager * 1e3, ort * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="lenna")
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
        f"`{args.space}` normal cell, every edge one op, "
        f"{args.resolution}×{args.resolution}, batch 1, {args.threads} thread(s). "
        "Each cell: ms, and in brackets its time over the time at "
        f"the next multiple of {args.block} channels (1.00: as slow as the padded width).",
        "",
        "| op | runtime | " + " | ".join(f"C={c}" for c in chans) + " |",
        "|---|---|" + "---|" * len(chans),
    ]
    with torch_threads(args.threads):
        for op in args.ops:
            times = {c: cell_times(args.space, op, c, args.resolution, args.threads) for c in chans}
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

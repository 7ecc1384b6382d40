"""Do blocks of one shape drift together over hours, and apart from blocks of another shape?

Re-measured hours later, 8×8 rows of ``lenna-v2.db`` came back a median 4 % above their
stored labels (5 of 12 by 7–11 %), 16×16 and 32×32 rows a median 0.8 % and 1.4 % off. A label is
a block's time over its matched anchor's, times that anchor's calibrated ratio; the anchor is
picked by log(C·H) alone, so a wide 8×8 block is timed beside the 32-channel 32×32 anchor,
which has the same C·H but another balance of weights and activations. If the host's state
changes how fast each kind runs, that ratio moves and so does the label.

This script calibrates, as a dataset calibrates an anchor (:func:`calibrate_ratio`), the
ratio of each of several fixed cells (``C×H``: the two shipped anchors besides the primary,
and cells that resemble wide, low-resolution blocks) to the primary reference, and saves
them with the time.
Given ``--compare`` an earlier save, it prints each ratio's change since then: cells whose
ratios move together would cancel each other's drift as anchors; cells of one C·H that move
apart show that C·H alone is not enough to match on.

    python benchmarks/diagnostics/anchor_drift.py --save /tmp/drift-t0.json
    # hours later, same machine:
    python benchmarks/diagnostics/anchor_drift.py --compare /tmp/drift-t0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lenna.atomic import write_text
from lenna.measure.reference import ANCHORS, anchor_key, calibrate_ratio, reference_for
from lenna.space import get_space

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

CELLS = [*ANCHORS[1:], (112, 8), (96, 8), (48, 8), (24, 32), (8, 32)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="calibrations per cell, alternating")
    ap.add_argument("--save", type=Path, help="write this reading to a JSON file")
    ap.add_argument("--compare", type=Path, help="an earlier reading to compare with")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    space = get_space("lenna")
    primary = reference_for(space, size=ANCHORS[0], threads=args.threads)
    refs = {c: reference_for(space, size=c, threads=args.threads) for c in CELLS}
    runs: dict[str, list[float]] = {anchor_key(c): [] for c in CELLS}
    for _ in range(args.repeats):
        for c in CELLS:
            runs[anchor_key(c)].append(calibrate_ratio(refs[c], primary))
    now = {k: statistics.median(v) for k, v in runs.items()}
    reading = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ratios": now}
    if args.save:
        write_text(args.save, json.dumps(reading, indent=1))
    before = json.loads(args.compare.read_text()) if args.compare else None
    lines = [
        f"Fixed `lenna` normal cells (C×H), each one's calibrated ratio to the primary "
        f"{anchor_key(ANCHORS[0])} reference, {args.threads} thread(s), median of "
        f"{args.repeats} calibrations; reading at {reading['time']}"
        + (f", compared with the reading at {before['time']}." if before else "."),
        "",
        "| cell | C·H | ratio now | spread of the calibrations |"
        + (" ratio then | change |" if before else ""),
        "|---|---|---|---|" + ("---|---|" if before else ""),
    ]
    for c in CELLS:
        k = anchor_key(c)
        spread = (max(runs[k]) / min(runs[k]) - 1) * 100
        row = f"| {k} | {c[0] * c[1]} | {now[k]:.3f} | {spread:.1f} % |"
        if before and k in before["ratios"]:
            then = before["ratios"][k]
            row += f" {then:.3f} | {(now[k] / then - 1) * 100:+.1f} % |"
        lines.append(row)
    publish_cpu("anchor_drift", args, lines)


if __name__ == "__main__":
    main()

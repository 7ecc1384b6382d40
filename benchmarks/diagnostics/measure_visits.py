"""Would two visits per sample, a minute or more apart, repeat better than one? (Not built.)

What is left of the default rule's test-retest spread at 2 threads is drift that a block and
its reference do not share, in spells of a few seconds: one measurement of a few seconds sits
in one spell. Averaging two visits that sit in different spells should shrink that part by
about √2. This measures it before anything is built: the same blocks as
``measure_repeatability.py``, measured in rounds — every block once per round, so a block's
visits are a whole round apart — by the default rule (±1 %) and by the same rule at ±1.41 %
(about half the resets, so two such visits cost about one ±1 % visit).

- one visit ±1 %: rounds 0 vs 1 and 2 vs 3 (the test-retest of one measurement);
- two visits ±1.41 %: mean of rounds 0 and 2 vs mean of rounds 1 and 3;
- two visits ±1 %: the same pairing at twice the cost (the ceiling).

    python benchmarks/diagnostics/measure_visits.py --samples 20 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lenna
from lenna.measure.block_measure import measure_spec
from lenna.measure.config import MeasureConfig
from lenna.measure.reference import Calibration, anchor_ratios, reference_for
from lenna.measure.sampler import Sampler

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

ROUNDS = 4  # two retest pairs of single visits, one of two-visit means


def spread(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Δ|/mean in % for each pair."""
    return np.abs(a - b) / ((a + b) / 2) * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.samples < 2 or args.threads < 1:
        ap.error("need --samples >= 2 and --threads >= 1")
    space = lenna.get_space("lenna")
    sampler = Sampler(space, channels=(8, 128), resolutions=(32,), seed=args.seed)
    configs = {
        "±1 %": MeasureConfig(threads=args.threads),
        "±1.41 %": MeasureConfig(rule_params={"rel": 0.01 * 2**0.5}, threads=args.threads),
    }
    torch.set_num_threads(args.threads)
    z0 = reference_for(space).calibrate()
    anchor_ratios(space, configs["±1 %"])  # calibrated once, as a dataset does
    labels = {k: np.zeros((ROUNDS, args.samples)) for k in configs}
    walls = {k: np.zeros((ROUNDS, args.samples)) for k in configs}
    t0 = time.perf_counter()
    for r in range(ROUNDS):
        for i in range(args.samples):
            spec = sampler(i)
            names = list(configs)[(i + r) % 2 :] + list(configs)[: (i + r) % 2]
            for name in names:
                m = measure_spec(
                    space, spec, configs[name], seed=1000 * i + r, calibration=Calibration(z0)
                )
                labels[name][r, i], walls[name][r, i] = m.latency_ms, m.wall_s
        print(f"round {r + 1}/{ROUNDS} done at {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for name in configs:
        y, w = labels[name], walls[name]
        one = np.concatenate([spread(y[0], y[1]), spread(y[2], y[3])])
        two = spread((y[0] + y[2]) / 2, (y[1] + y[3]) / 2)
        rows.append((f"one visit {name}", one, np.median(w)))
        rows.append((f"two visits {name}, averaged", two, np.median(w[0] + w[2])))
    lines = [
        f"{args.samples} samples (lenna, normal+reduction, C 8–128, batch 1, 32×32, "
        f"{args.threads} threads), {ROUNDS} rounds, each block once per round by each rule "
        f"(visits of a block are one round, about {(time.perf_counter() - t0) / ROUNDS:.0f} s, "
        f"apart). Reference Z0 = {z0:.3f} ms, matched anchors.",
        "",
        "| label | median \\|Δ\\|/mean | p90 | worst | median wall s per label | pairs |",
        "|---|---|---|---|---|---|",
    ]
    for name, d, wall in rows:
        lines.append(
            f"| {name} | {np.median(d):.2f} % | {np.quantile(d, 0.9):.2f} % | {d.max():.2f} % "
            f"| {wall:.2f} | {len(d)} |"
        )
    publish_cpu("measure_visits", args, lines)


if __name__ == "__main__":
    main()

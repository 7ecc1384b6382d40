"""Where the spread of the default rule's per-reset values comes from, and which value is best.

The ``cv`` rule's per-reset value is ``min(y) / min(z) · Z`` over 3 passes of the path (y)
interleaved with 3 of its reference anchor (z). This script times, per random block of the
repeatability benchmark's sampler, ``--resets`` resets with *two* such groups back to back
(same path), and reports the residual spread after the control variate (the part the rule
must average away) for several candidate per-reset values computed from the *same* passes:

- ``raw``: min(y), no reference;
- ``min/min``: the rule's value (group 1 only);
- ``med y/z``: the median of the 3 pass-by-pass ratios;
- ``Σy/Σz``: the ratio of sums;
- ``smoothed z``: min(y) over a rolling median (5 resets) of min(z): keeps slow drift
  cancellation, drops pairing at the pass level.

And for the rule's value: *pass noise* (half the spread of group 1 − group 2: same path, a
few ms apart), the *path residual* the control does not explain (what is left), and the
slope of log value on the machine's slow state (log min(z) of group 2: it shares the state
but not group 1's pass noise): 0 means the reference corrects the state fully, −0.1 that a
10 % slower machine gives labels 1 % lower.

    python benchmarks/reset_noise.py --threads 2 --blocks 8 --resets 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import median_filter

import lenna
from lenna.measure.bench import GatedBench
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import fingerprint
from lenna.measure.reference import anchor_ratios, normalisation, reference_for
from lenna.measure.sampler import Sampler, SampleSpec
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parent))
from _record import record

VALUES = ("raw", "min/min", "med y/z", "Σy/Σz", "smoothed z")


def residual_sd(
    x: np.ndarray, c: np.ndarray, extra: np.ndarray | None = None
) -> tuple[float, float]:
    """Relative SD (%) of ``x`` around its least-squares fit on the control ``c`` (and
    ``extra``), and the last fitted coefficient (the slope on ``extra`` when given)."""
    cols = [np.ones_like(x)] + ([c] if np.ptp(c) > 0 else []) + ([] if extra is None else [extra])
    a = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(a, x, rcond=None)
    r = x - a @ coef
    return float(np.sqrt(r @ r / (len(x) - a.shape[1])) / x.mean() * 100), float(coef[-1])


def time_block(
    space: lenna.SearchSpace,
    spec: SampleSpec,
    config: MeasureConfig,
    z0: float,
    ratios: dict[str, float],
    resets: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per reset, two groups of 3 paired passes: y, z (resets, 2, 3) in s; the control c in ms
    (ratios to the mean are all that is reported, so the anchor's calibrated ms is not needed)."""
    torch.manual_seed(seed)
    block = Block(space, spec.block_type, spec.channels, "gated", spec.alphas)
    block.alphas.data = torch.as_tensor(spec.alphas, dtype=torch.float64)
    x = tuple(torch.randn(1, spec.channels, 32, 32) for _ in range(space.num_inputs))
    ref, _ = normalisation(space, config, z0, (spec.channels, 32), ratios)
    bench = GatedBench(block, x, Timer(), torch.Generator().manual_seed(seed), ref)
    bench.warm_up(config.warmup_passes)
    costs = bench.op_costs(config.op_passes)
    y, z, c = np.empty((resets, 2, 3)), np.empty((resets, 2, 3)), np.empty(resets)
    for r in range(resets):
        path = bench.reset()
        c[r] = sum(costs[e, j] for e, j in enumerate(path)) * 1e3
        for g in range(2):
            y[r, g], z[r, g] = bench.paired(3)
    return y, z, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--resets", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    space = lenna.get_space("lenna")
    config = MeasureConfig(threads=args.threads)
    torch.set_num_threads(args.threads)
    z0 = reference_for(space).calibrate()
    ratios = anchor_ratios(space, config)
    sampler = Sampler(space, channels=(8, 128), resolutions=(32,), seed=args.seed)
    head = " | ".join(f"`{v}`" for v in VALUES)
    lines = [
        f"{args.blocks} blocks of the repeatability sampler (lenna, 32×32, {args.threads} "
        f"threads), {args.resets} resets each, two groups of 3 paired passes per reset. "
        "Residual SD after the control variate, % of the mean (lower is better; all values "
        "cost the same passes):",
        "",
        f"| block | {head} | pass noise | path residual | state slope |",
        "|---|" + "---|" * (len(VALUES) + 3),
    ]
    ratios_sq = {v: [] for v in VALUES}
    for i in range(args.blocks):
        spec = sampler(i)
        y, z, c = time_block(space, spec, config, z0, ratios, args.resets, seed=i)
        y1, z1 = y[:, 0], z[:, 0]
        values = {
            "raw": y1.min(1),
            "min/min": y1.min(1) / z1.min(1),
            "med y/z": np.median(y1 / z1, 1),
            "Σy/Σz": y1.sum(1) / z1.sum(1),
            "smoothed z": y1.min(1) / median_filter(z1.min(1), size=5, mode="nearest"),
        }
        sd = {k: residual_sd(v, c)[0] for k, v in values.items()}
        for k in VALUES:
            ratios_sq[k].append((sd[k] / sd["min/min"]) ** 2)
        v2 = y[:, 1].min(1) / z[:, 1].min(1)
        noise = float(np.std(values["min/min"] - v2, ddof=1) / np.sqrt(2) / v2.mean() * 100)
        both = (values["min/min"] + v2) / 2
        path = np.sqrt(max(residual_sd(both, c)[0] ** 2 - noise**2 / 2, 0.0))
        _, slope = residual_sd(np.log(values["min/min"]), c, np.log(z[:, 1].min(1)))
        # the log fit's "relative SD" is meaningless; only its slope is used
        cells = " | ".join(f"{sd[k]:.2f}" for k in VALUES)
        lines.append(
            f"| {spec.block_type} C={spec.channels} {spec.regime} | {cells} "
            f"| {noise:.2f} | {path:.2f} | {slope:+.2f} |"
        )
        print(lines[-1], flush=True)
    geo = " | ".join(f"{np.exp(np.mean(np.log(ratios_sq[k]))):.2f}×" for k in VALUES)
    lines.append(f"| resets needed vs `min/min` (geometric mean) | {geo} | | | |")
    print("\n".join(lines))
    if not args.no_record:
        record("reset_noise", fingerprint("cpu", threads=args.threads, batch=1), "\n".join(lines))


if __name__ == "__main__":
    main()

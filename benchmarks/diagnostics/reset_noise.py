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

And for the rule's value, its residual split in two: *pass noise*, what the rule's group
(right after the reset's untimed pass) does not share with the second group a few ms later,
and the *shared residual* (their covariance: path effects the control does not explain, and
drift slower than a group). And the slope of log value on the machine's slower state: the
other group's log reference time, corrected for that proxy's own noise (see
:func:`state_slope`), ± its standard error. 0 means the reference corrects the state fully;
−0.1, that a 10 % slower machine gives labels 1 % lower.

    python benchmarks/diagnostics/reset_noise.py --threads 2 --blocks 8 --resets 60
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
from lenna.measure.reference import Calibration, anchor_ratios, normalisation, reference_for
from lenna.measure.sampler import Sampler, SampleSpec
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

VALUES = ("raw", "min/min", "med y/z", "Σy/Σz", "smoothed z")


def fit(
    x: np.ndarray, c: np.ndarray, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of ``x`` on 1, the control ``c`` (when it varies) and ``extra``:
    residuals, coefficients and the coefficients' covariance."""
    cols = [np.ones_like(x)] + ([c] if np.ptp(c) > 0 else []) + ([] if extra is None else [extra])
    a = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(a, x, rcond=None)
    r = x - a @ coef
    s2 = float(r @ r) / (len(x) - a.shape[1])
    return r, coef, s2 * np.linalg.inv(a.T @ a)


def residual_sd(x: np.ndarray, c: np.ndarray) -> float:
    """Relative SD (%) of ``x`` around its fit on the control (what the rule averages away)."""
    r, coef, _ = fit(x, c)
    return float(np.sqrt(r @ r / (len(x) - len(coef))) / x.mean() * 100)


def state_slope(value: np.ndarray, c: np.ndarray, z1: np.ndarray, z2: np.ndarray) -> str:
    """Slope (± SE) of log ``value`` on the machine's state, corrected for the noise of its
    proxy: the proxy is log ``z2`` (the other group's reference), whose own pass noise
    flattens a plain slope; the reliability ``cov(log z1, log z2) / var(log z2)`` (after the
    control) estimates the share of its variance that is the state."""
    l1, l2 = fit(np.log(z1), c)[0], fit(np.log(z2), c)[0]
    reliability = float(np.cov(l1, l2)[0, 1] / np.var(l2, ddof=1))
    if reliability < 0.2:
        return "n/a"
    _, coef, cov = fit(np.log(value), c, np.log(z2))
    return f"{coef[-1] / reliability:+.2f} ± {np.sqrt(cov[-1, -1]) / reliability:.2f}"


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
    ref, _ = normalisation(space, config, Calibration(z0, ratios), (spec.channels, 32))
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
        f"| block | {head} | pass noise | shared residual | state slope |",
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
        sd = {k: residual_sd(v, c) for k, v in values.items()}
        for k in VALUES:
            ratios_sq[k].append((sd[k] / sd["min/min"]) ** 2)
        v1, v2 = values["min/min"], y[:, 1].min(1) / z[:, 1].min(1)
        r1, r2 = fit(v1 / v1.mean(), c)[0], fit(v2 / v2.mean(), c)[0]
        shared = float(np.cov(r1, r2)[0, 1])  # what both groups of a reset have in common
        noise = np.sqrt(max(float(np.var(r1, ddof=1)) - shared, 0.0)) * 100
        path = np.sqrt(max(shared, 0.0)) * 100
        slope = state_slope(v1, c, z[:, 0].min(1), z[:, 1].min(1))
        cells = " | ".join(f"{sd[k]:.2f}" for k in VALUES)
        lines.append(
            f"| {spec.block_type} C={spec.channels} {spec.regime} | {cells} "
            f"| {noise:.2f} | {path:.2f} | {slope} |"
        )
        print(lines[-1], flush=True)
    geo = " | ".join(f"{np.exp(np.mean(np.log(ratios_sq[k]))):.2f}×" for k in VALUES)
    lines.append(f"| resets needed vs `min/min` (geometric mean) | {geo} | | | |")
    publish_cpu("reset_noise", args, lines)


if __name__ == "__main__":
    main()

"""Are normalised labels "the block alone at the calibrated speed"? Each reference's bias.

A normalised label is the block's time over its reference's, the two timed pass by pass in
turn, times the reference's calibrated time. The calibrated speed itself is defined on
back-to-back passes (``Z0``: the primary reference's 10th percentile of min-of-3 times; an
anchor's ratio: the same for the anchor over the primary). A pass that follows another
block's pass runs in that block's cache footprint, so "block / reference" in turns need not
equal the ratio of the two alone. This script measures that, on one-hot blocks (one fixed
path: no path variance, so "the block alone" is well defined), normal and reduction, 32×32,
channels spanning all three anchors:

- ``alone``: the block's own calibrated time, found exactly as an anchor's ratio is
  (:func:`~lenna.measure.reference.calibrate_ratio` against the primary: back-to-back passes,
  alternating half-second windows), times ``Z0``;
- ``matched`` / ``single``: the default rule's label, the block timed alongside its matched
  anchor / the 16×16 primary.

bias = label / alone − 1; ``Z0`` cancels out of it (both sides are in its units). Every block
is visited twice (two rounds; the three measurements' order rotates; each visit builds the
block afresh, with new weights and inputs, as a dataset's rows are built), so the
round-to-round change of a bias shows how much of it is noise. The anchors' ratios are
calibrated once, so an error in one is shared by all its blocks and both rounds: it moves
that anchor's median bias and does not show as noise. The two sides also summarise their
passes differently (a label: the mean of per-reset min-of-3 ratios; ``alone``: a ratio of
10th percentiles), which can add an offset of its own. So a third figure, ``matched q10``,
summarises the matched label's own passes as ``alone`` does: its anchor's calibrated time
times the 10th percentile of the block's per-reset min-of-3 times over the 10th percentile
of the anchor's. Against ``matched`` it isolates the statistic (same passes); against
``alone``, the passes' context (same statistic). That context is split by a fourth,
``alternating``: the block built for ``alone``, right after it (before or after the fifth
figure, the order rotating), timed pass by pass in turn with the primary as a label's passes
are but with no gate resets in between (groups of 3 + 3 for at least 1 s), summarised as
``alone`` is, × ``Z0``. Against ``alone`` it is the turns alone;
for blocks at the primary anchor, ``matched q10`` against it is the resets. A reset does two
things: it samples the path again (for a one-hot block, the same path) and runs one untimed
pass, so a group's first timed pass follows the block's own pass, not the reference's. The
fifth, ``alt+discard``, is ``alternating`` with that untimed pass before each group and no
reset: against ``alternating`` it is the discarded pass alone.

    python benchmarks/diagnostics/label_bias.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lenna
from lenna.measure.block_measure import measure_block
from lenna.measure.config import MeasureConfig
from lenna.measure.reference import (
    ANCHORS,
    Calibration,
    Reference,
    anchor_for,
    anchor_key,
    anchor_ratios,
    calibrate_ratio,
    reference_for,
    time_paired,
)
from lenna.measure.rules import Estimate
from lenna.measure.sampler import Sampler
from lenna.measure.timer import Timer
from lenna.space import Block

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish_cpu

CHANNELS = (8, 11, 16, 23, 32, 45, 64, 90, 128)
RESOLUTION = 32


class Alone:
    """A one-hot block timed on its own, shaped like a reference (``time_s``), so it can be
    calibrated against the primary exactly as an anchor is."""

    def __init__(self, space: lenna.SearchSpace, block_type: str, channels: int, alphas, seed: int):
        torch.manual_seed(seed)  # as measure_block builds it: weights, then inputs
        self.block = Block(space, block_type, channels, "gated", alphas).eval()
        shape = (1, channels, RESOLUTION, RESOLUTION)
        self.inputs = tuple(torch.randn(shape) for _ in range(space.num_inputs))
        self.timer = Timer("cpu")
        with torch.inference_mode():
            self.block.reset_gates(torch.Generator().manual_seed(seed))  # one-hot: one path
            for _ in range(3):
                self.block(*self.inputs)

    @torch.inference_mode()
    def time_s(self) -> float:
        return self.timer(lambda: self.block(*self.inputs))


def low_quantile_label(estimate: Estimate) -> float:
    """A label's passes summarised as ``alone`` is: the anchor's calibrated time × the 10th
    percentile of the block's per-reset min-of-3 times over the anchor's (a stored value is
    block / anchor × the anchor's calibrated time, so the block's time is value × anchor /
    calibrated)."""
    zs = np.asarray(estimate.references_ms)
    ys = np.asarray(estimate.values_ms) * zs / estimate.reference_ms
    return float(estimate.reference_ms * np.quantile(ys, 0.1) / np.quantile(zs, 0.1))


def alternating(
    alone: Alone, primary: Reference, z0: float, window_s: float = 1.0, discard: bool = False
) -> float:
    """``alone``'s passes in turn with the primary's, no gate resets: ``Z0`` × the ratio of
    the 10th percentiles of their min-of-3 times over at least ``window_s`` (20 groups);
    ``discard``: one untimed pass of the block before each group, as after a reset."""
    ys, zs, t0 = [], [], time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - t0 < window_s or len(ys) < 20:
            if discard:
                alone.block(*alone.inputs)
            y, z = time_paired(alone.timer, lambda: alone.block(*alone.inputs), primary, 3)
            ys.append(y.min())
            zs.append(z.min())
    return float(z0 * np.quantile(ys, 0.1) / np.quantile(zs, 0.1))


def _median_and_range(ratios: np.ndarray) -> str:
    """Ratios of two measurements (rounds × blocks): the median over all as a change, and
    the range of the blocks' two-round means."""
    change = (ratios - 1) * 100
    per_block = change.mean(axis=0)
    return (
        f"{np.median(change):+.1f} % (per block {per_block.min():+.1f} % to "
        f"{per_block.max():+.1f} %)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    space = lenna.get_space("lenna")
    torch.set_num_threads(args.threads)
    configs = {
        name: MeasureConfig(threads=args.threads, batch=1, reference=name)
        for name in ("matched", "single")
    }
    t0 = time.perf_counter()
    z0 = reference_for(space).calibrate()
    ratios = anchor_ratios(space, configs["matched"])
    calib_s = time.perf_counter() - t0
    primary = reference_for(space)
    sampler = Sampler(space, seed=args.seed)
    blocks = [
        (bt, c, sampler.alphas(np.random.default_rng([args.seed, i]), bt, "onehot"))
        for i, (bt, c) in enumerate((bt, c) for bt in ("normal", "reduction") for c in CHANNELS)
    ]
    methods = ("alone", "matched", "single")
    extra = ("matched q10", "alternating", "alt+discard")
    ms = {m: np.zeros((2, len(blocks))) for m in (*methods, *extra)}
    for rep in range(2):
        for b, (bt, c, alphas) in enumerate(blocks):
            seed = 100 * b + rep
            for j in range(3):
                method = methods[(b + rep + j) % 3]
                if method == "alone":
                    alone = Alone(space, bt, c, alphas, seed)
                    ms[method][rep, b] = calibrate_ratio(alone, primary) * z0
                    # the two in turns, the order rotating by block and round
                    first = bool((b + rep) % 2)
                    for discard in (first, not first):
                        key = "alt+discard" if discard else "alternating"
                        ms[key][rep, b] = alternating(alone, primary, z0, discard=discard)
                else:
                    label = measure_block(
                        space,
                        bt,
                        c,
                        RESOLUTION,
                        alphas,
                        configs[method],
                        seed,
                        Calibration(z0, ratios),
                    )
                    ms[method][rep, b] = label.latency_ms
                    if method == "matched":
                        ms["matched q10"][rep, b] = low_quantile_label(label.estimate)
            print(
                f"[{rep + 1}/2 {b + 1}/{len(blocks)}] {bt:9s} C={c:3d} "
                + "  ".join(f"{k}: {v[rep, b]:.3f}" for k, v in ms.items()),
                flush=True,
            )
    labels = ("matched", "single", *extra)
    bias = {m: (ms[m] / ms["alone"] - 1) * 100 for m in labels}
    anchors = [anchor_key(anchor_for(c, RESOLUTION)) for _, c, _ in blocks]
    lines = [
        f"{len(blocks)} one-hot blocks (lenna, normal and reduction, 32×32, C "
        f"{', '.join(map(str, CHANNELS))}; batch 1, {args.threads} "
        f"thread{'s' if args.threads != 1 else ''}), two rounds. Z0 = {z0:.3f} ms, anchors "
        + ", ".join(f"{k} ×{r:.3f}" for k, r in ratios.items())
        + f", calibrated once in {calib_s:.1f} s. Bias = label / alone − 1 (mean of the rounds; "
        "in brackets: how many points it changed between the rounds).",
        "",
        "| block | C | matched anchor | alone ms | `matched` bias | `single` bias "
        "| `matched q10` bias | `alternating` bias | `alt+discard` bias |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b, (bt, c, _) in enumerate(blocks):
        cells = [
            f"{bias[m][:, b].mean():+.1f} % ({abs(np.diff(bias[m][:, b])[0]):.1f})" for m in labels
        ]
        lines.append(
            f"| {bt} | {c} | {anchors[b]} | {ms['alone'][:, b].mean():.3f} | "
            + " | ".join(cells)
            + " |"
        )
    head = " | ".join(f"blocks at anchor {k}" for k in ratios)
    lines += ["", f"| reference | {head} | all |"]
    lines.append("|---|" + "---|" * (len(ratios) + 1))
    for m in labels:
        mean = bias[m].mean(axis=0)
        groups = [np.median(mean[[a == k for a in anchors]]) for k in ratios]
        lines.append(
            f"| `{m}` median bias | "
            + " | ".join(f"{g:+.1f} %" for g in groups)
            + f" | {np.median(mean):+.1f} % |"
        )
    noise = {m: np.median(np.abs(np.diff(bias[m], axis=0))) for m in bias}
    at_primary = np.array([a == anchor_key(ANCHORS[0]) for a in anchors])
    alone_rr = np.median(np.abs(np.diff(np.log(ms["alone"]), axis=0))) * 100
    lines += [
        "",
        f"Round-to-round median |Δ|: `alone` {alone_rr:.2f} %, "
        + ", ".join(f"`{m}` bias {noise[m]:.2f} points" for m in labels)
        + ".",
        # the statistic alone: both summaries of the very same passes
        "`matched` over `matched q10` (the same passes, two statistics): median "
        + _median_and_range(ms["matched"] / ms["matched q10"])
        + ".",
        # the context split: turns without resets, then (at the primary, no ratio involved)
        # the resets on top
        "`alternating` over `alone` (turns with the primary, no resets): median "
        + _median_and_range(ms["alternating"] / ms["alone"])
        + "; `matched q10` over `alternating` at the primary anchor (the resets): median "
        + _median_and_range((ms["matched q10"] / ms["alternating"])[:, at_primary])
        + "; `alt+discard` over `alternating` (an untimed pass of the block before each group, "
        "no reset): median "
        + _median_and_range(ms["alt+discard"] / ms["alternating"])
        + "; `matched q10` over `alt+discard` at the primary anchor (what a reset adds beyond "
        "that pass): median "
        + _median_and_range((ms["matched q10"] / ms["alt+discard"])[:, at_primary])
        + ".",
        # is a block's offset its own? Compare the blocks' spread with the noise of a two-round
        # mean: two rounds of SD σ differ by a median 0.674·σ·√2, and their mean has SD σ/√2
        "Spread of the blocks' biases (SD across blocks) against the noise of a two-round "
        "mean (median |Δ| / (2 · 0.674)): "
        + ", ".join(
            f"`{m}` {bias[m].mean(axis=0).std(ddof=1):.2f} against {noise[m] / (2 * 0.674):.2f}"
            for m in bias
        )
        + " points.",
    ]
    publish_cpu("label_bias", args, lines)


if __name__ == "__main__":
    main()

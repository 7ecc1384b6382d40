"""Test-retest repeatability and cost of the stopping rules, measured side by side.

Each random sample (lenna space, normal and reduction, channels 8–128, batch 1, 32×32 unless
told otherwise) is
measured twice by every rule, in interleaved order (rule order rotates per sample and pass),
so slow periods of a shared machine hit all rules alike. Prints, per rule, the median and
90th percentile of |Δ|/mean between the two measurements and the median wall time per
sample, and appends them to RESULTS.md.

    python benchmarks/measure_repeatability.py --samples 20 --threads 2
    python benchmarks/measure_repeatability.py --rules seed cv cv/raw cv:passes=5,q=0
    python benchmarks/measure_repeatability.py --device cuda --threads 1 --rules seed cv

``--cross-file``: the same blocks measured into separate files, each by a fresh ``lenna
measure`` process with its own calibration or the machine's shared one (``_cross_file.py``):

    python benchmarks/measure_repeatability.py --cross-file --samples 20 --threads 1

A rule ending in ``/raw`` runs without reference normalisation (``normalise=False``), one
ending in ``/single`` with the single 16×16 reference, ``/matched`` or ``/narrow`` with that
reference mode (otherwise the backend's default); the others use one reference time ``Z0``
and the anchors' ratios, calibrated once before the first sample, as a dataset does (their
cost is printed, not added to the per-sample wall time). Narrow ONNX Runtime blocks, matched
against narrow anchors:

    python benchmarks/measure_repeatability.py --backend onnxruntime --threads 1 \
        --channels 8:15 --resolutions 8 16 --rules cv/matched cv/narrow
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy import stats

import lenna
from lenna.measure.block_measure import measure_spec
from lenna.measure.config import MeasureConfig
from lenna.measure.reference import (
    MATCHED,
    Calibration,
    anchor_for,
    anchor_key,
    anchors_of,
    calibrate_ratios,
    config_reference,
)
from lenna.measure.sampler import Sampler

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _record import publish_cpu


def parse_rule(text: str) -> tuple[str, dict, dict]:
    """``name[:k=v,...][/raw|/single|/matched|/narrow]`` → rule name, its parameters,
    MeasureConfig options."""
    text, _, suffix = text.partition("/")
    options = {"raw": {"normalise": False}, "": {}}.get(suffix, {"reference": suffix})
    name, _, params = text.partition(":")
    kw = {}
    for item in filter(None, params.split(",")):
        k, v = item.split("=")
        kw[k] = float(v) if "." in v else int(v)
    return name, kw, options


def by_anchor(rules: list[str], labels: dict, shapes: list[tuple[int, int]]) -> list[str]:
    """Median |Δ|/mean per rule for the blocks of each reference anchor: a block of (C, H) is
    timed alongside the anchor nearest it in size (matched), narrow blocks alongside an
    8-channel anchor (narrow)."""
    groups = {}
    for i, (c, h) in enumerate(shapes):
        groups.setdefault(anchor_key(anchor_for(c, h, "narrow")), []).append(i)
    head = " | ".join(f"anchor {k} ({len(v)} blocks)" for k, v in groups.items())
    out = [f"| rule | {head} |", "|---|" + "---|" * len(groups)]
    for r in rules:
        a, b = np.array(labels[r][0]), np.array(labels[r][1])
        d = np.abs(a - b) / ((a + b) / 2) * 100
        out.append(
            f"| `{r}` | " + " | ".join(f"{np.median(d[v]):.2f} %" for v in groups.values()) + " |"
        )
    return out


def state_lines(rules: list[str], labels: dict, zbar: dict, load: dict) -> list[str]:
    """Does the machine's state still move the normalised labels? Per normalised rule, the
    slope of log(label₂ / label₁) on log(z̄₂ / z̄₁), z̄ a measurement's mean reference time
    (0: the reference divides the state out; −0.1: a 10 % slower spell gives a 1 % lower label),
    and the host's load (:attr:`Estimate.load`: reference time over its time at this run's
    calibration, 1.0 = as fast as then), so runs' conditions are measured, not described."""
    out = []
    for r in rules:
        if load[r][0]:
            both = np.array(load[r])  # (2, samples)
            q = np.quantile(both, [0.1, 0.5, 0.9])
            a, b = np.array(labels[r][0]), np.array(labels[r][1])
            rho = stats.spearmanr(both.max(axis=0), np.abs(a - b) / (a + b)).statistic
            out.append(
                f"`{r}`: host load (median reference time / calibrated) {q[1]:.2f}× "
                f"(10th–90th percentile of its measurements {q[0]:.2f}–{q[2]:.2f}×); "
                f"rank correlation of a block's |Δ| with its higher load {rho:+.2f}"
            )
        dz = np.log(np.array(zbar[r][1]) / np.array(zbar[r][0]))
        if not np.all(np.isfinite(dz)) or np.ptp(dz) == 0:
            continue
        dy = np.log(np.array(labels[r][1]) / np.array(labels[r][0]))
        fit = stats.linregress(dz, dy)
        out.append(
            f"`{r}`: slope of log label ratio on log reference-time ratio {fit.slope:+.2f} "
            f"± {fit.stderr:.2f} (r = {fit.rvalue:+.2f}; reference time differed by a median "
            f"{np.median(np.abs(dz)) * 100:.1f} % between the two measurements)"
        )
    return ["", *out] if out else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--start", type=int, default=0, help="first sample index (finish a run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--backend", default="torch", help="torch or onnxruntime")
    ap.add_argument("--channels", default="8:128", help="MIN:MAX of the sampled blocks")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[32])
    ap.add_argument("--rules", nargs="+", default=["seed", "cv", "cv/raw"])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument(
        "--cross-file", action="store_true", help="the cross-file case (see above); --seed 4242"
    )
    ap.add_argument("--files", type=int, default=3, help="files per arm (--cross-file)")
    ap.add_argument(
        "--arms",
        default="shared,per-file",
        help="comma-separated arms of --cross-file: shared (the default calibration), per-file",
    )
    args = ap.parse_args()
    if args.cross_file:
        from _cross_file import ARMS, cross_file

        arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
        if not arms or any(a not in ARMS for a in arms):
            ap.error(f"--arms takes {', '.join(ARMS)}; got {args.arms!r}")
        seed = 4242 if args.seed == 2026 else args.seed
        lines = cross_file(args.files, args.samples, seed, args.threads, arms)
        publish_cpu("measure_repeatability --cross-file", args, lines)
        return
    space = lenna.get_space("lenna")
    channels = tuple(int(v) for v in args.channels.split(":"))
    sampler = Sampler(space, channels=channels, resolutions=tuple(args.resolutions), seed=args.seed)
    rules = [parse_rule(r) for r in args.rules]
    indices = range(args.start, args.start + args.samples)
    configs = [
        MeasureConfig(
            rule=n,
            rule_params=kw,
            threads=args.threads,
            batch=1,
            device=args.device,
            backend=args.backend,
            **options,
        )
        for n, kw, options in rules
    ]
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    z0 = config_reference(space, configs[0]).calibrate()
    needed = {
        a
        for c in configs
        if c.normalise and c.reference in MATCHED
        for a in anchors_of(c.reference)
    }
    ratios = calibrate_ratios(space, configs[0], sorted(needed)) if needed else {}
    calib_s = time.perf_counter() - t0
    anchors = ", ".join(f"{k} ×{r:.3f}" for k, r in ratios.items())
    print(
        f"reference calibrated: Z0 = {z0:.3f} ms, anchors {anchors} in {calib_s:.1f} s", flush=True
    )
    labels = {r: [[], []] for r in args.rules}
    walls = {r: [] for r in args.rules}
    resets = {r: [] for r in args.rules}
    halfs = {r: [] for r in args.rules}
    conv = {r: [] for r in args.rules}
    zbar = {r: [[], []] for r in args.rules}  # mean reference time per measurement (normalised)
    load = {r: [[], []] for r in args.rules}  # Estimate.load per measurement (normalised)
    for i in indices:
        spec = sampler(i)
        for rep in range(2):
            k = (i + rep) % len(rules)
            for j in list(range(k, len(rules))) + list(range(k)):
                name = args.rules[j]
                m = measure_spec(
                    space,
                    spec,
                    configs[j],
                    seed=1000 * i + rep,
                    calibration=Calibration(z0, ratios or None),
                )
                labels[name][rep].append(m.latency_ms)
                walls[name].append(m.wall_s)
                resets[name].append(m.estimate.resets)
                halfs[name].append(m.estimate.ci_half_width_ms / m.latency_ms * 100)
                conv[name].append(m.estimate.converged)
                zbar[name][rep].append(float(np.mean(m.estimate.references_ms or [np.nan])))
                if m.estimate.load is not None:
                    load[name][rep].append(m.estimate.load)
        row = "  ".join(  # labels of both passes, then their wall times
            f"{r}: {labels[r][0][-1]:.3f}/{labels[r][1][-1]:.3f} "
            f"({walls[r][-2]:.2f}+{walls[r][-1]:.2f} s)"
            for r in args.rules
        )
        print(
            f"[{i + 1}/{indices.stop}] {spec.block_type:9s} C={spec.channels:3d} "
            f"H={spec.resolution:2d} "
            f"{spec.regime:9s} {row}",
            flush=True,
        )
    lines = [
        f"{args.samples} samples (lenna, normal+reduction, C {channels[0]}–{channels[1]}, "
        f"batch 1, {'/'.join(f'{r}×{r}' for r in args.resolutions)}, {args.backend}, "
        f"{args.threads} thread{'s' if args.threads != 1 else ''}"
        + (f", {args.device}" if args.device != "cpu" else "")
        + "), each measured twice per "
        "rule, interleaved. Reference "
        f"normalisation (all but `seed` and `/raw`): Z0 = {z0:.3f} ms"
        + (f", anchors (`/single`: the 16×16 one only) {anchors}" if ratios else "")
        + f", calibrated once in {calib_s:.1f} s.",
        "",
        "| rule | median \\|Δ\\|/mean | p90 \\|Δ\\|/mean | worst | median wall s/sample "
        "| median resets | reported 95 % CI (median ±) | stopped by its criterion |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in args.rules:
        a, b = np.array(labels[r][0]), np.array(labels[r][1])
        d = np.abs(a - b) / ((a + b) / 2) * 100
        lines.append(
            f"| `{r}` | {np.median(d):.2f} % | {np.quantile(d, 0.9):.2f} % | {d.max():.2f} % "
            f"| {np.median(walls[r]):.2f} | {np.median(resets[r]):.0f} "
            f"| {np.median(halfs[r]):.2f} % | {np.mean(conv[r]) * 100:.0f} % |"
        )
    lines += [
        "",
        *by_anchor(
            args.rules, labels, [(sampler(i).channels, sampler(i).resolution) for i in indices]
        ),
        *state_lines(args.rules, labels, zbar, load),
    ]
    publish_cpu("measure_repeatability", args, lines)


if __name__ == "__main__":
    main()

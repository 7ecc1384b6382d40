"""Does a label depend on the process that measured it, beyond the time between measurements?

Across files (``measure_repeatability.py --cross-file``, one shared calibration) pairs of files
of the same 20 blocks differed by a median 1.1–2.6 %, while two measurements of a block in one
process (the in-process test-retest, 1 thread) differed by 0.6–0.9 %. Each file is a fresh
process, so something a process fixes for its lifetime (where its tensors lie in memory, the
reference instance it builds once) may shift its labels.

Here every process takes the same calibration (made once, here) and measures the same blocks
twice, pass A then pass B, in one order. So a block's two measurements in one process (A_i, B_i)
are one pass apart, and its measurement at the end of one process and at the start of the next
(B_i, A_i+1) are one pass plus a process start apart: the same gap, in one process or across
two. If labels do not depend on the process, |A_i − B_i| and |B_i − A_i+1| have the same
distribution. Printed per arm: both medians, and the shared scale of each pair (median
log-ratio over the blocks), which is what a per-process effect on the reference would show as.

Arms (interleaved process by process):

- ``default``: measure as ``lenna measure`` does;
- ``fresh-ref``: the reference blocks are built anew for every label (another allocation,
  another instance), so whatever a reference instance fixes varies from label to label within
  a process, as it does across processes in ``default``.

    python benchmarks/diagnostics/process_effect.py --processes 4 --samples 12
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARMS = ("default", "fresh-ref")


def worker(calib: dict, arm: str, samples: int, seed: int, threads: int, out: Path) -> None:
    """One process: every block twice (pass A, then pass B); labels and loads to ``out``."""
    import lenna
    from lenna.measure import reference
    from lenna.measure.block_measure import measure_spec
    from lenna.measure.config import MeasureConfig
    from lenna.measure.sampler import Sampler

    space = lenna.get_space("lenna")
    sampler = Sampler(space, seed=seed)
    config = MeasureConfig(threads=threads)
    cal = reference.Calibration(calib["z0"], calib["ratios"])
    rows: dict[str, list] = {"A": [], "B": []}
    for rep in "AB":
        for i in range(samples):
            if arm == "fresh-ref":
                reference._REFERENCES.clear()
            m = measure_spec(space, sampler(i), config, seed=i, calibration=cal)
            e = m.estimate
            rows[rep].append({"label": e.latency_ms, "load": e.load, "resets": e.resets})
    out.write_text(json.dumps(rows))


def calibrate(threads: int) -> dict:
    """One Z0 and the anchors' ratios for every process, as one machine calibration would."""
    import lenna
    from lenna.measure.config import MeasureConfig
    from lenna.measure.reference import calibrate_ratios, config_reference
    from lenna.measure.threads import torch_threads

    space = lenna.get_space("lenna")
    config = MeasureConfig(threads=threads)
    with torch_threads(threads):
        z0 = config_reference(space, config).calibrate()
    return {"z0": z0, "ratios": calibrate_ratios(space, config)}


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / ((a + b) / 2)


def analyse(runs: list[dict]) -> list[str]:
    """Medians of the in-process and across-process differences at the same gap."""
    within, across, s_within, s_across = [], [], [], []
    loads_w, loads_x = [], []
    for k, r in enumerate(runs):
        a, b = (np.array([x["label"] for x in r[p]]) for p in "AB")
        la, lb = (np.array([x["load"] or np.nan for x in r[p]]) for p in "AB")
        within.append(_rel(a, b))
        s_within.append(float(np.median(np.log(b / a))))
        loads_w.append(float(np.nanmedian(np.log(lb / la))))
        if k + 1 < len(runs):
            a2 = np.array([x["label"] for x in runs[k + 1]["A"]])
            la2 = np.array([x["load"] or np.nan for x in runs[k + 1]["A"]])
            across.append(_rel(b, a2))
            s_across.append(float(np.median(np.log(a2 / b))))
            loads_x.append(float(np.nanmedian(np.log(la2 / lb))))

    def pct(v: list) -> str:
        return ", ".join(f"{100 * x:+.2f} %" for x in v)

    w, x = np.concatenate(within), np.concatenate(across) if across else np.array([np.nan])
    lines = [
        f"- in one process |A−B|/mean: median {100 * np.median(w):.2f} % "
        f"(per process {', '.join(f'{100 * np.median(v):.2f}' for v in within)} %)",
        f"- across processes |B_i−A_i+1|/mean: median {100 * np.median(x):.2f} % "
        f"(per pair {', '.join(f'{100 * np.median(v):.2f}' for v in across)} %)",
        f"- shared scale, in one process: {pct(s_within)}; across: {pct(s_across)}",
        f"- reference load shift, in one process: {pct(loads_w)}; across: {pct(loads_x)}",
    ]
    if across:
        resid = []
        for k, s in enumerate(s_across):
            b = np.array([x["label"] for x in runs[k]["B"]])
            a2 = np.array([x["label"] for x in runs[k + 1]["A"]])
            resid.append(_rel(b * np.exp(s), a2))
        lines.append(
            f"- across, the pair's shared scale divided out: median "
            f"{100 * np.median(np.concatenate(resid)):.2f} %"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--processes", type=int, default=4, help="processes per arm")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        worker(spec["calib"], spec["arm"], args.samples, args.seed, args.threads, Path(spec["out"]))
        return
    arms = [a for a in args.arms.split(",") if a]
    if any(a not in ARMS for a in arms):
        ap.error(f"--arms takes {', '.join(ARMS)}")
    t0 = time.perf_counter()
    calib = calibrate(args.threads)
    print(f"calibrated once: Z0 {calib['z0']:.3f} ms, {time.perf_counter() - t0:.0f} s", flush=True)
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.processes):
            for arm in arms:
                out = Path(tmp) / f"{arm}-{k}.json"
                spec = json.dumps({"calib": calib, "arm": arm, "out": str(out)})
                cmd = [sys.executable, __file__, "--worker", spec, "--samples", str(args.samples)]
                cmd += ["--seed", str(args.seed), "--threads", str(args.threads)]
                t1 = time.perf_counter()
                subprocess.run(cmd, check=True)
                runs[arm].append(json.loads(out.read_text()))
                print(f"{arm} process {k + 1}: {time.perf_counter() - t1:.0f} s", flush=True)
    lines = []
    for arm in arms:
        lines.append(f"**{arm}** ({args.processes} processes, {args.samples} blocks, A then B):")
        lines += analyse(runs[arm])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _record import publish_cpu

    publish_cpu("process_effect", args, lines)  # prints them; appends unless --no-record


if __name__ == "__main__":
    main()

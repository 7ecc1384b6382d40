"""ONNX Runtime labels: are they the time of the fixed cell as ORT runs it, and how does the
runtime reorder op costs against PyTorch eager mode?

Under ``--backend onnxruntime`` a label times each sampled path as a graph assembled from
per-op ONNX pieces (:mod:`lenna.measure.onnx_pieces`). This script checks that against what a
user deploys, on seeded random *derived* cells of each space at six (C, H) shapes:

1. warm-up: a new ORT session's pass k over its settled time (median and 90th percentile over
   sessions): how many passes a reset must discard;
2. per cell, the ORT label (one-hot α, unnormalised) over the cell exported as `lenna export`
   does (dynamo exporter) and timed in a plain ORT session, as the rule times a path (after
   warm-up, min of 3 passes per round, mean of rounds; timed before and after the label);
3. per cell, the ORT label over the eager (torch) label: the reordering, per space;
4. each op alone at C = 32, 16×16 (normal cell) in both runtimes: ORT / eager;
5. wall time per label of random-α blocks in both backends.

    python benchmarks/backends.py --cells 24
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lenna.measure import measure_block
from lenna.measure.backend import DISCARD_PASSES, session
from lenna.measure.bench import GatedBench
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.ort_bench import OrtGatedBench
from lenna.measure.ort_path import PathSessions, bound_call
from lenna.measure.reference import calibrated_ms
from lenna.measure.timer import Timer
from lenna.space import Block, cell_alphas, get_space, random_cell

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish

SHAPES = [(8, 32), (16, 16), (32, 8), (48, 32), (64, 16), (112, 8)]
SEED = 4711


def warm_curve(space_name: str, sessions: int, rng: np.random.Generator) -> np.ndarray:
    """Pass k / settled time (median of passes 11–20) of new sessions, one row each."""
    space, rows = get_space(space_name), []
    for i in range(sessions):
        c, h = SHAPES[i % len(SHAPES)]
        bt = ("normal", "reduction")[i % 2]
        block = Block(space, bt, c, "gated").eval()
        xs = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
        paths = PathSessions(block, xs)
        paths.export_all()
        block.reset_gates(torch.Generator().manual_seed(int(rng.integers(1 << 30))))
        paths.open()
        ts = []
        for _ in range(20):
            t0 = time.perf_counter_ns()
            paths.run()
            ts.append(time.perf_counter_ns() - t0)
        ts = np.asarray(ts, float)
        rows.append(ts[:8] / np.median(ts[10:]))
    return np.asarray(rows)


def dynamo_session(cell: Block, xs: tuple) -> object:
    """The fixed cell exported as `lenna export` exports (dynamo, opset 18), in a session."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(cell, xs, dynamo=True, opset_version=18, verbose=False)
        prog.save(buf) if hasattr(prog, "save") else None
    return session(buf.getvalue(), 1)


def plain_ms(sess: object, xs: tuple, rounds: int = 40) -> float:
    """Mean over rounds of the min of 3 passes, each round after discarded passes (the rule's
    per-reset value, without resets)."""
    names = [i.name for i in sess.get_inputs()]
    feed = {n: x.numpy() for n, x in zip(names, xs, strict=True)}
    call = bound_call(sess, feed)  # outputs bound once, as labels are timed
    timer, vals = Timer("cpu"), []
    for _ in range(rounds):
        for _ in range(DISCARD_PASSES["onnxruntime"]):
            call()
        vals.append(min(timer(call) for _ in range(3)))
    return float(np.mean(vals)) * 1e3


def cell_rows(space_name: str, cells: int, rng: np.random.Generator) -> list[dict]:
    space = get_space(space_name)
    raw = {"ort": MeasureConfig(backend="onnxruntime", normalise=False),
           "torch": MeasureConfig(normalise=False)}  # fmt: skip
    out = []
    for i in range(cells):
        c, h = SHAPES[i % len(SHAPES)]
        bt = ("normal", "reduction")[(i // len(SHAPES)) % 2]
        cell = random_cell(space, bt, rng)
        alphas = cell_alphas(space, bt, cell)
        torch.manual_seed(0)
        fixed = Block(space, bt, c, "fixed", choices=cell).eval()
        xs = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
        sess = dynamo_session(fixed, xs)
        before = plain_ms(sess, xs)
        ort = measure_block(space, bt, c, h, alphas, raw["ort"], seed=i)
        after = plain_ms(sess, xs)
        eager = measure_block(space, bt, c, h, alphas, raw["torch"], seed=i)
        row = {"bt": bt, "c": c, "h": h, "ort": ort.latency_ms, "plain": (before + after) / 2}
        row.update(eager=eager.latency_ms)
        out.append(row)
        print(
            f"  {space_name} {bt} C={c} H={h}: ORT label {row['ort']:.4f} ms, plain session "
            f"{row['plain']:.4f} ms (ratio {row['ort'] / row['plain']:.3f}), eager "
            f"{row['eager']:.4f} ms",
            flush=True,
        )
    return out


def op_ratios(space_name: str, c: int = 32, h: int = 16, passes: int = 15) -> dict[str, float]:
    """Each op alone (its first edge kind) at C × H², ORT / eager, median of passes."""
    space = get_space(space_name)
    torch.manual_seed(0)
    block = Block(space, "normal", c, "gated").eval()
    xs = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
    gen = torch.Generator().manual_seed(0)
    benches = {
        "torch": GatedBench(block, xs, Timer(), gen),
        "ort": OrtGatedBench(block, xs, Timer(), gen),
    }
    times: dict[str, dict[str, float]] = {}
    for name, bench in benches.items():
        bench.warm_up(1)
        with torch.inference_mode():
            for t in bench.time_ops(passes):
                times.setdefault(t["op"], {}).setdefault(name, float(np.median(t["times"])))
    return {op: v["ort"] / v["torch"] for op, v in times.items() if v.get("torch")}


def label_walls(space_name: str, n: int, rng: np.random.Generator) -> dict[str, float]:
    """Median wall seconds per label of random-α blocks (normalised, as datasets are)."""
    space, walls = get_space(space_name), {"torch": [], "onnxruntime": []}
    for be in walls:
        calibrated_ms(space, backend=be)  # once per process, not part of a label
    for i in range(n):
        c, h = SHAPES[i % len(SHAPES)]
        bt = ("normal", "reduction")[i % 2]
        alphas = rng.normal(size=space.alpha_shape)
        for be in walls:
            m = measure_block(space, bt, c, h, alphas, MeasureConfig(backend=be), seed=i)
            walls[be].append(m.wall_s)
    return {be: float(np.median(w)) for be, w in walls.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spaces", nargs="+", default=["lenna", "darts"])
    ap.add_argument("--cells", type=int, default=24, help="derived cells per space")
    ap.add_argument("--sessions", type=int, default=36, help="new sessions for the warm-up curve")
    ap.add_argument("--walls", type=int, default=12, help="random-α labels per space and backend")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    lines = [
        f"Derived cells: {args.cells} per space (`random_cell`, seed {SEED}) at (C, H) "
        f"{', '.join(f'({c}, {h})' for c, h in SHAPES)}, batch 1, 1 thread; ORT "
        f"{session.__module__ and ''}graph optimisation all, {DISCARD_PASSES['onnxruntime']} "
        "passes discarded per reset. Labels unnormalised (ms of this moment).",
        "",
    ]
    curve = np.vstack([warm_curve(s, args.sessions // len(args.spaces), rng) for s in args.spaces])
    lines += [
        f"Warm-up of a new session ({len(curve)} sessions), pass k / settled:",
        "",
        "| pass | " + " | ".join(str(k + 1) for k in range(curve.shape[1])) + " |",
        "|---|" + "---|" * curve.shape[1],
        "| median | " + " | ".join(f"{v:.3f}" for v in np.median(curve, 0)) + " |",
        "| 90th pct | " + " | ".join(f"{v:.3f}" for v in np.quantile(curve, 0.9, 0)) + " |",
        "",
        "| space | cells | ORT label / plain ORT session: median | range | within ±3 % "
        "| ORT / eager label: median | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in args.spaces:
        rows = cell_rows(s, args.cells, rng)
        fit = np.array([r["ort"] / r["plain"] for r in rows])
        reorder = np.array([r["ort"] / r["eager"] for r in rows])
        lines.append(
            f"| {s} | {len(rows)} | {np.median(fit):.3f} | {fit.min():.3f}–{fit.max():.3f} | "
            f"{int(np.sum(np.abs(fit - 1) <= 0.03))}/{len(fit)} | {np.median(reorder):.3f} | "
            f"{reorder.min():.3f}–{reorder.max():.3f} |"
        )
    lines += ["", "Each op alone at C = 32, 16×16 (normal cell), ORT / eager:", ""]
    for s in args.spaces:
        ratios = op_ratios(s)
        lines.append(f"- {s}: " + ", ".join(f"`{op}` {r:.2f}" for op, r in ratios.items()))
    lines += ["", "Wall time per label (random α, normalised, median):", ""]
    for s in args.spaces:
        w = label_walls(s, args.walls, rng)
        lines.append(f"- {s}: torch {w['torch']:.2f} s, onnxruntime {w['onnxruntime']:.2f} s")
    fp = config_fingerprint(MeasureConfig(backend="onnxruntime"))
    publish("ONNX Runtime labels (benchmarks/backends.py)", fp, lines, not args.no_record)


if __name__ == "__main__":
    main()

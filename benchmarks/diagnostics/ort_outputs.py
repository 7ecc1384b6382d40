"""Under ONNX Runtime, does a cell timed alone cost what it costs inside its network?

A search predicts a network as its fixed part plus the sum of its cells, each label timed
alone in its own session. ``session.run`` allocates every output anew and hands it to numpy;
inside the network a cell's output lives in ORT's arena, reused pass after pass. This script
times, in one session per module and interleaved round by round (so the host's drift cancels),
each call both ways: ``allocated`` (``session.run``, how labels were timed before) and
``bound`` (outputs bound once, :func:`lenna.measure.ort_path.bound_call`, how they are timed
now), for seeded random derived networks of each space at the search's default shape. It
prints, per arm, (fixed part + Σ cells) / whole network (1.00 is a network the sum predicts)
and the cells' allocated / bound ratio.

    python benchmarks/diagnostics/ort_outputs.py --networks 4
"""

from __future__ import annotations

import argparse
import statistics as st
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from lenna.measure.backend import session
from lenna.measure.fingerprint import fingerprint
from lenna.measure.onnx_pieces import export_module
from lenna.measure.ort_path import bound_call
from lenna.search.fixed_part import skeleton
from lenna.search.network import NetConfig, Network, cell_inputs
from lenna.space import get_space, random_cell

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/, for _record
from _record import publish


def calls(module: torch.nn.Module, inputs: tuple, threads: int) -> dict[str, Callable]:
    """One session of ``module``; its pass with outputs allocated per call and bound once."""
    sess = session(export_module(module, inputs).SerializeToString(), threads)
    feed = {f"in{i}": x.detach().numpy() for i, x in enumerate(inputs)}
    return {"allocated": partial(sess.run, None, feed), "bound": bound_call(sess, feed)}


def timed(items: dict[str, Callable], rounds: int, inner: int) -> dict[str, float]:
    """Median µs per call of each item, the items interleaved within every round (in turn
    forwards and backwards)."""
    for f in items.values():
        for _ in range(2 * inner):
            f()
    acc: dict[str, list[float]] = {k: [] for k in items}
    order = list(items.items())
    for r in range(rounds):  # every other round backwards: no arm always runs second
        for k, f in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                f()
            acc[k].append((time.perf_counter_ns() - t0) / inner / 1e3)
    return {k: float(np.median(v)) for k, v in acc.items()}


def network_row(space_name: str, seed: int, args: argparse.Namespace) -> dict:
    space, rng = get_space(space_name), np.random.default_rng(seed)
    cells = {bt: random_cell(space, bt, rng) for bt in ("normal", "reduction")}
    cfg = NetConfig()
    torch.manual_seed(seed)
    net = Network(space, cfg, "fixed", cells).eval()
    x = torch.randn(1, cfg.in_channels, cfg.resolution, cfg.resolution)
    parts = {"net": calls(net, (x,), args.threads)}
    skel, skel_in = skeleton(space, cfg)
    parts["fixed"] = calls(skel, skel_in, args.threads)
    with torch.inference_mode():
        for i, (cell, inputs) in enumerate(zip(net.cells, cell_inputs(net, x), strict=True)):
            parts[f"cell{i}"] = calls(cell, inputs, args.threads)
    flat = {(p, arm): f for p, arms in parts.items() for arm, f in arms.items()}
    t = timed(flat, args.rounds, args.inner)
    out = {}
    for arm in ("allocated", "bound"):
        cells_us = sum(t[(p, arm)] for p in parts if p.startswith("cell"))
        out[arm] = (t[("fixed", arm)] + cells_us) / t[("net", arm)]
    out["cell_ratios"] = [
        t[(p, "allocated")] / t[(p, "bound")] for p in parts if p.startswith("cell")
    ]
    out["cells_us"] = [t[(p, "bound")] for p in parts if p.startswith("cell")]
    out["net_us"] = t[("net", "bound")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--networks", type=int, default=4, help="random derived networks per space")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"Seeded random derived networks at the search's default shape ({NetConfig().cells} "
        f"cells, C = {NetConfig().channels}, {NetConfig().resolution}×{NetConfig().resolution}"
        f" input), batch 1, {args.threads} thread(s), ORT graph optimisation all; each module in "
        f"one session, both arms interleaved, median of {args.rounds} rounds × {args.inner} "
        "calls.",
        "",
        "| space | network | whole net µs | cells µs (bound) | (fixed + Σ cells) / net, "
        "allocated | bound | cells allocated / bound |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = []
    for space_name in ("lenna", "darts"):
        rows = [network_row(space_name, s, args) for s in range(args.networks)]
        for s, r in enumerate(rows):
            lines.append(
                f"| {space_name} | {s} | {r['net_us']:.0f} | "
                f"{', '.join(f'{c:.0f}' for c in r['cells_us'])} | {r['allocated']:.3f} | "
                f"{r['bound']:.3f} | {', '.join(f'{c:.3f}' for c in r['cell_ratios'])} |"
            )
            print(lines[-1], flush=True)
        ratios = [c for r in rows for c in r["cell_ratios"]]
        summary.append(
            f"- {space_name}: (fixed + Σ cells) / net, median allocated "
            f"{st.median(r['allocated'] for r in rows):.3f}, bound "
            f"{st.median(r['bound'] for r in rows):.3f}; a cell timed with its output "
            f"allocated / bound: median {st.median(ratios):.3f} "
            f"({min(ratios):.3f}–{max(ratios):.3f})"
        )
    fp = fingerprint("cpu", threads=args.threads, batch=1, backend="onnxruntime")
    publish("ORT outputs: cells alone against the network", fp, [*lines, "", *summary],
            save=not args.no_record)  # fmt: skip


if __name__ == "__main__":
    main()

"""Under ONNX Runtime, does a path assembled from pieces cost what the cell exported whole
costs, and where did cheap `darts` reductions lose time?

`backends.py` found the ORT labels of cheap `darts` reduction cells (C = 8–16) 8–21 % above the
dynamo-exported fixed cell, in two runs, on the same cells. A label differs from that plain
session in its *graph* (per-op TorchScript pieces spliced together, against one dynamo export)
and its *rule* (resets, discarded passes, the control variate). This script looks at the graph:
per derived cell it times, in turns in one process and the same way (`backends.plain_ms`:
outputs bound once, passes discarded, min of 3 per round):

- ``dynamo``: the fixed cell exported as `lenna export` does;
- ``script``: the fixed cell exported whole by the TorchScript exporter (as pieces are);
- ``assembled``: the path of a gated block set to that cell, assembled from pieces;
- ``padded``: the same, its pieces exported with the factorised reduce of graphs version 1,
  which padded the offset path at every resolution (a Pad node of its own in ORT);

with ``--label``, the ORT label too (unnormalised, one measurement: noisier). It counts the
nodes of each session's *optimised* graph by op type, which is where a lost fusion shows.
``--networks N`` compares N derived networks' two exports the same way (op counts only): the
TorchScript one `evaluate-arch` times under ORT, the dynamo one `lenna export` writes.

    python benchmarks/diagnostics/ort_assembled.py                  # 12 reduction cells
    python benchmarks/diagnostics/ort_assembled.py --cells 0 --networks 6
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _record import publish
from backends import plain_ms

from lenna.measure import measure_block
from lenna.measure.backend import require_ort, session
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.onnx_pieces import Pieces, export_module
from lenna.measure.ort_path import PathSessions
from lenna.search.network import NetConfig, Network
from lenna.space import Block, cell_alphas, get_space, random_cell
from lenna.space.layers import FactorizedReduce

SEED = 4711


def optimised_ops(model: bytes) -> Counter:
    """Node counts by op type of ``model`` after ORT's graph optimisation (as labels run)."""
    ort = require_ort()
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath).graph
    return Counter(n.op_type for n in graph.node)


def dynamo_bytes(cell: Block, xs: tuple) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(cell, xs, dynamo=True, opset_version=18, verbose=False)
        prog.save(buf)
    return buf.getvalue()


@contextmanager
def padded_reduce() -> Iterator[None]:
    """FactorizedReduce as graphs version 1 exported it: the offset path always padded."""
    new = FactorizedReduce.forward

    def old(self: FactorizedReduce, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = self.conv_b(F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        if self.conv_a is None:
            return self.bn(shifted)
        return self.bn(torch.cat([self.conv_a(x), shifted], dim=1))

    FactorizedReduce.forward = old  # type: ignore[method-assign]
    try:
        yield
    finally:
        FactorizedReduce.forward = new  # type: ignore[method-assign]


def one_cell(space, bt: str, c: int, h: int, cell: list, label: bool, seed: int) -> dict:
    torch.manual_seed(0)
    fixed = Block(space, bt, c, "fixed", choices=cell).eval()
    xs = tuple(torch.randn(1, c, h, h) for _ in range(space.num_inputs))
    gated = Block(space, bt, c, "gated", alphas=cell_alphas(space, bt, cell)).eval()
    gated.reset_gates(torch.Generator().manual_seed(0))
    assert gated.active_ops() == ["none" if o is None else o for o in cell]
    paths = PathSessions(gated, xs)
    paths.export_all()
    with padded_reduce():
        old = PathSessions(gated, xs, pieces=Pieces())  # pieces of their own
        old.export_all()
    models = {
        "dynamo": dynamo_bytes(fixed, xs),
        "script": export_module(fixed, xs).SerializeToString(),
        "assembled": paths.model().SerializeToString(),
        "padded": old.model().SerializeToString(),
    }
    sessions = {k: session(m, 1) for k, m in models.items()}
    names = {k: [i.name for i in s.get_inputs()] for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(3):  # in turns, so drift falls on all alike
        for k, s in sessions.items():
            times[k].append(plain_ms(s, xs[: len(names[k])], rounds=15))
    row = {k: float(np.mean(v)) for k, v in times.items()}
    row["ops"] = {k: optimised_ops(m) for k, m in models.items()}
    if label:
        cfg = MeasureConfig(backend="onnxruntime", normalise=False)
        alphas = cell_alphas(space, bt, cell)
        row["label"] = measure_block(space, bt, c, h, alphas, cfg, seed=seed).latency_ms
    return row


def network_lines(space_name: str, count: int) -> list[str]:
    """Derived networks exported as `evaluate-arch` times them under ORT (TorchScript, whole)
    and as `lenna export` writes them (dynamo): where their optimised graphs differ."""
    space, diffs = get_space(space_name), Counter()
    rng = np.random.default_rng(SEED)  # its own draws: the same networks whatever --cells is
    for i in range(count):
        cells = {bt: random_cell(space, bt, rng) for bt in ("normal", "reduction")}
        shape = NetConfig(channels=8, cells=5, resolution=(32, 28)[i % 2], stem_stride=1)
        net = Network(space, shape, "fixed", cells).eval()
        x = torch.randn(1, 1, shape.resolution, shape.resolution)
        script = optimised_ops(export_module(net, (x,)).SerializeToString())
        dynamo = optimised_ops(dynamo_bytes(net, (x,)))
        key = f"TorchScript only: {fmt_ops(script - dynamo) or '—'}; dynamo only: "
        diffs[key + (fmt_ops(dynamo - script) or "—")] += 1
    lines = [
        f"{count} derived `{space_name}` networks (5 cells of 8 channels, 32×32 and 28×28 "
        "inputs, stem stride 1), optimised op counts of the two exports:",
        "",
        "| networks | where the graphs differ |",
        "|---|---|",
    ]
    return lines + [f"| {n} | {d} |" for d, n in diffs.items()]


def fmt_ops(ops: Counter) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(ops.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="darts")
    ap.add_argument("--type", default="reduction", choices=["normal", "reduction"])
    ap.add_argument("--shapes", default="8x32,16x16,32x8", help="C×H pairs, comma-separated")
    ap.add_argument("--cells", type=int, default=4, help="derived cells per shape")
    ap.add_argument("--networks", type=int, default=0, help="derived networks to compare")
    ap.add_argument("--label", action="store_true", help="also the ORT label (slower)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space, rng = get_space(args.space), np.random.default_rng(SEED)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    for c, h in shapes:
        for i in range(args.cells):
            cell = random_cell(space, args.type, rng)
            r = one_cell(space, args.type, c, h, cell, args.label, seed=i)
            r.update(c=c, h=h, cell=cell)
            rows.append(r)
            extra = f", label {r['label'] / r['dynamo']:.3f}" if "label" in r else ""
            print(
                f"C={c} H={h} {[o for o in cell if o]}: dynamo {r['dynamo']:.4f} ms; "
                f"script {r['script'] / r['dynamo']:.3f}, assembled "
                f"{r['assembled'] / r['dynamo']:.3f}, padded {r['padded'] / r['dynamo']:.3f}"
                f"{extra}",
                flush=True,
            )
            for k, ops in r["ops"].items():
                print(f"    {k:9s} {fmt_ops(ops)}")
    lines = [
        f"`{args.space}` {args.type} derived cells (`random_cell`, seed {SEED}), {args.cells} "
        f"per shape at {args.shapes}, batch 1, 1 thread; each session timed 3 × 15 rounds in "
        "turns, outputs bound once. Ratios over the dynamo-exported cell, median (range), by "
        "whether graphs version 1 put a Pad node in the cell (a factorised reduce: "
        "`skip_connect` on an edge from an input):",
        "",
        "| C×H | v1 Pad | cells | dynamo ms (median) | script / dynamo | assembled / dynamo "
        + "| padded (graphs v1) / dynamo "
        + ("| label / dynamo " if args.label else "")
        + "| assembled graph = dynamo's (optimised op counts) |",
        "|---|---|---|---|---|---|---|" + ("---|" if args.label else "") + "---|",
    ]
    for c, h in shapes:
        for pad in (True, False):
            rs = [
                r for r in rows
                if (r["c"], r["h"]) == (c, h) and ("Pad" in r["ops"]["padded"]) == pad
            ]  # fmt: skip
            if not rs:
                continue

            def rng_(key: str, rs: list = rs) -> str:
                v = [r[key] / r["dynamo"] for r in rs]
                return f"{np.median(v):.3f} ({min(v):.3f}–{max(v):.3f})"

            same = sum(r["ops"]["assembled"] == r["ops"]["dynamo"] for r in rs)
            lab = f"| {rng_('label')} " if args.label else ""
            lines.append(
                f"| {c}×{h} | {'yes' if pad else 'no'} | {len(rs)} | "
                f"{np.median([r['dynamo'] for r in rs]):.4f} | {rng_('script')} | "
                f"{rng_('assembled')} | {rng_('padded')} {lab}| {same}/{len(rs)} |"
            )
    lines = lines if rows else []
    if args.networks:
        lines += ([""] if lines else []) + network_lines(args.space, args.networks)
    fp = config_fingerprint(MeasureConfig(backend="onnxruntime"))
    publish(
        "ORT: assembled path against the cell exported whole (diagnostics/ort_assembled.py)",
        fp,
        lines,
        not args.no_record,
    )


if __name__ == "__main__":
    main()

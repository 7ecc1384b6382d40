"""Is a derived cell's label the time the network gives it? The two measuring paths, side by side.

A search's per-cell check compares the predictor with each cell timed inside the derived
network (``evaluate-arch``: the fixed network's cell on the input it gets there, rule ``ci``).
The predictor learnt labels (``lenna measure``: the gated block on one-hot α, random inputs,
rule ``cv``). If the two paths disagree, a per-cell error is theirs, not the model's. For each
finished search folder given, every cell is timed both ways at the genotype's recorded
calibration, ``--repeats`` times in turns, and the ratio label / network printed.

    python benchmarks/diagnostics/label_vs_network.py /tmp/tradeoff/lenna-seed0-lam0.5 \\
        /tmp/tradeoff/lenna-seed1-lam0                              # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lenna.measure.block_measure import measure_block
from lenna.search.genotype import Genotype
from lenna.search.timing import calibration_from
from lenna.search.verify import build, measure_config_for, measure_network
from lenna.space import cell_alphas, get_space

sys.path.insert(0, str(Path(__file__).parents[1]))
from _record import publish_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="search folders with a genotype.json")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    args.threads = 1
    lines = [
        "Each cell of each run timed inside the derived network (`evaluate-arch`'s path) and as "
        "a label (`measure_block`, one-hot α), at the genotype's calibration, in turns; "
        "ratio label / network per repeat.",
        "",
        "| run | cell | network ms | label ms | label / network |",
        "|---|---|---|---|---|",
    ]
    ratios = []
    for run in args.runs:
        g = Genotype.load(run / "genotype.json")
        cfg = measure_config_for(g)
        cal = calibration_from(g.info.get("measured_as") or {}, cfg)
        space, net = get_space(g.space), build(g)
        for _ in range(args.repeats):
            in_net = measure_network(net, cfg, cal)["measured_per_cell_ms"]
            for c, n_ms in zip(g.info["cells"], in_net, strict=True):
                bt = c["block_type"]
                alphas = cell_alphas(space, bt, g.cells[bt])
                lab = measure_block(
                    space, bt, c["channels"], c["resolution"], alphas, cfg, calibration=cal
                ).latency_ms
                ratios.append(lab / n_ms)
                lines.append(
                    f"| {run.name} | {bt} C={c['channels']} H={c['resolution']} | {n_ms:.3f} "
                    f"| {lab:.3f} | {lab / n_ms:.3f} |"
                )
                print(lines[-1], flush=True)
    r = np.array(ratios)
    lines += ["", f"label / network: median {np.median(r):.3f}, {r.min():.3f}–{r.max():.3f}."]
    print(lines[-1])
    publish_cpu("label_vs_network", args, lines)


if __name__ == "__main__":
    main()

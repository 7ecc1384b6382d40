"""Figures of a search: the derived cells, the per-epoch curves, and a sweep's Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lenna.search.genotype import Genotype
from lenna.space import get_space


def draw_genotype(genotype: Genotype, out: str | Path) -> Path:
    """One panel per cell type: nodes on a line, each kept edge an arc labelled with its op.

    An arc's height grows with the distance it spans, so every label sits at its own apex.
    Downsampling edges (reduction cells) are red.
    """
    sp = get_space(genotype.space)
    types = [t for t in ("normal", "reduction") if t in genotype.cells]
    n_nodes = sp.num_inputs + sp.num_nodes
    fig, axes = plt.subplots(
        len(types), 1, figsize=(1.5 * n_nodes + 1, 2.6 * len(types)), squeeze=False
    )
    t = np.linspace(0, np.pi, 60)
    for ax, bt in zip(axes[:, 0], types, strict=True):
        for e, op in zip(sp.edges, genotype.cells[bt], strict=True):
            if op is None:
                continue
            span, mid = e.dst - e.src, (e.src + e.dst) / 2
            h = 0.45 * span
            color = "C3" if sp.is_down(bt, e) else "C0"
            ax.plot(mid - span / 2 * np.cos(t), h * np.sin(t), color=color, lw=1)
            ax.annotate(
                "",
                xy=(e.dst, 0.02),
                xytext=(e.dst - 0.05, 0.2),
                arrowprops={"arrowstyle": "->", "color": color, "lw": 1},
            )
            ax.text(
                mid,
                h,
                op,
                fontsize=6.5,
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": color, "lw": 0.5},
            )
        for n in range(n_nodes):
            label = f"in{n}" if n < sp.num_inputs else str(n)
            ax.scatter([n], [0], s=300, color="C1" if n < sp.num_inputs else "C2", zorder=3)
            ax.text(n, 0, label, ha="center", va="center", fontsize=7, zorder=4)
        out_label = "output = concat of nodes" if sp.output == "concat" else "output = last node"
        ax.set_title(f"{genotype.space} {bt} cell (λ = {genotype.lam:g}); {out_label}", fontsize=9)
        ax.set_xlim(-0.6, n_nodes - 0.4)
        ax.set_ylim(-0.4, 0.45 * (n_nodes - 1) + 0.4)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return Path(out)


def search_curves(metrics: Sequence[dict], out: str | Path) -> Path:
    """Accuracy (w and α halves) and predicted E[latency] per epoch."""
    return compare_curves({"": metrics}, out)


def _curves(metrics: Sequence[dict], a1: object, a2: object, label: str) -> None:
    ep = [m["epoch"] for m in metrics]
    a1.plot(ep, [100 * m["w_acc"] for m in metrics], "-o", ms=3, label=f"{label} w half".strip())
    a1.plot(ep, [100 * m["a_acc"] for m in metrics], "--", label=f"{label} α half".strip())
    a1.set(xlabel="epoch", ylabel="search accuracy (%)")
    a1.legend(fontsize=7)
    a2.plot(ep, [m["predicted_ms"] for m in metrics], "-o", ms=3, label=label or None)
    a2.set(xlabel="epoch", ylabel="predicted E[latency] of the cells (ms)")
    if label:
        a2.legend(fontsize=7)


def compare_curves(runs: dict[str, Sequence[dict]], out: str | Path) -> Path:
    """Several searches (e.g. one per λ) on the same two panels."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, metrics in runs.items():
        _curves(metrics, a1, a2, label)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return Path(out)


def pareto(rows: Sequence[dict], out: str | Path) -> Path:
    """Accuracy vs measured latency per λ; the predicted latency is marked beside it."""
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for i, r in enumerate(rows):
        c = f"C{i % 10}"
        acc = 100 * r["accuracy"]
        ax.scatter([r["measured_cells_ms"]], [acc], color=c, s=40, label=f"λ = {r['lam']:g}")
        if r.get("predicted_ms") is not None and math.isfinite(r["predicted_ms"]):
            ax.scatter([r["predicted_ms"]], [acc], color=c, marker="x", s=40)
            ax.plot(
                [r["predicted_ms"], r["measured_cells_ms"]], [acc, acc], color=c, lw=0.7, ls=":"
            )
    ax.set(xlabel="latency of the cells (ms): ● measured, × predicted", ylabel="test accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return Path(out)

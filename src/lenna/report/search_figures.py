"""Figures of a search: the derived cells, the per-epoch curves, and a sweep's Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lenna.report.figure_file import save_figure
from lenna.space import get_space

if TYPE_CHECKING:  # figures take a search's data; the report layer never imports the search
    from lenna.search.genotype import Genotype


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
        title = f"{genotype.space} {bt} cell ({genotype.searched_for}); {out_label}"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.6, n_nodes - 0.4)
        ax.set_ylim(-0.4, 0.45 * (n_nodes - 1) + 0.4)
        ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)


def search_curves(metrics: Sequence[dict], out: str | Path, budget_ms: float | None = None) -> Path:
    """Accuracy (w and α halves) and predicted latency per epoch (and μ, with a budget)."""
    return compare_curves({"": metrics}, out, {"": budget_ms})


def _finite(metrics: Sequence[dict], key: str) -> bool:
    return any(isinstance(m.get(key), float | int) and math.isfinite(m[key]) for m in metrics)


def _curves(
    metrics: Sequence[dict], axes: Sequence, label: str, color: str, budget: float | None
) -> None:
    a1, a2 = axes[0], axes[1]
    ep = [m["epoch"] for m in metrics]
    lab = f"{label} ".lstrip()
    a1.plot(
        ep,
        [100 * m["w_acc"] for m in metrics],
        "-o",
        ms=3,
        color=color,
        label=f"{lab}weights' images",
    )
    a1.plot(ep, [100 * m["a_acc"] for m in metrics], "--", color=color, label=f"{lab}α's images")
    a1.set(xlabel="epoch", ylabel="search accuracy (%)")
    whole = _finite(metrics, "expected_network_ms") and _finite(metrics, "derived_ms")
    if whole:
        a2.plot(
            ep,
            [m["expected_network_ms"] for m in metrics],
            "-o",
            ms=3,
            color=color,
            label=f"{lab}E[latency]",
        )
        a2.plot(
            ep,
            [m["derived_ms"] for m in metrics],
            "--s",
            ms=3,
            color=color,
            label=f"{lab}derived network",
        )
        a2.set(xlabel="epoch", ylabel="predicted whole network (ms)")
    else:
        a2.plot(
            ep, [m["predicted_ms"] for m in metrics], "-o", ms=3, color=color, label=label or None
        )
        a2.set(xlabel="epoch", ylabel="predicted E[latency] of the cells (ms)")
    if budget is not None:
        a2.axhline(budget, color=color, lw=0.8, ls=":", label=f"{lab}budget")
    if len(axes) > 2 and _finite(metrics, "multiplier"):
        axes[2].plot(
            ep, [m["multiplier"] for m in metrics], "-o", ms=3, color=color, label=label or None
        )
        axes[2].set(xlabel="epoch", ylabel="budget multiplier μ")


def compare_curves(
    runs: dict[str, Sequence[dict]],
    out: str | Path,
    budgets: dict[str, float | None] | None = None,
) -> Path:
    """Several searches (e.g. one per λ or budget) on the same panels: accuracy, predicted
    latency (the whole network and the derived one, when known), and μ with a budget."""
    budgets = budgets or {}
    with_mu = any(_finite(m, "multiplier") for m in runs.values())
    panels = 3 if with_mu else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8))
    for i, (label, metrics) in enumerate(runs.items()):
        _curves(metrics, axes, label, f"C{i % 10}", budgets.get(label))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)


def pareto(rows: Sequence[dict], out: str | Path) -> Path:
    """Accuracy vs measured latency per λ (the cells) or per budget (the whole network, the
    budget a vertical tick); the predicted latency is marked beside it."""
    by_budget = any(r.get("budget_ms") is not None for r in rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, r in enumerate(rows):
        c = f"C{i % 10}"
        acc = 100 * r["accuracy"]
        if by_budget:
            x, pred, label = (
                r["measured_ms"],
                r.get("predicted_network_ms"),
                f"T = {r['budget_ms']:g} ms",
            )
            ax.axvline(r["budget_ms"], color=c, lw=0.8, ls="--")
        else:
            x, pred, label = r["measured_cells_ms"], r.get("predicted_ms"), f"λ = {r['lam']:g}"
        ax.scatter([x], [acc], color=c, s=40, label=label)
        if pred is not None and math.isfinite(pred):
            ax.scatter([pred], [acc], color=c, marker="x", s=40)
            ax.plot([pred, x], [acc, acc], color=c, lw=0.7, ls=":")
    what = "whole network (ms; dashed: budget)" if by_budget else "latency of the cells (ms)"
    ax.set(xlabel=f"{what}: ● measured, × predicted", ylabel="test accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)

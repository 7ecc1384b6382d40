"""Predicted vs measured latency: one log–log panel per model (two per row), with the ±10 %
band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lenna.report.figure_file import save_figure


def plot_predicted_vs_measured(
    results: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, title: str = ""
) -> Path:
    """``results``: model name -> (measured ms, predicted ms) on held-out rows."""
    n = max(1, len(results))
    cols = min(2, n)  # two panels per row: each stays readable in a browser's page width
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    every = np.concatenate([np.concatenate(v) for v in results.values()]) if results else [1, 10]
    lo, hi = float(np.min(every)) * 0.8, float(np.max(every)) * 1.25
    line = np.geomspace(lo, hi, 50)
    decades = np.log10(hi / lo)
    subs = (1.0,) if decades > 2 else (1.0, 2.0, 5.0) if decades > 1 else (1.0, 2.0, 3.0, 5.0)
    for ax, (name, (y, p)) in zip(axes.flat, results.items(), strict=False):
        ax.fill_between(line, line * 0.9, line * 1.1, color="C2", alpha=0.2, label="±10 %")
        ax.plot(line, line, "k-", lw=0.8)
        ax.scatter(y, p, s=6, alpha=0.6)
        within = np.mean(np.abs(p - y) / y <= 0.1) * 100 if len(y) else float("nan")
        ax.set(
            xscale="log",
            yscale="log",
            xlim=(lo, hi),
            ylim=(lo, hi),
            title=name,
            xlabel="measured ms",
            ylabel="predicted ms",
        )
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, as many as the span has room for
            axis.set_major_locator(LogLocator(base=10, subs=subs))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.text(0.04, 0.92, f"{within:.1f} % within ±10 %", transform=ax.transAxes, fontsize=8)
        ax.legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)

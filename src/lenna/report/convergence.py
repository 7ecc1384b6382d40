"""The seed's three convergence figures for one measured sample.

From the per-reset values stored with ``--trace``: (1) the per-reset latency, (2) its
cumulative average, (3) the relative change of that average from one reset to the next
(the seed's stopping signal, with its 1 % line).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lenna.errors import InputError


def plot_convergence(row: dict, out: str | Path) -> Path:
    """Draw the three panels for a sample row (needs ``row['trace']``) and save to ``out``."""
    trace = row.get("trace")
    if not trace or not trace.get("values_ms"):
        raise InputError(
            f"sample {row['sample_index']} has no trace; measure with --trace to keep it"
        )
    y = np.asarray(trace["values_ms"])
    t = np.arange(1, len(y) + 1)
    avg = np.cumsum(y) / t
    change = np.abs(np.diff(avg)) / avg[:-1] * 100
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(t, y, ".-", lw=0.8)
    axes[0].set(title="1) latency per gate reset", xlabel="reset", ylabel="ms")
    axes[1].plot(t, avg, "-", color="C1")
    axes[1].axhline(row["latency_ms"], ls="--", color="k", lw=0.8, label="label")
    axes[1].set(title="2) cumulative average", xlabel="reset", ylabel="ms")
    axes[1].legend()
    axes[2].semilogy(t[1:], np.maximum(change, 1e-4), ".-", color="C2", lw=0.8)
    axes[2].axhline(1.0, ls="--", color="r", lw=0.8, label="1 %")
    axes[2].set(title="3) change of the average", xlabel="reset", ylabel="%")
    axes[2].legend()
    fig.suptitle(
        f"sample {row['sample_index']}: {row['block_type']}, C={row['channels']}, "
        f"{row['resolution']}², rule {row['rule']}, {row['resets']} resets"
    )
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

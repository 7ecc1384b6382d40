"""How one label converged, in three panels, from the per-reset values stored with ``--trace``.

(1) each timed path's latency (one per gate reset); (2) what the rule estimated after each
reset, the stored label dashed; (3) the rule's stopping signal against its threshold. The
panels follow the label's own rule: for ``cv`` and ``ci`` the estimate and its confidence
interval, replayed from the trace by the rule itself (so the last point is the label); for
the seed's rule the running average and its relative change.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from lenna.errors import InputError
from lenna.measure.rules import CIRule, make_rule
from lenna.report.figure_file import save_figure


def plot_convergence(row: dict, out: str | Path, rule_settings: dict | None = None) -> Path:
    """Draw the three panels for a sample row (needs ``row['trace']``) and save to ``out``.
    ``rule_settings``: the dataset's (``meta['rule_settings']``); without them the rule's
    defaults, which may draw another threshold than the file's."""
    trace = row.get("trace")
    if not trace or not trace.get("values_ms"):
        raise InputError(
            f"sample {row['sample_index']} has no trace; measure with --trace to keep it"
        )
    y = np.asarray(trace["values_ms"], float)
    t = np.arange(1, len(y) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(t, y, ".-", lw=0.8, label="path")
    controls = trace.get("controls_ms") or []
    if len(controls) == len(y) and np.ptp(controls) > 0:  # (constant: no op table yet)
        axes[0].plot(t, controls, ".", color="0.6", ms=3, label="its op costs (control)")
        axes[0].legend(fontsize=7)
    axes[0].set(title="1) latency per gate reset", xlabel="reset", ylabel="ms")
    note = _rule_panels(row, trace, y, t, axes[1], axes[2], rule_settings)
    fig.suptitle(
        f"sample {row['sample_index']}: {row['block_type']}, C={row['channels']}, "
        f"{row['resolution']}², rule {row['rule']}, {row['resets']} resets{note}"
    )
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def _sparse(v: float, _: object) -> str:
    """A minor tick's label only at 2, 3 and 5 × 10^k: every minor label overlaps."""
    if v <= 0:
        return ""
    lead = round(v / 10 ** math.floor(math.log10(v)), 6)
    return f"{v:g}" if lead in (2, 3, 5) else ""


def _rule_panels(
    row: dict,
    trace: dict,
    y: np.ndarray,
    t: np.ndarray,
    ax_est: plt.Axes,
    ax_stop: plt.Axes,
    settings: dict | None,
) -> str:
    """Panels 2 and 3 for the row's rule; returns a note for the title ('' if none)."""
    notes = []
    name = row["rule"]
    if name not in ("seed", "ci", "cv"):
        notes.append(f"unknown rule {name!r}: drawn as ci")
        name = "ci"
    try:
        rule = make_rule(name, **dict(settings or {}))
    except (InputError, TypeError):  # settings of another LENNA: the rule's defaults
        notes.append("the file's rule settings unreadable: defaults drawn")
        rule = make_rule(name)
    label = row["latency_ms"]
    if not isinstance(rule, CIRule):
        avg = np.cumsum(y) / t
        change = np.abs(np.diff(avg)) / avg[:-1] * 100
        ax_est.plot(t, avg, "-", color="C1")
        ax_est.axhline(label, ls="--", color="k", lw=0.8, label="label")
        ax_est.set(title="2) running average", xlabel="reset", ylabel="ms")
        ax_est.legend()
        ax_stop.semilogy(t[1:], np.maximum(change, 1e-4), ".-", color="C2", lw=0.8)
        ax_stop.axhline(100 * rule.tol, ls="--", color="r", lw=0.8, label=f"{100 * rule.tol:g} %")
        ax_stop.set(title="3) change of the average", xlabel="reset", ylabel="%")
        ax_stop.legend()
        return f" ({'; '.join(notes)})" if notes else ""
    controls, expected = trace.get("controls_ms"), trace.get("expected_control_ms")
    if not (rule.control and controls and expected is not None):
        if rule.control:  # a trace stored before the control's mean was: the plain interval
            notes.append("no control's mean stored: plain interval shown")
        controls, expected = None, 0.0
    est, half = rule.replay(list(y), controls, float(expected))
    ax_est.plot(t, est, "-", color="C1", label="estimate")
    ci = f"{100 * rule.confidence:g} % CI"
    ax_est.fill_between(t, est - half, est + half, color="C1", alpha=0.2, lw=0, label=ci)
    ax_est.axhline(label, ls="--", color="k", lw=0.8, label="label")
    ax_est.set(title="2) the rule's estimate", xlabel="reset", ylabel="ms")
    ax_est.legend(fontsize=7)
    ax_stop.semilogy(t, 100 * half / np.abs(est), ".-", color="C2", lw=0.8)
    ax_stop.axhline(100 * rule.rel, ls="--", color="r", lw=0.8, label=f"±{100 * rule.rel:g} %")
    ax_stop.axvline(rule.min_resets, ls=":", color="0.4", lw=0.8, label="earliest stop")
    ax_stop.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    shown = 100 * half[np.isfinite(half)] / np.abs(est[np.isfinite(half)])
    top, low = max([*shown, 100 * rule.rel]), max(min([*shown, 100 * rule.rel]), 1e-9)
    narrow = np.log10(top / low) < 1.3  # under ~20×: minor labels have room
    ax_stop.yaxis.set_minor_formatter(FuncFormatter(_sparse if narrow else lambda v, _: ""))
    ax_stop.set(title="3) CI half-width / estimate", xlabel="reset", ylabel="%")
    ax_stop.legend()
    return f" ({'; '.join(notes)})" if notes else ""

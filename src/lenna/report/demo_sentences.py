"""The demo's sentences: what its searches gained and cost, whether the budget held, where
the search's predictor ranked, and the warning a quick run opens with. Measured numbers only,
said plainly where they are not good news."""

from __future__ import annotations


def gain(rows: list[dict]) -> dict:
    """The measured gain the gain sentence states, as numbers (for ``summary.json``)."""
    base = next(r for r in rows if r["lam"] == 0)
    best = [r for r in rows if r["lam"] > 0]
    if not best:
        return {}
    r = best[-1]
    return {
        "lam": r["lam"],
        "cells_ratio": r["measured_cells_ms"] / base["measured_cells_ms"],
        "network_ratio": r["measured_ms"] / base["measured_ms"],
        "network_speedup": base["measured_ms"] / r["measured_ms"],
        "accuracy_change_points": 100 * (r["accuracy"] - base["accuracy"]),
    }


SMOKE = (
    "Smoke test (`--quick`), not evidence: 2 search steps per λ, 24 measured blocks and 5 "
    "held-out rows per predictor show that the loop runs, not what it achieves (see "
    "docs/limitations.md, Search). Run `lenna demo` for the demo's figures."
)


def gain_sentence(rows: list[dict]) -> str:
    """What the latency-aware search gained and cost, in measured numbers."""
    base = next(r for r in rows if r["lam"] == 0)
    best = [r for r in rows if r["lam"] > 0]
    if not best:
        return "Only λ = 0 was searched; there is nothing to compare."
    r = best[-1]
    ratio = r["measured_cells_ms"] / base["measured_cells_ms"]
    whole = r["measured_ms"] / base["measured_ms"]
    d_acc = 100 * (r["accuracy"] - base["accuracy"])
    verdict = (
        f"{100 * (1 - ratio):.0f} % faster cells"
        if ratio < 1
        else f"no speed gain (cells {100 * (ratio - 1):.0f} % slower)"
    )
    return (
        f"Latency-aware search (λ = {r['lam']:g}) gave {verdict}: the derived cells measured "
        f"{r['measured_cells_ms']:.3f} ms against {base['measured_cells_ms']:.3f} ms at λ = 0 "
        f"(ratio {ratio:.2f}; whole network {r['measured_ms']:.3f} vs "
        f"{base['measured_ms']:.3f} ms, ratio {whole:.2f}), at "
        f"{d_acc:+.2f} accuracy points ({100 * r['accuracy']:.2f} % vs "
        f"{100 * base['accuracy']:.2f} % on the held-out test split after "
        f"{r.get('epochs', '?')} training epochs)."
    )


def rank_sentence(predictors: dict[str, dict], chosen: str) -> str:
    """Where the search's predictor ranked on this run's few held-out rows, said plainly
    when it was not first (the report must not call it the best where it was not)."""
    n = max((int(v["n"]) for v in predictors.values()), default=0)
    ranked = sorted(
        (k for k, v in predictors.items() if v["differentiable"]),
        key=lambda k: predictors[k]["mape"],
    )
    if chosen not in ranked:
        return f"On these {n} held-out rows the ranking below is noisy."
    place = ranked.index(chosen) + 1
    if place == 1:
        return f"On these {n} held-out rows it ranked first too (a noisy ranking)."
    return (
        f"On these {n} held-out rows it ranked {place} of {len(ranked)} differentiable models "
        f"by MAPE ({ranked[0]} first): too few rows to re-choose by."
    )


def budget_sentence(budget: dict) -> str:
    """Whether the network searched within a budget met it, measured."""
    if not budget:
        return "No budget search ran."
    t = budget["budget_ms"]
    if "refused" in budget:
        return f"A {t:g} ms budget was refused before searching: {budget['refused']}"
    m = budget["measured_ms"]
    met = "met it" if m <= t else "missed it"
    pred = budget.get("predicted_network_ms")
    said = "" if pred is None else f" (predicted {pred:.3f} ms)"
    return (
        f"Searching within a {t:g} ms budget gave a network measured at {m:.3f} ms{said}: "
        f"{m / t:.2f}× the budget, so it {met}; test accuracy "
        f"{100 * budget['accuracy']:.2f} %."
    )

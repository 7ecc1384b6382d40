"""A latency budget for the whole network: one search, no λ to tune.

The relaxed E[latency] is not the number the user acts on: the *derived* network is. So the
budget is a constraint on the derived network's predicted latency, enforced by a Lagrange
multiplier μ ≥ 0 raised by dual ascent (LightNAS, DAC'22) after every α step,

    μ ← max(0, μ + η · (D / T − 1)),

with D the predicted latency of the network derived from the current α. μ weighs E[latency]
in the α loss (:meth:`LatencyTerm.loss`): while D > T the pull to faster ops grows, and when
D < T it relaxes back, so accuracy takes the slack. If the network derived at the end is still
predicted over T (μ was still catching up), :func:`fit_to_budget` walks to the nearest
derivable network under T, trading the ops α likes least per millisecond saved.

Every network here is derivable (:func:`lenna.space.derive.neighbours`), and its latency is
the predicted cells (with each `darts` cell's preprocessing offset) plus the measured fixed part
(stem, per-cell BN, pooling, classifier).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from lenna.errors import InputError
from lenna.predict.base import OutOfRange
from lenna.search.latency import LatencyTerm
from lenna.space import cell_alphas, derive, neighbours

Cells = dict[str, list[str | None]]


@dataclass
class Multiplier:
    """μ of the budget constraint, updated by dual ascent; stored in the checkpoint."""

    budget_ms: float
    lr: float
    value: float = 0.0

    def update(self, derived_ms: float) -> float:
        """One ascent step on the constraint ``derived_ms ≤ budget_ms`` (relative violation)."""
        self.value = max(0.0, self.value + self.lr * (derived_ms / self.budget_ms - 1.0))
        return self.value


def derived_cells(term: LatencyTerm, alphas: Mapping[str, torch.Tensor]) -> Cells:
    """The cells the space's derive rule takes from ``alphas``, per cell type in the network."""
    types = sorted({c.block_type for c in term.cells})
    return {bt: derive(term.space, bt, alphas[bt].detach().cpu().double()) for bt in types}


def type_ms(term: LatencyTerm, block_type: str, cells: list[list[str | None]]) -> np.ndarray:
    """Predicted latency (ms) of the network's cells of ``block_type`` for each candidate cell
    (batched: one predictor pass per cell position)."""
    cand = np.stack([cell_alphas(term.space, block_type, c) for c in cells])
    a = torch.as_tensor(cand, device=term.device)
    total = np.zeros(len(cells))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfRange)  # refused or allowed by the term already
        for spec, offset in zip(term.cells, term.cell_offsets_ms, strict=True):
            if spec.block_type == block_type:
                ms = term.predictor.predict(a, block_type, spec.channels, spec.resolution)
                total += ms.double().cpu().numpy().reshape(-1) + offset
    return total


def network_ms(term: LatencyTerm, cells: Cells) -> float:
    """Predicted whole-network latency (ms): the cells, the fixed part and the gap."""
    return term.outside_ms + float(sum(type_ms(term, bt, [c])[0] for bt, c in cells.items()))


def _score(term: LatencyTerm, block_type: str, cell: list[str | None], logp: np.ndarray) -> float:
    """How much α likes ``cell``: Σ over kept edges of log softmax(α) of the kept op."""
    s = 0.0
    for e, op in zip(term.space.edges, cell, strict=True):
        if op is not None or term.space.derive_rule == "edge_argmax":
            names = term.space.edge_ops(block_type, e)
            s += logp[e.index, names.index(op if op is not None else "none")]
    return s


def extreme_network(
    term: LatencyTerm, fastest: bool = True, start: Cells | None = None
) -> tuple[Cells, float]:
    """The fastest (or slowest) derivable network found by steepest descent over single
    changes, from ``start`` (default: the cells derived at uniform α). A local optimum: for an
    additive predictor it is the global one, for others a close bound."""
    zeros = {c.block_type: torch.zeros(term.space.alpha_shape) for c in term.cells}
    cells = dict(start) if start is not None else derived_cells(term, zeros)
    sign = 1.0 if fastest else -1.0
    for bt in sorted(cells):
        cur = float(type_ms(term, bt, [cells[bt]])[0])
        while True:
            cand = neighbours(term.space, bt, cells[bt])
            if not cand:
                break
            ms = type_ms(term, bt, cand)
            best = int(np.argmin(sign * ms))
            if sign * ms[best] >= sign * cur - 1e-12:
                break
            cells[bt], cur = cand[best], float(ms[best])
    return cells, network_ms(term, cells)


def fit_to_budget(
    term: LatencyTerm, alphas: Mapping[str, torch.Tensor], budget_ms: float, max_changes: int = 200
) -> tuple[Cells, float, int]:
    """The derived network if it is predicted within ``budget_ms``; else the derivable network
    reached by single changes, each the one that costs α's preference least per millisecond
    saved, until it fits. Returns ``(cells, predicted ms, changes made)``."""
    cells = derived_cells(term, alphas)
    total = network_ms(term, cells)
    logp = {
        bt: torch.log_softmax(
            alphas[bt]
            .detach()
            .cpu()
            .double()
            .masked_fill(~torch.as_tensor(term.space.op_mask(bt)), -math.inf),
            -1,
        ).numpy()
        for bt in cells
    }
    changes = 0
    while total > budget_ms and changes < max_changes:
        best: tuple[float, str, list[str | None], float] | None = None
        for bt in sorted(cells):
            cur_ms = float(type_ms(term, bt, [cells[bt]])[0])
            cur_score = _score(term, bt, cells[bt], logp[bt])
            cand = neighbours(term.space, bt, cells[bt])
            if not cand:
                continue
            ms = type_ms(term, bt, cand)
            for c, m in zip(cand, ms, strict=True):
                saved = cur_ms - float(m)
                if saved <= 1e-12:
                    continue
                cost = max(cur_score - _score(term, bt, c, logp[bt]), 0.0) / saved
                if best is None or cost < best[0]:
                    best = (cost, bt, c, saved)
        if best is None:  # nothing faster is derivable: the caller refused such budgets
            break
        _, bt, c, saved = best
        cells[bt] = c
        total -= saved
        changes += 1
    return cells, network_ms(term, cells), changes


def check_budget(term: LatencyTerm, budget_ms: float) -> str | None:
    """Refuse a budget no derivable network meets (one line); a message when every derivable
    network meets it (the budget cannot bind), else ``None``."""
    _, fastest = extreme_network(term, fastest=True)
    if budget_ms < fastest:
        raise InputError(
            f"no derivable network meets a {budget_ms:g} ms budget: the fastest found is "
            f"predicted at {fastest:.4g} ms ({term.fixed_ms:.3g} ms of it outside the cells"
            + (f", the whole-network gap {term.gap_ms:+.3g} ms" if term.gap_ms else "")
            + ")"
        )
    _, slowest = extreme_network(term, fastest=False)
    if budget_ms >= slowest:
        return (
            f"the {budget_ms:g} ms budget does not bind: even the slowest derivable network is "
            f"predicted at {slowest:.4g} ms"
        )
    return None

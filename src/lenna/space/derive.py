"""Deriving a discrete cell from α, and drawing the cells a derive rule can output.

Both live with the space because they are facts about it: the search derives its result with
:func:`derive`, and the measurement's ``derived`` regime draws what :func:`derive` can return
(:func:`random_cell`), so the predictor is trained on the cells searches actually produce.

Rules (the space names its own): ``edge_argmax`` (the seed's block: every edge keeps its
strongest op) and ``top2_non_none`` (DARTS: each node keeps its two strongest incoming edges,
ranked by their strongest non-``none`` op, and each kept edge that op).
"""

from __future__ import annotations

import numpy as np

from lenna.errors import InputError
from lenna.space.encode import probabilities
from lenna.space.mixed import NONE_OP
from lenna.space.op_kinds import parameter_free
from lenna.space.spec import Edge, SearchSpace

OFF = -1e4  # a logit whose exp is exactly 0 in float64: softmax is exactly one-hot


def derive(space: SearchSpace, block_type: str, alphas: object) -> list[str | None]:
    """One op name (or ``None``: edge dropped) per edge, by the space's rule."""
    arr = space.check_alphas(alphas)
    probs = probabilities(space, block_type, arr)
    if space.derive_rule == "edge_argmax":
        return [space.edge_ops(block_type, e)[int(np.argmax(probs[e.index]))] for e in space.edges]
    if space.derive_rule == "top2_non_none":
        return _top2(space, block_type, probs)
    raise InputError(f"space {space.name!r} has an unknown derive rule {space.derive_rule!r}")


def _top2(space: SearchSpace, block_type: str, probs: np.ndarray) -> list[str | None]:
    choices: list[str | None] = [None] * space.num_edges
    for node in range(space.num_inputs, space.num_inputs + space.num_nodes):
        best = []
        for e in (e for e in space.edges if e.dst == node):
            ops = space.edge_ops(block_type, e)
            ranked = [(probs[e.index, i], -i, op) for i, op in enumerate(ops) if op != NONE_OP]
            p, _, op = max(ranked)  # ties: the first op, as np.argmax and DARTS
            best.append((p, -e.index, e.index, op))  # ties: the earlier edge wins
        for _, _, k, op in sorted(best, reverse=True)[:2]:
            choices[k] = op
    return choices


def random_cell(
    space: SearchSpace,
    block_type: str,
    rng: np.random.Generator,
    free_share: float | None = None,
) -> list[str | None]:
    """A randomly drawn cell of the kind :func:`derive` outputs for ``space``.

    ``edge_argmax``: an op on every edge. ``top2_non_none``: per node two distinct incoming
    edges (fewer if the node has fewer), each with a non-``none`` op; the rest dropped.
    Each kept edge's op is uniform over its candidates; with ``free_share``, the edge first
    takes a parameter-free op (:mod:`lenna.space.op_kinds`) with that probability, then one
    uniformly of that kind (an edge with ops of one kind only takes one of those)."""
    if free_share is not None and not 0.0 <= free_share <= 1.0:
        raise InputError(f"free_share must be in [0, 1], got {free_share!r}")

    def pick(e: Edge, drop_none: bool = True) -> str:
        ops = [op for op in space.edge_ops(block_type, e) if not (drop_none and op == NONE_OP)]
        if free_share is not None:
            free = parameter_free(space, block_type, e)
            want = rng.random() < free_share
            ops = [op for op in ops if (op in free) == want] or ops
        return str(rng.choice(ops))

    if space.derive_rule == "edge_argmax":
        return [pick(e, drop_none=False) for e in space.edges]
    if space.derive_rule != "top2_non_none":
        raise InputError(f"space {space.name!r} has an unknown derive rule {space.derive_rule!r}")
    cell: list[str | None] = [None] * space.num_edges
    for node in range(space.num_inputs, space.num_inputs + space.num_nodes):
        incoming = [e for e in space.edges if e.dst == node]
        for i in rng.choice(len(incoming), size=min(2, len(incoming)), replace=False):
            e = incoming[int(i)]
            cell[e.index] = pick(e)
    return cell


def cell_alphas(space: SearchSpace, block_type: str, cell: list[str | None]) -> np.ndarray:
    """Logits whose softmax is exactly ``cell`` (a dropped edge is its ``none`` op; a space
    without one cannot drop edges). Padded slots stay 0, as everywhere."""
    if len(cell) != space.num_edges:
        raise InputError(f"a {space.name} cell has {space.num_edges} edges, got {len(cell)}")
    out = np.zeros(space.alpha_shape)
    for e, op in zip(space.edges, cell, strict=True):
        names = space.edge_ops(block_type, e)
        want = NONE_OP if op is None else op
        if want not in names:
            if op is None:
                raise InputError(f"space {space.name!r} cannot drop edges (it has no 'none' op)")
            raise InputError(f"op {op!r} is not a candidate on {block_type} edge {e.index}")
        out[e.index, : len(names)] = OFF
        out[e.index, names.index(want)] = 0.0
    return out


def neighbours(
    space: SearchSpace, block_type: str, cell: list[str | None]
) -> list[list[str | None]]:
    """The derivable cells one change away from ``cell``: another op on one edge, or (DARTS)
    one kept edge of a node traded for a dropped one. A latency budget walks these to reach
    the fastest, slowest or nearest-under-budget cell without leaving what :func:`derive`
    can output."""
    out: list[list[str | None]] = []
    if space.derive_rule == "edge_argmax":
        for e in space.edges:
            for op in space.edge_ops(block_type, e):
                if op != cell[e.index]:
                    out.append([op if i == e.index else c for i, c in enumerate(cell)])
        return out
    if space.derive_rule != "top2_non_none":
        raise InputError(f"space {space.name!r} has an unknown derive rule {space.derive_rule!r}")
    for node in range(space.num_inputs, space.num_inputs + space.num_nodes):
        incoming = [e for e in space.edges if e.dst == node]
        kept = [e for e in incoming if cell[e.index] is not None]
        dropped = [e for e in incoming if cell[e.index] is None]
        for e in kept:
            ops = [op for op in space.edge_ops(block_type, e) if op != NONE_OP]
            for op in ops:  # another op on a kept edge
                if op != cell[e.index]:
                    out.append([op if i == e.index else c for i, c in enumerate(cell)])
            for d in dropped:  # or another input for the node
                for op in (o for o in space.edge_ops(block_type, d) if o != NONE_OP):
                    new = list(cell)
                    new[e.index], new[d.index] = None, op
                    out.append(new)
    return out

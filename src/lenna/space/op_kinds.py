"""Which ops of an edge are parameter-free (pools, identities): the ops a latency term steers to.

A search under a latency term derives cells whose edges are mostly parameter-free ops, because
those are cheap in every runtime; a search for accuracy alone derives cells of convolutions.
A uniform draw over an edge's ops gives either corner rarely (10 or more parameter-free edges
of 15 in a ``lenna`` cell: about once in 600 cells), so the sampler (version 4) draws a cell's
parameter-free share first. Whether an op is parameter-free is read off the built module at
the edge's own stride and channels, so a stride-2 ``skip_connect`` (a factorised reduce: two
1×1 convolutions) counts as what it is.
"""

from __future__ import annotations

import torch
from torch import nn

from lenna.space.mixed import NONE_OP
from lenna.space.registry import build_op
from lenna.space.spec import Edge, SearchSpace

_PROBE_CHANNELS = 4  # the registered ops have parameters at every width or at none
_CACHE: dict[tuple[str, str, int], frozenset[str]] = {}
_LEAD_CACHE: dict[tuple[str, str, int], tuple[str | None, ...]] = {}


def parameter_free(space: SearchSpace, block_type: str, edge: Edge) -> frozenset[str]:
    """The non-``none`` candidate ops of ``edge`` whose module has no parameters (``none``
    is neither kind: a derived cell drops such an edge). Cached by the space's definition,
    so a space of lists (unhashable) works and a redefined space is probed again."""
    key = (space.definition_hash(), space.check_block_type(block_type), edge.index)
    if key not in _CACHE:
        with torch.random.fork_rng(devices=[]):  # building ops draws weights: not the caller's
            _CACHE[key] = _free(space, block_type, edge)
    return _CACHE[key]


def _free(space: SearchSpace, block_type: str, edge: Edge) -> frozenset[str]:
    shapes = space.shapes(block_type, _PROBE_CHANNELS, 2)
    width = shapes["edge_channels"]
    from_input = edge.src < space.num_inputs
    c_in = width if (space.preprocess or not from_input) else shapes["in_channels"]
    stride = 2 if space.is_down(block_type, edge) else 1
    out = set()
    for op in space.edge_ops(block_type, edge):
        if op == NONE_OP:
            continue
        if not any(True for _ in build_op(op, c_in, width, stride).parameters()):
            out.add(op)
    return frozenset(out)


def shared_leads(space: SearchSpace, block_type: str, edge: Edge) -> tuple[str | None, ...]:
    """Per candidate op of ``edge``, what a runtime that merges common subexpressions can share
    with another edge leaving the same node: the op's first layer when that layer has no
    parameters (DARTS's convolutions start with a ReLU, a pool is all pool), as a key that
    is equal exactly where two such layers compute the same thing on the same input;
    ``None`` for an op whose first layer has weights, an identity or ``none``.

    Why: ONNX Runtime's graph optimiser runs one ReLU for every ReLU-led edge out of a node,
    and one max-pool for two identical ones, so a path's latency is not the sum of its edges'.
    """
    key = (space.definition_hash(), space.check_block_type(block_type), edge.index)
    if key not in _LEAD_CACHE:
        with torch.random.fork_rng(devices=[]):  # likewise
            _LEAD_CACHE[key] = _leads(space, block_type, edge)
    return _LEAD_CACHE[key]


def _leads(space: SearchSpace, block_type: str, edge: Edge) -> tuple[str | None, ...]:

    shapes = space.shapes(block_type, _PROBE_CHANNELS, 2)
    width = shapes["edge_channels"]
    from_input = edge.src < space.num_inputs
    c_in = width if (space.preprocess or not from_input) else shapes["in_channels"]
    down = space.is_down(block_type, edge)
    out: list[str | None] = []
    for op in space.edge_ops(block_type, edge):
        if op == NONE_OP:
            out.append(None)
            continue
        module = build_op(op, c_in, width, 2 if down else 1).eval()
        called: list[nn.Module] = []
        leaves = [m for m in module.modules() if not any(True for _ in m.children())]
        hooks = [m.register_forward_hook(lambda m, i, o, c=called: c.append(m)) for m in leaves]
        try:
            with torch.no_grad():
                module(torch.zeros(1, c_in, 8, 8))
        finally:
            for h in hooks:
                h.remove()
        first = called[0] if called else None
        shareable = (
            first is not None
            and not isinstance(first, nn.Identity)
            and not any(True for _ in first.parameters())
        )
        # the input's side of the edge matters too: a reduction's inputs are at full resolution
        out.append(f"{first!r}|{'down' if down else 'keep'}" if shareable else None)
    return tuple(out)


def has_shared_lead(space: SearchSpace) -> bool:
    """Whether any op of the space starts with a shareable (parameter-free) layer. A runtime
    that merges common subexpressions then runs it once for all the edges leaving a node
    that start with it: DARTS's ReLU-led convolutions, and in any space two identical pools
    of one node (a search under a latency term draws pools there often)."""
    return any(
        k is not None
        for bt in ("normal", "reduction")
        for e in space.edges
        for k in shared_leads(space, bt, e)
    )

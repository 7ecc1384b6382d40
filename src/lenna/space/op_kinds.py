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

from lenna.space.mixed import NONE_OP
from lenna.space.registry import build_op
from lenna.space.spec import Edge, SearchSpace

_PROBE_CHANNELS = 4  # the registered ops have parameters at every width or at none
_CACHE: dict[tuple[str, str, int], frozenset[str]] = {}


def parameter_free(space: SearchSpace, block_type: str, edge: Edge) -> frozenset[str]:
    """The non-``none`` candidate ops of ``edge`` whose module has no parameters (``none``
    is neither kind: a derived cell drops such an edge). Cached by the space's definition,
    so a space of lists (unhashable) works and a redefined space is probed again."""
    key = (space.definition_hash(), space.check_block_type(block_type), edge.index)
    if key not in _CACHE:
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

"""Each edge's input tensor in a block, as the block's forward pass feeds it.

Why: ops are timed (and exported) alone at exactly the shapes they meet inside the block, and
which tensor reaches an edge (a preprocessed input, an earlier node) is the block's business.
"""

from __future__ import annotations

import torch

from lenna.space import Block
from lenna.space.mixed import NONE_OP


@torch.inference_mode()
def probe_edge_inputs(block: Block, inputs: tuple[torch.Tensor, ...]) -> dict[int, torch.Tensor]:
    """One input tensor per edge of ``block`` on ``inputs`` (captured with forward hooks)."""
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        edge.register_forward_pre_hook(lambda m, a, k=int(k): seen.setdefault(k, a[0]))
        for k, edge in block.edges.items()
    ]
    saved = [e.active for e in block.edges.values()]
    for e in block.edges.values():
        # any op that runs will do (not `none`: it is skipped): only the inputs are wanted
        e.active = next(i for i, n in enumerate(e.op_names) if n != NONE_OP)
    try:
        block(*inputs)
    finally:
        for h in hooks:
            h.remove()
        for e, a in zip(block.edges.values(), saved, strict=True):
            e.active = a
    return seen

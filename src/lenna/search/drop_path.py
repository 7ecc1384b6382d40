"""Drop-path for training a derived network: each edge's output is dropped per image.

Why: DARTS (and NASNet, ENAS, AmoebaNet before it) regularise the long training of a derived
network by zeroing each cell edge's output for a random subset of the images, scaled by
1/(1-p) where kept, with p rising linearly from 0 over the epochs (``train.py``:
``drop_path_prob * epoch / epochs``). Identity edges are never dropped (``model.py``), so a
cell's skip connections always carry the signal.

It is attached as forward hooks while a network trains and removed afterwards: the network
that is timed, exported and saved is the plain one, and in ``eval`` mode the hooks change
nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from lenna.space.mixed import MixedEdge


def droppable_edges(net: nn.Module) -> list[MixedEdge]:
    """The edges of a derived network's cells whose op is not an identity."""
    return [
        m
        for m in net.modules()
        if isinstance(m, MixedEdge) and m.mode == "fixed" and not isinstance(m.ops[0], nn.Identity)
    ]


class DropPath:
    """Hooks on ``net``'s droppable edges that drop each image's path with probability
    :attr:`prob` while the edge is in training mode."""

    def __init__(self, net: nn.Module, prob: float = 0.0) -> None:
        self.prob = prob
        self._hooks = [e.register_forward_hook(self._drop) for e in droppable_edges(net)]

    def _drop(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.prob <= 0:
            return None  # the output as it was
        keep = 1.0 - self.prob
        mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype)
        return out * mask.bernoulli_(keep) / keep

    def remove(self) -> None:
        """Detach the hooks: the network is as it was."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
